{{
    config(
        tags=['scored'],
        pre_hook="{{ 'set local enable_nestloop = off' if target.type == 'postgres' else '' }}",
    )
}}
-- PostgreSQL cannot estimate the profiles' rows and may plan the join of every customer back to their
-- profile's rule as a nested loop over both; the hint (this model's transaction only) leaves it the hash
-- join. Matching profiles against rules has no equality to hash on and stays a nested loop, as it must.

-- Each customer's rule of the segment playbook (seed segment_playbook_rules, docs/overview.md "Playbook"): the
-- first rule in rule_order whose conditions all hold. An empty condition holds for anyone; a condition
-- 'a|b' holds for a customer whose value is a or b, and never for a null value. The churn risk band comes
-- from the ML labels, so this model is built after scoring (tag 'scored'), like customer_segments.
--
-- Rules are matched per profile (a distinct combination of the condition columns; a few thousand at
-- most), not per customer: every customer against every rule would be a join of customers x rules.
-- The matching is the macro playbook_rule_holds (macros/playbook.sql), shared with the check of the seed.
with

features as (
    select * from {{ ref('fct_customer_features') }}
),

labels as (
    select * from {{ ref('stg_ml__customer_labels') }}
),

playbook as (
    select * from {{ ref('segment_playbook_rules') }}
),

customers as (
    select
        features.customer_id,
        features.rfm_segment,
        features.lifecycle_stage,
        labels.churn_risk_band,
        features.value_tier,
        features.price_sensitivity,
        features.social_engagement_level,
        features.satisfaction_class
    from features
    inner join labels on features.customer_id = labels.customer_id
),

profiles as (
    select distinct
        rfm_segment,
        lifecycle_stage,
        churn_risk_band,
        value_tier,
        price_sensitivity,
        social_engagement_level,
        satisfaction_class
    from customers
),

-- 'a|b' holds for x when '|a|b|' contains '|x|'; a null x makes the search string null: no match
matches as (
    select
        profiles.*,
        playbook.playbook_id,
        playbook.next_best_action,
        row_number() over (
            partition by
                profiles.rfm_segment,
                profiles.lifecycle_stage,
                profiles.churn_risk_band,
                profiles.value_tier,
                profiles.price_sensitivity,
                profiles.social_engagement_level,
                profiles.satisfaction_class
            order by playbook.rule_order
        ) as match_rank
    from profiles
    inner join playbook
        on {{ playbook_rule_holds('playbook', 'profiles') }}
),

first_matches as (
    select * from matches
    where match_rank = 1
),

-- back to the customers: null-safe on every condition column (a profile may hold nulls), as plain
-- equalities so that PostgreSQL can hash-join the customers
final as (
    select
        customers.customer_id,
        first_matches.playbook_id,
        first_matches.next_best_action
    from customers
    left join first_matches
        on coalesce(customers.rfm_segment, '') = coalesce(first_matches.rfm_segment, '')
        and coalesce(customers.lifecycle_stage, '') = coalesce(first_matches.lifecycle_stage, '')
        and coalesce(customers.churn_risk_band, '') = coalesce(first_matches.churn_risk_band, '')
        and coalesce(customers.value_tier, '') = coalesce(first_matches.value_tier, '')
        and coalesce(customers.price_sensitivity, '') = coalesce(first_matches.price_sensitivity, '')
        and coalesce(customers.social_engagement_level, '') = coalesce(first_matches.social_engagement_level, '')
        and coalesce(customers.satisfaction_class, '') = coalesce(first_matches.satisfaction_class, '')
)

select * from final
