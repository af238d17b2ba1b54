{#- The building blocks of RFM scoring (models/intermediate/int_customer_rfm_scores.sql). -#}

{#- The value at percentile p of a column, as an ordered-set aggregate (the same SQL on DuckDB and PostgreSQL). -#}
{% macro rfm_percentile(column, p) -%}
    percentile_disc({{ p | float }}) within group (order by {{ column }})
{%- endmacro %}

{#- The value held within [low, high], unless the bounds coincide (one value dominates the base): clipping
    then would give everyone the same score, so the value is left as it is. -#}
{% macro rfm_clipped(value, low, high) -%}
    case when {{ low }} = {{ high }} then {{ value }} else greatest({{ low }}, least({{ high }}, {{ value }})) end
{%- endmacro %}

{#- Score 1-5 of a dense level 1..levels (worst to best): five equal steps over the distinct values; one
    distinct value scores 1. The 1e-9 keeps exact boundaries from flooring differently on different engines. -#}
{% macro rfm_score(level, levels) -%}
    case
        when {{ levels }} = 1 then 1
        else least(5, 1 + cast(floor(5.0 * ({{ level }} - 1) / ({{ levels }} - 1) + 1e-9) as integer))
    end
{%- endmacro %}
