-- The published interest table: each customer's interest in each product category as of the run date,
-- for the customers and categories with a purchase or a categorised page view in the trailing window.
with

category_interest as (
    select * from {{ ref('int_customer_category_interest') }}
),

final as (
    select
        customer_id,
        {{ as_of_date() }} as as_of_date,
        category,
        cast(spend as numeric(18, 2)) as spend,
        cast(purchases as bigint) as purchases,
        cast(page_views as bigint) as page_views,
        cast(spend_share as double precision) as spend_share,
        cast(view_share as double precision) as view_share,
        cast(interest_share as double precision) as interest_share,
        cast(affinity_index as double precision) as affinity_index,
        cast(interest_rank as integer) as interest_rank
    from category_interest
)

select * from final
