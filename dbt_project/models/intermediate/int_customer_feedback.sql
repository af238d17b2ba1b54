-- Feedback per customer with a support ticket as of the run date: open complaints, the complaint rate
-- over 12 months, the topic of the latest ticket, and the trend of the NPS answers.
with

tickets as (
    select * from {{ ref('int_support_tickets_attributed') }}
),

purchase_stats as (
    select * from {{ ref('int_customer_purchase_stats') }}
),

ranked_tickets as (
    select
        customer_id,
        topic,
        row_number() over (partition by customer_id order by created_at desc, ticket_id desc) as ticket_rank
    from tickets
),

nps_answers as (
    select
        customer_id,
        nps_score,
        row_number() over (partition by customer_id order by created_at desc, ticket_id desc) as answer_rank
    from tickets
    where nps_score is not null
),

per_customer as (
    select
        customer_id,
        count(*) as support_tickets,
        sum(case when is_complaint and ticket_status = 'open' then 1 else 0 end) as open_complaints,
        sum(case
            when is_complaint
                and created_date > {{ dbt.dateadd('day', -var('complaint_window_days'), as_of_date()) }}
                then 1
            else 0
        end) as complaints_12m
    from tickets
    group by customer_id
),

final as (
    select
        per_customer.customer_id,
        per_customer.support_tickets,
        per_customer.open_complaints > 0 as has_open_complaint,
        per_customer.complaints_12m,
        cast(per_customer.complaints_12m as double precision)
        / nullif(purchase_stats.purchases_12m, 0) as complaint_rate_12m,
        latest_ticket.topic as last_ticket_topic,
        latest_answer.nps_score as last_nps_score,
        previous_answer.nps_score as previous_nps_score,
        case
            when previous_answer.nps_score is null then 'unknown'
            when latest_answer.nps_score - previous_answer.nps_score >= {{ var('nps_trend_min_change') }} then 'up'
            when previous_answer.nps_score - latest_answer.nps_score >= {{ var('nps_trend_min_change') }} then 'down'
            else 'flat'
        end as nps_trend
    from per_customer
    left join purchase_stats on per_customer.customer_id = purchase_stats.customer_id
    left join ranked_tickets as latest_ticket
        on per_customer.customer_id = latest_ticket.customer_id and latest_ticket.ticket_rank = 1
    left join nps_answers as latest_answer
        on per_customer.customer_id = latest_answer.customer_id and latest_answer.answer_rank = 1
    left join nps_answers as previous_answer
        on per_customer.customer_id = previous_answer.customer_id and previous_answer.answer_rank = 2
)

select * from final
