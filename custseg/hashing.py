"""The keyed hash: the one spec of every id, contact hash, published reference and holdout draw custseg mints.

`keyed_hash(key, namespace, reference)` is the lower-case hex of
`sha256(key || chr(31) || namespace || chr(31) || reference)` over UTF-8, computed identically by DuckDB
(`sha256(varchar)`), PostgreSQL (`encode(sha256(convert_to(x, 'UTF8')), 'hex')`), `keyed_hash_sql` here, the
dbt macro `keyed_hash` (`dbt_project/macros/pii.sql`) and `keyed_hash` in Python. The key is
`Settings.hash_key` (`CUSTSEG_HASH_KEY`); the SQL reads it from `raw.pii_salt`, where the prepare task stores
it, so it never appears in SQL text, logs or docs. The namespaces are the fixed set in `NAMESPACES`.
custseg/steps/identity.py explains what identity resolution hashes and why.
"""

from __future__ import annotations

import hashlib

from custseg.warehouse.sql import quote_literal

#: chr(31), the ASCII unit separator: no key, namespace or normalised reference contains it, so
#: (key, namespace, reference) -> hashed text is one-to-one
HASH_SEPARATOR = "\x1f"


#: Every namespace custseg hashes in, and what it hashes (a fixed set: the SQL helpers refuse others).
NAMESPACES: dict[str, str] = {
    "email": "normalised email -> email_hash (staging, raw.identity_map, customer_identity)",
    "phone": "E.164 phone -> phone_hash (staging, raw.identity_map, customer_identity)",
    "customer:crm": "trimmed CRM id -> customer_id of a CRM customer",
    "customer:email": "email_hash -> customer_id of a guest buyer",
    "customer:phone": "phone_hash -> customer_id of a customer known by a phone only",
    "customer:card": "normalised loyalty card -> customer_id of a customer known by a card only",
    "ref:crm": "trimmed CRM id -> customer_identity.source_customer_ref (source crm)",
    "ref:card": "normalised loyalty card -> customer_identity.source_customer_ref (source loyalty_card)",
    "social": "platform:handle (lower case, no @) -> social_handle_hash (staging: CRM and social interactions)",
    "campaign": "campaign_id, chr(31), customer_id -> holdout draw (custseg/campaigns.py, int_campaign_assignments)",
}


#: The key as SQL: read from the table prepare_warehouse writes, never rendered into the SQL text.
HASH_KEY_SQL = "(select pii_salt from raw.pii_salt)"


def keyed_hash(key: str, namespace: str, reference: str) -> str:
    """The reference value of the spec, in Python (tests, ground-truth scoring, tools holding the key)."""
    if namespace not in NAMESPACES:
        raise ValueError(f"unknown hash namespace {namespace!r}; one of {', '.join(NAMESPACES)}")
    return hashlib.sha256(HASH_SEPARATOR.join((key, namespace, reference)).encode("utf-8")).hexdigest()


def sha256_hex_sql(kind: str, expr: str) -> str:
    """Lower-case hex sha256 of a text expression's UTF-8 bytes, on DuckDB or PostgreSQL."""
    if kind == "postgres":
        return f"encode(sha256(convert_to({expr}, 'UTF8')), 'hex')"
    return f"sha256({expr})"


def namespace_sql(namespace: str) -> str:
    """A namespace as a SQL literal, from the fixed set only."""
    if namespace not in NAMESPACES:
        raise ValueError(f"unknown hash namespace {namespace!r}; one of {', '.join(NAMESPACES)}")
    return quote_literal(namespace)


def keyed_hash_sql(kind: str, expr: str, namespace: str, key: str = HASH_KEY_SQL) -> str:
    """SQL for keyed_hash of a text expression (null stays null); `namespace` is SQL (namespace_sql,
    customer_namespace_sql). The same text as the dbt macro keyed_hash in dbt_project/macros/pii.sql."""
    hashed = sha256_hex_sql(kind, f"{key} || chr(31) || {namespace} || chr(31) || {expr}")
    return f"case when {expr} is null then null else {hashed} end"


# -- normalisation before hashing: the same SQL as dbt_project/macros/pii.sql (DuckDB and PostgreSQL), for
# identity resolution (custseg/steps/identity.py) and erasure (custseg/erasure.py) ------------------------
def norm_email(expr: str) -> str:
    return f"case when position('@' in lower(trim({expr}))) > 1 then lower(trim({expr})) end"


def norm_phone(expr: str, country_code: str) -> str:
    """E.164 phone or null, by the rules in the module docstring; `country_code` is digits, e.g. "44"."""
    digits = f"regexp_replace({expr}, '[^0-9]', '', 'g')"
    return (
        f"case when {expr} is null or {digits} = '' then null "
        # substr instead of like '0%': a literal % would need escaping for psycopg's placeholders
        f"when substr(trim({expr}), 1, 1) = '+' then '+' || {digits} "
        f"when substr({digits}, 1, 2) = '00' then '+' || substr({digits}, 3) "
        f"when substr({digits}, 1, 1) = '0' then {quote_literal('+' + country_code)} || substr({digits}, 2) "
        f"when {quote_literal(country_code)} = '1' and length({digits}) = 10 then '+1' || {digits} "
        f"else '+' || {digits} end"
    )


def norm_card(expr: str) -> str:
    return f"nullif(upper(regexp_replace({expr}, '[^A-Za-z0-9]', '', 'g')), '')"


def norm_crm(expr: str) -> str:
    return f"nullif(trim({expr}), '')"


def norm_social(platform: str, handle: str) -> str:
    return (f"case when nullif(trim({platform}), '') is not null and nullif(ltrim(trim({handle}), '@'), '') "
            f"is not null then lower(trim({platform})) || ':' || lower(ltrim(trim({handle}), '@')) end")
