-- Interest per customer and product category as of the run date: the customer's spend and category
-- page views over the trailing interest_window_days, each as a share of the customer's own total, blended
-- into one interest share (interest_spend_weight on spend; the other side alone when one is missing),
-- and an affinity index against the base: 100 means the category holds the share of this customer's
-- interest that it holds of the average active customer's. Purchases and sessions without a category
-- (unknown) say nothing about interests and are left out.
with

purchases as (
    select * from {{ ref('fct_purchases') }}
    where not is_refund
        and category != 'unknown'
        and purchase_date > {{ dbt.dateadd('day', -var('interest_window_days'), as_of_date()) }}
),

sessions as (
    select * from {{ ref('int_web_sessions_attributed') }}
    where category != 'unknown'
        and session_date > {{ dbt.dateadd('day', -var('interest_window_days'), as_of_date()) }}
),

spend as (
    select
        customer_id,
        category,
        sum(net_amount) as spend,
        count(*) as purchases
    from purchases
    group by customer_id, category
),

views as (
    select
        customer_id,
        category,
        sum(page_views) as page_views
    from sessions
    group by customer_id, category
),

combined as (
    select
        coalesce(spend.customer_id, views.customer_id) as customer_id,
        coalesce(spend.category, views.category) as category,
        coalesce(spend.spend, 0) as spend,
        coalesce(spend.purchases, 0) as purchases,
        coalesce(views.page_views, 0) as page_views
    from spend
    full outer join views
        on spend.customer_id = views.customer_id and spend.category = views.category
    -- a category seen only in zero-amount purchases and sessions without page views shows no interest
    where coalesce(spend.spend, 0) > 0 or coalesce(views.page_views, 0) > 0
),

shares as (
    select
        customer_id,
        category,
        spend,
        purchases,
        page_views,
        cast(spend as double precision)
        / nullif(sum(spend) over (partition by customer_id), 0) as spend_share,
        cast(page_views as double precision)
        / nullif(sum(page_views) over (partition by customer_id), 0) as view_share
    from combined
),

blended as (
    select
        *,
        case
            when spend_share is not null and view_share is not null
                then {{ var('interest_spend_weight') }} * spend_share
                    + (1 - {{ var('interest_spend_weight') }}) * view_share
            else coalesce(spend_share, view_share)
        end as interest_share
    from shares
),

active_customers as (
    select count(distinct customer_id) as customers from blended
),

category_base as (
    -- the average active customer's share in each category (customers without the category count as 0).
    -- Summed as decimals: a sum of doubles depends on the order the engine adds them in (DuckDB's
    -- parallel aggregation), and a rerun must give identical tables.
    select
        blended.category,
        cast(sum(cast(blended.interest_share as numeric(18, 15))) as double precision)
        / max(active_customers.customers) as base_share
    from blended
    cross join active_customers
    group by blended.category
),

final as (
    select
        blended.customer_id,
        blended.category,
        cast(blended.spend as numeric(18, 2)) as spend,
        blended.purchases,
        blended.page_views,
        coalesce(blended.spend_share, 0) as spend_share,
        coalesce(blended.view_share, 0) as view_share,
        blended.interest_share,
        100 * blended.interest_share / nullif(category_base.base_share, 0) as affinity_index,
        row_number() over (
            partition by blended.customer_id
            order by blended.interest_share desc, blended.spend desc, blended.category asc
        ) as interest_rank
    from blended
    inner join category_base on blended.category = category_base.category
)

select * from final
