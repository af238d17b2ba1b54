-- Marketing e-mail events with the customer they belong to (by the salted email hash), for every
-- engagement model. Events for addresses that match no customer are left out.
-- A table: both engagement models read it, and its tests then scan it instead of re-running the join.

with

customer_keys as (
    select * from {{ ref('int_customer_keys') }}
),

email_events as (
    select * from {{ ref('stg_marketing__email_events') }}
),

final as (
    select
        email_events.event_id,
        by_email.customer_id,
        email_events.campaign_id,
        email_events.event_type,
        email_events.event_date,
        email_events.landed_date
    from email_events
    inner join customer_keys as by_email
        on by_email.key_type = 'email' and by_email.key_value = email_events.email_hash
)

select * from final
