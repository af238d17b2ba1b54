{{ config(materialized='ephemeral') }}

-- The hash key (raw.pii_salt, written by the prepare task from CUSTSEG_HASH_KEY) for the models past staging
-- that mint a keyed hash (the campaigns' holdout draw). Ephemeral: inlined into each query that reads it, so
-- the key is never copied into a table or view of the build schema, nor rendered into SQL text.
with

source as (
    select * from {{ source('pipeline', 'pii_salt') }}
),

final as (
    select pii_salt from source
)

select * from final
