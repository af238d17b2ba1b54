{#- The rank of a value_tier (int_customer_rule_segments): bronze 1 < silver 2 < gold 3 < diamond 4; null for none
    (prospects, and a customer without trailing-12-month revenue). -#}
{% macro value_tier_rank(expr) -%}
    case {{ expr }} when 'bronze' then 1 when 'silver' then 2 when 'gold' then 3 when 'diamond' then 4 end
{%- endmacro %}
