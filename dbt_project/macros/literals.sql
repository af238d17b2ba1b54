{#- A list (a var) as SQL string literals for `in (...)`: 'a', 'b', with quotes doubled ("Can't Lose Them"). -#}
{% macro quoted_list(values) -%}
    {%- for value in values -%}
        '{{ value | replace("'", "''") }}'{% if not loop.last %}, {% endif %}
    {%- endfor -%}
{%- endmacro %}
