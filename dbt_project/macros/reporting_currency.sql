{#- Rates from every currency to the reporting currency (var `reporting_currency`), one row per currency and
    validity range [valid_from, valid_to). The fx_rates seed holds rates against one base currency (EUR), so the
    rate is a cross rate: base rate of the currency / base rate of the reporting currency, over the
    intersection of the two ranges. Staging joins it as the `fx` CTE on currency and transaction date. -#}
{% macro fx_rate_ranges() -%}
    {%- set reporting_currency = checked_reporting_currency() -%}
    with ranges as (
        select
            currency,
            valid_from,
            coalesce(
                lead(valid_from) over (partition by currency order by valid_from),
                cast('9999-12-31' as date)
            ) as valid_to,
            rate_to_eur
        from {{ ref('fx_rates') }}
    ),

    reporting as (
        select * from ranges where currency = '{{ reporting_currency }}'
    )

    select
        ranges.currency,
        greatest(ranges.valid_from, reporting.valid_from) as valid_from,
        least(ranges.valid_to, reporting.valid_to) as valid_to,
        -- a fixed scale, so DuckDB and PostgreSQL convert to the same cents
        cast(ranges.rate_to_eur / reporting.rate_to_eur as numeric(18, 10)) as rate_to_reporting
    from ranges
    inner join reporting
        on ranges.valid_from < reporting.valid_to
        and reporting.valid_from < ranges.valid_to
{%- endmacro %}

{#- The var `reporting_currency`, upper-cased, once it is known to be a three-letter code: it comes from
    the environment or a DAG param and is rendered into SQL, so anything else stops the build. -#}
{% macro checked_reporting_currency() -%}
    {%- set value = var('reporting_currency') | string | upper -%}
    {%- if not modules.re.fullmatch('[A-Z]{3}', value) -%}
        {{ exceptions.raise_compiler_error("reporting_currency must be a three-letter ISO code, got: " ~ value[:20]) }}
    {%- endif -%}
    {{ return(value) }}
{%- endmacro %}
