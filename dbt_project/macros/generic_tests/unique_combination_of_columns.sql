{#- Primary-key test for models keyed by several columns (the dbt_utils test of the same name,
    kept in-project because dbt packages cannot be fetched offline). -#}
{% test unique_combination_of_columns(model, combination_of_columns) %}

with

grouped as (
    select
        {{ combination_of_columns | join(', ') }},
        count(*) as occurrences
    from {{ model }}
    group by {{ combination_of_columns | join(', ') }}
),

final as (
    select * from grouped
    where occurrences > 1
)

select * from final

{% endtest %}
