{#- Keyed hash of an already-normalised identifier: the lower-case hex of
    sha256(key || chr(31) || namespace || chr(31) || value) over UTF-8, the one spec of custseg's ids,
    contact hashes and published references (custseg/steps/identity.py: keyed_hash_sql and keyed_hash give
    the same digest; docs/identity.md). The key is read from the warehouse table
    raw.pii_salt (written by the pipeline from CUSTSEG_HASH_KEY) rather than rendered into SQL, so it
    never appears in compiled SQL, logs or the docs site. Callers cross join the `salt` CTE
    (`select pii_salt from source('pipeline', 'pii_salt')`). The namespace is one of a fixed set. -#}
{% macro keyed_hash(namespace, expr) -%}
    {%- set namespaces = ['email', 'phone', 'customer:crm', 'customer:email', 'customer:phone', 'customer:card',
                          'ref:crm', 'ref:card', 'social', 'campaign'] -%}
    {%- if namespace not in namespaces -%}
        {{ exceptions.raise_compiler_error("keyed_hash: unknown namespace '" ~ namespace ~ "'") }}
    {%- endif -%}
    case
        when {{ expr }} is null then null
        else {{ sha256_hex("salt.pii_salt || chr(31) || '" ~ namespace ~ "' || chr(31) || " ~ expr) }}
    end
{%- endmacro %}

{#- Lower-case hex sha256 of a text expression's UTF-8 bytes (DuckDB's sha256 takes text). -#}
{% macro sha256_hex(expr) -%}
    {{ adapter.dispatch('sha256_hex')(expr) }}
{%- endmacro %}

{% macro duckdb__sha256_hex(expr) -%}
    sha256({{ expr }})
{%- endmacro %}

{% macro default__sha256_hex(expr) -%}
    sha256({{ expr }})
{%- endmacro %}

{% macro postgres__sha256_hex(expr) -%}
    encode(sha256(convert_to({{ expr }}, 'UTF8')), 'hex')
{%- endmacro %}

{#- Lower-cased, trimmed email; null when empty or without an @. -#}
{% macro normalise_email(expr) -%}
    case when position('@' in lower(trim({{ expr }}))) > 1 then lower(trim({{ expr }})) end
{%- endmacro %}

{#- E.164 phone, or null. The same SQL as norm_phone in custseg/steps/identity.py (its docstring lists the
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

{#- A social-media handle scoped to its platform, as `platform:handle`: lower case, trimmed, without a
    leading @; null without a handle or a platform (one handle on two platforms may be two people). -#}
{% macro normalise_social_handle(platform_expr, handle_expr) -%}
    case
        when nullif(trim({{ platform_expr }}), '') is not null
            and nullif(ltrim(trim({{ handle_expr }}), '@'), '') is not null
            then lower(trim({{ platform_expr }})) || ':' || lower(ltrim(trim({{ handle_expr }}), '@'))
    end
{%- endmacro %}

{#- Loyalty card numbers arrive as "LC 0012 3456", "lc-00123456": keep letters and digits, upper case. -#}
{% macro normalise_card(expr) -%}
    nullif(upper(regexp_replace({{ expr }}, '[^A-Za-z0-9]', '', 'g')), '')
{%- endmacro %}
