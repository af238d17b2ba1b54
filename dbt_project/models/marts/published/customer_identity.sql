-- Published identity lookup: which source-side references belong to each customer_id. Every
-- reference is a keyed hash, whatever the value looks like (an export's customer column may hold
-- e-mail addresses): a tool that holds the key can hash its own values and join, nobody else can.
-- A retired customer_id (merged into another) is listed under source 'merged_customer_id'.
-- Tasks that act on real customers map back to the CRM's references through raw.identity_map
-- (the pipeline's own access), never through this table.
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
        source_customer_ref,
        first_seen_date,
        as_of_date
    from identity_map
)

select * from final
