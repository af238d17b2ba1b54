{{ config(tags=['scored']) }}

-- What each campaign did, as of the run date: treated against control, per campaign ('campaign', 'all'), per
-- playbook rule and per RFM segment the customers had when they were assigned. Replaced every night.
--
-- Intention to treat: custseg does not know whom the campaign tool actually reached, so every assigned
-- customer counts in the arm the holdout put them in. A customer is measured once their conversion window
-- has passed (conversion_window_ends_on on or before the run date), in both arms alike; until then they
-- count in customers_assigned only. Within the window (after assigned_on, up to conversion_window_ends_on)
-- a customer converted when they made a purchase that was not refunded, and their revenue is the net amount
-- of their purchases there (reporting currency; refunds and returns count against it).
--
-- Intervals (95%, macros/uplift.sql; docs/overview.md "Measuring a campaign"):
-- - conversion uplift (treated rate - control rate): Newcombe's hybrid score interval from each rate's
--   Wilson interval; relative uplift (treated rate / control rate - 1): the log risk-ratio interval;
-- - revenue uplift per customer (treated mean - control mean): Welch's interval with Welch-Satterthwaite
--   degrees of freedom; relative revenue uplift: the delta-method interval of the log ratio of means.
-- An effect is significant when its interval excludes 0. Intervals need two customers in each arm (and, for
-- revenue, some spread in an arm; for the relative ones, positive rates or means); they are null before that.
with

audience as (
    select * from {{ ref('campaign_audience') }}
),

campaigns as (
    select * from {{ ref('stg_pipeline__campaigns') }}
),

purchases as (
    select
        customer_id,
        purchase_date,
        net_amount,
        is_refund
    from {{ ref('fct_purchases') }}
    where purchase_date <= {{ as_of_date() }}
),

audience_segments as (
    select
        campaign_id,
        customer_id,
        is_control,
        assigned_on,
        conversion_window_ends_on,
        'campaign' as segment_type,
        'all' as segment
    from audience
    union all
    select
        campaign_id,
        customer_id,
        is_control,
        assigned_on,
        conversion_window_ends_on,
        'playbook_id' as segment_type,
        coalesce(playbook_id, 'No playbook rule') as segment
    from audience
    union all
    select
        campaign_id,
        customer_id,
        is_control,
        assigned_on,
        conversion_window_ends_on,
        'rfm_segment' as segment_type,
        coalesce(rfm_segment, 'No purchase yet') as segment
    from audience
),

assigned as (
    select
        campaign_id,
        segment_type,
        segment,
        count(*) as customers_assigned
    from audience_segments
    group by campaign_id, segment_type, segment
),

-- one row per measured customer (window passed), whether or not they bought in it
outcomes as (
    select
        measured.campaign_id,
        measured.segment_type,
        measured.segment,
        measured.customer_id,
        measured.is_control,
        max(case when purchases.is_refund = false then 1 else 0 end) as converted,
        cast(coalesce(sum(purchases.net_amount), 0) as numeric(18, 2)) as revenue
    from audience_segments as measured
    left join purchases
        on
        measured.customer_id = purchases.customer_id
        and measured.assigned_on < purchases.purchase_date
        and measured.conversion_window_ends_on >= purchases.purchase_date
    where measured.conversion_window_ends_on <= {{ as_of_date() }}
    group by
        measured.campaign_id,
        measured.segment_type,
        measured.segment,
        measured.customer_id,
        measured.is_control
),

-- counts and exact (numeric) sums per arm: the statistics below depend on them only, so reruns and both
-- warehouses start from the same numbers whatever order the rows were added in
arms as (
    select
        campaign_id,
        segment_type,
        segment,
        sum(case when not is_control then 1 else 0 end) as treated_customers,
        sum(case when is_control then 1 else 0 end) as control_customers,
        sum(case when not is_control then converted else 0 end) as treated_conversions,
        sum(case when is_control then converted else 0 end) as control_conversions,
        sum(case when not is_control then revenue else 0 end) as treated_revenue,
        sum(case when is_control then revenue else 0 end) as control_revenue,
        sum(case when not is_control then revenue * revenue else 0 end) as treated_revenue_squares,
        sum(case when is_control then revenue * revenue else 0 end) as control_revenue_squares
    from outcomes
    group by campaign_id, segment_type, segment
),

estimates as (
    select
        assigned.campaign_id,
        assigned.segment_type,
        assigned.segment,
        assigned.customers_assigned,
        cast(coalesce(arms.treated_customers, 0) as bigint) as treated_customers,
        cast(coalesce(arms.control_customers, 0) as bigint) as control_customers,
        cast(coalesce(arms.treated_conversions, 0) as bigint) as treated_conversions,
        cast(coalesce(arms.control_conversions, 0) as bigint) as control_conversions,
        cast(arms.treated_conversions as double precision) / nullif(arms.treated_customers, 0) as treated_rate,
        cast(arms.control_conversions as double precision) / nullif(arms.control_customers, 0) as control_rate,
        cast(arms.treated_revenue as double precision) / nullif(arms.treated_customers, 0) as treated_mean,
        cast(arms.control_revenue as double precision) / nullif(arms.control_customers, 0) as control_mean,
        -- sample variances from the exact sums; null below two customers
        cast(
            arms.treated_revenue_squares
            - arms.treated_revenue * arms.treated_revenue / nullif(arms.treated_customers, 0)
            as double precision
        )
        / nullif(arms.treated_customers - 1, 0) as treated_variance,
        cast(
            arms.control_revenue_squares
            - arms.control_revenue * arms.control_revenue / nullif(arms.control_customers, 0)
            as double precision
        )
        / nullif(arms.control_customers - 1, 0) as control_variance
    from assigned
    left join arms
        on
        assigned.campaign_id = arms.campaign_id
        and assigned.segment_type = arms.segment_type
        and assigned.segment = arms.segment
),

-- the Wilson intervals of each rate, the squared standard errors of each mean, and Welch's degrees of freedom
parts as (
    select
        *,
        case
            when treated_customers >= 2 and control_customers >= 2
                then {{ wilson_bound('treated_rate', 'treated_customers', '-') }}
        end as treated_rate_lower,
        case
            when treated_customers >= 2 and control_customers >= 2
                then {{ wilson_bound('treated_rate', 'treated_customers', '+') }}
        end as treated_rate_upper,
        case
            when treated_customers >= 2 and control_customers >= 2
                then {{ wilson_bound('control_rate', 'control_customers', '-') }}
        end as control_rate_lower,
        case
            when treated_customers >= 2 and control_customers >= 2
                then {{ wilson_bound('control_rate', 'control_customers', '+') }}
        end as control_rate_upper,
        greatest(treated_variance, 0) / nullif(treated_customers, 0) as treated_mean_se2,
        greatest(control_variance, 0) / nullif(control_customers, 0) as control_mean_se2
    from estimates
),

intervals as (
    select
        *,
        treated_rate - control_rate as conversion_uplift,
        {{ newcombe_bound('treated_rate', 'treated_rate_lower', 'treated_rate_upper',
                          'control_rate', 'control_rate_lower', 'control_rate_upper', '-') }}
            as conversion_uplift_lower,
        {{ newcombe_bound('treated_rate', 'treated_rate_lower', 'treated_rate_upper',
                          'control_rate', 'control_rate_lower', 'control_rate_upper', '+') }}
            as conversion_uplift_upper,
        -- the logs only where both rates (means) are positive, with two customers in each arm; null otherwise
        case
            when treated_conversions > 0 and control_conversions > 0 and treated_rate_lower is not null
                then ln(treated_rate / control_rate)
        end as log_rate_ratio,
        case
            when treated_conversions > 0 and control_conversions > 0 and treated_rate_lower is not null
                then sqrt(
                        1.0 / treated_conversions - 1.0 / treated_customers
                        + 1.0 / control_conversions - 1.0 / control_customers
                    )
        end as log_rate_ratio_se,
        treated_mean - control_mean as revenue_uplift,
        sqrt(treated_mean_se2 + control_mean_se2) as revenue_uplift_se,
        -- Welch-Satterthwaite; null when neither arm has any spread (nobody bought, or all spent alike): the
        -- interval would be the point itself, a certainty the data does not give, so it is left null
        power(treated_mean_se2 + control_mean_se2, 2) / nullif(
            power(treated_mean_se2, 2) / nullif(treated_customers - 1, 0)
            + power(control_mean_se2, 2) / nullif(control_customers - 1, 0),
            0
        ) as welch_df,
        case
            when treated_mean > 0 and control_mean > 0 and treated_rate_lower is not null
                then ln(treated_mean / control_mean)
        end as log_mean_ratio,
        case
            when treated_mean > 0 and control_mean > 0 and treated_rate_lower is not null
                then sqrt(treated_mean_se2 / power(treated_mean, 2) + control_mean_se2 / power(control_mean, 2))
        end as log_mean_ratio_se
    from parts
),

effects as (
    select
        intervals.campaign_id,
        intervals.segment_type,
        intervals.segment,
        {{ as_of_date() }} as as_of_date,
        campaigns.conversion_window_days,
        {{ dbt.dateadd('day', 'campaigns.conversion_window_days', 'campaigns.end_date') }}
        <= {{ as_of_date() }} as is_final,
        cast(intervals.customers_assigned as bigint) as customers_assigned,
        intervals.treated_customers,
        intervals.control_customers,
        intervals.treated_conversions,
        intervals.control_conversions,
        intervals.treated_rate as treated_conversion_rate,
        intervals.control_rate as control_conversion_rate,
        intervals.conversion_uplift,
        intervals.conversion_uplift_lower,
        intervals.conversion_uplift_upper,
        intervals.treated_rate / nullif(intervals.control_rate, 0) - 1 as relative_conversion_uplift,
        exp(intervals.log_rate_ratio - {{ z_975() }} * intervals.log_rate_ratio_se) - 1
            as relative_conversion_uplift_lower,
        exp(intervals.log_rate_ratio + {{ z_975() }} * intervals.log_rate_ratio_se) - 1
            as relative_conversion_uplift_upper,
        intervals.treated_mean as treated_revenue_per_customer,
        intervals.control_mean as control_revenue_per_customer,
        intervals.revenue_uplift,
        case
            when intervals.treated_rate_lower is not null and intervals.welch_df is not null
                then intervals.revenue_uplift - {{ t_quantile_975('intervals.welch_df') }} * intervals.revenue_uplift_se
        end as revenue_uplift_lower,
        case
            when intervals.treated_rate_lower is not null and intervals.welch_df is not null
                then intervals.revenue_uplift + {{ t_quantile_975('intervals.welch_df') }} * intervals.revenue_uplift_se
        end as revenue_uplift_upper,
        intervals.treated_mean / nullif(intervals.control_mean, 0) - 1 as relative_revenue_uplift,
        exp(intervals.log_mean_ratio - {{ z_975() }} * intervals.log_mean_ratio_se) - 1
            as relative_revenue_uplift_lower,
        exp(intervals.log_mean_ratio + {{ z_975() }} * intervals.log_mean_ratio_se) - 1
            as relative_revenue_uplift_upper
    from intervals
    inner join campaigns on intervals.campaign_id = campaigns.campaign_id
),

final as (
    select
        *,
        conversion_uplift_lower > 0 or conversion_uplift_upper < 0 as is_conversion_uplift_significant,
        revenue_uplift_lower > 0 or revenue_uplift_upper < 0 as is_revenue_uplift_significant
    from effects
)

select * from final
