-- Purchase behaviour per buying customer as of the run date: the RFM inputs and the facts the
-- rule-based segments and the ML features build on. Purchase days, not orders, count frequency:
-- several purchases on one day are one purchase occasion.
with

purchases as (
    select * from {{ ref('fct_purchases') }}
),

purchase_days as (
    select
        customer_id,
        purchase_date,
        lag(purchase_date) over (partition by customer_id order by purchase_date) as previous_purchase_date
    from purchases
    where not is_refund
    group by customer_id, purchase_date
),

gaps as (
    select
        customer_id,
        count(*) as purchase_days,
        min(purchase_date) as first_purchase_date,
        max(purchase_date) as last_purchase_date,
        avg({{ dbt.datediff('previous_purchase_date', 'purchase_date', 'day') }}) as avg_days_between_purchases,
        max(
            case
                when {{ dbt.datediff('previous_purchase_date', 'purchase_date', 'day') }}
                    > {{ var('churn_window_days') }}
                    then purchase_date
            end
        ) as last_reactivation_date,
        sum(
            case when purchase_date > {{ dbt.dateadd('day', -365, as_of_date()) }} then 1 else 0 end
        ) as purchase_days_12m
    from purchase_days
    group by customer_id
),

amounts as (
    select
        customer_id,
        sum(case when not is_refund then 1 else 0 end) as orders,
        sum(case when is_refund then 1 else 0 end) as refunds,
        sum(gross_amount) as gross_revenue,
        sum(net_amount) as net_revenue,
        sum(case when purchase_date > {{ dbt.dateadd('day', -365, as_of_date()) }} then net_amount else 0 end)
            as net_revenue_12m,
        sum(case when not is_refund then discount_amount else 0 end) as discount_total,
        sum(case
            when not is_refund and purchase_date > {{ dbt.dateadd('day', -365, as_of_date()) }} then 1 else 0
        end) as purchases_12m,
        sum(case
            when not is_refund and is_deal
                and purchase_date > {{ dbt.dateadd('day', -365, as_of_date()) }}
                then 1
            else 0
        end) as deal_purchases_12m,
        count(distinct case when not is_refund then category end) as category_breadth,
        sum(case when not is_refund and sales_channel = 'online' then 1 else 0 end) as online_orders,
        sum(case when not is_refund and sales_channel = 'store' then 1 else 0 end) as store_orders,
        sum(case when not is_refund and sales_channel = 'app' then 1 else 0 end) as app_orders
    from purchases
    group by customer_id
),

final as (
    select
        gaps.customer_id,
        gaps.first_purchase_date,
        gaps.last_purchase_date,
        {{ dbt.datediff('gaps.last_purchase_date', as_of_date(), 'day') }} as recency_days,
        {{ dbt.datediff('gaps.first_purchase_date', as_of_date(), 'day') }} as tenure_days,
        gaps.purchase_days,
        gaps.purchase_days_12m,
        gaps.avg_days_between_purchases,
        gaps.last_reactivation_date,
        amounts.orders,
        amounts.refunds,
        cast(amounts.gross_revenue as numeric(18, 2)) as gross_revenue,
        cast(amounts.net_revenue as numeric(18, 2)) as net_revenue,
        cast(amounts.net_revenue_12m as numeric(18, 2)) as net_revenue_12m,
        cast(amounts.gross_revenue / nullif(amounts.orders, 0) as numeric(18, 2)) as avg_order_value,
        cast(amounts.refunds as double precision) / nullif(amounts.orders + amounts.refunds, 0) as refund_rate,
        cast(amounts.discount_total as double precision)
        / nullif(amounts.discount_total + amounts.gross_revenue, 0) as discount_share,
        amounts.purchases_12m,
        cast(amounts.deal_purchases_12m as double precision)
        / nullif(amounts.purchases_12m, 0) as deal_purchase_share_12m,
        amounts.category_breadth,
        cast(amounts.online_orders as double precision) / nullif(amounts.orders, 0) as online_share,
        cast(amounts.store_orders as double precision) / nullif(amounts.orders, 0) as store_share,
        cast(amounts.app_orders as double precision) / nullif(amounts.orders, 0) as app_share
    from gaps
    inner join amounts on gaps.customer_id = amounts.customer_id
)

select * from final
