{{ config(tags=['scored']) }}

-- Per segment and as-of date: size, share, revenue, CLV and churn. Covers the RFM segment and
-- the lifecycle stage; customers without a purchase are counted under 'No purchase yet'.
with

history as (
    select * from {{ ref('segment_history') }}
),

by_segment as (
    select
        as_of_date,
        'rfm_segment' as segment_type,
        coalesce(rfm_segment, 'No purchase yet') as segment,
        customer_id,
        net_revenue_12m,
        predicted_clv_12m,
        churn_probability
    from history
    union all
    select
        as_of_date,
        'lifecycle_stage' as segment_type,
        lifecycle_stage as segment,
        customer_id,
        net_revenue_12m,
        predicted_clv_12m,
        churn_probability
    from history
),

aggregated as (
    select
        as_of_date,
        segment_type,
        segment,
        count(*) as customers,
        cast(coalesce(sum(net_revenue_12m), 0) as numeric(18, 2)) as net_revenue_12m,
        cast(avg(predicted_clv_12m) as numeric(18, 2)) as avg_predicted_clv_12m,
        -- rounded: parallel float sums vary in the last bits, and a rerun must publish identical rows
        cast(round(cast(avg(churn_probability) as numeric), 6) as double precision) as avg_churn_probability
    from by_segment
    group by as_of_date, segment_type, segment
),

final as (
    select
        as_of_date,
        segment_type,
        segment,
        customers,
        cast(
            round(cast(customers as numeric) / sum(customers) over (partition by as_of_date, segment_type), 6)
            as double precision
        ) as customer_share,
        net_revenue_12m,
        avg_predicted_clv_12m,
        avg_churn_probability
    from aggregated
)

select * from final
