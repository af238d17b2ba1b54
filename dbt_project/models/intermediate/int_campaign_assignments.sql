{{
    config(
        tags=['scored'],
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['assigned_on'],
        on_schema_change='append_new_columns',
        pre_hook="{{ delete_rows_after_as_of('assigned_on') }}",
    )
}}
-- depends_on: {{ ref('customer_identity') }}

-- Who each campaign assigned, and when: a night from a campaign's start_date to its end_date assigns the
-- customers in its target (their playbook rule and/or RFM segment tonight, customer_segments) who have no
-- assignment to it yet, on the run's as-of date. Rows are never rewritten afterwards, so an assignment, and
-- with it the control group, stays as it was on the night it was made.
--
-- The holdout: the first 8 hex digits of the keyed hash (namespace 'campaign') of campaign_id, chr(31) and
-- customer_id, against the campaign's control_threshold (floor(control_share * 2^32) in hex; fixed-width
-- lower-case hex sorts like the number). It depends on the customer and the campaign only, not on the
-- segment, and custseg.campaigns.is_control computes the same in Python.
--
-- Incremental by date, like segment_history: each run writes its own date's assignments, and a rerun of an
-- earlier date first drops the later dates' rows (the pre-hook), so a backfill in date order gives what the
-- nightly runs gave. A customer merged into another since keeps the row under the id of the night; the
-- published campaign_audience follows it to the survivor.
with

campaigns as (
    select * from {{ ref('stg_pipeline__campaigns') }}
    where
        start_date <= {{ as_of_date() }}
        and end_date >= {{ as_of_date() }}
),

segments as (
    select
        customer_id,
        playbook_id,
        rfm_segment
    from {{ ref('customer_segments') }}
),

salt as (
    select pii_salt from {{ ref('stg_pipeline__hash_key') }}
),

{% if is_incremental() %}
    merged_ids as (
        select
            source_customer_ref as retired_customer_id,
            customer_id
        from {{ ref('customer_identity') }}
        where source = 'merged_customer_id'
    ),

    -- earlier nights' assignments under the id each customer has tonight
    already_assigned as (
        select distinct
            earlier.campaign_id,
            coalesce(merged_ids.customer_id, earlier.customer_id) as customer_id
        from {{ this }} as earlier
        left join merged_ids on earlier.customer_id = merged_ids.retired_customer_id
        where earlier.assigned_on < {{ as_of_date() }}
    ),
{% endif %}

-- a target list 'a|b' holds for x when '|a|b|' contains '|x|' (the playbook's convention); a null x
-- (a prospect's RFM segment) makes the search string null: no match
targeted as (
    select
        campaigns.campaign_id,
        campaigns.control_threshold,
        segments.customer_id,
        segments.playbook_id,
        segments.rfm_segment
    from campaigns
    inner join segments
        on (
            campaigns.target_playbook_ids is null
            or position('|' || segments.playbook_id || '|' in '|' || campaigns.target_playbook_ids || '|') > 0
        )
        and (
            campaigns.target_rfm_segments is null
            or position('|' || segments.rfm_segment || '|' in '|' || campaigns.target_rfm_segments || '|') > 0
        )
),

new_assignments as (
    select targeted.*
    from targeted
    {%- if is_incremental() %}
    left join already_assigned
        on
        targeted.campaign_id = already_assigned.campaign_id
        and targeted.customer_id = already_assigned.customer_id
    where already_assigned.customer_id is null
    {%- endif %}
),

final as (
    select
        new_assignments.campaign_id,
        new_assignments.customer_id,
        new_assignments.playbook_id,
        new_assignments.rfm_segment,
        {{ as_of_date() }} as assigned_on,
        substr(
            {{ keyed_hash('campaign', "new_assignments.campaign_id || chr(31) || new_assignments.customer_id") }},
            1,
            8
        ) < new_assignments.control_threshold as is_control
    from new_assignments
    cross join salt
)

select * from final
