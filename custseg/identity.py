"""Identity resolution: which source records belong to one person, and that person's stable `customer_id`.

**Keys.** Every record of the CRM, the web shop, web sessions, support tickets and store sales
carries some of four identifiers, normalised exactly as dbt staging normalises them
(`dbt_project/macros/pii.sql`), so the map joins staging rows directly:

| key type       | normalisation                                            | stored as            |
|----------------|----------------------------------------------------------|----------------------|
| `crm_id`       | trimmed                                                  | as is (not PII)      |
| `email`        | trimmed, lower case, must contain `@` after the 1st char | salted md5 hash      |
| `phone`        | E.164 by the phone rules below                           | salted md5 hash      |
| `loyalty_card` | letters and digits only, upper case                      | as is (not PII)      |

Phone rules, first match wins. `digits` is the value with every non-digit removed; `cc` is the
national calling code, `Settings.phone_country_code` (`CUSTSEG_PHONE_COUNTRY_CODE`, default `44`),
which dbt reads as the var `phone_country_code`:

| # | when                                          | E.164                       | e.g. (cc)                |
|---|-----------------------------------------------|-----------------------------|--------------------------|
| 1 | null, or no digits                            | null                        | `''`, `n/a`              |
| 2 | the trimmed value starts with `+`             | `+` digits                  | `+44 20 7946 0000`       |
| 3 | digits start with `00` (international prefix) | `+` digits after the `00`   | `0044 20 7946 0000`      |
| 4 | digits start with `0` (national trunk prefix) | `+` cc digits after the `0` | `030 1234567` (49)       |
| 5 | cc is `1` and exactly 10 digits (NANP)        | `+1` digits                 | `(555) 123-4567` (1)     |
| 6 | otherwise (assumed to carry a country code)   | `+` digits                  | `44 20 7946 0000`        |

Email and phone never leave the warehouse in clear: the extraction query hashes them there.

**Matching** is deterministic and transitive: two keys on one record are linked, and linked keys
form a customer (connected components: A~B and B~C means A~C). Only exact normalised keys match;
there is no fuzzy matching (a typo in an email is a different email, and links only through
another key such as the phone or the CRM id) because a false merge is worse than a missed one.
One exception: a **household phone**, a phone number that the CRM holds for two or more different
CRM customers, links nothing (it would merge a family into one customer). One email on two CRM
records does link them: an email is a login, so two CRM records with it are one person who
registered twice.

**The id.** Each key has a natural id: `md5('crm:' || crm_id)` for a CRM id (the id the CRM
customer has always had), `md5('guest:' || email_hash)` for an email (the guest-buyer id),
`md5('phone:' || phone_hash)`, `md5('card:' || card)`. A customer's id is the natural id of its
best key: a CRM id if it has one, then the key seen first, then the key type (crm_id, email,
phone, loyalty_card), then the lowest key (CRM-0000004 before CRM-0000005). A key is "seen" on the
date its record became visible (the later of its landing date and its event date), so the id is a
function of the data visible as of the logical date: a rerun or a backfill gives what the daily run
gave.

**Merges.** Components only grow (keys are never forgotten: a CRM customer who changes phone keeps
both), so an id changes only when a new link merges two earlier customers. Then the survivor is
the better of the two ids by the rule above (the CRM customer over a guest; of two CRM customers
the one seen first, then the lowest id), and the retired id is kept as an alias:
`analytics.customer_identity` has a row `(customer_id = survivor, source = 'merged_customer_id',
source_customer_ref = retired id, first_seen_date = merge date)`. Segment history recorded under
the retired id follows the survivor by joining through that row. The whole history of merges is
replayed from the data on every run (edges are processed in date order), so the alias rows do
not depend on which dates were run before.

The map is persisted in `raw.identity_map` (replaced by every run with the map as of its date);
dbt reads it through `stg_pipeline__identity_map`.
"""

from __future__ import annotations

import datetime as dt
import logging

import numpy as np
import pandas as pd
import pyarrow as pa

from custseg.config import Settings
from custseg.warehouse import connect

log = logging.getLogger(__name__)

KEY_TYPES = ("crm_id", "email", "phone", "loyalty_card")
ALIAS = "customer_id"
NATURAL_PREFIX = {"crm_id": "crm:", "email": "guest:", "phone": "phone:", "loyalty_card": "card:"}

MAP_DDL = """create table if not exists raw.identity_map (
    key_type text not null,
    key_value text not null,
    customer_id text not null,
    first_seen_date date not null,
    as_of_date date not null
)"""


# -- normalisation: the same SQL as dbt_project/macros/pii.sql (works on DuckDB and PostgreSQL) ----------
def norm_email(expr: str) -> str:
    return f"case when position('@' in lower(trim({expr}))) > 1 then lower(trim({expr})) end"


def sql_string(value: str) -> str:
    """A SQL string literal (quotes doubled)."""
    return "'" + value.replace("'", "''") + "'"


def norm_phone(expr: str, country_code: str) -> str:
    """E.164 phone or null, by the rules in the module docstring; `country_code` is digits, e.g. "44"."""
    digits = f"regexp_replace({expr}, '[^0-9]', '', 'g')"
    return (
        f"case when {expr} is null or {digits} = '' then null "
        # substr instead of like '0%': a literal % would need escaping for psycopg's placeholders
        f"when substr(trim({expr}), 1, 1) = '+' then '+' || {digits} "
        f"when substr({digits}, 1, 2) = '00' then '+' || substr({digits}, 3) "
        f"when substr({digits}, 1, 1) = '0' then {sql_string('+' + country_code)} || substr({digits}, 2) "
        f"when {sql_string(country_code)} = '1' and length({digits}) = 10 then '+1' || {digits} "
        f"else '+' || {digits} end"
    )


def norm_card(expr: str) -> str:
    return f"nullif(upper(regexp_replace({expr}, '[^A-Za-z0-9]', '', 'g')), '')"


def norm_crm(expr: str) -> str:
    return f"nullif(trim({expr}), '')"


def salted(expr: str) -> str:
    return f"case when {expr} is null then null else md5(salt.pii_salt || {expr}) end"


#: (raw table, crm id, email, phone, card, event timestamp) per source; None = the source lacks it.
RECORD_SOURCES: tuple[tuple[str, str | None, str | None, str | None, str | None, str], ...] = (
    ("crm_customers", "crm_customer_id", "email", "phone", "loyalty_card", "updated_at"),
    ("shop_orders", "customer_ref", "customer_email", "customer_phone", None, "ordered_at"),
    ("web_sessions", "crm_customer_id", "user_email", None, None, "started_at"),
    ("support_tickets", None, "customer_email", "customer_phone", None, "created_at"),
    ("pos_sales", None, None, None, "loyalty_card", "sold_at"),
)


def records_sql(country_code: str) -> str:
    """Every record's normalised keys and the date it became visible, for records visible as of %s.

    `country_code` is the calling code given to national phone numbers (`Settings.phone_country_code`).
    """
    parts = []
    for table, crm, email, phone, card, ts in RECORD_SOURCES:
        cols = [
            norm_crm(crm) if crm else "cast(null as text)",
            salted(norm_email(email)) if email else "cast(null as text)",
            salted(norm_phone(phone, country_code)) if phone else "cast(null as text)",
            norm_card(card) if card else "cast(null as text)",
        ]
        visible = f"greatest(r._partition_date, cast(r.{ts} as date))"
        parts.append(
            f"select {cols[0]} as crm_id, {cols[1]} as email, {cols[2]} as phone, {cols[3]} as loyalty_card, "
            f"{visible} as seen_date from raw.{table} as r cross join raw.pii_salt as salt "
            f"where r._partition_date <= %s and cast(r.{ts} as date) <= %s"
        )
    return "\nunion all\n".join(parts)


def _keys_sql(records: str = "identity_records") -> str:
    """Distinct keys with their first-seen date and natural id; household phones excluded."""
    unions = " union all ".join(
        f"select '{k}' as key_type, {k} as key_value, seen_date from records where {k} is not null" for k in KEY_TYPES
    )
    natural = "md5(case key_type " + " ".join(
        f"when '{k}' then '{NATURAL_PREFIX[k]}'" for k in KEY_TYPES) + " end || key_value)"
    return f"""
with records as (select * from {records}),
household_phones as ({HOUSEHOLD_SQL}),
keys as ({unions})
select key_type, key_value, min(seen_date) as first_seen_date, {natural} as natural_id
from keys
where not (key_type = 'phone' and key_value in (select phone from household_phones))
group by key_type, key_value
"""


HOUSEHOLD_SQL = (
    "select phone from records where phone is not null and crm_id is not null "
    "group by phone having count(distinct crm_id) > 1"
)


def _edges_sql(records: str = "identity_records") -> str:
    pairs = [(a, b) for i, a in enumerate(KEY_TYPES) for b in KEY_TYPES[i + 1:]]
    unions = " union all ".join(
        f"select '{a}' as type_a, {a} as value_a, '{b}' as type_b, {b} as value_b, seen_date "
        f"from records where {a} is not null and {b} is not null"
        for a, b in pairs
    )
    return f"""
with records as (select * from {records}),
household_phones as ({HOUSEHOLD_SQL}),
edges as ({unions})
select type_a, value_a, type_b, value_b, min(seen_date) as seen_date
from edges
where not (type_a = 'phone' and value_a in (select phone from household_phones))
    and not (type_b = 'phone' and value_b in (select phone from household_phones))
group by type_a, value_a, type_b, value_b
"""


WORK = ("raw._identity_keys", "raw._identity_roots", "raw._identity_aliases")
DUCKDB_MEMORY_LIMIT = "1GB"


def replay(first_seen: np.ndarray, a: np.ndarray, b: np.ndarray, day: np.ndarray) -> tuple[np.ndarray, dict[int, int]]:
    """Union-find over keys 0..n-1 (numbered best first), edges replayed in date order.

    `first_seen[k]` and `day[e]` are day numbers; edges must be sorted by day. Returns, per key,
    the best key of its component (whose natural id is the customer_id), and the retired keys:
    the losing side's best key of a merge, if it existed before the merge day -> merge day.
    Pure numpy/Python on integers: identical on both warehouses, and small in memory.
    """
    n = len(first_seen)
    parent = np.arange(n, dtype=np.int64).tolist()
    best = list(parent)
    seen = first_seen.tolist()
    retired: dict[int, int] = {}

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for x, y, d in zip(a.tolist(), b.tolist(), day.tolist(), strict=True):
        rx, ry = find(x), find(y)
        if rx == ry:
            continue
        bx, by = best[rx], best[ry]
        win, lose = (bx, by) if bx < by else (by, bx)
        # the losing side's id was some run's customer_id only if its best key existed before that day
        if seen[lose] < d:
            retired[lose] = d
        parent[ry] = rx
        best[rx] = win
    roots = np.fromiter((best[find(i)] for i in range(n)), dtype=np.int64, count=n)
    return roots, retired


def _day_numbers(values: pd.Series) -> np.ndarray:
    return (pd.to_datetime(values).to_numpy().astype("datetime64[D]").astype(np.int64))


def resolve_identities(settings: Settings, as_of: dt.date) -> dict[str, int]:
    """Compute the identity map as of the date and replace `raw.identity_map` with it.

    The heavy lifting (normalising, hashing, grouping keys and links) stays in the warehouse; only
    integer key numbers and dates come to Python for the union-find, so memory stays small.
    """
    params = tuple([as_of, as_of] * len(RECORD_SOURCES))
    prio = "case key_type " + " ".join(f"when '{k}' then {i}" for i, k in enumerate(KEY_TYPES)) + " end"
    with connect(settings) as wh:
        if wh.kind == "duckdb":  # bound the embedded engine's buffer pool; it spills to disk beyond this
            wh.execute(f"set memory_limit = '{DUCKDB_MEMORY_LIMIT}'")
        wh.execute(MAP_DDL)
        for table in WORK:
            wh.execute(f"drop table if exists {table}")
        wh.execute("drop table if exists identity_records")
        wh.execute(f"create temp table identity_records as {records_sql(settings.phone_country_code)}", params)
        try:
            households = wh.fetchall(
                f"with records as (select * from identity_records) select count(*) from ({HOUSEHOLD_SQL}) as h")[0][0]
            # keys numbered best first: CRM ids, then first seen, then key type, then lowest key
            wh.execute(
                f"create table raw._identity_keys as select k.*, row_number() over (order by "
                f"case when key_type = 'crm_id' then 0 else 1 end, first_seen_date, {prio}, key_value) - 1 as key_rank "
                f"from ({_keys_sql()}) as k")
            keys = wh.query_df("select first_seen_date from raw._identity_keys order by key_rank")
            edges = wh.query_df(
                f"select ka.key_rank as a, kb.key_rank as b, e.seen_date from ({_edges_sql()}) as e "
                "inner join raw._identity_keys as ka on ka.key_type = e.type_a and ka.key_value = e.value_a "
                "inner join raw._identity_keys as kb on kb.key_type = e.type_b and kb.key_value = e.value_b "
                "order by e.seen_date, ka.key_rank, kb.key_rank")
            wh.execute("drop table if exists identity_records")
            roots, retired = replay(_day_numbers(keys["first_seen_date"]), edges["a"].to_numpy(np.int64),
                                    edges["b"].to_numpy(np.int64), _day_numbers(edges["seen_date"]))
            del keys, edges
            wh.execute("create table raw._identity_roots (key_rank bigint, best_rank bigint)")
            wh.write_arrow("raw", "_identity_roots", pa.table({
                "key_rank": pa.array(np.arange(len(roots), dtype=np.int64)), "best_rank": pa.array(roots)}))
            wh.execute("create table raw._identity_aliases (key_rank bigint, merged_on date)")
            epoch = dt.date(1970, 1, 1)
            wh.write_arrow("raw", "_identity_aliases", pa.table({
                "key_rank": pa.array(list(retired), type=pa.int64()),
                "merged_on": pa.array([epoch + dt.timedelta(days=d) for d in retired.values()], type=pa.date32())}))
            with wh.transaction():
                wh.execute("delete from raw.identity_map")
                wh.execute(
                    "insert into raw.identity_map (key_type, key_value, customer_id, first_seen_date, as_of_date) "
                    "select k.key_type, k.key_value, b.natural_id, k.first_seen_date, %s from raw._identity_keys as k "
                    "inner join raw._identity_roots as r on r.key_rank = k.key_rank "
                    "inner join raw._identity_keys as b on b.key_rank = r.best_rank", (as_of,))
                wh.execute(
                    f"insert into raw.identity_map (key_type, key_value, customer_id, first_seen_date, as_of_date) "
                    f"select '{ALIAS}', k.natural_id, b.natural_id, a.merged_on, %s from raw._identity_aliases as a "
                    "inner join raw._identity_keys as k on k.key_rank = a.key_rank "
                    "inner join raw._identity_roots as r on r.key_rank = a.key_rank "
                    "inner join raw._identity_keys as b on b.key_rank = r.best_rank", (as_of,))
        finally:
            wh.execute("drop table if exists identity_records")
            for table in WORK:
                wh.execute(f"drop table if exists {table}")
    summary = {"keys": len(roots), "customers": len(np.unique(roots)), "merged_ids": len(retired),
               "household_phones": int(households)}
    log.info("identity map as of %s: %s", as_of, summary)
    return summary


def score_against_truth(key_map: pd.DataFrame, identities_parquet: str, salt: str,
                        country_code: str = "44") -> dict[str, float]:
    """Pairwise precision and recall of the map against the generator's ground truth.

    The truth lists every key each person appeared under, as written. Keys are normalised and
    hashed with the same SQL as the map, then every pair of distinct keys is judged: same person
    and same customer_id (true positive), different person but same customer (false merge), same
    person but different customers (missed link). A key missing from the map is its own customer.
    `country_code` must be the `Settings.phone_country_code` the map was built with.
    """
    import duckdb

    con = duckdb.connect()
    con.execute("create table salt as select ? as pii_salt", [salt])
    con.register("key_map", key_map[key_map["key_type"] != ALIAS][["key_type", "key_value", "customer_id"]])
    k = "t.source_key"
    typed = f"""
        select distinct person_id,
            case when {k} like 'CRM-%' then 'crm_id' when {k} like '%@%' then 'email'
                 when upper(trim({k})) like 'LC%' then 'loyalty_card' else 'phone' end as key_type,
            {k} as source_key
        from read_parquet(?) as t
    """
    value = (f"case key_type when 'crm_id' then {norm_crm(k)} when 'email' then {salted(norm_email(k))} "
             f"when 'phone' then {salted(norm_phone(k, country_code))} else {norm_card(k)} end")
    frame = con.execute(f"""
        with typed as ({typed}),
        truth as (
            select distinct t.person_id, t.key_type, {value} as key_value
            from typed as t cross join salt
        )
        select truth.person_id, truth.key_type, truth.key_value,
            coalesce(m.customer_id, 'unmapped:' || truth.key_type || truth.key_value) as customer_id
        from truth left join key_map as m using (key_type, key_value)
    """, [identities_parquet]).df()
    con.close()

    def pairs(counts: pd.Series) -> int:
        c = counts.to_numpy(dtype=np.int64)
        return int((c * (c - 1) // 2).sum())

    together = pairs(frame.groupby(["person_id", "customer_id"]).size())
    same_customer = pairs(frame.groupby("customer_id").size())
    same_person = pairs(frame.groupby("person_id").size())
    return {
        "keys": len(frame),
        "persons": int(frame["person_id"].nunique()),
        "customers": int(frame["customer_id"].nunique()),
        "precision": together / same_customer if same_customer else 1.0,
        "recall": together / same_person if same_person else 1.0,
    }
