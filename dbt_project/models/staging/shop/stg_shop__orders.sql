with

source as (
    select * from {{ source('shop', 'shop_orders') }}
    where _partition_date <= {{ as_of_date() }}
        and ordered_at < {{ as_of_end() }}
),

salt as (
    select pii_salt from {{ source('pipeline', 'pii_salt') }}
),

fx as (
    {{ fx_rate_ranges() }}
),

latest_version as (
    -- exact duplicates and re-exports (e.g. a later refund) share an order_id: the last landed wins
    select
        *,
        row_number() over (
            partition by trim(order_id)
            order by _partition_date desc, _source_line desc
        ) as version_rank
    from source
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
        _partition_date
    from latest_version
    where version_rank = 1
),

final as (
    select
        normalised.order_id,
        normalised.crm_customer_id,
        {{ salted_hash('normalised.email_normalised') }} as email_hash,
        {{ salted_hash('normalised.phone_normalised') }} as phone_hash,
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
        normalised._partition_date as landed_date
    from normalised
    cross join salt
    inner join fx
        on normalised.currency = fx.currency
        and normalised.ordered_date >= fx.valid_from
        and normalised.ordered_date < fx.valid_to
)

select * from final
