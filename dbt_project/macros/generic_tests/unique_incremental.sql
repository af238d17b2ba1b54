{#- Primary-key test of an incremental table that each night extends (macros/landing/).
    The key must be unique over the whole table, as dbt's `unique` test checks, but a night need not
    re-read every key to know it: a build deletes the rows of every key it writes and writes each
    key once, so only rows written since the table was last verified can break uniqueness. Each row
    carries `built_as_of`, the as-of date of the build that wrote it, and the model's state row
    `verified_as_of`, the date of the newest build this test passed on (recorded by the on-run-end
    hook record_verified_builds). The test looks up every key written after that date among all
    rows. A rebuild, the first build and a failed test leave no verified date: the next run checks
    the whole table, and a night after a failed one checks that night's rows too.
    At 1M customers this reads a night's few thousand keys against 13.6M e-mail events instead of
    grouping all of them (bench/README.md). -#}
{% test unique_incremental(model, column_name) %}
    {%- set verified = verified_build_date(model.identifier) if execute else none %}

with

{% if verified -%}
keys_written_since_verified as (
    select {{ column_name }} as unique_field
    from {{ model }}
    where built_as_of > cast('{{ verified }}' as date)
),

{% endif -%}
keys as (
    select {{ column_name }} as unique_field
    from {{ model }}
    where {{ column_name }} is not null
{%- if verified %}
        and {{ column_name }} in (select unique_field from keys_written_since_verified)
{%- endif %}
),

final as (
    select
        unique_field,
        count(*) as n_records
    from keys
    group by unique_field
    having count(*) > 1
)

select * from final

{% endtest %}
