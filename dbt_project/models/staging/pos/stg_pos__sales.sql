with

source as (
    select * from {{ source('pos', 'pos_sales') }}
    where _partition_date <= {{ as_of_date() }}
        and sold_at < {{ as_of_end() }}
),

fx as (
    {{ fx_rate_ranges() }}
),

latest_version as (
    select
        *,
        row_number() over (
            partition by trim(receipt_id)
            order by _partition_date desc, _source_line desc
        ) as version_rank
    from source
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
        _partition_date
    from latest_version
    where version_rank = 1
),

final as (
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
        normalised._partition_date as landed_date
    from normalised
    inner join fx
        on normalised.currency = fx.currency
        and normalised.sold_date >= fx.valid_from
        and normalised.sold_date < fx.valid_to
)

select * from final
