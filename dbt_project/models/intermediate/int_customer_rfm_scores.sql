-- RFM quintile scores, 5 = best. Ties get the same score: a score is 1 + floor(5 * percent_rank),
-- so equal inputs always share a score and the result does not depend on row order. The 1e-9
-- keeps exact boundaries (e.g. 0.6 * 5) from flooring differently on different engines.
-- Recency ranks descending (fewer days since the last purchase is better).
with

purchase_stats as (
    select * from {{ ref('int_customer_purchase_stats') }}
),

segment_map as (
    select * from {{ ref('rfm_segment_map') }}
),

ranked as (
    select
        customer_id,
        recency_days,
        purchase_days as frequency,
        net_revenue as monetary,
        percent_rank() over (order by recency_days desc) as recency_rank,
        percent_rank() over (order by purchase_days) as frequency_rank,
        percent_rank() over (order by net_revenue) as monetary_rank
    from purchase_stats
),

scored as (
    select
        customer_id,
        recency_days,
        frequency,
        monetary,
        least(5, 1 + cast(floor(recency_rank * 5 + 1e-9) as integer)) as r_score,
        least(5, 1 + cast(floor(frequency_rank * 5 + 1e-9) as integer)) as f_score,
        least(5, 1 + cast(floor(monetary_rank * 5 + 1e-9) as integer)) as m_score
    from ranked
),

final as (
    select
        scored.customer_id,
        scored.recency_days,
        scored.frequency,
        scored.monetary,
        scored.r_score,
        scored.f_score,
        scored.m_score,
        cast(scored.r_score as {{ dbt.type_string() }})
            || cast(scored.f_score as {{ dbt.type_string() }})
            || cast(scored.m_score as {{ dbt.type_string() }}) as rfm_code,
        segment_map.rfm_segment
    from scored
    inner join segment_map
        on scored.r_score = segment_map.r_score
        and scored.f_score = segment_map.f_score
        and scored.m_score = segment_map.m_score
)

select * from final
