with

source as (
    select * from {{ source('ml_scores', 'ml_cluster_profiles') }}
),

final as (
    select * from source
)

select * from final
