{{ config(tags=['scored']) }}

-- The segment playbook as published: each rule of the seed segment_playbook_rules, in rule_order, with its
-- conditions (null = any), its strategy and how many customers it holds as of the run date (0 for a rule
-- that catches nobody tonight). Built after scoring: the counts come from int_customer_playbook.
with

playbook as (
    select * from {{ ref('segment_playbook_rules') }}
),

customer_playbook as (
    select * from {{ ref('int_customer_playbook') }}
),

reach as (
    select
        playbook_id,
        count(*) as customers
    from customer_playbook
    group by playbook_id
),

final as (
    select
        cast(playbook.rule_order as integer) as rule_order,
        playbook.playbook_id,
        playbook.rfm_segment,
        playbook.lifecycle_stage,
        playbook.churn_risk_band,
        playbook.value_tier,
        playbook.price_sensitivity,
        playbook.social_engagement_level,
        playbook.satisfaction_class,
        playbook.objective,
        playbook.next_best_action,
        playbook.channel,
        playbook.offer_type,
        playbook.kpi,
        cast(coalesce(reach.customers, 0) as bigint) as customers,
        {{ as_of_date() }} as as_of_date
    from playbook
    left join reach on playbook.playbook_id = reach.playbook_id
)

select * from final
