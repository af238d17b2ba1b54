{#- The segment playbook's matching (seed segment_playbook_rules), shared by int_customer_playbook and the
    check tests/assert_segment_playbook_rules_are_reachable.sql so they can never disagree: a rule holds for
    a profile when every condition column is empty or names the profile's value. A condition 'a|b' names a
    or b ('|a|b|' contains '|x|'); a null value makes the search string null, so it meets no condition. -#}
{% macro playbook_rule_holds(rule, profile) -%}
    {%- set columns = ['rfm_segment', 'lifecycle_stage', 'churn_risk_band', 'value_tier'] -%}
    {%- set columns = columns + ['price_sensitivity', 'social_engagement_level', 'satisfaction_class'] -%}
    {%- for column in columns %}
        {% if not loop.first %}and {% endif %}(
            {{ rule }}.{{ column }} is null
            or position('|' || {{ profile }}.{{ column }} || '|' in '|' || {{ rule }}.{{ column }} || '|') > 0
        )
    {%- endfor %}
{%- endmacro %}
