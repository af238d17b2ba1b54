with

source as (
    select * from {{ source('web', 'web_sessions') }}
    where _partition_date <= {{ as_of_date() }}
        and started_at < {{ as_of_end() }}
),

salt as (
    select pii_salt from {{ source('pipeline', 'pii_salt') }}
),

latest_version as (
    select
        *,
        row_number() over (
            partition by trim(session_id)
            order by _partition_date desc, _source_line desc
        ) as version_rank
    from source
),

final as (
    select
        trim(latest_version.session_id) as session_id,
        latest_version.started_at,
        cast(latest_version.started_at as date) as session_date,
        latest_version._partition_date as landed_date,
        nullif(trim(latest_version.crm_customer_id), '') as crm_customer_id,
        {{ salted_hash(normalise_email('latest_version.user_email')) }} as email_hash,
        case when lower(trim(latest_version.platform)) = 'app' then 'app' else 'web' end as platform,
        coalesce(latest_version.page_views, 0) as page_views,
        coalesce(latest_version.added_to_cart, false) as has_added_to_cart
    from latest_version
    cross join salt
    where latest_version.version_rank = 1
)

select * from final
