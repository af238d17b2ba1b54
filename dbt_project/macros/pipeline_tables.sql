{#- A pipeline table that exists only once the pipeline has written it (custseg/steps/identity.py creates
    raw.identity_map and raw.identity_state): a query of the source when it exists, else an empty
    row set with `columns` ([[name, type], ...]), so that `dbt run --empty` on a fresh warehouse
    does not fail. -#}
{% macro source_or_empty(source_name, table_name, columns) -%}
    {%- set src = source(source_name, table_name) -%}
    {%- set relation = adapter.get_relation(database=src.database, schema=src.schema, identifier=src.identifier)
        if execute else src -%}
    {%- if relation is not none -%}
        select * from {{ src }}
    {%- else -%}
        select
        {%- for name, type in columns %}
            cast(null as {{ type }}) as {{ name }}{{ "," if not loop.last }}
        {%- endfor %}
        where 1 = 0
    {%- endif -%}
{%- endmacro %}
