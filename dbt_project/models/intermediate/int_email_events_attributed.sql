-- Marketing e-mail events with the customer they belong to (by the keyed email hash), for every
-- engagement model. Events for addresses that match no customer are left out.
-- A table: both engagement models read it, and its tests then scan it instead of re-running the join.
-- Incremental (macros/landing/attribution.sql): a night attributes the events that became visible
-- since the previous build and re-attributes those whose address was assigned to a customer since
-- (a new key or a merge); a rerun, a backfill, a reloaded partition or a rebuilt identity map rebuilds.
{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key='event_id',
    on_schema_change='sync_all_columns',
    indexes=postgres_key_index('event_id'),
    pre_hook="{{ attribution_reset('event_id', [['stg_marketing__email_events', 'event_id', 'event_at']]) }}",
    post_hook="{{ record_incremental_state(reads_landing=false) }}",
) }}
-- depends_on: {{ ref('stg_pipeline__identity_state') }}
{%- set since = attribution_since() %}

with

customer_keys as (
    select * from {{ ref('int_customer_keys') }}
    where key_type = 'email'
),

email_events as (
    select * from {{ ref('stg_marketing__email_events') }}
    {%- if since %}
    where {{ newly_visible_events(since, 'event_at') }}
        or email_hash in ({{ keys_assigned_since(since, 'email') }})
    {%- endif %}
),

final as (
    select
        email_events.event_id,
        by_email.customer_id,
        email_events.campaign_id,
        email_events.event_type,
        email_events.event_date,
        email_events.landed_date,
        {{ as_of_date() }} as built_as_of
    from email_events
    inner join customer_keys as by_email
        on email_events.email_hash = by_email.key_value
)

select * from final
