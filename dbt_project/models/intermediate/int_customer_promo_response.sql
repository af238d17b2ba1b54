-- How a customer answers promotions, as of the run date: the e-mail campaigns sent to them in the
-- trailing promo_window_days and how many they answered with a purchase within promo_response_days of the
-- send, plus their share of discounted purchases (int_customer_purchase_stats).
--   responder:     answered at least promo_responder_min_rate of at least promo_min_campaigns campaigns,
--                  or bought at least half of the time on a deal (price_deal_seeker_min_share);
--   non_responder: received at least promo_min_campaigns campaigns, answered none, and (almost) never
--                  bought on a deal (price_full_price_max_share);
--   occasional:    answered some campaigns or bought some deals;
--   unknown:       too few campaigns and no deal purchase to tell.
with

email_events as (
    select * from {{ ref('int_email_events_attributed') }}
    where event_type = 'send'
        and event_date > {{ dbt.dateadd('day', -var('promo_window_days'), as_of_date()) }}
),

purchases as (
    select * from {{ ref('fct_purchases') }}
    where not is_refund
),

purchase_stats as (
    select * from {{ ref('int_customer_purchase_stats') }}
),

sends as (
    select
        customer_id,
        campaign_id,
        min(event_date) as sent_date
    from email_events
    group by customer_id, campaign_id
),

answered as (
    select distinct
        sends.customer_id,
        sends.campaign_id
    from sends
    inner join purchases
        on sends.customer_id = purchases.customer_id
        and sends.sent_date <= purchases.purchase_date
        and {{ dbt.dateadd('day', var('promo_response_days'), 'sends.sent_date') }} >= purchases.purchase_date
),

campaigns as (
    select
        sends.customer_id,
        count(*) as campaigns_received,
        count(answered.campaign_id) as campaigns_answered
    from sends
    left join answered
        on sends.customer_id = answered.customer_id and sends.campaign_id = answered.campaign_id
    group by sends.customer_id
),

customers as (
    select customer_id from campaigns
    union
    select customer_id from purchase_stats
),

final as (
    select
        customers.customer_id,
        coalesce(campaigns.campaigns_received, 0) as campaigns_received,
        coalesce(campaigns.campaigns_answered, 0) as campaigns_answered,
        cast(campaigns.campaigns_answered as double precision)
        / nullif(campaigns.campaigns_received, 0) as campaign_response_rate,
        purchase_stats.deal_purchase_share_12m,
        case
            when coalesce(campaigns.campaigns_received, 0) >= {{ var('promo_min_campaigns') }}
                and cast(campaigns.campaigns_answered as double precision) / campaigns.campaigns_received
                >= {{ var('promo_responder_min_rate') }}
                then 'responder'
            when purchase_stats.deal_purchase_share_12m >= {{ var('price_deal_seeker_min_share') }} then 'responder'
            when coalesce(campaigns.campaigns_answered, 0) > 0
                or purchase_stats.deal_purchase_share_12m > {{ var('price_full_price_max_share') }}
                then 'occasional'
            when coalesce(campaigns.campaigns_received, 0) >= {{ var('promo_min_campaigns') }} then 'non_responder'
            else 'unknown'
        end as promo_responsiveness
    from customers
    left join campaigns on customers.customer_id = campaigns.customer_id
    left join purchase_stats on customers.customer_id = purchase_stats.customer_id
)

select * from final
