with

source as (
    select * from {{ source('crm', 'crm_customers') }}
    where _partition_date <= {{ as_of_date() }}
),

salt as (
    select pii_salt from {{ source('pipeline', 'pii_salt') }}
),

latest_version as (
    -- the CRM re-exports a customer when it changes: the latest landed version as of the date wins
    select
        *,
        row_number() over (
            partition by trim(crm_customer_id)
            order by _partition_date desc, updated_at desc, _source_line desc
        ) as version_rank
    from source
),

final as (
    select
        trim(latest_version.crm_customer_id) as crm_customer_id,
        {{ salted_hash(normalise_email('latest_version.email')) }} as email_hash,
        {{ salted_hash(normalise_phone('latest_version.phone')) }} as phone_hash,
        {{ normalise_card('latest_version.loyalty_card') }} as loyalty_card_key,
        nullif(trim(latest_version.region), '') as region,
        upper(nullif(trim(latest_version.country), '')) as country,
        latest_version.birth_year,
        case lower(trim(latest_version.gender))
            when 'f' then 'female'
            when 'm' then 'male'
            when 'x' then 'diverse'
            else 'unknown'
        end as gender,
        latest_version.signup_date,
        lower(coalesce(nullif(trim(latest_version.signup_source), ''), 'unknown')) as signup_source,
        latest_version.updated_at
    from latest_version
    cross join salt
    where latest_version.version_rank = 1
)

select * from final
