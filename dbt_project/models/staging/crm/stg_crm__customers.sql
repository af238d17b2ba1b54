-- Incremental by landing visibility (macros/landing/; configured in dbt_project.yml): a night reads
-- only the partitions landed since the previous build; a rerun, a backfill or a late file rebuilds.
{{ config(
    unique_key='crm_customer_id',
    indexes=postgres_key_index('crm_customer_id'),
) }}
-- depends_on: {{ source('ops', 'load_audit') }}
{%- set since = incremental_since() %}

with

source as (
    select * from {{ source('crm', 'crm_customers') }}
    where {{ landed_rows_to_read(since) }}
),

salt as (
    select pii_salt from {{ source('pipeline', 'pii_salt') }}
),

landed as (
    select
        trim(source.crm_customer_id) as crm_customer_id,
        -- the customer_id this record mints (its customer's id when it is the customer's best key)
        {{ keyed_hash('customer:crm', 'trim(source.crm_customer_id)') }} as natural_customer_id,
        {{ keyed_hash('email', normalise_email('source.email')) }} as email_hash,
        {{ keyed_hash('phone', normalise_phone('source.phone')) }} as phone_hash,
        {{ normalise_card('source.loyalty_card') }} as loyalty_card_key,
        {{ keyed_hash('social', normalise_social_handle('source.social_platform', 'source.social_handle')) }}
            as social_handle_hash,
        nullif(trim(source.region), '') as region,
        upper(nullif(trim(source.country), '')) as country,
        coalesce(source.birth_year, {{ year_of('source.birth_date') }}) as birth_year,
        source.birth_date,
        case lower(trim(source.gender))
            when 'f' then 'female'
            when 'm' then 'male'
            when 'x' then 'diverse'
            else 'unknown'
        end as gender,
        source.signup_date,
        lower(coalesce(nullif(trim(source.signup_source), ''), 'unknown')) as signup_source,
        source.email_opt_in as has_email_opt_in,
        source.sms_opt_in as has_sms_opt_in,
        source.ads_opt_in as has_ads_opt_in,
        source.consent_updated_at,
        source.updated_at,
        source._partition_date as landed_date,
        source._source_line as source_line
    from source
    cross join salt
),

latest_version as (
    -- the CRM re-exports a customer when it changes: the latest landed version as of the date wins
    {{ latest_landed_version('landed', 'crm_customer_id', since, ['landed_date', 'updated_at', 'source_line']) }}
),

final as (
    select
        crm_customer_id,
        natural_customer_id,
        email_hash,
        phone_hash,
        loyalty_card_key,
        social_handle_hash,
        region,
        country,
        birth_year,
        birth_date,
        gender,
        signup_date,
        signup_source,
        has_email_opt_in,
        has_sms_opt_in,
        has_ads_opt_in,
        consent_updated_at,
        updated_at,
        landed_date,
        source_line,
        built_as_of
    from latest_version
)

select * from final
