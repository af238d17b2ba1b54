-- Support tickets with the customer they belong to (by e-mail, else phone) and a topic from the
-- editable keyword seed: the topic of the longest keyword found in the ticket's subject and filed topic
-- (ties to the alphabetically first keyword), or other. Tickets that match no customer are left out.
with

tickets as (
    select * from {{ ref('stg_support__tickets') }}
),

customer_keys as (
    select * from {{ ref('int_customer_keys') }}
    where key_type in ('email', 'phone')
),

keywords as (
    select * from {{ ref('ticket_topic_keywords') }}
),

topics as (
    select * from {{ ref('ticket_topics') }}
),

ticket_text as (
    select
        ticket_id,
        lower(coalesce(subject, '') || ' ' || coalesce(topic, '')) as searched_text
    from tickets
),

keyword_matches as (
    select
        ticket_text.ticket_id,
        keywords.topic,
        row_number() over (
            partition by ticket_text.ticket_id
            order by length(keywords.keyword) desc, keywords.keyword asc
        ) as match_rank
    from ticket_text
    inner join keywords on position(lower(keywords.keyword) in ticket_text.searched_text) > 0
),

final as (
    select
        tickets.ticket_id,
        coalesce(by_email.customer_id, by_phone.customer_id) as customer_id,
        tickets.created_at,
        tickets.created_date,
        coalesce(keyword_matches.topic, 'other') as topic,
        coalesce(topics.is_complaint, false) as is_complaint,
        tickets.ticket_status,
        tickets.nps_score
    from tickets
    left join customer_keys as by_email
        on by_email.key_type = 'email' and tickets.email_hash = by_email.key_value
    left join customer_keys as by_phone
        on by_phone.key_type = 'phone' and tickets.phone_hash = by_phone.key_value
    left join keyword_matches
        on tickets.ticket_id = keyword_matches.ticket_id and keyword_matches.match_rank = 1
    left join topics on coalesce(keyword_matches.topic, 'other') = topics.topic
    where coalesce(by_email.customer_id, by_phone.customer_id) is not null
)

select * from final
