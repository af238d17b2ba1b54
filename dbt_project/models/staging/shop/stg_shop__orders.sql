-- Incremental by landing visibility (macros/landing/; configured in dbt_project.yml): a night reads
-- only the rows that became visible since the previous build; a rerun, a backfill or a late file rebuilds.
{{ config(
    unique_key='order_id',
    indexes=postgres_key_index('order_id'),
) }}
-- depends_on: {{ source('ops', 'load_audit') }}
{%- set since = incremental_since() %}

with

source as (
    select * from {{ source('shop', 'shop_orders') }}
    where {{ landed_rows_to_read(since, 'ordered_at') }}
),

salt as (
    select pii_salt from {{ source('pipeline', 'pii_salt') }}
),

fx as (
    {{ fx_rate_ranges() }}
),

normalised as (
    select
        trim(order_id) as order_id,
        nullif(trim(customer_ref), '') as crm_customer_id,
        {{ normalise_email('customer_email') }} as email_normalised,
        {{ normalise_phone('customer_phone') }} as phone_normalised,
        upper(trim(currency)) as currency,
        ordered_at,
        cast(ordered_at as date) as ordered_date,
        order_total,
        coalesce(discount_amount, 0) as discount_amount,
        coalesce(item_count, 0) as item_count,
        lower(trim(coalesce(category, 'unknown'))) as category,
        lower(trim(order_status)) as order_status,
        case when lower(trim(device)) = 'app' then 'app' else 'online' end as sales_channel,
        upper(nullif(trim(promo_code), '')) as promo_code,
        _partition_date,
        _source_line
    from source
),

landed as (
    select
        normalised.order_id,
        normalised.crm_customer_id,
        {{ keyed_hash('email', 'normalised.email_normalised') }} as email_hash,
        {{ keyed_hash('phone', 'normalised.phone_normalised') }} as phone_hash,
        -- the customer_id of a guest buyer known by this email alone (identity resolution's natural id)
        {{ keyed_hash('customer:email', keyed_hash('email', 'normalised.email_normalised')) }} as guest_customer_id,
        normalised.ordered_at,
        normalised.ordered_date,
        normalised.currency as original_currency,
        normalised.order_total as original_amount,
        cast(round(normalised.order_total * fx.rate_to_reporting, 2) as numeric(18, 2)) as net_amount,
        cast(round(normalised.discount_amount * fx.rate_to_reporting, 2) as numeric(18, 2)) as discount_amount,
        normalised.item_count,
        normalised.category,
        normalised.order_status,
        normalised.order_status = 'refunded' as is_refunded,
        normalised.order_status = 'cancelled' as is_cancelled,
        normalised.sales_channel,
        normalised.promo_code,
        normalised._partition_date as landed_date,
        normalised._source_line as source_line
    from normalised
    cross join salt
    inner join fx
        on normalised.currency = fx.currency
        and normalised.ordered_date >= fx.valid_from
        and normalised.ordered_date < fx.valid_to
),

latest_version as (
    -- exact duplicates and re-exports (e.g. a later refund) share an order_id: the last landed wins
    {{ latest_landed_version('landed', 'order_id', since) }}
),

final as (
    select
        order_id,
        crm_customer_id,
        email_hash,
        phone_hash,
        guest_customer_id,
        ordered_at,
        ordered_date,
        original_currency,
        original_amount,
        net_amount,
        discount_amount,
        item_count,
        category,
        order_status,
        is_refunded,
        is_cancelled,
        sales_channel,
        promo_code,
        landed_date,
        source_line,
        built_as_of
    from latest_version
)

select * from final
