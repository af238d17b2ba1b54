with

source as (
    select * from {{ source('support', 'support_tickets') }}
    where _partition_date <= {{ as_of_date() }}
        and created_at < {{ as_of_end() }}
),

salt as (
    select pii_salt from {{ source('pipeline', 'pii_salt') }}
),

latest_version as (
    select
        *,
        row_number() over (
            partition by trim(ticket_id)
            order by _partition_date desc, _source_line desc
        ) as version_rank
    from source
),

final as (
    select
        trim(latest_version.ticket_id) as ticket_id,
        latest_version.created_at,
        cast(latest_version.created_at as date) as created_date,
        {{ keyed_hash('email', normalise_email('latest_version.customer_email')) }} as email_hash,
        {{ keyed_hash('phone', normalise_phone('latest_version.customer_phone')) }} as phone_hash,
        lower(trim(latest_version.contact_channel)) as contact_channel,
        lower(trim(latest_version.topic)) as topic,
        nullif(trim(latest_version.subject), '') as subject,
        lower(trim(latest_version.ticket_status)) as ticket_status,
        case when latest_version.nps_score between 0 and 10 then latest_version.nps_score end as nps_score
    from latest_version
    cross join salt
    where latest_version.version_rank = 1
)

select * from final
