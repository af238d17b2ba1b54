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

{#- E.164 phone, or null. The same SQL as norm_phone in custseg/identity.py (its docstring lists the
    rules); first match wins, digits = the value with every non-digit removed, cc = var phone_country_code:
    1. null or no digits -> null
    2. the trimmed value starts with + -> + digits (already international)
    3. digits start with 00 -> + digits after the 00 (international call prefix)
    4. digits start with 0 -> + cc digits after the 0 (national trunk prefix: UK 020 ..., DE 030 ...)
    5. cc is 1 and exactly 10 digits -> +1 digits (North American numbers have no trunk prefix)
    6. otherwise -> + digits (assumed to carry a country code already: 44 20 7946 0000)
    substr rather than like '0%', as in identity.py: the Python side runs through psycopg placeholders. -#}
{% macro normalise_phone(expr) -%}
    {%- set digits = "regexp_replace(" ~ expr ~ ", '[^0-9]', '', 'g')" -%}
    {%- set cc = (var('phone_country_code') | string).strip().lstrip('+') -%}
    case
        when {{ expr }} is null or {{ digits }} = '' then null
        when substr(trim({{ expr }}), 1, 1) = '+' then '+' || {{ digits }}
        when substr({{ digits }}, 1, 2) = '00' then '+' || substr({{ digits }}, 3)
        when substr({{ digits }}, 1, 1) = '0' then '{{ ("+" ~ cc) | replace("'", "''") }}' || substr({{ digits }}, 2)
        when '{{ cc | replace("'", "''") }}' = '1' and length({{ digits }}) = 10 then '+1' || {{ digits }}
        else '+' || {{ digits }}
    end
{%- endmacro %}

{#- Loyalty card numbers arrive as "LC 0012 3456", "lc-00123456": keep letters and digits, upper case. -#}
{% macro normalise_card(expr) -%}
    nullif(upper(regexp_replace({{ expr }}, '[^A-Za-z0-9]', '', 'g')), '')
{%- endmacro %}
