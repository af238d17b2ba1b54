-- The identity map of the current run (custseg/steps/identity.py resolves identities before dbt runs).
-- Before the first resolution the table does not exist yet (for example `dbt run --empty` on a
-- fresh warehouse): the model is then empty rather than failing.
with

source as (
    {{ source_or_empty('pipeline', 'identity_map', [
        ['key_type', dbt.type_string()],
        ['key_value', dbt.type_string()],
        ['customer_id', dbt.type_string()],
        ['first_seen_date', 'date'],
        ['as_of_date', 'date'],
    ]) }}
),

salt as (
    select pii_salt from {{ source('pipeline', 'pii_salt') }}
),

final as (
    select
        source.key_type,
        source.key_value,
        source.customer_id,
        -- what analytics.customer_identity publishes: a keyed hash, always, whatever the value looks
        -- like. The CRM id and the card are plain here (raw is the pipeline's own), so they are hashed
        -- in their ref: namespace; the others already are keyed hashes (an email or phone hash, or a
        -- retired customer_id)
        case source.key_type
            when 'crm_id' then {{ keyed_hash('ref:crm', 'source.key_value') }}
            when 'loyalty_card' then {{ keyed_hash('ref:card', 'source.key_value') }}
            else source.key_value
        end as source_customer_ref,
        source.first_seen_date,
        -- the raw column says which run last (re)assigned the row; the map as a whole is resolved
        -- as of the run's date just before dbt runs (raw.identity_state says so)
        source.as_of_date as assigned_date,
        {{ as_of_date() }} as as_of_date
    from source
    cross join salt
)

select * from final
