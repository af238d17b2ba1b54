{#- Landing visibility: which landed rows a build as of a date sees. The incremental landing macros
    (macros/landing/) stage landed sources point-in-time correct: visibility.sql (this file),
    state.sql (extend or rebuild, and what a build records), attribution.sql (the event attribution
    models' rule) and dedup.sql (the latest landed version per key).

    A landed row is *visible* as of date D when it landed in a partition on or before D and, for an
    event source, happened before the end of D (`visible_as_of`). A night reads the rows visible
    tonight but not as of its previous build's date (`landed_rows_to_read`). -#}

{#- `landed` is the column of the landing partition's date: `_partition_date` in raw, `landed_date` once staged. -#}
{% macro visible_as_of(as_of, event_at=none, landed='_partition_date') -%}
    {{ landed }} <= cast('{{ as_of }}' as date)
    {%- if event_at %}
        {%- set day_after = modules.datetime.date.fromisoformat(as_of | string) + modules.datetime.timedelta(days=1) %}
        and {{ event_at }} < cast('{{ day_after.isoformat() }} 00:00:00' as timestamp)
    {%- endif %}
{%- endmacro %}

{#- Rows of a landed source to read tonight: visible as of the run date, minus what the previous build saw. -#}
{% macro landed_rows_to_read(since, event_at=none) -%}
    {{ visible_as_of(as_of_date_string(), event_at) }}
    {%- if since %}
        and not ({{ visible_as_of(since, event_at) }})
    {%- endif %}
{%- endmacro %}

{#- Staged events that were not visible as of `since` (see visible_as_of). -#}
{% macro newly_visible_events(since, event_at) -%}
    not ({{ visible_as_of(since, event_at, 'landed_date') }})
{%- endmacro %}
