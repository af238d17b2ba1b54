{{
    config(
        tags=['scored'],
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['as_of_date'],
        on_schema_change='append_new_columns',
    )
}}

-- One row per customer per as-of date. Each run replaces its own date only, so reruns are
-- idempotent and a backfill of a past date (computed from the data known then) slots in.
with

segments as (
    select * from {{ ref('customer_segments') }}
),

final as (
    select
        customer_id,
        as_of_date,
        recency_days,
        frequency,
        monetary,
        r_score,
        f_score,
        m_score,
        rfm_segment,
        lifecycle_stage,
        value_tier,
        cluster_id,
        churn_probability,
        churn_risk_band,
        predicted_clv_12m,
        net_revenue_12m,
        model_version,
        satisfaction_class,
        social_engagement_level,
        interest_segment,
        price_sensitivity,
        promo_responsiveness,
        playbook_id,
        has_email_consent,
        has_sms_consent,
        has_ads_consent
    from segments
)

select * from final
