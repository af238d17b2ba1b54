-- Social-media engagement per customer as of the run date. An interaction belongs to a customer when
-- its handle (scoped to the platform) is the social handle a CRM record of the customer holds, or else
-- when the e-mail the user gave resolves to the customer. A handle that CRM records of two different
-- customers hold links nothing (it cannot say which one acted); interactions of handles that name no
-- customer (fans who never bought or registered) are left out.
with

interactions as (
    select * from {{ ref('stg_social__interactions') }}
),

crm_customers as (
    select * from {{ ref('stg_crm__customers') }}
    where social_handle_hash is not null
),

customer_keys as (
    select * from {{ ref('int_customer_keys') }}
    where key_type in ('crm_id', 'email')
),

handle_holders as (
    select
        crm_customers.social_handle_hash,
        crm_keys.customer_id
    from crm_customers
    inner join customer_keys as crm_keys
        on crm_keys.key_type = 'crm_id' and crm_customers.crm_customer_id = crm_keys.key_value
),

handle_owners as (
    select
        social_handle_hash,
        min(customer_id) as customer_id
    from handle_holders
    group by social_handle_hash
    having count(distinct customer_id) = 1
),

attributed as (
    select
        coalesce(handle_owners.customer_id, by_email.customer_id) as customer_id,
        interactions.interaction_type,
        interactions.interaction_date
    from interactions
    left join handle_owners on interactions.social_handle_hash = handle_owners.social_handle_hash
    left join customer_keys as by_email
        on by_email.key_type = 'email' and interactions.email_hash = by_email.key_value
    where coalesce(handle_owners.customer_id, by_email.customer_id) is not null
),

per_customer as (
    select
        customer_id,
        sum(case
            when interaction_date > {{ dbt.dateadd('day', -var('social_window_days'), as_of_date()) }} then 1
            else 0
        end) as social_interactions_90d,
        sum(case
            when interaction_type in ('share', 'mention')
                and interaction_date > {{ dbt.dateadd('day', -var('advocate_window_days'), as_of_date()) }}
                then 1
            else 0
        end) as advocacy_interactions_365d,
        max(interaction_date) as last_social_date
    from attributed
    group by customer_id
),

final as (
    select
        customer_id,
        social_interactions_90d,
        advocacy_interactions_365d,
        last_social_date,
        {{ dbt.datediff('last_social_date', as_of_date(), 'day') }} as social_recency_days,
        case
            when social_interactions_90d >= {{ var('social_engagement_high_min') }} then 'high'
            when social_interactions_90d >= {{ var('social_engagement_medium_min') }} then 'medium'
            when social_interactions_90d >= {{ var('social_engagement_low_min') }} then 'low'
            else 'none'
        end as social_engagement_level,
        advocacy_interactions_365d > 0 as is_advocate
    from per_customer
)

select * from final
