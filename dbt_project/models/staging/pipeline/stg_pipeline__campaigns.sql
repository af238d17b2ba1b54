-- The campaigns declared in the campaigns file (custseg/campaigns.py checks it before the run and writes
-- raw.campaigns): one row per campaign, typed.
with

source as (
    select * from {{ source('pipeline', 'campaigns') }}
),

final as (
    select
        campaign_id,
        description,
        target_playbook_ids,
        target_rfm_segments,
        cast(start_date as date) as start_date,
        cast(end_date as date) as end_date,
        cast(conversion_window_days as integer) as conversion_window_days,
        cast(control_share as double precision) as control_share,
        control_threshold
    from source
)

select * from final
