{#- `dbt source freshness`, as of the run's date instead of the wall clock (overrides dbt's own macro of
    the same name; custseg.steps.transform.check_source_freshness runs it each night). A source's age is
    the time from its newest partition landed on or before the as-of date to the end of that date, so a
    rerun or a backfill of a past date judges the data as the night itself did, and partitions landed
    after it do not count. The thresholds are the sources' own `freshness` (warn_after, error_after). -#}
{% macro collect_freshness(source, loaded_at_field, filter) %}
    {% call statement('collect_freshness', fetch_result=True, auto_begin=False) -%}
        select
            max({{ loaded_at_field }}) as max_loaded_at,
            {{ as_of_end() }} as snapshotted_at
        from {{ source }}
        where
            _partition_date <= {{ as_of_date() }}
        {%- if filter %}
                and ({{ filter }})
        {%- endif %}
    {%- endcall %}
    {{ return(load_result('collect_freshness')) }}
{% endmacro %}
