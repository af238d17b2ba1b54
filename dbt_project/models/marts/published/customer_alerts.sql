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

-- Early warnings: the customers who, since the previous run (the latest earlier as-of date in segment_history),
-- entered a high churn risk band (var alert_churn_risk_bands), left a top RFM segment (var alert_top_segments)
-- or dropped a value tier. One row per customer and alert, with what it is about, the customer's predicted
-- 12-month value (what is at risk) and their playbook rule's recommended action.
--
-- Each run writes its own as-of date's alerts only, from segment_history's rows of that date and of the
-- previous one, so a rerun gives the same rows and a backfill in date order gives what the nightly runs gave
-- (like segment_migration). The previous date's rows of a customer merged since count under the survivor
-- (customer_identity's alias rows, the survivor's own row first), so a merge raises no alert by itself.
-- A customer new since the previous run has nothing to compare with and raises none. Each alert carries the
-- customer's consent per channel, so whoever acts on it reaches them only through a channel they allow
-- (the activation DAG's alert files per channel leave the others out).
with

today_history as (
    select * from {{ ref('segment_history') }}
    where as_of_date = {{ as_of_date() }}
),

previous_date as (
    select max(as_of_date) as as_of_date
    from {{ ref('segment_history') }}
    where as_of_date < {{ as_of_date() }}
),

previous_history as (
    select history.*
    from {{ ref('segment_history') }} as history
    inner join previous_date on history.as_of_date = previous_date.as_of_date
),

merged_ids as (
    select
        source_customer_ref as retired_customer_id,
        customer_id,
        first_seen_date as merged_date
    from {{ ref('customer_identity') }}
    where
        source = 'merged_customer_id'
        and first_seen_date <= {{ as_of_date() }}
),

playbook as (
    select * from {{ ref('segment_playbook_rules') }}
),

-- the previous date's rows under the id each customer has today; one per customer (their own row first)
previous_ranked as (
    select
        previous_history.*,
        coalesce(merged_ids.customer_id, previous_history.customer_id) as current_customer_id,
        row_number() over (
            partition by coalesce(merged_ids.customer_id, previous_history.customer_id)
            order by
                case when merged_ids.customer_id is null then 0 else 1 end,
                previous_history.customer_id
        ) as row_rank
    from previous_history
    left join merged_ids on previous_history.customer_id = merged_ids.retired_customer_id
),

previous as (
    select * from previous_ranked
    where row_rank = 1
),

compared as (
    select
        today_history.customer_id,
        today_history.predicted_clv_12m,
        today_history.playbook_id,
        today_history.has_email_consent,
        today_history.has_sms_consent,
        today_history.has_ads_consent,
        previous.as_of_date as compared_to_date,
        previous.churn_risk_band as previous_churn_risk_band,
        today_history.churn_risk_band,
        previous.rfm_segment as previous_rfm_segment,
        today_history.rfm_segment,
        previous.value_tier as previous_value_tier,
        today_history.value_tier,
        {{ value_tier_rank('previous.value_tier') }} as previous_value_rank,
        {{ value_tier_rank('today_history.value_tier') }} as value_rank
    from today_history
    inner join previous on today_history.customer_id = previous.current_customer_id
),

alerts as (
    select
        customer_id,
        predicted_clv_12m,
        playbook_id,
        has_email_consent,
        has_sms_consent,
        has_ads_consent,
        compared_to_date,
        'churn_risk_up' as alert_type,
        coalesce(previous_churn_risk_band, 'unscored') as from_value,
        churn_risk_band as to_value
    from compared
    where
        churn_risk_band in ({{ quoted_list(var('alert_churn_risk_bands')) }})
        and coalesce(previous_churn_risk_band, '') not in ({{ quoted_list(var('alert_churn_risk_bands')) }})
    union all
    select
        customer_id,
        predicted_clv_12m,
        playbook_id,
        has_email_consent,
        has_sms_consent,
        has_ads_consent,
        compared_to_date,
        'left_top_segment' as alert_type,
        previous_rfm_segment as from_value,
        coalesce(rfm_segment, 'No purchase yet') as to_value
    from compared
    where
        previous_rfm_segment in ({{ quoted_list(var('alert_top_segments')) }})
        and coalesce(rfm_segment, '') not in ({{ quoted_list(var('alert_top_segments')) }})
    union all
    select
        customer_id,
        predicted_clv_12m,
        playbook_id,
        has_email_consent,
        has_sms_consent,
        has_ads_consent,
        compared_to_date,
        'value_tier_drop' as alert_type,
        previous_value_tier as from_value,
        coalesce(value_tier, 'none') as to_value
    from compared
    where coalesce(value_rank, 0) < previous_value_rank
),

final as (
    select
        {{ as_of_date() }} as as_of_date,
        alerts.customer_id,
        alerts.alert_type,
        alerts.from_value,
        alerts.to_value,
        case alerts.alert_type
            when 'churn_risk_up' then 'churn risk rose from ' || alerts.from_value || ' to ' || alerts.to_value
            when 'left_top_segment' then 'left ' || alerts.from_value || ' for ' || alerts.to_value
            else 'value tier fell from ' || alerts.from_value || ' to ' || alerts.to_value
        end as reason,
        cast(alerts.predicted_clv_12m as numeric(18, 2)) as value_at_risk,
        alerts.playbook_id,
        playbook.next_best_action as recommended_action,
        alerts.compared_to_date,
        alerts.has_email_consent,
        alerts.has_sms_consent,
        alerts.has_ads_consent
    from alerts
    left join playbook on alerts.playbook_id = playbook.playbook_id
)

select * from final
