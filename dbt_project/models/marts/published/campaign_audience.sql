{{ config(tags=['scored']) }}

-- Who is in each campaign of the campaigns file, as of the run date: every customer a night assigned
-- (int_campaign_assignments), under the id the customer has now, with the side of the holdout they fell on.
-- Hand the rows with is_control = false to the campaign tool; the controls are the comparison that
-- campaign_uplift measures the campaign against. Replaced every night.
--
-- Merges: an assignment made under an id that a merge later retired follows the survivor, through the alias
-- rows of customer_identity (they always point to the final survivor). When two merged customers were both
-- assigned, the earliest assignment stands (then the survivor's own), so a person is in a campaign once and
-- keeps the side of the holdout they were first given.
with

assignments as (
    select * from {{ ref('int_campaign_assignments') }}
    where assigned_on <= {{ as_of_date() }}
),

campaigns as (
    select * from {{ ref('stg_pipeline__campaigns') }}
),

merged_ids as (
    select
        source_customer_ref as retired_customer_id,
        customer_id
    from {{ ref('customer_identity') }}
    where source = 'merged_customer_id'
),

current_assignments as (
    select
        assignments.*,
        coalesce(merged_ids.customer_id, assignments.customer_id) as current_customer_id
    from assignments
    left join merged_ids on assignments.customer_id = merged_ids.retired_customer_id
),

ranked as (
    select
        *,
        row_number() over (
            partition by campaign_id, current_customer_id
            order by
                assigned_on,
                case when customer_id = current_customer_id then 0 else 1 end,
                customer_id
        ) as assignment_rank
    from current_assignments
),

final as (
    select
        ranked.campaign_id,
        ranked.current_customer_id as customer_id,
        ranked.playbook_id,
        ranked.rfm_segment,
        ranked.is_control,
        ranked.assigned_on,
        cast(
            {{ dbt.dateadd('day', 'campaigns.conversion_window_days', 'ranked.assigned_on') }} as date
        ) as conversion_window_ends_on,
        {{ as_of_date() }} as as_of_date
    from ranked
    -- a campaign removed from the file leaves the published tables (its assignments stay in the build)
    inner join campaigns on ranked.campaign_id = campaigns.campaign_id
    where ranked.assignment_rank = 1
)

select * from final
