-- RFM scores, 5 = best, as quantiles over distinct values (docs/overview.md "RFM").
-- Heavy ties (half of a customer base may have bought once; many share a last purchase day) make
-- customer quantiles meaningless: a two-order customer would sit above half the base and score 3.
-- Instead each dimension is scored on its *distinct values*: the values are clipped to their
-- 5th-95th percentiles among buyers (vars rfm_clip_lower/upper_percentile; no clipping when they
-- coincide), so a few extreme customers do not stretch the scale, and the distinct clipped values,
-- ranked from worst to best, are cut into five equal steps. Equal inputs always share a score, a
-- better value never scores lower, and the result does not depend on row order.
-- Recency ranks descending (fewer days since the last purchase is better).
with

purchase_stats as (
    select * from {{ ref('int_customer_purchase_stats') }}
),

segment_map as (
    select * from {{ ref('rfm_segment_map') }}
),

bounds as (
    select
        {{ rfm_percentile('recency_days', var('rfm_clip_lower_percentile')) }} as recency_low,
        {{ rfm_percentile('recency_days', var('rfm_clip_upper_percentile')) }} as recency_high,
        {{ rfm_percentile('purchase_days', var('rfm_clip_lower_percentile')) }} as frequency_low,
        {{ rfm_percentile('purchase_days', var('rfm_clip_upper_percentile')) }} as frequency_high,
        {{ rfm_percentile('net_revenue', var('rfm_clip_lower_percentile')) }} as monetary_low,
        {{ rfm_percentile('net_revenue', var('rfm_clip_upper_percentile')) }} as monetary_high
    from purchase_stats
),

clipped as (
    select
        purchase_stats.customer_id,
        purchase_stats.recency_days,
        purchase_stats.purchase_days as frequency,
        purchase_stats.net_revenue as monetary,
        {{ rfm_clipped('purchase_stats.recency_days', 'bounds.recency_low', 'bounds.recency_high') }}
            as recency_clipped,
        {{ rfm_clipped('purchase_stats.purchase_days', 'bounds.frequency_low', 'bounds.frequency_high') }}
            as frequency_clipped,
        {{ rfm_clipped('purchase_stats.net_revenue', 'bounds.monetary_low', 'bounds.monetary_high') }}
            as monetary_clipped
    from purchase_stats
    cross join bounds
),

ranked as (
    select
        *,
        dense_rank() over (order by recency_clipped desc) as recency_level,
        dense_rank() over (order by frequency_clipped) as frequency_level,
        dense_rank() over (order by monetary_clipped) as monetary_level
    from clipped
),

leveled as (
    select
        *,
        max(recency_level) over () as recency_levels,
        max(frequency_level) over () as frequency_levels,
        max(monetary_level) over () as monetary_levels
    from ranked
),

scored as (
    select
        customer_id,
        recency_days,
        frequency,
        monetary,
        {{ rfm_score('recency_level', 'recency_levels') }} as r_score,
        {{ rfm_score('frequency_level', 'frequency_levels') }} as f_score,
        {{ rfm_score('monetary_level', 'monetary_levels') }} as m_score
    from leveled
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
