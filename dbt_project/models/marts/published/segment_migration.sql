{{
    config(
        tags=['scored'],
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['as_of_date'],
        on_schema_change='append_new_columns',
        pre_hook="{{ 'set local enable_nestloop = off' if target.type == 'postgres' else '' }}",
    )
}}
-- PostgreSQL estimates the rows of these CTEs (dates, comparisons, the earlier rows after ranking) at
-- a handful and plans nested loops over every customer's rows: 160 s instead of 0.2 s at 10k
-- customers. The hint lasts for this model's transaction only.

-- How customers moved between segments: for every as-of date, from the previous as-of date
-- ('previous_run') and from the same weekday one week earlier ('week_ago'), for the RFM segment
-- and the lifecycle stage, with customers and their trailing-12-month revenue.
--
-- Incremental by as-of date: a run computes its own date's comparisons only, with the identity
-- merges known on that date, so a night costs one day's customers however long the history grows.
-- Runs in date order (nightly, or a backfill with `custseg run --from --to`) give every date's
-- comparisons. Rerunning an earlier date does not recompute the later dates' comparisons with it
-- (they keep what their own runs computed, with the merges known then): rerun them too to refresh.
--
-- Merges: segment_history keeps the rows recorded under a retired customer_id for the dates before
-- its merge (point-in-time correct). The earlier date's rows are attributed to the id the customer
-- has on the later date, through the alias rows of customer_identity (source 'merged_customer_id'),
-- so a merged customer moves from its old segment to its new one instead of showing up as
-- 'No longer present' under the retired id and 'Not yet known' under the survivor.
with

-- an incremental run reads only the three dates it compares: the history grows by a day's customers
-- every night
history as (
    select * from {{ ref('segment_history') }}
    {%- if is_incremental() %}
        where
            as_of_date in (
                {{ as_of_date() }},
                {{ dbt.dateadd('day', -7, as_of_date()) }},
                (
                    select max(earlier_history.as_of_date)
                    from {{ ref('segment_history') }} as earlier_history
                    where earlier_history.as_of_date < {{ as_of_date() }}
                )
            )
    {%- endif %}
),

dates as (
    select distinct as_of_date from history
),

dates_to_compare as (
    select as_of_date from dates
    {%- if is_incremental() %}
        where as_of_date = {{ as_of_date() }}
    {%- endif %}
),

-- Alias rows always point to the final survivor: custseg/steps/identity.py replays every merge and writes
-- each retired id with the best key of its final component, so an alias chain (A merged into B,
-- later B into C) is stored as A -> C and B -> C, and a single join suffices.
merged_ids as (
    select
        source_customer_ref as retired_customer_id,
        customer_id,
        first_seen_date as merged_date
    from {{ ref('customer_identity') }}
    where source = 'merged_customer_id'
),

comparisons as (
    select
        current_dates.as_of_date,
        'previous_run' as comparison,
        max(earlier_dates.as_of_date) as compared_to_date
    from dates_to_compare as current_dates
    inner join dates as earlier_dates on current_dates.as_of_date > earlier_dates.as_of_date
    group by current_dates.as_of_date
    union all
    select
        current_dates.as_of_date,
        'week_ago' as comparison,
        week_ago.as_of_date as compared_to_date
    from dates_to_compare as current_dates
    inner join dates as week_ago
        on week_ago.as_of_date = {{ dbt.dateadd('day', -7, 'current_dates.as_of_date') }}
),

segments as (
    select
        as_of_date,
        customer_id,
        'rfm_segment' as segment_type,
        coalesce(rfm_segment, 'No purchase yet') as segment,
        net_revenue_12m
    from history
    union all
    select
        as_of_date,
        customer_id,
        'lifecycle_stage' as segment_type,
        lifecycle_stage as segment,
        net_revenue_12m
    from history
),

-- The earlier date's rows of each comparison under the id the customer has on the later date. Only
-- merges that had happened by the later date apply, so comparisons before a merge are unchanged.
-- Exact for every comparison whose later date is on or after the survivor's last merge (so always
-- for the latest run); between two merges into one survivor the earlier alias already points to the
-- final survivor, which may still have been a separate customer then.
earlier_rows as (
    select
        comparisons.as_of_date,
        comparisons.comparison,
        comparisons.compared_to_date,
        segments.segment_type,
        segments.segment,
        segments.customer_id as recorded_customer_id,
        coalesce(merged_ids.customer_id, segments.customer_id) as customer_id
    from comparisons
    inner join segments on comparisons.compared_to_date = segments.as_of_date
    left join merged_ids
        on segments.customer_id = merged_ids.retired_customer_id
        and comparisons.as_of_date >= merged_ids.merged_date
),

-- A person counts once: when the survivor and a retired id (or two retired ids) both had a row on
-- the earlier date, keep the survivor's own row, else the retired row with the lowest id.
earlier_ranked as (
    select
        *,
        row_number() over (
            partition by as_of_date, comparison, segment_type, customer_id
            order by
                case when recorded_customer_id = customer_id then 0 else 1 end,
                recorded_customer_id
        ) as row_rank
    from earlier_rows
),

earlier as (
    select
        as_of_date,
        comparison,
        compared_to_date,
        segment_type,
        customer_id,
        segment
    from earlier_ranked
    where row_rank = 1
),

moves as (
    select
        comparisons.as_of_date,
        comparisons.comparison,
        comparisons.compared_to_date,
        after.segment_type,
        coalesce(before.segment, 'Not yet known') as from_segment,
        coalesce(after.segment, 'No longer present') as to_segment,
        coalesce(after.net_revenue_12m, 0) as net_revenue_12m
    from comparisons
    inner join segments as after on comparisons.as_of_date = after.as_of_date
    left join earlier as before
        on comparisons.as_of_date = before.as_of_date
        and comparisons.comparison = before.comparison
        and after.segment_type = before.segment_type
        and after.customer_id = before.customer_id
    union all
    -- customers known on the earlier date but absent now (e.g. erased)
    select
        before.as_of_date,
        before.comparison,
        before.compared_to_date,
        before.segment_type,
        before.segment as from_segment,
        'No longer present' as to_segment,
        0 as net_revenue_12m
    from earlier as before
    left join segments as after
        on before.as_of_date = after.as_of_date
        and before.segment_type = after.segment_type
        and before.customer_id = after.customer_id
    where after.customer_id is null
),

final as (
    select
        as_of_date,
        comparison,
        compared_to_date,
        segment_type,
        from_segment,
        to_segment,
        count(*) as customers,
        cast(sum(net_revenue_12m) as numeric(18, 2)) as net_revenue_12m
    from moves
    group by as_of_date, comparison, compared_to_date, segment_type, from_segment, to_segment
)

select * from final
