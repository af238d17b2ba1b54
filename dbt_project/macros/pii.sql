{#- Salted hash of an already-normalised identifier. The salt is read from the warehouse table
    raw.pii_salt (written by the pipeline from CUSTSEG_PII_SALT) rather than rendered into SQL,
    so it never appears in compiled SQL, logs or the docs site. Callers cross join the `salt` CTE. -#}
{% macro salted_hash(expr) -%}
    case when {{ expr }} is null then null else md5(salt.pii_salt || {{ expr }}) end
{%- endmacro %}

{#- Lower-cased, trimmed email; null when empty or without an @. -#}
{% macro normalise_email(expr) -%}
    case when position('@' in lower(trim({{ expr }}))) > 1 then lower(trim({{ expr }})) end
{%- endmacro %}

{#- E.164 for the UK numbers the sources carry: digits only, 00 prefix dropped, national 0 -> 44. -#}
{% macro normalise_phone(expr) -%}
    {%- set digits = "regexp_replace(" ~ expr ~ ", '[^0-9]', '', 'g')" -%}
    case
        when {{ expr }} is null or {{ digits }} = '' then null
        when {{ digits }} like '00%' then '+' || substr({{ digits }}, 3)
        when {{ digits }} like '0%' then '+44' || substr({{ digits }}, 2)
        else '+' || {{ digits }}
    end
{%- endmacro %}

{#- Loyalty card numbers arrive as "LC 0012 3456", "lc-00123456": keep letters and digits, upper case. -#}
{% macro normalise_card(expr) -%}
    nullif(upper(regexp_replace({{ expr }}, '[^A-Za-z0-9]', '', 'g')), '')
{%- endmacro %}
