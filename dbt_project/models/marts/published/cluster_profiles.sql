{{ config(tags=['scored']) }}

-- Behavioural clusters of the current model: size, feature means and readable name.
with

profiles as (
    select * from {{ ref('stg_ml__cluster_profiles') }}
),

final as (
    select
        cast(cluster_id as integer) as cluster_id,
        cluster_name,
        cast(customers as bigint) as customers,
        cast(avg_recency_days as double precision) as avg_recency_days,
        cast(avg_frequency as double precision) as avg_frequency,
        cast(avg_monetary as double precision) as avg_monetary,
        cast(avg_online_share as double precision) as avg_online_share,
        cast(avg_store_share as double precision) as avg_store_share,
        cast(avg_app_share as double precision) as avg_app_share,
        cast(avg_discount_share as double precision) as avg_discount_share,
        cast(avg_category_breadth as double precision) as avg_category_breadth,
        model_version,
        {{ as_of_date() }} as as_of_date
    from profiles
)

select * from final
