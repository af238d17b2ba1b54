-- The segment playbook (seed segment_playbook_rules) does what it says. Returns one row per problem:
--   * 'unknown value': a condition names a value no customer can have (segment_playbook_values), such as a
--     typo or 'high, critical' for 'high|critical'; it never matches anyone;
--   * 'never matches': a rule that every customer it holds for meets an earlier rule first (shadowed; the
--     detail names those rules), or whose conditions no customer can meet together;
--   * 'only the default': an (rfm_segment, churn_risk_band) combination a customer can have, some of whose
--     customers no rule but the last one (the default) catches; rfm_segment null = prospects, churn_risk_band
--     null = no churn score (prospects always, buyers when no model could be fitted);
--   * 'default has a condition': the last rule must hold for everyone.
--
-- How: the check walks every profile a customer can have (a combination of the condition columns' values)
-- and finds its first rule, with the matching of int_customer_playbook (macro playbook_rule_holds). The values
-- walked are segment_playbook_values plus null where a column can be null: rfm_segment and value_tier are
-- null exactly for prospects (lifecycle_stage prospect), who have no churn risk band either. Of a portrait
-- column, the values some rule names are walked, and one value no rule names: every rule holds for all of
-- those alike. Joins of the profiles with themselves are window functions instead: PostgreSQL cannot
-- estimate these CTEs' rows and would plan nested loops over them.
with

rules as (
    select * from {{ ref('segment_playbook_rules') }}
),

known_values as (
    select * from {{ ref('segment_playbook_values') }}
),

default_rule as (
    select max(rule_order) as rule_order from rules
),

condition_columns as (
    select distinct condition_column from known_values
),

-- one row per rule and condition column: the condition as written (null = any)
conditions as (
    select
        rules.rule_order,
        rules.playbook_id,
        condition_columns.condition_column,
        case condition_columns.condition_column
            when 'rfm_segment' then rules.rfm_segment
            when 'lifecycle_stage' then rules.lifecycle_stage
            when 'churn_risk_band' then rules.churn_risk_band
            when 'value_tier' then rules.value_tier
            when 'price_sensitivity' then rules.price_sensitivity
            when 'social_engagement_level' then rules.social_engagement_level
            when 'satisfaction_class' then rules.satisfaction_class
        end as condition_text
    from rules
    cross join condition_columns
),

-- a condition 'a|b' names as many known values as it has parts, or one of its parts is unknown
condition_parts as (
    select
        conditions.rule_order,
        conditions.playbook_id,
        conditions.condition_column,
        conditions.condition_text,
        length(conditions.condition_text) - length(replace(conditions.condition_text, '|', '')) + 1 as parts,
        count(known_values.condition_value) as known_parts
    from conditions
    left join known_values
        on conditions.condition_column = known_values.condition_column
        and position(
            '|' || known_values.condition_value || '|' in '|' || conditions.condition_text || '|'
        ) > 0
    where conditions.condition_text is not null
    group by
        conditions.rule_order,
        conditions.playbook_id,
        conditions.condition_column,
        conditions.condition_text
),

-- each known value, whether a rule names it, and the first value of its column that no rule names
value_use as (
    select
        known_values.condition_column,
        known_values.condition_value,
        count(conditions.rule_order) > 0 as is_named
    from known_values
    left join conditions
        on known_values.condition_column = conditions.condition_column
        and position(
            '|' || known_values.condition_value || '|' in '|' || conditions.condition_text || '|'
        ) > 0
    group by known_values.condition_column, known_values.condition_value
),

value_classes as (
    select
        *,
        min(case when not is_named then condition_value end)
            over (partition by condition_column) as first_unnamed_value
    from value_use
),

-- the values walked per column (see the header)
walked_values as (
    select
        condition_column,
        condition_value
    from value_classes
    where
        condition_column in ('rfm_segment', 'lifecycle_stage', 'churn_risk_band', 'value_tier')
        or is_named
        or condition_value = first_unnamed_value
    union all
    select
        condition_column,
        cast(null as {{ dbt.type_string() }}) as condition_value
    from condition_columns
    where condition_column in ('rfm_segment', 'churn_risk_band', 'value_tier')
),

rfm_segments as (
    select condition_value as rfm_segment from walked_values
    where condition_column = 'rfm_segment'
),

lifecycle_stages as (
    select condition_value as lifecycle_stage from walked_values
    where condition_column = 'lifecycle_stage'
),

churn_risk_bands as (
    select condition_value as churn_risk_band from walked_values
    where condition_column = 'churn_risk_band'
),

value_tiers as (
    select condition_value as value_tier from walked_values
    where condition_column = 'value_tier'
),

price_sensitivities as (
    select condition_value as price_sensitivity from walked_values
    where condition_column = 'price_sensitivity'
),

social_engagement_levels as (
    select condition_value as social_engagement_level from walked_values
    where condition_column = 'social_engagement_level'
),

satisfaction_classes as (
    select condition_value as satisfaction_class from walked_values
    where condition_column = 'satisfaction_class'
),

profiles as (
    select
        rfm_segments.rfm_segment,
        lifecycle_stages.lifecycle_stage,
        churn_risk_bands.churn_risk_band,
        value_tiers.value_tier,
        price_sensitivities.price_sensitivity,
        social_engagement_levels.social_engagement_level,
        satisfaction_classes.satisfaction_class,
        row_number() over () as profile_id
    from rfm_segments
    cross join lifecycle_stages
    cross join churn_risk_bands
    cross join value_tiers
    cross join price_sensitivities
    cross join social_engagement_levels
    cross join satisfaction_classes
    where
        (rfm_segments.rfm_segment is null) = (lifecycle_stages.lifecycle_stage = 'prospect')
        and (rfm_segments.rfm_segment is null) = (value_tiers.value_tier is null)
        and (rfm_segments.rfm_segment is not null or churn_risk_bands.churn_risk_band is null)
),

-- int_customer_playbook's matching: 'a|b' holds for x when '|a|b|' contains '|x|'; null x never matches
matches as (
    select
        profiles.*,
        rules.rule_order,
        rules.playbook_id
    from profiles
    left join rules
        on {{ playbook_rule_holds('rules', 'profiles') }}
),

-- each profile's matching rules with its first one (null: no rule holds for the profile)
ranked_matches as (
    select
        *,
        min(rule_order) over (partition by profile_id) as first_rule_order,
        first_value(playbook_id) over (partition by profile_id order by rule_order) as first_playbook_id
    from matches
),

unknown_values as (
    select
        'unknown value' as problem,
        playbook_id,
        rule_order,
        cast(null as {{ dbt.type_string() }}) as rfm_segment,
        cast(null as {{ dbt.type_string() }}) as churn_risk_band,
        condition_column || ' = ' || condition_text as detail
    from condition_parts
    where known_parts <> parts
),

-- each rule: how many profiles it holds for, and of how many it is the first rule
-- each rule that holds for some profile: for how many, and of how many it is the first rule
rule_reach as (
    select
        rule_order,
        count(*) as profiles,
        sum(case when rule_order = first_rule_order then 1 else 0 end) as profiles_won
    from ranked_matches
    where rule_order is not null
    group by rule_order
),

-- the earlier rules that take a rule's profiles
hiding_rules as (
    select distinct
        rule_order,
        first_playbook_id as earlier_rule
    from ranked_matches
    where rule_order > first_rule_order
),

hidden_by as (
    select
        rule_order,
        string_agg(earlier_rule, ', ' order by earlier_rule) as earlier_rules
    from hiding_rules
    group by rule_order
),

never_matching as (
    select
        'never matches' as problem,
        rules.playbook_id,
        rules.rule_order,
        cast(null as {{ dbt.type_string() }}) as rfm_segment,
        cast(null as {{ dbt.type_string() }}) as churn_risk_band,
        case
            when rule_reach.rule_order is null then 'no customer can meet all its conditions'
            else 'hidden by ' || hidden_by.earlier_rules
        end as detail
    from rules
    cross join default_rule
    left join rule_reach on rules.rule_order = rule_reach.rule_order
    left join hidden_by on rules.rule_order = hidden_by.rule_order
    where
        rules.rule_order < default_rule.rule_order
        and coalesce(rule_reach.profiles_won, 0) = 0
),

default_conditions as (
    select
        'default has a condition' as problem,
        conditions.playbook_id,
        conditions.rule_order,
        cast(null as {{ dbt.type_string() }}) as rfm_segment,
        cast(null as {{ dbt.type_string() }}) as churn_risk_band,
        conditions.condition_column || ' = ' || conditions.condition_text as detail
    from conditions
    inner join default_rule on conditions.rule_order = default_rule.rule_order
    where conditions.condition_text is not null
),

only_default as (
    select distinct
        'only the default' as problem,
        cast(null as {{ dbt.type_string() }}) as playbook_id,
        cast(null as integer) as rule_order,
        ranked_matches.rfm_segment,
        ranked_matches.churn_risk_band,
        cast(null as {{ dbt.type_string() }}) as detail
    from ranked_matches
    cross join default_rule
    where
        ranked_matches.first_rule_order is null
        or ranked_matches.first_rule_order = default_rule.rule_order
),

final as (
    select * from unknown_values
    union all
    select * from never_matching
    union all
    select * from default_conditions
    union all
    select * from only_default
)

select * from final
