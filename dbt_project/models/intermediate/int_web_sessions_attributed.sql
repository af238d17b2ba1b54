-- Web and app sessions with the customer they belong to (by CRM id, else by email), for every
-- engagement model. Sessions that match no customer (anonymous visitors) are left out.
-- A table: both engagement models read it, and its tests then scan it instead of re-running the join.
-- Incremental (macros/landing/attribution.sql): a night attributes the sessions that became visible
-- since the previous build and re-attributes those whose CRM id or address was assigned to a
-- customer since (a new key or a merge); a rerun, a backfill, a reloaded partition or a rebuilt
-- identity map rebuilds.
{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key='session_id',
    on_schema_change='sync_all_columns',
    indexes=postgres_key_index('session_id'),
    pre_hook="{{ attribution_reset('session_id', [['stg_web__sessions', 'session_id', 'started_at']]) }}",
    post_hook="{{ record_incremental_state(reads_landing=false) }}",
) }}
-- depends_on: {{ ref('stg_pipeline__identity_state') }}
{%- set since = attribution_since() %}

with

customer_keys as (
    select * from {{ ref('int_customer_keys') }}
    where key_type in ('crm_id', 'email')
),

web_sessions as (
    select * from {{ ref('stg_web__sessions') }}
    {%- if since %}
    where {{ newly_visible_events(since, 'started_at') }}
        or crm_customer_id in ({{ keys_assigned_since(since, 'crm_id') }})
        or email_hash in ({{ keys_assigned_since(since, 'email') }})
    {%- endif %}
),

final as (
    select
        web_sessions.session_id,
        coalesce(by_crm.customer_id, by_email.customer_id) as customer_id,
        web_sessions.session_date,
        web_sessions.category,
        web_sessions.page_views,
        web_sessions.landed_date,
        {{ as_of_date() }} as built_as_of
    from web_sessions
    left join customer_keys as by_crm
        on by_crm.key_type = 'crm_id' and web_sessions.crm_customer_id = by_crm.key_value
    left join customer_keys as by_email
        on by_email.key_type = 'email' and web_sessions.email_hash = by_email.key_value
    where coalesce(by_crm.customer_id, by_email.customer_id) is not null
)

select * from final
