-- Incremental by landing visibility (macros/landing/; configured in dbt_project.yml): a night reads
-- only the rows that became visible since the previous build; a rerun, a backfill or a late file rebuilds.
{{ config(
    unique_key='event_id',
    indexes=postgres_key_index('event_id'),
) }}
-- depends_on: {{ source('ops', 'load_audit') }}
{%- set since = incremental_since() %}

with

source as (
    select * from {{ source('marketing', 'email_events') }}
    where {{ landed_rows_to_read(since, 'event_at') }}
),

salt as (
    select pii_salt from {{ source('pipeline', 'pii_salt') }}
),

landed as (
    select
        trim(source.event_id) as event_id,
        trim(source.campaign_id) as campaign_id,
        {{ keyed_hash('email', normalise_email('source.email')) }} as email_hash,
        lower(trim(source.event_type)) as event_type,
        source.event_at,
        cast(source.event_at as date) as event_date,
        source._partition_date as landed_date,
        source._source_line as source_line
    from source
    cross join salt
),

latest_version as (
    {{ latest_landed_version('landed', 'event_id', since) }}
),

final as (
    select
        event_id,
        campaign_id,
        email_hash,
        event_type,
        event_at,
        event_date,
        landed_date,
        source_line,
        built_as_of
    from latest_version
)

select * from final
