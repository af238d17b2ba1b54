"""Identity resolution: which source records belong to one person, and that person's stable `customer_id`.

**Keys.** Every record of the CRM, the web shop, web sessions, support tickets and store sales
carries some of four identifiers, normalised exactly as dbt staging normalises them
(`dbt_project/macros/pii.sql`), so the map joins staging rows directly:

| key type       | normalisation                                            | stored as            |
|----------------|----------------------------------------------------------|----------------------|
| `crm_id`       | trimmed                                                  | as is (raw only)     |
| `email`        | trimmed, lower case, must contain `@` after the 1st char | keyed hash `email`   |
| `phone`        | E.164 by the phone rules below                           | keyed hash `phone`   |
| `loyalty_card` | letters and digits only, upper case                      | as is (raw only)     |

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

**Keyed hashes**: every id, contact hash and reference is a keyed hash (custseg/hashing.py, the one spec;
docs/identity.md), so without the key nobody can hash a known address or CRM id and look the
person up, and one reference hashes differently in each namespace.

**Matching** is deterministic and transitive: two keys on one record are linked, and linked keys
form a customer (connected components: A~B and B~C means A~C). Only exact normalised keys match;
there is no fuzzy matching (a typo in an email is a different email, and links only through
another key such as the phone or the CRM id) because a false merge is worse than a missed one.
One exception: a **household phone**, a phone number that the CRM holds for two or more different
CRM customers, links nothing (it would merge a family into one customer). One email on two CRM
records does link them: an email is a login, so two CRM records with it are one person who
registered twice.

**The id.** Each key has a natural id, its keyed hash in the key type's `customer:` namespace
(`CUSTOMER_NAMESPACE`): `customer:crm` over the CRM id (the id the CRM customer has always had),
`customer:email` over the email hash (the guest-buyer id), `customer:phone` over the phone hash,
`customer:card` over the normalised card. A customer's id is the natural id of its
best key: a CRM id if it has one, then the key seen first, then the key type (crm_id, email,
phone, loyalty_card), then the lowest key (CRM-0000004 before CRM-0000005). A key is "seen" on the
date its record became visible (the later of its landing date and its event date), so the id is a
function of the data visible as of the as-of date: a rerun or a backfill gives what the daily run
gave.

**Merges.** Components only grow (keys are never forgotten: a CRM customer who changes phone keeps
both), so an id changes only when a new link merges two earlier customers. Then the survivor is
the better of the two ids by the rule above (the CRM customer over a guest; of two CRM customers
the one seen first, then the lowest id), and the retired id is kept as an alias:
`analytics.customer_identity` has a row `(customer_id = survivor, source = 'merged_customer_id',
source_customer_ref = retired id, first_seen_date = merge date)`. Segment history recorded under
the retired id follows the survivor by joining through that row. Merges are replayed in date
order (edges by the date they became visible), so the alias rows do not depend on which dates were
run before.

**Nightly extension.** The map is persisted in `raw.identity_map` (dbt reads it through
`stg_pipeline__identity_map`) with its date in `raw.identity_state`. A run for the next date does
not replay the whole history: it reads only the records that became visible since the map's date,
and replays their links over the map's existing customers, which gives exactly the rebuilt map
(tested night by night against a rebuild, and at 1M customers: 3 s instead of 37 s). It rebuilds
from every record instead when that would not be exact: a rerun or backfill (date not after the
map's), a landing partition on or before the map's date (re)loaded since (`ops.load_audit`), a new
hash key, phone country code or rule version, or a phone already used as a link becoming a household
phone (the rebuild then drops it from the first day). `raw.identity_phone_crm` keeps which CRM ids
each phone was seen with, for that household rule. The state also records the date of the last
rebuild (`rebuilt_as_of`): a rebuild may reassign or drop any key, an extension only adds keys and
moves merged customers' keys (their `as_of_date` says which run did), so the dbt models that
attribute events to customers extend their tables only while the map has not been rebuilt since.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import math

import numpy as np
import pandas as pd
import pyarrow as pa

from custseg.catalogue import CHANNELS, IDENTITY_KEY_TYPES
from custseg.config import Settings
from custseg.hashing import keyed_hash_sql, namespace_sql, norm_card, norm_crm, norm_email, norm_phone
from custseg.steps.ingest import FUTURE_TOLERANCE
from custseg.warehouse import Warehouse, connect
from custseg.warehouse.sql import quote_literal

log = logging.getLogger(__name__)


#: in the order that breaks ties between a customer's keys when choosing its id
KEY_TYPES = IDENTITY_KEY_TYPES


ALIAS = "customer_id"


# -- keyed hashes: the spec is custseg/hashing.py --------------------------------------------------
#: The namespace of the natural id each key type mints.
CUSTOMER_NAMESPACE = {"crm_id": "customer:crm", "email": "customer:email", "phone": "customer:phone",
                      "loyalty_card": "customer:card"}


def customer_namespace_sql(key_type: str) -> str:
    """SQL: the `customer:` namespace of the key type in the column `key_type` (CUSTOMER_NAMESPACE)."""
    return f"case {key_type} " + " ".join(
        f"when {quote_literal(k)} then {namespace_sql(ns)}" for k, ns in CUSTOMER_NAMESPACE.items()) + " end"


MAP_DDL = """create table if not exists raw.identity_map (
    key_type text not null,
    key_value text not null,
    customer_id text not null,
    first_seen_date date not null,
    as_of_date date not null
)"""




def natural_id_sql(kind: str, key_type: str = "key_type", key_value: str = "key_value") -> str:
    """SQL: the natural id of the key in the columns `key_type` and `key_value` (module docstring)."""
    return keyed_hash_sql(kind, key_value, customer_namespace_sql(key_type))


#: (raw table, crm id, email, phone, card, event timestamp) per source; None = the source lacks it.
#: Per channel that makes customers: its raw table, the columns carrying each key type (None where it
#: has none) and the event time, from the channel catalogue's ``identity_keys``.
RECORD_SOURCES: tuple[tuple[str, str | None, str | None, str | None, str | None, str], ...] = tuple(
    (channel.table, *(channel.identity_keys.get(key_type) for key_type in IDENTITY_KEY_TYPES), channel.event_time)
    for channel in CHANNELS.values()
    if channel.identity_keys
)


def records_sql(country_code: str, since: bool = False, kind: str = "duckdb") -> str:
    """Every record's normalised keys and the date it became visible, for records visible as of %s.

    A record is visible as of D when it landed on or before D and its event is dated on or before D
    (`seen_date`, the later of the two, is then <= D). With `since`, records already visible as of
    a second %s are left out (what became visible in between). `country_code` is the calling code
    given to national phone numbers (`Settings.phone_country_code`); `kind` the warehouse's engine.
    """
    parts = []
    for table, crm, email, phone, card, ts in RECORD_SOURCES:
        cols = [
            norm_crm(crm) if crm else "cast(null as text)",
            keyed_hash_sql(kind, norm_email(email), namespace_sql("email")) if email else "cast(null as text)",
            keyed_hash_sql(kind, norm_phone(phone, country_code), namespace_sql("phone"))
            if phone else "cast(null as text)",
            norm_card(card) if card else "cast(null as text)",
        ]
        visible = f"greatest(r._partition_date, cast(r.{ts} as date))"
        where = f"r._partition_date <= %s and cast(r.{ts} as date) <= %s"
        if since:
            # A record invisible as of `since` landed after it, or is dated after it; ingestion
            # quarantines events dated more than FUTURE_TOLERANCE after their landing day, so such a
            # record landed at most SINCE_LOOKBACK_DAYS before `since`. The redundant lower bound
            # lets PostgreSQL read a few partitions through the `_partition_date` index instead of
            # every landed row each night.
            where += (f" and r._partition_date >= %s"
                      f" and not (r._partition_date <= %s and cast(r.{ts} as date) <= %s)")
        parts.append(
            f"select {cols[0]} as crm_id, {cols[1]} as email, {cols[2]} as phone, {cols[3]} as loyalty_card, "
            f"{visible} as seen_date from raw.{table} as r where {where}"
        )
    return "\nunion all\n".join(parts)


#: Days before `since` that a record invisible as of `since` can have landed (see records_sql): its
#: event is at most FUTURE_TOLERANCE after the end of its landing day.
SINCE_LOOKBACK_DAYS = math.ceil((FUTURE_TOLERANCE + dt.timedelta(days=1)) / dt.timedelta(days=1))


def _records_params(as_of_date: dt.date, since: dt.date | None = None) -> tuple[dt.date, ...]:
    if since is None:
        per_source: tuple[dt.date, ...] = (as_of_date, as_of_date)
    else:
        per_source = (as_of_date, as_of_date, since - dt.timedelta(days=SINCE_LOOKBACK_DAYS), since, since)
    return per_source * len(RECORD_SOURCES)


HOUSEHOLD_SQL = (
    "select phone from records where phone is not null and crm_id is not null "
    "group by phone having count(distinct crm_id) > 1"
)


def _keys_sql(kind: str, records: str = "identity_records", households: str = HOUSEHOLD_SQL) -> str:
    """Distinct keys with their first-seen date and natural id; household phones excluded."""
    unions = " union all ".join(
        f"select '{k}' as key_type, {k} as key_value, seen_date from records where {k} is not null" for k in KEY_TYPES
    )
    natural = natural_id_sql(kind)
    return f"""
with records as (select * from {records}),
household_phones as ({households}),
keys as ({unions})
select key_type, key_value, min(seen_date) as first_seen_date, {natural} as natural_id
from keys
where not (key_type = 'phone' and key_value in (select phone from household_phones))
group by key_type, key_value
"""


def _edges_sql(records: str = "identity_records", households: str = HOUSEHOLD_SQL) -> str:
    pairs = [(a, b) for i, a in enumerate(KEY_TYPES) for b in KEY_TYPES[i + 1:]]
    unions = " union all ".join(
        f"select '{a}' as type_a, {a} as value_a, '{b}' as type_b, {b} as value_b, seen_date "
        f"from records where {a} is not null and {b} is not null"
        for a, b in pairs
    )
    return f"""
with records as (select * from {records}),
household_phones as ({households}),
edges as ({unions})
select type_a, value_a, type_b, value_b, min(seen_date) as seen_date
from edges
where not (type_a = 'phone' and value_a in (select phone from household_phones))
    and not (type_b = 'phone' and value_b in (select phone from household_phones))
group by type_a, value_a, type_b, value_b
"""


WORK = ("raw._identity_keys", "raw._identity_roots", "raw._identity_aliases", "raw._identity_phone_crm")


EXTEND_WORK = ("raw._identity_touched", "raw._identity_renamed")


DUCKDB_MEMORY_LIMIT = "1GB"


#: Bumped when the resolution rules change, so the next run rebuilds the map instead of extending it.
RULES_VERSION = "2"  # 2: keyed sha256 ids and hashes instead of md5


STATE_DDL = (
    # what raw.identity_map and raw.identity_phone_crm hold: the map as of as_of_date, built from the
    # loads recorded up to loads_seen_at, with the hash key and rules of `fingerprint`
    "create table if not exists raw.identity_state (as_of_date date not null, loads_seen_at timestamp, "
    "fingerprint text not null, rebuilt_as_of date)",
    # warehouses made before rebuilt_as_of existed
    "alter table raw.identity_state add column if not exists rebuilt_as_of date",
    # which CRM ids each phone was seen with, as of the state's date: the household rule needs it
    "create table if not exists raw.identity_phone_crm (phone text not null, crm_id text not null, "
    "first_seen_date date not null)",
)


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


def _as_date(value: object) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return pd.Timestamp(value).date()


def _fingerprint(settings: Settings) -> str:
    """What the map depends on besides the data: hash key, phone rule, resolution rules."""
    return hashlib.sha256(f"{settings.hash_key}|{settings.phone_country_code}|{RULES_VERSION}".encode()).hexdigest()


def _extendable_from(wh: Warehouse, settings: Settings, as_of_date: dt.date) -> dt.date | None:
    """The state's date when tonight's map can be computed by extending it, else None (rebuild).

    Extending is exact when the state is older than `as_of_date`, was made with the same hash key and rules,
    and no landing partition it had read was (re)loaded since (a late file for an old day or a
    reloaded partition would change what was visible back then).
    """
    rows = wh.fetchall("select as_of_date, loads_seen_at, fingerprint from raw.identity_state")
    if len(rows) != 1:
        return None
    since, loads_seen_at, fingerprint = _as_date(rows[0][0]), rows[0][1], rows[0][2]
    if fingerprint != _fingerprint(settings) or since >= as_of_date:
        return None
    reloaded = wh.fetchall(
        "select count(*) from ops.load_audit where status = 'success' and partition_date <= %s and recorded_at > %s",
        (since, loads_seen_at or dt.datetime(1900, 1, 1)))[0][0]
    return None if reloaded else since


def _record_state(wh: Warehouse, settings: Settings, as_of_date: dt.date, rebuilt: bool) -> None:
    """Write the state row (caller's transaction, with the map it describes).

    An extension keeps the date of the last rebuild; a state written before that date was recorded
    (null) gets the date extended from, since no rebuild can have happened after it.
    """
    previous = wh.fetchall("select coalesce(rebuilt_as_of, as_of_date) from raw.identity_state")
    rebuilt_as_of = as_of_date if rebuilt or len(previous) != 1 else _as_date(previous[0][0])
    wh.execute("delete from raw.identity_state")
    wh.execute(
        "insert into raw.identity_state (as_of_date, loads_seen_at, fingerprint, rebuilt_as_of) "
        "select %s, (select max(recorded_at) from ops.load_audit where status = 'success'), %s, %s",
        (as_of_date, _fingerprint(settings), rebuilt_as_of))


#: PostgreSQL only (DuckDB joins by hashing and keeps no secondary index cheaply): the nightly extension
#: looks keys and customers up in a map of millions of rows.
POSTGRES_INDEXES = (
    "create index if not exists identity_map_key_idx on raw.identity_map (key_type, key_value)",
    "create index if not exists identity_map_customer_idx on raw.identity_map (customer_id)",
    "create index if not exists identity_phone_crm_idx on raw.identity_phone_crm (phone)",
)


def resolve_identities(settings: Settings, as_of_date: dt.date) -> dict[str, int]:
    """Compute the identity map as of the date into `raw.identity_map`.

    A night after the map's date extends it with what became visible since (`_extend`), which gives
    exactly what a rebuild from all records would; a rerun, a backfill, a reloaded old partition, a
    new hash key or a new household phone already in the map rebuild it from every record (`_rebuild`).
    The heavy lifting (normalising, hashing, grouping keys and links) stays in the warehouse; only
    integer key numbers and dates come to Python for the union-find, so memory stays small.
    """
    with connect(settings) as wh:
        if wh.kind == "duckdb":  # bound the embedded engine's buffer pool; it spills to disk beyond this
            wh.execute(f"set memory_limit = '{DUCKDB_MEMORY_LIMIT}'")
        wh.execute(MAP_DDL)
        for ddl in STATE_DDL + (POSTGRES_INDEXES if wh.kind == "postgres" else ()):
            wh.execute(ddl)
        since = _extendable_from(wh, settings, as_of_date)
        summary = _extend(wh, settings, since, as_of_date) if since is not None else None
        if summary is None:
            summary = _rebuild(wh, settings, as_of_date)
    log.info("identity map as of %s: %s", as_of_date, summary)
    return summary


def _counts(wh: Warehouse) -> dict[str, int]:
    keys, customers, merged = wh.fetchall(
        f"select sum(case when key_type <> '{ALIAS}' then 1 else 0 end), "
        f"count(distinct case when key_type <> '{ALIAS}' then customer_id end), "
        f"sum(case when key_type = '{ALIAS}' then 1 else 0 end) from raw.identity_map")[0]
    return {"keys": int(keys or 0), "customers": int(customers or 0), "merged_ids": int(merged or 0)}


def _rebuild(wh: Warehouse, settings: Settings, as_of_date: dt.date) -> dict[str, int]:
    """The map as of the date from every visible record: union-find replayed from the first day."""
    prio = "case key_type " + " ".join(f"when '{k}' then {i}" for i, k in enumerate(KEY_TYPES)) + " end"
    for table in WORK:
        wh.execute(f"drop table if exists {table}")
    wh.execute("drop table if exists identity_records")
    wh.execute(f"create temp table identity_records as {records_sql(settings.phone_country_code, kind=wh.kind)}",
               _records_params(as_of_date))
    try:
        households = wh.fetchall(
            f"with records as (select * from identity_records) select count(*) from ({HOUSEHOLD_SQL}) as h")[0][0]
        wh.execute("create table raw._identity_phone_crm as select phone, crm_id, min(seen_date) as first_seen_date "
                   "from identity_records where phone is not null and crm_id is not null group by phone, crm_id")
        # keys numbered best first: CRM ids, then first seen, then key type, then lowest key
        wh.execute(
            f"create table raw._identity_keys as select k.*, row_number() over (order by "
            f"case when key_type = 'crm_id' then 0 else 1 end, first_seen_date, {prio}, key_value) - 1 as key_rank "
            f"from ({_keys_sql(wh.kind)}) as k")
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
                "inner join raw._identity_keys as b on b.key_rank = r.best_rank", (as_of_date,))
            wh.execute(
                f"insert into raw.identity_map (key_type, key_value, customer_id, first_seen_date, as_of_date) "
                f"select '{ALIAS}', k.natural_id, b.natural_id, a.merged_on, %s from raw._identity_aliases as a "
                "inner join raw._identity_keys as k on k.key_rank = a.key_rank "
                "inner join raw._identity_roots as r on r.key_rank = a.key_rank "
                "inner join raw._identity_keys as b on b.key_rank = r.best_rank", (as_of_date,))
            wh.execute("delete from raw.identity_phone_crm")
            wh.execute("insert into raw.identity_phone_crm (phone, crm_id, first_seen_date) "
                       "select phone, crm_id, first_seen_date from raw._identity_phone_crm")
            _record_state(wh, settings, as_of_date, rebuilt=True)
    finally:
        wh.execute("drop table if exists identity_records")
        for table in WORK:
            wh.execute(f"drop table if exists {table}")
    return {"keys": len(roots), "customers": len(np.unique(roots)), "merged_ids": len(retired),
            "household_phones": int(households), "mode": "rebuilt"}


def _key_order(key_type: str, key_value: str, first_seen: dt.date) -> tuple:
    """The 'best key' order of `_rebuild`'s key_rank: CRM ids, then first seen, then key type, then key."""
    return (0 if key_type == "crm_id" else 1, first_seen, KEY_TYPES.index(key_type), key_value)


def _analyze(wh: Warehouse, table: str) -> None:
    """Statistics for a work table just filled, on PostgreSQL: without them the planner takes a night's
    few thousand rows for many and joins them to the map of millions by scanning all of it (a third
    of a 1M-customer night's extension), instead of looking them up through its indexes."""
    if wh.kind == "postgres":
        wh.execute(f"analyze {table}")


def _extend(wh: Warehouse, settings: Settings, since: dt.date, as_of_date: dt.date) -> dict[str, int] | None:
    """Extend the map as of `since` to `as_of_date` with the records that became visible in between.

    Every new record is seen after `since`, so its keys and links come after everything the map
    already holds in the replay order of `_rebuild`: replaying only the new links over the map's
    components (each represented by its best key) gives the same components, ids and merge aliases
    as a rebuild. One thing cannot be extended: a phone that becomes a household phone (a second
    CRM id) while the map already uses it as a link; the rebuild then drops it from the start, so
    this returns None and the caller rebuilds.
    """
    # Household phones among tonight's phones only: tonight's keys and links are all that is tested
    # against the list, and a phone of the map that becomes a household phone tonight is one of them
    # (it takes tonight's second CRM id; a household phone is never in the map after a night). The
    # whole list groups every phone ever seen with a CRM id, for each of the three queries below.
    households_sql = (
        "select phone from (select phone, crm_id from raw.identity_phone_crm "
        "where phone in (select phone from records where phone is not null) union "
        "select phone, crm_id from records where phone is not null and crm_id is not null) as pairs "
        "group by phone having count(distinct crm_id) > 1"
    )
    for table in ("identity_records", "identity_new_keys", *EXTEND_WORK):
        wh.execute(f"drop table if exists {table}")
    records = records_sql(settings.phone_country_code, since=True, kind=wh.kind)
    wh.execute(f"create temp table identity_records as {records}", _records_params(as_of_date, since))
    _analyze(wh, "identity_records")
    try:
        households, in_map = wh.fetchall(
            f"with records as (select * from identity_records), households as ({households_sql}) "
            "select (select count(*) from households), "
            "(select count(*) from raw.identity_map as m where m.key_type = 'phone' "
            "and m.key_value in (select phone from households))")[0]
        if in_map:
            log.info("identity map: %d phone(s) in the map became household phones; rebuilding", in_map)
            return None
        new_keys_sql = _keys_sql(wh.kind, households=households_sql)
        wh.execute(
            f"create temp table identity_new_keys as select k.* from ({new_keys_sql}) as k "
            "where not exists (select 1 from raw.identity_map as m "
            "where m.key_type = k.key_type and m.key_value = k.key_value)")
        _analyze(wh, "identity_new_keys")
        new_keys = wh.query_df("select key_type, key_value, first_seen_date, natural_id from identity_new_keys")
        # each edge end: its first-seen date and current customer (a new key is its own customer)
        edges = wh.query_df(
            f"select e.seen_date, e.type_a, e.value_a, e.type_b, e.value_b, "
            "coalesce(ma.customer_id, na.natural_id) as node_a, coalesce(ma.first_seen_date, na.first_seen_date) "
            "as seen_a, coalesce(mb.customer_id, nb.natural_id) as node_b, "
            "coalesce(mb.first_seen_date, nb.first_seen_date) as seen_b "
            f"from ({_edges_sql(households=households_sql)}) as e "
            "left join raw.identity_map as ma on ma.key_type = e.type_a and ma.key_value = e.value_a "
            "left join identity_new_keys as na on na.key_type = e.type_a and na.key_value = e.value_a "
            "left join raw.identity_map as mb on mb.key_type = e.type_b and mb.key_value = e.value_b "
            "left join identity_new_keys as nb on nb.key_type = e.type_b and nb.key_value = e.value_b "
            "where coalesce(ma.customer_id, na.natural_id) <> coalesce(mb.customer_id, nb.natural_id)")
        # the best key of every existing customer an edge touches (its natural id is the customer_id)
        touched = sorted(set(edges["node_a"]) | set(edges["node_b"]))
        best: dict[str, tuple] = {}
        for row in new_keys.itertuples(index=False):
            best[row.natural_id] = (_key_order(row.key_type, row.key_value, _as_date(row.first_seen_date)),
                                    _as_date(row.first_seen_date))
        existing = [c for c in touched if c not in best]
        natural = natural_id_sql(wh.kind, "m.key_type", "m.key_value")
        wh.execute("create table raw._identity_touched (customer_id text not null)")
        wh.write_arrow("raw", "_identity_touched", pa.table({"customer_id": pa.array(existing, type=pa.string())}))
        _analyze(wh, "raw._identity_touched")
        for key_type, key_value, first_seen, customer in wh.fetchall(
                "select m.key_type, m.key_value, m.first_seen_date, m.customer_id from raw.identity_map as m "
                "inner join raw._identity_touched as t on t.customer_id = m.customer_id "
                f"where m.key_type <> '{ALIAS}' and {natural} = m.customer_id"):
            best[customer] = (_key_order(key_type, key_value, _as_date(first_seen)), _as_date(first_seen))

        # union-find over customers, the new links in _rebuild's order (date, then both keys' order)
        links = sorted(
            (_as_date(e.seen_date), _key_order(e.type_a, e.value_a, _as_date(e.seen_a)),
             _key_order(e.type_b, e.value_b, _as_date(e.seen_b)), e.node_a, e.node_b)
            for e in edges.itertuples(index=False))
        parent: dict[str, str] = {}

        def find(node: str) -> str:
            while parent.get(node, node) != node:
                parent[node] = parent.get(parent[node], parent[node])
                node = parent[node]
            return node

        retired: dict[str, dt.date] = {}
        for day, _, _, node_a, node_b in links:
            ra, rb = find(node_a), find(node_b)
            if ra == rb:
                continue
            win, lose = (ra, rb) if best[ra][0] < best[rb][0] else (rb, ra)
            if best[lose][1] < day:  # the loser's id existed before the merge: keep it as an alias
                retired[lose] = day
            parent[lose] = win
        renamed = {node: find(node) for node in parent if find(node) != node}

        new_ids = set(new_keys["natural_id"])
        wh.execute("create table raw._identity_renamed (old_id text not null, new_id text not null)")
        wh.write_arrow("raw", "_identity_renamed", pa.table({
            "old_id": pa.array([o for o in renamed if o not in new_ids], type=pa.string()),
            "new_id": pa.array([n for o, n in renamed.items() if o not in new_ids], type=pa.string())}))
        _analyze(wh, "raw._identity_renamed")
        with wh.transaction():
            # a merge moves every row of the losing customer (keys and earlier aliases) to the survivor
            wh.execute("update raw.identity_map as m set customer_id = r.new_id, as_of_date = %s "
                       "from raw._identity_renamed as r where m.customer_id = r.old_id", (as_of_date,))
            wh.write_arrow("raw", "identity_map", pa.table({
                "key_type": pa.array(new_keys["key_type"].astype(str).tolist(), type=pa.string()),
                "key_value": pa.array(new_keys["key_value"].astype(str).tolist(), type=pa.string()),
                "customer_id": pa.array([renamed.get(n, n) for n in new_keys["natural_id"]], type=pa.string()),
                "first_seen_date": pa.array([_as_date(d) for d in new_keys["first_seen_date"]], type=pa.date32()),
                "as_of_date": pa.array([as_of_date] * len(new_keys), type=pa.date32()),
            }))
            wh.write_arrow("raw", "identity_map", pa.table({
                "key_type": pa.array([ALIAS] * len(retired), type=pa.string()),
                "key_value": pa.array(list(retired), type=pa.string()),
                "customer_id": pa.array([find(node) for node in retired], type=pa.string()),
                "first_seen_date": pa.array(list(retired.values()), type=pa.date32()),
                "as_of_date": pa.array([as_of_date] * len(retired), type=pa.date32()),
            }))
            wh.execute(
                "insert into raw.identity_phone_crm (phone, crm_id, first_seen_date) "
                "select r.phone, r.crm_id, min(r.seen_date) from identity_records as r "
                "where r.phone is not null and r.crm_id is not null and not exists (select 1 from "
                "raw.identity_phone_crm as p where p.phone = r.phone and p.crm_id = r.crm_id) "
                "group by r.phone, r.crm_id")
            _record_state(wh, settings, as_of_date, rebuilt=False)
        summary = _counts(wh)
    finally:
        for table in ("identity_records", "identity_new_keys", *EXTEND_WORK):
            wh.execute(f"drop table if exists {table}")
    return {**summary, "household_phones_tonight": int(households), "new_keys": len(new_keys),
            "new_merges": len(set(renamed) - new_ids), "mode": f"extended from {since}"}
