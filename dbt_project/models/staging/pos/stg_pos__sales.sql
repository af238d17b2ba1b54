-- Incremental by landing visibility (macros/landing/; configured in dbt_project.yml): a night reads
-- only the rows that became visible since the previous build; a rerun, a backfill or a late file rebuilds.
{{ config(
    unique_key='receipt_id',
    indexes=postgres_key_index('receipt_id'),
) }}
-- depends_on: {{ source('ops', 'load_audit') }}
-- depends_on: {{ source('pipeline', 'pii_salt') }}
{%- set since = incremental_since() %}

with

source as (
    select * from {{ source('pos', 'pos_sales') }}
    where {{ landed_rows_to_read(since, 'sold_at') }}
),

fx as (
    {{ fx_rate_ranges() }}
),

normalised as (
    select
        trim(receipt_id) as receipt_id,
        trim(store_id) as store_id,
        {{ normalise_card('loyalty_card') }} as loyalty_card_key,
        sold_at,
        cast(sold_at as date) as sold_date,
        upper(trim(currency)) as currency,
        amount,
        coalesce(discount_amount, 0) as discount_amount,
        lower(trim(coalesce(category, 'unknown'))) as category,
        coalesce(is_return, amount < 0) as is_return,
        _partition_date,
        _source_line
    from source
),

landed as (
    select
        normalised.receipt_id,
        normalised.store_id,
        normalised.loyalty_card_key,
        normalised.sold_at,
        normalised.sold_date,
        normalised.currency as original_currency,
        normalised.amount as original_amount,
        cast(round(normalised.amount * fx.rate_to_reporting, 2) as numeric(18, 2)) as net_amount,
        cast(round(normalised.discount_amount * fx.rate_to_reporting, 2) as numeric(18, 2)) as discount_amount,
        normalised.category,
        normalised.is_return,
        normalised._partition_date as landed_date,
        normalised._source_line as source_line
    from normalised
    inner join fx
        on normalised.currency = fx.currency
        and normalised.sold_date >= fx.valid_from
        and normalised.sold_date < fx.valid_to
),

latest_version as (
    {{ latest_landed_version('landed', 'receipt_id', since) }}
),

final as (
    select
        receipt_id,
        store_id,
        loyalty_card_key,
        sold_at,
        sold_date,
        original_currency,
        original_amount,
        net_amount,
        discount_amount,
        category,
        is_return,
        landed_date,
        source_line,
        built_as_of
    from latest_version
)

select * from final
