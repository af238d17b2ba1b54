-- Every known customer: CRM customers (prospects included), plus buyers with no CRM record.
-- A buyer with no CRM record is a guest only when nothing names them but an e-mail or phone:
-- an order export that carries a customer key (a CRM id, a customer number) names a customer,
-- whose key is kept as crm_customer_id although the CRM export holds no row for them.
with

crm_customers as (
    select * from {{ ref('stg_crm__customers') }}
),

purchases as (
    select * from {{ ref('fct_purchases') }}
),

customer_keys as (
    select * from {{ ref('int_customer_keys') }}
    where key_type = 'crm_id'
),

crm_resolved as (
    -- identity resolution may merge several CRM records into one customer: one row per customer,
    -- described by the surviving record (the one whose own id became the customer_id)
    select
        crm_customers.*,
        coalesce(customer_keys.customer_id, crm_customers.natural_customer_id) as customer_id,
        row_number() over (
            partition by coalesce(customer_keys.customer_id, crm_customers.natural_customer_id)
            order by
                case when customer_keys.customer_id = crm_customers.natural_customer_id then 0 else 1 end,
                crm_customers.crm_customer_id
        ) as record_rank
    from crm_customers
    left join customer_keys on crm_customers.crm_customer_id = customer_keys.key_value
),

crm as (
    select
        customer_id,
        crm_customer_id,
        false as is_guest,
        region,
        country,
        case
            when birth_year is null then 'unknown'
            when {{ year_of(as_of_date()) }} - birth_year < 25 then '18-24'
            when {{ year_of(as_of_date()) }} - birth_year < 35 then '25-34'
            when {{ year_of(as_of_date()) }} - birth_year < 45 then '35-44'
            when {{ year_of(as_of_date()) }} - birth_year < 55 then '45-54'
            when {{ year_of(as_of_date()) }} - birth_year < 65 then '55-64'
            else '65+'
        end as age_band,
        gender,
        signup_date,
        signup_source,
        birth_date,
        cast(extract(month from birth_date) as integer) as birth_month
    from crm_resolved
    where record_rank = 1
),

buyers_without_crm_record as (
    select distinct purchases.customer_id
    from purchases
    left join crm on purchases.customer_id = crm.customer_id
    where crm.customer_id is null
),

buyer_crm_keys as (
    -- several keys can resolve to one customer: the smallest stands for them, so reruns agree
    select
        customer_id,
        min(key_value) as crm_customer_id
    from customer_keys
    group by customer_id
),

buyers as (
    select
        buyers_without_crm_record.customer_id,
        buyer_crm_keys.crm_customer_id,
        buyer_crm_keys.customer_id is null as is_guest,
        cast(null as {{ dbt.type_string() }}) as region,
        cast(null as {{ dbt.type_string() }}) as country,
        'unknown' as age_band,
        'unknown' as gender,
        cast(null as date) as signup_date,
        case when buyer_crm_keys.customer_id is null then 'guest_checkout' else 'unknown' end as signup_source,
        cast(null as date) as birth_date,
        cast(null as integer) as birth_month
    from buyers_without_crm_record
    left join buyer_crm_keys on buyers_without_crm_record.customer_id = buyer_crm_keys.customer_id
),

final as (
    select * from crm
    union all
    select * from buyers
)

select * from final
