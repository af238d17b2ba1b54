{{ config(tags=['scored']) }}

-- The published segment table BI tools read: one row per customer as of the run date.
with

features as (
    select * from {{ ref('fct_customer_features') }}
),

labels as (
    select * from {{ ref('stg_ml__customer_labels') }}
),

final as (
    select
        features.customer_id,
        features.as_of_date,
        features.recency_days,
        features.frequency,
        features.monetary,
        features.r_score,
        features.f_score,
        features.m_score,
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
        features.net_revenue_12m,
        features.region,
        features.age_band,
        features.is_guest,
        labels.model_version,
        {{ scored_at() }} as scored_at
    from features
    inner join labels on features.customer_id = labels.customer_id
)

select * from final
