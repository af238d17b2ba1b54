-- The state of the identity map (custseg/identity.py): the date it is as of and the date of its last
-- full rebuild. The event attribution models read it to know whether they may extend their tables.
-- Before the first resolution the table does not exist yet (for example `dbt run --empty` on a fresh
-- warehouse): the model is then empty rather than failing.
{%- set state_relation = none -%}
{%- if execute -%}
    {%- set src = source('pipeline', 'identity_state') -%}
    {%- set state_relation = adapter.get_relation(database=src.database, schema=src.schema, identifier=src.identifier) -%}
{%- endif %}
with

{% if state_relation is not none or not execute -%}
source as (
    select * from {{ source('pipeline', 'identity_state') }}
),
{%- else -%}
source as (
    select
        cast(null as date) as as_of_date,
        cast(null as date) as rebuilt_as_of
    where 1 = 0
),
{%- endif %}

final as (
    select
        as_of_date,
        rebuilt_as_of
    from source
)

select * from final
