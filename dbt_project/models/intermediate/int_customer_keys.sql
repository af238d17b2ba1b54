-- Every identifier that points at a customer: CRM id, email hash, phone hash, loyalty card.
-- Resolved transitively across all channels by custseg/steps/identity.py (connected components over the
-- keys found together on CRM records, orders, sessions, tickets and receipts); this model only
-- exposes the lookup. A household phone (held by several CRM customers) links nothing and is absent.
with

identity_map as (
    select * from {{ ref('stg_pipeline__identity_map') }}
    where key_type in ('crm_id', 'email', 'phone', 'loyalty_card')
),

final as (
    select
        key_type,
        key_value,
        customer_id,
        assigned_date
    from identity_map
)

select * from final
