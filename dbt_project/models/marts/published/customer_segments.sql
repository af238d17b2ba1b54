{{ config(tags=['scored']) }}

-- The published segment table BI tools read: one row per customer as of the run date.
-- Numeric columns are cast to their contract types so both engines publish identical types.
with

features as (
    select * from {{ ref('fct_customer_features') }}
),

labels as (
    select * from {{ ref('stg_ml__customer_labels') }}
),

customer_playbook as (
    select * from {{ ref('int_customer_playbook') }}
),

customer_consent as (
    select * from {{ ref('int_customer_consent') }}
),

final as (
    select
        features.customer_id,
        features.as_of_date,
        cast(features.recency_days as integer) as recency_days,
        cast(features.frequency as bigint) as frequency,
        cast(features.monetary as numeric(18, 2)) as monetary,
        cast(features.r_score as integer) as r_score,
        cast(features.f_score as integer) as f_score,
        cast(features.m_score as integer) as m_score,
        features.rfm_segment,
        features.lifecycle_stage,
        features.value_tier,
        features.frequency_class,
        features.channel_preference,
        features.loyalty_tier,
        features.satisfaction_class,
        labels.cluster_id,
        labels.cluster_name,
        labels.churn_probability,
        labels.churn_risk_band,
        labels.p_alive,
        labels.expected_purchases_90d,
        labels.predicted_clv_12m,
        cast(features.net_revenue_12m as numeric(18, 2)) as net_revenue_12m,
        features.region,
        features.age_band,
        features.is_guest,
        features.gender,
        features.country,
        features.social_engagement_level,
        features.is_advocate,
        cast(features.social_recency_days as integer) as social_recency_days,
        features.top_category,
        cast(features.interest_breadth as integer) as interest_breadth,
        features.interest_segment,
        features.has_open_complaint,
        features.complaint_rate_12m,
        features.last_ticket_topic,
        features.nps_trend,
        features.price_sensitivity,
        features.promo_responsiveness,
        cast(features.birth_month as integer) as birth_month,
        labels.model_version,
        {{ scored_at() }} as scored_at,
        customer_playbook.playbook_id,
        customer_playbook.next_best_action,
        customer_consent.has_email_consent,
        customer_consent.has_sms_consent,
        customer_consent.has_ads_consent
    from features
    inner join labels on features.customer_id = labels.customer_id
    left join customer_playbook on features.customer_id = customer_playbook.customer_id
    inner join customer_consent on features.customer_id = customer_consent.customer_id
)

select * from final
