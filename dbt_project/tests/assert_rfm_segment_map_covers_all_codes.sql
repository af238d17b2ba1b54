-- Every one of the 125 (r, f, m) score codes must map to exactly one segment.
-- Returns the codes that are missing or mapped more than once.
with

scores as (
    select 1 as score
    union all
    select 2
    union all
    select 3
    union all
    select 4
    union all
    select 5
),

all_codes as (
    select
        r.score as r_score,
        f.score as f_score,
        m.score as m_score
    from scores as r
    cross join scores as f
    cross join scores as m
),

segment_map as (
    select * from {{ ref('rfm_segment_map') }}
),

mapped as (
    select
        all_codes.r_score,
        all_codes.f_score,
        all_codes.m_score,
        count(segment_map.rfm_segment) as segments
    from all_codes
    left join segment_map
        on all_codes.r_score = segment_map.r_score
        and all_codes.f_score = segment_map.f_score
        and all_codes.m_score = segment_map.m_score
    group by all_codes.r_score, all_codes.f_score, all_codes.m_score
),

final as (
    select * from mapped
    where segments <> 1
)

select * from final
