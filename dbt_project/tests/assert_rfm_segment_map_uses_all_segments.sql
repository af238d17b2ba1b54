-- Each of the 11 named segments is reachable from at least one code.
with

descriptions as (
    select * from {{ ref('rfm_segment_descriptions') }}
),

segment_map as (
    select * from {{ ref('rfm_segment_map') }}
),

final as (
    select descriptions.rfm_segment
    from descriptions
    left join segment_map on descriptions.rfm_segment = segment_map.rfm_segment
    group by descriptions.rfm_segment
    having count(segment_map.rfm_segment) = 0
)

select * from final
