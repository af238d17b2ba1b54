{#- The run's "as of" date. Every model filters on it instead of current_date, so a rerun or a
    backfill of a past date computes exactly what a run on that date would have computed. -#}
{% macro as_of_date() -%}
    cast('{{ var("as_of_date") }}' as date)
{%- endmacro %}

{#- First instant after the as-of date (exclusive upper bound for UTC timestamps). -#}
{% macro as_of_end() -%}
    {%- set day = modules.datetime.date.fromisoformat(var("as_of_date")) + modules.datetime.timedelta(days=1) -%}
    cast('{{ day.isoformat() }} 00:00:00' as timestamp)
{%- endmacro %}

{% macro scored_at() -%}
    cast('{{ var("scored_at") }}' as timestamp)
{%- endmacro %}

{% macro year_of(date_expr) -%}
    cast(extract(year from {{ date_expr }}) as integer)
{%- endmacro %}

{#- The churn model's training cutoff: the as-of date minus var churn_horizon_days, as a date. -#}
{% macro churn_cutoff_date() -%}
    {%- set day = modules.datetime.date.fromisoformat(var("as_of_date")) - modules.datetime.timedelta(days=var("churn_horizon_days") | int) -%}
    cast('{{ day.isoformat() }}' as date)
{%- endmacro %}
