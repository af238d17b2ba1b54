-- The state of the identity map (custseg/steps/identity.py): the date it is as of and the date of its last
-- full rebuild. The event attribution models read it to know whether they may extend their tables.
-- Before the first resolution the table does not exist yet (for example `dbt run --empty` on a fresh
-- warehouse): the model is then empty rather than failing.
with

source as (
    {{ source_or_empty('pipeline', 'identity_state', [['as_of_date', 'date'], ['rebuilt_as_of', 'date']]) }}
),

final as (
    select
        as_of_date,
        rebuilt_as_of
    from source
)

select * from final
