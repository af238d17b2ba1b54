-- Trigger events due in the events_horizon_days (30) days after the run date, per customer: the next
-- birthday (from the CRM date of birth; 29 February falls on 28 February in other years), the next
-- signup and first-purchase anniversaries, and the replenishment date (the last purchase plus the
-- customer's own average gap between purchase days). Everything follows from data as of the run date.
with

customers as (
    select * from {{ ref('int_customers') }}
),

purchase_stats as (
    select * from {{ ref('int_customer_purchase_stats') }}
),

birthdays as (
    select
        customer_id,
        'birthday' as event_type,
        {{ next_anniversary('birth_date') }} as due_date,
        cast(null as integer) as anniversary_years
    from customers
    where birth_date is not null
),

signup_anniversaries as (
    select
        customer_id,
        'signup_anniversary' as event_type,
        {{ next_anniversary('signup_date') }} as due_date,
        {{ year_of(next_anniversary('signup_date')) }} - {{ year_of('signup_date') }} as anniversary_years
    from customers
    where signup_date is not null
),

first_purchase_anniversaries as (
    select
        customer_id,
        'first_purchase_anniversary' as event_type,
        {{ next_anniversary('first_purchase_date') }} as due_date,
        {{ year_of(next_anniversary('first_purchase_date')) }} - {{ year_of('first_purchase_date') }}
            as anniversary_years
    from purchase_stats
),

replenishments as (
    -- customers with a repeat purchase only: their own rhythm says when the next one is due
    select
        customer_id,
        'replenishment_due' as event_type,
        {{ dbt.dateadd('day', 'cast(round(avg_days_between_purchases) as integer)', 'last_purchase_date') }}
            as due_date,
        cast(null as integer) as anniversary_years
    from purchase_stats
    where purchase_days >= 2 and avg_days_between_purchases >= 1
),

events as (
    select * from birthdays
    union all
    select * from signup_anniversaries
    union all
    select * from first_purchase_anniversaries
    union all
    select * from replenishments
),

final as (
    select
        customer_id,
        event_type,
        cast(due_date as date) as due_date,
        {{ iso_week('cast(due_date as date)') }} as due_week,
        {{ dbt.datediff(as_of_date(), 'cast(due_date as date)', 'day') }} as days_until,
        anniversary_years
    from events
    where cast(due_date as date) > {{ as_of_date() }}
        and cast(due_date as date) <= {{ dbt.dateadd('day', var('events_horizon_days'), as_of_date()) }}
)

select * from final
