{#- The state of an incremental landing model (macros/landing/; visibility.sql says which rows a
    date sees): whether tonight's build may extend its table, and what the build records.

    A staging model holds, per business key, the latest landed version among the rows visible as of
    the date it was last built. Its state row in `<build schema>.dbt_incremental_state` records that
    date, the newest successful load in `ops.load_audit` it had seen, and a fingerprint of its code
    and settings.

    Tonight's build *extends* the table (`incremental_since` returns the previous date) only when all
    of these hold, so extending gives exactly what a rebuild would:
      - tonight's date is later than the previous one (a rerun or a backfill rebuilds);
      - no partition on or before the previous date was (re)loaded since (a late file for an old day,
        or a reloaded partition, rebuilds);
      - the fingerprint is unchanged: the model's SQL and that of every model and seed upstream of
        it (the fx_rates seed among them), the PII salt, reporting currency and phone country code
        (any of them changing every row rebuilds).

    Otherwise it rebuilds from scratch (`incremental_reset` empties the table first). When extending,
    the new rows are those visible tonight but not as of the previous date; with the rows already held
    for the same keys they compete for "latest landed version" (dedup.sql).

    The event attribution models extend on a shorter rule (attribution.sql) and share the state table.

    Changing a macro that a model uses does not change its fingerprint: rebuild with
    `dbt build --full-refresh` (or empty dbt_incremental_state) after such a change. -#}

{#- `verified_as_of`: the as-of date of the newest build of the table that its key's uniqueness test
    passed on (see unique_incremental). -#}
{% macro incremental_state_ddl() -%}
    create table if not exists {{ incremental_state_relation() }} (
        model_name {{ dbt.type_string() }} not null,
        as_of_date date not null,
        loads_seen_at timestamp,
        fingerprint {{ dbt.type_string() }} not null,
        verified_as_of date
    )
{%- endmacro %}

{#- Create the state table, or give one made before verified_as_of existed that column. The alter
    runs only when the column is missing: on PostgreSQL even `add column if not exists` takes an
    exclusive lock, held to the end of the model's transaction, which would queue every other
    incremental model of the night behind it. -#}
{% macro ensure_incremental_state_table() -%}
    {%- set state = incremental_state_relation() -%}
    {%- call statement('incremental_state_table') -%}
        {{ incremental_state_ddl() }}
    {%- endcall -%}
    {%- if not _state_has_verified_column(state) -%}
        {%- call statement('incremental_state_verified_column') -%}
            alter table {{ state }} add column verified_as_of date
        {%- endcall -%}
    {%- endif -%}
{%- endmacro %}

{#- Whether the state table has verified_as_of (one made before that column has not). -#}
{% macro _state_has_verified_column(state) -%}
    {%- set columns = adapter.get_columns_in_relation(state) | map(attribute='name') | map('lower') | list -%}
    {{ return('verified_as_of' in columns) }}
{%- endmacro %}

{% macro incremental_state_relation() -%}
    {{ return(api.Relation.create(database=target.database, schema=target.schema,
                                  identifier='dbt_incremental_state', type='table')) }}
{%- endmacro %}

{#- The fingerprint's text: this model's code, the code of every model and seed upstream of it, and
    the settings that change every row. -#}
{% macro incremental_fingerprint_text() -%}
    {%- set nodes = graph.get('nodes') or {} -%}
    {%- set parts = [(model.get('checksum') or {}).get('checksum', ''), var('reporting_currency'),
                     var('phone_country_code')] -%}
    {%- set upstream = (model.get('depends_on') or {}).get('nodes', []) | list -%}
    {%- set seen = [] -%}
    {#- breadth-first over depends_on: the loop also visits the parents appended while it runs -#}
    {%- for node_id in upstream -%}
        {%- if node_id not in seen -%}
            {%- do seen.append(node_id) -%}
            {%- set node = nodes.get(node_id) or {} -%}
            {%- do parts.append(node_id ~ '=' ~ (node.get('checksum') or {}).get('checksum', '')) -%}
            {%- for parent in (node.get('depends_on') or {}).get('nodes', []) -%}
                {%- do upstream.append(parent) -%}
            {%- endfor -%}
        {%- endif -%}
    {%- endfor -%}
    {{ return((parts[:3] + (parts[3:] | sort)) | join('|') | replace("'", "''")) }}
{%- endmacro %}

{#- SQL for the fingerprint; a staging model's includes the salt (read, never rendered). -#}
{% macro incremental_fingerprint_sql(salted=true) -%}
    {%- if salted -%}
        md5(pii_salt || '{{ incremental_fingerprint_text() }}')
    {%- else -%}
        md5('{{ incremental_fingerprint_text() }}')
    {%- endif -%}
{%- endmacro %}

{#- The date this model was last built as of, when tonight may extend it; none means rebuild. -#}
{% macro incremental_since(announce=true) -%}
    {%- set rule = _landing_extension_rule() -%}
    {{ return(previous_build_date(rule[0], rule[1], announce)) }}
{%- endmacro %}

{#- [join, conditions] on the state row under which a staging model of a landed source may extend. -#}
{% macro _landing_extension_rule() -%}
    {%- set join -%}
        cross join {{ source('pipeline', 'pii_salt') }}
    {%- endset -%}
    {%- set conditions -%}
        state.fingerprint = {{ incremental_fingerprint_sql() }}
            and not exists (
                select 1
                from {{ source('ops', 'load_audit') }} as loads
                where loads.status = 'success'
                    and loads.partition_date <= state.as_of_date
                    and loads.recorded_at > coalesce(state.loads_seen_at, cast('1900-01-01' as timestamp))
            )
    {%- endset -%}
    {{ return([join, conditions]) }}
{%- endmacro %}

{#- The state row's date when it is older than tonight and `conditions` hold (with `join` joined): the answer
    of incremental_since and of attribution_since (attribution.sql). -#}
{% macro previous_build_date(join, conditions, announce) -%}
    {%- set build = _previous_build(join, conditions) -%}
    {%- set since = build[0] if build else none -%}
    {%- if execute and is_incremental() and announce -%}
        {%- set action = ("extending the build as of " ~ since) if since else "rebuilding from scratch" -%}
        {{ log(this.identifier ~ ": " ~ action, info=true) }}
    {%- endif -%}
    {{ return(since) }}
{%- endmacro %}

{#- [as_of_date, verified_as_of] (ISO date strings; the second may be none) of the state row when
    tonight may extend the table, else none. One query for both, so the post_hook does not ask twice. -#}
{% macro _previous_build(join, conditions) -%}
    {%- if not execute or not is_incremental() -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set state = incremental_state_relation() -%}
    {%- do ensure_incremental_state_table() -%}
    {%- set query -%}
        select
            cast(state.as_of_date as {{ dbt.type_string() }}),
            cast(state.verified_as_of as {{ dbt.type_string() }})
        from {{ state }} as state
        {{ join }}
        where state.model_name = '{{ this.identifier }}'
            and state.as_of_date < {{ as_of_date() }}
            and {{ conditions }}
    {%- endset -%}
    {%- set rows = run_query(query).rows -%}
    {{ return([rows[0][0], rows[0][1]] if rows | length == 1 else none) }}
{%- endmacro %}

{#- pre_hook: empty the table when tonight rebuilds it (the incremental materialization then inserts everything). -#}
{% macro incremental_reset() -%}
    {%- if execute and is_incremental() and not incremental_since(announce=false) -%}
        delete from {{ this }}
    {%- endif -%}
{%- endmacro %}

{#- post_hook: remember what this build saw (same transaction as the model's insert). An event
    attribution model (`reads_landing=false`) records no load and an unsalted fingerprint. A build
    that extended the table keeps the date its rows were last verified unique; a rebuild has none. -#}
{% macro record_incremental_state(reads_landing=true) -%}
    {%- set state = incremental_state_relation() -%}
    {%- set verified = none -%}
    {%- if execute and is_incremental() -%}
        {%- set rule = _landing_extension_rule() if reads_landing else attribution_extension_rule() -%}
        {%- set build = _previous_build(rule[0], rule[1]) -%}
        {%- set verified = build[1] if build else none -%}
    {%- elif execute -%}
        {%- do ensure_incremental_state_table() -%}
    {%- endif -%}
    delete from {{ state }} where model_name = '{{ this.identifier }}';
    insert into {{ state }} (model_name, as_of_date, loads_seen_at, fingerprint, verified_as_of)
    select
        '{{ this.identifier }}',
        {{ as_of_date() }},
    {%- if reads_landing %}
        (select max(recorded_at) from {{ source('ops', 'load_audit') }} where status = 'success'),
        {{ incremental_fingerprint_sql() }},
    {%- else %}
        cast(null as timestamp),
        {{ incremental_fingerprint_sql(salted=false) }},
    {%- endif %}
        cast({{ "'" ~ verified ~ "'" if verified else "null" }} as date)
    {%- if reads_landing %}
    from {{ source('pipeline', 'pii_salt') }}
    {%- endif %}
{%- endmacro %}

{#- The `verified_as_of` of a model's state row (an ISO date string), or none. Read-only, for the key
    test: no state table yet (or one from before the column) means nothing was verified. -#}
{% macro verified_build_date(identifier) -%}
    {%- set state = incremental_state_relation() -%}
    {%- if not execute or adapter.get_relation(state.database, state.schema, state.identifier) is none
            or not _state_has_verified_column(state) -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set rows = run_query(
        "select cast(verified_as_of as " ~ dbt.type_string() ~ ") from " ~ state
        ~ " where model_name = '" ~ identifier ~ "' and verified_as_of is not null"
    ).rows -%}
    {{ return(rows[0][0] if rows | length == 1 else none) }}
{%- endmacro %}

{#- on-run-end: a passed unique_incremental test verified its model's table as of the model's
    latest build; record that date, so the next nights test only the rows they write (see
    generic_tests/unique_incremental.sql). Runs after every dbt command; a command that passed no
    such test runs no SQL. -#}
{% macro record_verified_builds(results) -%}
    {%- set verified = [] -%}
    {%- if execute -%}
        {%- for result in results -%}
            {%- set node = result.node -%}
            {%- if result.status == 'pass' and node.resource_type == 'test' and node.test_metadata
                    and node.test_metadata.name == 'unique_incremental' and node.attached_node in graph.nodes -%}
                {%- do verified.append(graph.nodes[node.attached_node].alias) -%}
            {%- endif -%}
        {%- endfor -%}
    {%- endif -%}
    {%- if verified -%}
        update {{ incremental_state_relation() }}
        set verified_as_of = as_of_date
        where model_name in ('{{ verified | join("', '") }}')
    {%- endif -%}
{%- endmacro %}
