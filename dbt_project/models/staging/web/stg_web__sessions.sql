-- Incremental by landing visibility (macros/landing/; configured in dbt_project.yml): a night reads
-- only the rows that became visible since the previous build; a rerun, a backfill or a late file rebuilds.
{{ config(
    unique_key='session_id',
    indexes=postgres_key_index('session_id'),
) }}
-- depends_on: {{ source('ops', 'load_audit') }}
{%- set since = incremental_since() %}

with

source as (
    select * from {{ source('web', 'web_sessions') }}
    where {{ landed_rows_to_read(since, 'started_at') }}
),

salt as (
    select pii_salt from {{ source('pipeline', 'pii_salt') }}
),

landed as (
    select
        trim(source.session_id) as session_id,
        source.started_at,
        cast(source.started_at as date) as session_date,
        source._partition_date as landed_date,
        source._source_line as source_line,
        nullif(trim(source.crm_customer_id), '') as crm_customer_id,
        {{ keyed_hash('email', normalise_email('source.user_email')) }} as email_hash,
        case when lower(trim(source.platform)) = 'app' then 'app' else 'web' end as platform,
        coalesce(source.page_views, 0) as page_views,
        coalesce(source.added_to_cart, false) as has_added_to_cart,
        lower(coalesce(nullif(trim(source.category), ''), 'unknown')) as category
    from source
    cross join salt
),

latest_version as (
    -- re-exports share a session_id: the last landed version wins
    {{ latest_landed_version('landed', 'session_id', since) }}
),

final as (
    select
        session_id,
        started_at,
        session_date,
        landed_date,
        source_line,
        crm_customer_id,
        email_hash,
        platform,
        page_views,
        has_added_to_cart,
        category,
        built_as_of
    from latest_version
)

select * from final
