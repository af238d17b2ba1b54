-- Web and e-mail engagement per customer at two snapshot dates: the as-of date, and the as-of
-- date minus the churn horizon (where the churn model's training features are taken). Each
-- snapshot sees only events dated on or before it *and* landed by then, so the training
-- features hold nothing that was unknown at the cutoff, late rows included.
with

sessions_attributed as (
    select * from {{ ref('int_web_sessions_attributed') }}
    where session_date
        > {{ dbt.dateadd('day', -(var('churn_horizon_days') + var('web_recency_cap_days')), as_of_date()) }}
),

email_events as (
    select * from {{ ref('int_email_events_attributed') }}
    where event_date > {{ dbt.dateadd('day', -(var('churn_horizon_days') + var('web_window_days')), as_of_date()) }}
),

snapshots as (
    select {{ as_of_date() }} as snapshot_date
    union all
    select {{ churn_cutoff_date() }} as snapshot_date
),

web as (
    select
        sessions_attributed.customer_id,
        snapshots.snapshot_date,
        sum(
            case
                when sessions_attributed.session_date
                    > {{ dbt.dateadd('day', -var('web_recent_days'), 'snapshots.snapshot_date') }}
                    then 1
                else 0
            end
        ) as web_sessions_30d,
        sum(
            case
                when sessions_attributed.session_date
                    > {{ dbt.dateadd('day', -var('web_window_days'), 'snapshots.snapshot_date') }}
                    then 1
                else 0
            end
        ) as web_sessions_90d,
        max(sessions_attributed.session_date) as last_visit_date
    from sessions_attributed
    inner join snapshots
        on sessions_attributed.session_date <= snapshots.snapshot_date
        and sessions_attributed.landed_date <= snapshots.snapshot_date
    group by sessions_attributed.customer_id, snapshots.snapshot_date
),

-- one row per customer, snapshot, event type and campaign: counting those rows counts distinct
-- campaigns, which at 1M customers took half the time of count(distinct) over the events
campaign_events as (
    select
        email_events.customer_id,
        snapshots.snapshot_date,
        email_events.event_type,
        email_events.campaign_id
    from email_events
    inner join snapshots
        on email_events.event_date <= snapshots.snapshot_date
        and email_events.landed_date <= snapshots.snapshot_date
        and email_events.event_date > {{ dbt.dateadd('day', -var('web_window_days'), 'snapshots.snapshot_date') }}
    group by email_events.customer_id, snapshots.snapshot_date, email_events.event_type, email_events.campaign_id
),

email as (
    select
        customer_id,
        snapshot_date,
        count(case when event_type = 'send' then campaign_id end) as emails_sent_90d,
        count(case when event_type = 'open' then campaign_id end) as emails_opened_90d,
        count(case when event_type = 'click' then campaign_id end) as emails_clicked_90d
    from campaign_events
    group by customer_id, snapshot_date
),

engaged as (
    select
        customer_id,
        snapshot_date
    from web
    union
    select
        customer_id,
        snapshot_date
    from email
),

final as (
    select
        engaged.customer_id,
        engaged.snapshot_date,
        coalesce(web.web_sessions_30d, 0) as web_sessions_30d,
        coalesce(web.web_sessions_90d, 0) as web_sessions_90d,
        coalesce(
            least(
                {{ dbt.datediff('web.last_visit_date', 'engaged.snapshot_date', 'day') }},
                {{ var('web_recency_cap_days') }}
            ),
            {{ var('web_recency_cap_days') }}
        ) as web_recency_days,
        coalesce(email.emails_sent_90d, 0) as emails_sent_90d,
        coalesce(email.emails_opened_90d, 0) as emails_opened_90d,
        coalesce(email.emails_clicked_90d, 0) as emails_clicked_90d
    from engaged
    left join web on engaged.customer_id = web.customer_id and engaged.snapshot_date = web.snapshot_date
    left join email on engaged.customer_id = email.customer_id and engaged.snapshot_date = email.snapshot_date
)

select * from final
