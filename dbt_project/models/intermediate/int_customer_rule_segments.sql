-- Rule-based segments. Every threshold is a dbt var (dbt_project.yml; described on the docs overview page).
-- lifecycle_stage precedence: prospect > churned > new > reactivated > at_risk > active.
with

customers as (
    select * from {{ ref('int_customers') }}
),

purchase_stats as (
    select * from {{ ref('int_customer_purchase_stats') }}
),

engagement as (
    select * from {{ ref('int_customer_engagement') }}
),

feedback as (
    select * from {{ ref('int_customer_feedback') }}
),

value_ranked as (
    select
        customer_id,
        percent_rank() over (order by net_revenue_12m) as value_rank
    from purchase_stats
),

final as (
    select
        customers.customer_id,
        case
            when purchase_stats.customer_id is null then 'prospect'
            when purchase_stats.recency_days > {{ var('churn_window_days') }} then 'churned'
            when purchase_stats.tenure_days < {{ var('new_customer_days') }} then 'new'
            when purchase_stats.last_reactivation_date is not null
                and {{ dbt.datediff('purchase_stats.last_reactivation_date', as_of_date(), 'day') }}
                <= {{ var('reactivated_window_days') }}
                then 'reactivated'
            when purchase_stats.recency_days > {{ var('at_risk_gap_multiplier') }} * coalesce(
                    purchase_stats.avg_days_between_purchases, {{ var('default_purchase_gap_days') }}
                ) then 'at_risk'
            else 'active'
        end as lifecycle_stage,
        case
            when purchase_stats.customer_id is null then null
            when value_ranked.value_rank >= {{ var('value_tier_diamond_percentile') }} then 'diamond'
            when value_ranked.value_rank >= {{ var('value_tier_gold_percentile') }} then 'gold'
            when value_ranked.value_rank >= {{ var('value_tier_silver_percentile') }} then 'silver'
            else 'bronze'
        end as value_tier,
        case
            when purchase_stats.customer_id is null then null
            when purchase_stats.purchase_days_12m >= {{ var('frequency_class_high_min') }} then 'high'
            when purchase_stats.purchase_days_12m >= {{ var('frequency_class_medium_min') }} then 'medium'
            else 'low'
        end as frequency_class,
        case
            when purchase_stats.customer_id is null then null
            when purchase_stats.online_share >= {{ var('channel_preference_min_share') }} then 'online'
            when purchase_stats.store_share >= {{ var('channel_preference_min_share') }} then 'store'
            when purchase_stats.app_share >= {{ var('channel_preference_min_share') }} then 'app'
            else 'omnichannel'
        end as channel_preference,
        case
            when purchase_stats.customer_id is null then null
            when purchase_stats.purchase_days >= {{ var('loyalty_loyal_min_purchase_days') }}
                and purchase_stats.tenure_days >= {{ var('loyalty_loyal_min_tenure_days') }} then 'loyal'
            when purchase_stats.purchase_days >= {{ var('loyalty_regular_min_purchase_days') }}
                and purchase_stats.tenure_days >= {{ var('loyalty_regular_min_tenure_days') }} then 'regular'
            when purchase_stats.purchase_days >= 2 then 'occasional'
            else 'one_time'
        end as loyalty_tier,
        case
            -- an open complaint outweighs an earlier good answer; a falling promoter is no longer sure
            when feedback.has_open_complaint then 'detractor'
            when engagement.last_nps_score >= 9 and feedback.nps_trend = 'down' then 'passive'
            when engagement.last_nps_score >= 9 then 'promoter'
            when engagement.last_nps_score >= 7 then 'passive'
            when engagement.last_nps_score >= 0 then 'detractor'
            else 'unknown'
        end as satisfaction_class,
        case
            when purchase_stats.deal_purchase_share_12m is null then 'unknown'
            when purchase_stats.deal_purchase_share_12m >= {{ var('price_deal_seeker_min_share') }} then 'deal_seeker'
            when purchase_stats.deal_purchase_share_12m <= {{ var('price_full_price_max_share') }} then 'full_price'
            else 'mixed'
        end as price_sensitivity
    from customers
    left join purchase_stats on customers.customer_id = purchase_stats.customer_id
    left join value_ranked on customers.customer_id = value_ranked.customer_id
    left join engagement on customers.customer_id = engagement.customer_id
    left join feedback on customers.customer_id = feedback.customer_id
)

select * from final
