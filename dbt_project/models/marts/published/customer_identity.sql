-- Published identity lookup: which source-side references belong to each customer_id, so CRM and
-- marketing tools can join the segment labels back to their own records. Emails and phones appear
-- only as salted hashes (a tool that holds the salt can hash its own values and join).
-- A retired customer_id (merged into another) is listed under source 'merged_customer_id'.
with

identity_map as (
    select * from {{ ref('stg_pipeline__identity_map') }}
),

final as (
    select
        customer_id,
        case key_type
            when 'crm_id' then 'crm'
            when 'email' then 'email_hash'
            when 'phone' then 'phone_hash'
            when 'loyalty_card' then 'loyalty_card'
            when 'customer_id' then 'merged_customer_id'
        end as source,
        key_value as source_customer_ref,
        first_seen_date,
        as_of_date
    from identity_map
)

select * from final
