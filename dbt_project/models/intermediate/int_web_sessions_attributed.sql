-- Web and app sessions with the customer they belong to (by CRM id, else by email), for every
-- engagement model. Sessions that match no customer (anonymous visitors) are left out.
-- A table: both engagement models read it, and its tests then scan it instead of re-running the join.

with

customer_keys as (
    select * from {{ ref('int_customer_keys') }}
),

web_sessions as (
    select * from {{ ref('stg_web__sessions') }}
),

final as (
    select
        web_sessions.session_id,
        coalesce(by_crm.customer_id, by_email.customer_id) as customer_id,
        web_sessions.session_date,
        web_sessions.landed_date
    from web_sessions
    left join customer_keys as by_crm
        on by_crm.key_type = 'crm_id' and by_crm.key_value = web_sessions.crm_customer_id
    left join customer_keys as by_email
        on by_email.key_type = 'email' and by_email.key_value = web_sessions.email_hash
    where coalesce(by_crm.customer_id, by_email.customer_id) is not null
)

select * from final
