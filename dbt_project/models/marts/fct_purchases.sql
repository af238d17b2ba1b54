-- One row per purchase (web shop order or store receipt) attributed to a known customer.
-- Anonymous store sales (no loyalty card) and orders with no identifier cannot be attributed.
-- Incremental (macros/landing/attribution.sql): a night attributes the purchases that became visible
-- since the previous build and re-attributes those whose CRM id, address, phone or card was assigned
-- to a customer since (a new key or a merge); a rerun, a backfill, a reloaded partition or a rebuilt
-- identity map rebuilds.
{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key='purchase_id',
    on_schema_change='sync_all_columns',
    indexes=postgres_key_index('purchase_id'),
    pre_hook="{{ attribution_reset('purchase_id', [
        ['stg_shop__orders', \"'shop:' || order_id\", 'ordered_at'],
        ['stg_pos__sales', \"'pos:' || receipt_id\", 'sold_at'],
    ]) }}",
    post_hook="{{ record_incremental_state(reads_landing=false) }}",
) }}
-- depends_on: {{ ref('stg_pipeline__identity_state') }}
{%- set since = attribution_since() %}

with

shop_orders as (
    select * from {{ ref('stg_shop__orders') }}
    where not is_cancelled
    {%- if since %}
        and (
            {{ newly_visible_events(since, 'ordered_at') }}
            or crm_customer_id in ({{ keys_assigned_since(since, 'crm_id') }})
            or email_hash in ({{ keys_assigned_since(since, 'email') }})
            or phone_hash in ({{ keys_assigned_since(since, 'phone') }})
        )
    {%- endif %}
),

pos_sales as (
    select * from {{ ref('stg_pos__sales') }}
    where loyalty_card_key is not null
    {%- if since %}
        and (
            {{ newly_visible_events(since, 'sold_at') }}
            or loyalty_card_key in ({{ keys_assigned_since(since, 'loyalty_card') }})
        )
    {%- endif %}
),

customer_keys as (
    select * from {{ ref('int_customer_keys') }}
),

online_attributed as (
    select
        'shop:' || shop_orders.order_id as purchase_id,
        coalesce(
            by_crm.customer_id,
            by_email.customer_id,
            by_phone.customer_id,
            shop_orders.guest_customer_id
        ) as customer_id,
        shop_orders.ordered_at as purchased_at,
        shop_orders.ordered_date as purchase_date,
        shop_orders.sales_channel,
        shop_orders.net_amount,
        shop_orders.discount_amount,
        shop_orders.category,
        shop_orders.discount_amount > 0 or shop_orders.promo_code is not null as is_deal,
        shop_orders.is_refunded as is_refund
    from shop_orders
    left join customer_keys as by_crm
        on by_crm.key_type = 'crm_id' and shop_orders.crm_customer_id = by_crm.key_value
    left join customer_keys as by_email
        on by_email.key_type = 'email' and shop_orders.email_hash = by_email.key_value
    left join customer_keys as by_phone
        on by_phone.key_type = 'phone' and shop_orders.phone_hash = by_phone.key_value
),

store_attributed as (
    select
        'pos:' || pos_sales.receipt_id as purchase_id,
        by_card.customer_id,
        pos_sales.sold_at as purchased_at,
        pos_sales.sold_date as purchase_date,
        'store' as sales_channel,
        abs(pos_sales.net_amount) as net_amount,
        pos_sales.discount_amount,
        pos_sales.category,
        pos_sales.discount_amount > 0 as is_deal,
        pos_sales.is_return as is_refund
    from pos_sales
    inner join customer_keys as by_card
        on by_card.key_type = 'loyalty_card' and pos_sales.loyalty_card_key = by_card.key_value
),

unioned as (
    select * from online_attributed
    where customer_id is not null
    union all
    select * from store_attributed
),

final as (
    select
        purchase_id,
        customer_id,
        purchased_at,
        purchase_date,
        sales_channel,
        -- a refunded web order nets to zero; a store return is its own receipt and nets negative
        cast(case when is_refund and sales_channel = 'store' then 0 else net_amount end as numeric(18, 2))
            as gross_amount,
        cast(
            case
                when is_refund and sales_channel = 'store' then -net_amount
                when is_refund then 0
                else net_amount
            end as numeric(18, 2)
        ) as net_amount,
        discount_amount,
        category,
        is_deal,
        is_refund,
        {{ as_of_date() }} as built_as_of
    from unioned
)

select * from final
