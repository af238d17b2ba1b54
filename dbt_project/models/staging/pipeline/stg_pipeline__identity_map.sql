-- The identity map of the current run (custseg/identity.py resolves identities before dbt runs).
-- Before the first resolution the table does not exist yet (for example `dbt run --empty` on a
-- fresh warehouse): the model is then empty rather than failing.
{%- set map_relation = none -%}
{%- if execute -%}
    {%- set src = source('pipeline', 'identity_map') -%}
    {%- set map_relation = adapter.get_relation(database=src.database, schema=src.schema, identifier=src.identifier) -%}
{%- endif %}
with

{% if map_relation is not none or not execute -%}
source as (
    select * from {{ source('pipeline', 'identity_map') }}
),
{%- else -%}
source as (
    select
        cast(null as {{ dbt.type_string() }}) as key_type,
        cast(null as {{ dbt.type_string() }}) as key_value,
        cast(null as {{ dbt.type_string() }}) as customer_id,
        cast(null as date) as first_seen_date,
        cast(null as date) as as_of_date
    where 1 = 0
),
{%- endif %}

final as (
    select
        key_type,
        key_value,
        customer_id,
        first_seen_date,
        -- the raw column says which run last (re)assigned the row; the map as a whole is resolved
        -- as of the run's date just before dbt runs (raw.identity_state says so)
        as_of_date as assigned_date,
        {{ as_of_date() }} as as_of_date
    from source
)

select * from final
