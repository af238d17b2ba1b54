-- The reporting currency (var reporting_currency) has a rate in fx_rates from the first valid_from of
-- every other currency on: without one, staging's inner join to the fx ranges would drop amounts.
with

fx_rates as (
    select * from {{ ref('fx_rates') }}
),

reporting as (
    select min(valid_from) as first_valid_from
    from fx_rates
    where currency = '{{ checked_reporting_currency() }}'
),

final as (
    select
        '{{ checked_reporting_currency() }}' as reporting_currency,
        reporting.first_valid_from,
        min(fx_rates.valid_from) as earliest_rate_needed
    from fx_rates
    cross join reporting
    group by reporting.first_valid_from
    having reporting.first_valid_from is null or reporting.first_valid_from > min(fx_rates.valid_from)
)

select * from final
