with

source as (
    select * from {{ source('ml_scores', 'ml_customer_labels') }}
),

final as (
    select
        customer_id,
        cast(cluster_id as integer) as cluster_id,
        cluster_name,
        cast(churn_probability as double precision) as churn_probability,
        churn_risk_band,
        cast(p_alive as double precision) as p_alive,
        cast(expected_purchases_90d as double precision) as expected_purchases_90d,
        cast(predicted_clv_12m as numeric(18, 2)) as predicted_clv_12m,
        model_version
    from source
)

select * from final
