-- The customer fact mart: one row per known customer as of the run date, with everything the
-- segment rules and the ML task use. Prospects have nulls in the purchase columns.
with

customers as (
    select * from {{ ref('int_customers') }}
),

purchase_stats as (
    select * from {{ ref('int_customer_purchase_stats') }}
),

rfm as (
    select * from {{ ref('int_customer_rfm_scores') }}
),

engagement as (
    select * from {{ ref('int_customer_engagement') }}
),

rule_segments as (
    select * from {{ ref('int_customer_rule_segments') }}
),

social as (
    select * from {{ ref('int_customer_social') }}
),

interests as (
    select * from {{ ref('int_customer_interest_profile') }}
),

feedback as (
    select * from {{ ref('int_customer_feedback') }}
),

promo_response as (
    select * from {{ ref('int_customer_promo_response') }}
),

final as (
    select
        customers.customer_id,
        {{ as_of_date() }} as as_of_date,
        customers.is_guest,
        coalesce(customers.region, 'unknown') as region,
        coalesce(customers.country, 'unknown') as country,
        customers.age_band,
        customers.gender,
        customers.birth_month,
        customers.signup_date,
        customers.signup_source,
        purchase_stats.first_purchase_date,
        purchase_stats.last_purchase_date,
        purchase_stats.tenure_days,
        purchase_stats.orders,
        purchase_stats.purchase_days,
        purchase_stats.gross_revenue,
        purchase_stats.net_revenue,
        purchase_stats.net_revenue_12m,
        purchase_stats.avg_order_value,
        purchase_stats.refund_rate,
        purchase_stats.discount_share,
        purchase_stats.category_breadth,
        purchase_stats.online_share,
        purchase_stats.store_share,
        purchase_stats.app_share,
        purchase_stats.avg_days_between_purchases,
        coalesce(engagement.web_sessions_30d, 0) as web_sessions_30d,
        coalesce(engagement.web_sessions_90d, 0) as web_sessions_90d,
        engagement.last_visit_date,
        coalesce(engagement.emails_sent, 0) as emails_sent,
        engagement.email_open_rate,
        engagement.email_click_rate,
        coalesce(engagement.support_tickets, 0) as support_tickets,
        engagement.last_nps_score,
        coalesce(social.social_interactions_90d, 0) as social_interactions_90d,
        social.social_recency_days,
        coalesce(social.social_engagement_level, 'none') as social_engagement_level,
        coalesce(social.is_advocate, false) as is_advocate,
        coalesce(interests.top_category, 'unknown') as top_category,
        coalesce(interests.interest_breadth, 0) as interest_breadth,
        coalesce(interests.interest_segment, 'no interest data') as interest_segment,
        coalesce(feedback.has_open_complaint, false) as has_open_complaint,
        feedback.complaint_rate_12m,
        feedback.last_ticket_topic,
        coalesce(feedback.nps_trend, 'unknown') as nps_trend,
        purchase_stats.deal_purchase_share_12m,
        promo_response.campaign_response_rate,
        coalesce(promo_response.promo_responsiveness, 'unknown') as promo_responsiveness,
        rfm.recency_days,
        rfm.frequency,
        rfm.monetary,
        rfm.r_score,
        rfm.f_score,
        rfm.m_score,
        rfm.rfm_code,
        rfm.rfm_segment,
        rule_segments.lifecycle_stage,
        rule_segments.value_tier,
        rule_segments.frequency_class,
        rule_segments.channel_preference,
        rule_segments.loyalty_tier,
        rule_segments.satisfaction_class,
        rule_segments.price_sensitivity
    from customers
    left join purchase_stats on customers.customer_id = purchase_stats.customer_id
    left join rfm on customers.customer_id = rfm.customer_id
    left join engagement on customers.customer_id = engagement.customer_id
    left join rule_segments on customers.customer_id = rule_segments.customer_id
    left join social on customers.customer_id = social.customer_id
    left join interests on customers.customer_id = interests.customer_id
    left join feedback on customers.customer_id = feedback.customer_id
    left join promo_response on customers.customer_id = promo_response.customer_id
)

select * from final
