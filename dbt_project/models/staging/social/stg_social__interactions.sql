-- Incremental by landing visibility (macros/landing/; configured in dbt_project.yml): a night reads
-- only the rows that became visible since the previous build; a rerun, a backfill or a late file rebuilds.
{{ config(
    unique_key='interaction_id',
    indexes=postgres_key_index('interaction_id'),
) }}
-- depends_on: {{ source('ops', 'load_audit') }}
{%- set since = incremental_since() %}

with

source as (
    select * from {{ source('social', 'social_interactions') }}
    where {{ landed_rows_to_read(since, 'interacted_at') }}
),

salt as (
    select pii_salt from {{ source('pipeline', 'pii_salt') }}
),

landed as (
    select
        trim(source.interaction_id) as interaction_id,
        source.interacted_at,
        cast(source.interacted_at as date) as interaction_date,
        lower(trim(source.platform)) as platform,
        nullif(trim(source.post_id), '') as post_id,
        lower(trim(source.interaction_type)) as interaction_type,
        {{ keyed_hash('social', normalise_social_handle('source.platform', 'source.handle')) }}
            as social_handle_hash,
        {{ keyed_hash('email', normalise_email('source.user_email')) }} as email_hash,
        source._partition_date as landed_date,
        source._source_line as source_line
    from source
    cross join salt
),

latest_version as (
    -- a re-exported interaction keeps its id: the last landed version wins
    {{ latest_landed_version('landed', 'interaction_id', since) }}
),

final as (
    select
        interaction_id,
        interacted_at,
        interaction_date,
        platform,
        post_id,
        interaction_type,
        social_handle_hash,
        email_hash,
        landed_date,
        source_line,
        built_as_of
    from latest_version
)

select * from final
