with

source as (
    select * from {{ source('marketing', 'email_events') }}
    where _partition_date <= {{ as_of_date() }}
        and event_at < {{ as_of_end() }}
),

salt as (
    select pii_salt from {{ source('pipeline', 'pii_salt') }}
),

latest_version as (
    select
        *,
        row_number() over (
            partition by trim(event_id)
            order by _partition_date desc, _source_line desc
        ) as version_rank
    from source
),

final as (
    select
        trim(latest_version.event_id) as event_id,
        trim(latest_version.campaign_id) as campaign_id,
        {{ salted_hash(normalise_email('latest_version.email')) }} as email_hash,
        lower(trim(latest_version.event_type)) as event_type,
        latest_version.event_at,
        cast(latest_version.event_at as date) as event_date,
        latest_version._partition_date as landed_date
    from latest_version
    cross join salt
    where latest_version.version_rank = 1
)

select * from final
