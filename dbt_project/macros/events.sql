{#- Dates of yearly events (birthdays, anniversaries) for customer_events. The as-of date is a literal
    (as_of.sql), so its year and leap-ness are known when the SQL is rendered. -#}

{#- The anniversary of `date_expr` in `year` (an integer known when rendering). A 29 February falls on
    28 February in a year that is not a leap year (the day the CRM sends on, and the week published). -#}
{% macro anniversary_in_year(date_expr, year) -%}
    {%- set is_leap = (year % 4 == 0 and year % 100 != 0) or year % 400 == 0 -%}
    {%- set month = "cast(extract(month from " ~ date_expr ~ ") as integer)" -%}
    {%- set day = "cast(extract(day from " ~ date_expr ~ ") as integer)" -%}
    {%- if not is_leap -%}
        {%- set day = "case when " ~ month ~ " = 2 and " ~ day ~ " = 29 then 28 else " ~ day ~ " end" -%}
    {%- endif -%}
    make_date({{ year }}, {{ month }}, {{ day }})
{%- endmacro %}

{#- The first anniversary of `date_expr` after the as-of date (this year's, or next year's when this
    year's is on or before the as-of date). -#}
{% macro next_anniversary(date_expr) -%}
    {%- set year = modules.datetime.date.fromisoformat(as_of_date_string()).year -%}
    case
        when {{ anniversary_in_year(date_expr, year) }} > {{ as_of_date() }}
            then {{ anniversary_in_year(date_expr, year) }}
        else {{ anniversary_in_year(date_expr, year + 1) }}
    end
{%- endmacro %}

{#- ISO 8601 week of a date as text, e.g. 2026-W53 (the ISO year, which differs from the calendar year
    around 1 January). -#}
{% macro iso_week(date_expr) -%}
    {{ adapter.dispatch('iso_week')(date_expr) }}
{%- endmacro %}

{% macro default__iso_week(date_expr) -%}
    strftime({{ date_expr }}, '%G-W%V')
{%- endmacro %}

{% macro postgres__iso_week(date_expr) -%}
    to_char({{ date_expr }}, 'IYYY-"W"IW')
{%- endmacro %}
