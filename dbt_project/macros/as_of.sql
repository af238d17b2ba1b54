{#- The run's "as of" date (an ISO string), and scored_at, the end of that day. The DAG sets them
    in the environment (CUSTSEG_AS_OF_DATE, CUSTSEG_SCORED_AT; custseg/dbt.py), not as --vars: dbt
    re-parses the whole project when any --vars value changes. A --vars value (a hand-run dbt
    command, a unit test's overrides) wins.
    Parsing (execute is false) renders each model only to find its refs and configs, none of which
    depends on the date, so it gets a fixed date and does not read the environment: partial parsing
    re-parses every file that read a changed environment variable, and that was most of the project
    each night. Models, tests and hooks are rendered again when they run, with the run's date
    (tests/test_dbt.py checks both). -#}
{% macro as_of_date_string() -%}
    {%- if not execute %}{{ return(var("as_of_date", "2026-10-31")) }}{% endif -%}
    {{ return(var("as_of_date", env_var("CUSTSEG_AS_OF_DATE", "2026-10-31"))) }}
{%- endmacro %}

{% macro scored_at_string() -%}
    {%- if not execute %}{{ return(var("scored_at", "2026-11-01 00:00:00")) }}{% endif -%}
    {{ return(var("scored_at", env_var("CUSTSEG_SCORED_AT", "2026-11-01 00:00:00"))) }}
{%- endmacro %}

{#- The run's "as of" date. Every model filters on it instead of current_date, so a rerun or a
    backfill of a past date computes exactly what a run on that date would have computed. -#}
{% macro as_of_date() -%}
    cast('{{ as_of_date_string() }}' as date)
{%- endmacro %}

{#- First instant after the as-of date (exclusive upper bound for UTC timestamps). -#}
{% macro as_of_end() -%}
    {%- set day = modules.datetime.date.fromisoformat(as_of_date_string()) + modules.datetime.timedelta(days=1) -%}
    cast('{{ day.isoformat() }} 00:00:00' as timestamp)
{%- endmacro %}

{% macro scored_at() -%}
    cast('{{ scored_at_string() }}' as timestamp)
{%- endmacro %}

{% macro year_of(date_expr) -%}
    cast(extract(year from {{ date_expr }}) as integer)
{%- endmacro %}

{#- The churn model's training cutoff: the as-of date minus var churn_horizon_days, as a date. -#}
{% macro churn_cutoff_date() -%}
    {%- set horizon = modules.datetime.timedelta(days=var("churn_horizon_days") | int) -%}
    {%- set day = modules.datetime.date.fromisoformat(as_of_date_string()) - horizon -%}
    cast('{{ day.isoformat() }}' as date)
{%- endmacro %}

{#- Pre-hook of a model incremental by date: before a run for an as-of date, drop the rows of later dates, so
    the table holds what it held as of that date (a rerun of an older date in a backfill). Nothing on the
    model's first build. -#}
{% macro delete_rows_after_as_of(date_column) -%}
    {%- if execute and load_relation(this) is not none -%}
        delete from {{ this }} where {{ date_column }} > {{ as_of_date() }}
    {%- endif -%}
{%- endmacro %}
