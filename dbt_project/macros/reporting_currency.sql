{#- Convert `amount` in `currency` at `on_date` to the reporting currency, using the fx_rates seed
    (one rate per currency and valid_from date). Expects the `fx` CTE from fx_rate_ranges(). -#}
{% macro fx_rate_ranges() -%}
    select
        currency,
        valid_from,
        coalesce(
            lead(valid_from) over (partition by currency order by valid_from),
            cast('9999-12-31' as date)
        ) as valid_to,
        rate_to_reporting
    from {{ ref('fx_rates') }}
{%- endmacro %}
