{{ config(tags=['scored']) }}

-- How customers moved between segments: for every as-of date, from the previous as-of date
-- ('previous_run') and from the same weekday one week earlier ('week_ago'), for the RFM segment
-- and the lifecycle stage, with customers and their trailing-12-month revenue.
with

history as (
    select * from {{ ref('segment_history') }}
),

dates as (
    select distinct as_of_date from history
),

comparisons as (
    select
        current_dates.as_of_date,
        'previous_run' as comparison,
        max(earlier_dates.as_of_date) as compared_to_date
    from dates as current_dates
    inner join dates as earlier_dates on earlier_dates.as_of_date < current_dates.as_of_date
    group by current_dates.as_of_date
    union all
    select
        current_dates.as_of_date,
        'week_ago' as comparison,
        week_ago.as_of_date as compared_to_date
    from dates as current_dates
    inner join dates as week_ago
        on week_ago.as_of_date = {{ dbt.dateadd('day', -7, 'current_dates.as_of_date') }}
),

segments as (
    select as_of_date, customer_id, 'rfm_segment' as segment_type,
        coalesce(rfm_segment, 'No purchase yet') as segment, net_revenue_12m
    from history
    union all
    select as_of_date, customer_id, 'lifecycle_stage' as segment_type,
        lifecycle_stage as segment, net_revenue_12m
    from history
),

moves as (
    select
        comparisons.as_of_date,
        comparisons.comparison,
        comparisons.compared_to_date,
        segment_types.segment_type,
        coalesce(before.segment, 'Not yet known') as from_segment,
        coalesce(after.segment, 'No longer present') as to_segment,
        coalesce(after.net_revenue_12m, 0) as net_revenue_12m
    from comparisons
    cross join (select 'rfm_segment' as segment_type union all select 'lifecycle_stage') as segment_types
    inner join segments as after
        on after.as_of_date = comparisons.as_of_date
        and after.segment_type = segment_types.segment_type
    left join segments as before
        on before.as_of_date = comparisons.compared_to_date
        and before.segment_type = segment_types.segment_type
        and before.customer_id = after.customer_id
    union all
    -- customers known on the earlier date but absent now (e.g. erased)
    select
        comparisons.as_of_date,
        comparisons.comparison,
        comparisons.compared_to_date,
        before.segment_type,
        before.segment as from_segment,
        'No longer present' as to_segment,
        0 as net_revenue_12m
    from comparisons
    inner join segments as before on before.as_of_date = comparisons.compared_to_date
    left join segments as after
        on after.as_of_date = comparisons.as_of_date
        and after.segment_type = before.segment_type
        and after.customer_id = before.customer_id
    where after.customer_id is null
),

final as (
    select
        as_of_date,
        comparison,
        compared_to_date,
        segment_type,
        from_segment,
        to_segment,
        count(*) as customers,
        cast(sum(net_revenue_12m) as numeric(18, 2)) as net_revenue_12m
    from moves
    group by as_of_date, comparison, compared_to_date, segment_type, from_segment, to_segment
)

select * from final
