-- One row per customer with category interest as of the run date (int_customer_category_interest):
-- the top category, how many categories hold a real share of the interest, and a readable segment.
with

category_interest as (
    select * from {{ ref('int_customer_category_interest') }}
),

per_customer as (
    select
        customer_id,
        max(case when interest_rank = 1 then category end) as top_category,
        max(case when interest_rank = 1 then interest_share end) as top_category_share,
        sum(case when interest_share >= {{ var('interest_breadth_min_share') }} then 1 else 0 end)
            as interest_breadth,
        sum(purchases) as purchases_in_window
    from category_interest
    group by customer_id
),

final as (
    select
        customer_id,
        top_category,
        top_category_share,
        interest_breadth,
        case
            when purchases_in_window = 0 then 'window shopper'
            when top_category_share >= {{ var('interest_focus_min_share') }} then top_category || ' enthusiast'
            when interest_breadth >= 3 then 'explorer'
            else 'mixed interests'
        end as interest_segment
    from per_customer
)

select * from final
