{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['as_of_date'],
        on_schema_change='append_new_columns',
    )
}}

-- The trigger events due in the 30 days after each run date (one date per run, like segment_history:
-- a rerun replaces its own date and a backfill of a past date slots in). A birthday is published by
-- its ISO week only, never its day or year: the CRM, which holds the date, sends on the day.
with

upcoming_events as (
    select * from {{ ref('int_customer_upcoming_events') }}
),

final as (
    select
        customer_id,
        {{ as_of_date() }} as as_of_date,
        event_type,
        due_week,
        case when event_type = 'birthday' then null else due_date end as due_date,
        cast(case when event_type = 'birthday' then null else days_until end as integer) as days_until,
        cast(anniversary_years as integer) as anniversary_years
    from upcoming_events
)

select * from final
