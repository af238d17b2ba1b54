-- Every identifier that points at a CRM customer: CRM id, email hash, phone hash, loyalty card.
-- When one identifier is shared by several CRM records (a family phone, one email on two records)
-- the lowest customer_id wins, so the mapping is deterministic.
with

crm_customers as (
    select * from {{ ref('stg_crm__customers') }}
),

customer_ids as (
    select
        crm_customer_id,
        email_hash,
        phone_hash,
        loyalty_card_key,
        {{ dbt.hash("'crm:' || crm_customer_id") }} as customer_id
    from crm_customers
),

keys as (
    select 'crm_id' as key_type, crm_customer_id as key_value, customer_id from customer_ids
    union all
    select 'email', email_hash, customer_id from customer_ids where email_hash is not null
    union all
    select 'phone', phone_hash, customer_id from customer_ids where phone_hash is not null
    union all
    select 'loyalty_card', loyalty_card_key, customer_id from customer_ids where loyalty_card_key is not null
),

ranked as (
    select
        key_type,
        key_value,
        customer_id,
        row_number() over (partition by key_type, key_value order by customer_id) as key_rank
    from keys
),

final as (
    select
        key_type,
        key_value,
        customer_id
    from ranked
    where key_rank = 1
)

select * from final
