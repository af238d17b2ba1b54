"""GDPR Art. 17 erasure: `custseg erase --crm-id X | --email Y` removes one person from every layer and keeps
them out of every later run.

**Who the person is.** The given key (a CRM id, trimmed; or an e-mail, normalised and hashed as staging does)
is looked up in `raw.identity_map`. The person is every customer id that key belongs to, with every key of
those customers (CRM ids, e-mail and phone hashes, loyalty cards), the ids merged into them (alias rows) and
the natural id of each key (a guest order's `guest_customer_id`, say), plus the social-media handles of their
CRM records and of social interactions under their e-mail. A household phone (one the CRM holds for two
people) is in no customer's keys, so another member of the household keeps their rows. A key found only in
`raw` (an e-mail that only the ESP's events carry) is erased too. Nothing known: a one-line usage error.

**What is erased where**, in one warehouse transaction, under the run lock (no nightly run interleaves):

* `raw.<channel>`: every row whose identifying columns (:func:`key_columns`: the catalogue's `identity_keys`
  and `customer_columns`, the ESP's recipient, the social handles) normalise and hash to one of the person's
  keys; `raw.quarantine`: every record whose raw text holds one of the person's raw values (as typed in
  their rows, or normalised) or an e-mail that hashes to theirs; `raw.identity_map`, `raw.identity_phone_crm`,
  and `raw.identity_state`, so the next run rebuilds the identity map from the rows that are left.
* every other table of `raw`, the build schema, `analytics`, `ml` and `ops`, found through
  `information_schema` (so new models are covered without a list): rows whose `customer_id`, `*_customer_id`,
  `crm_id`, `*_hash`, `*_key` or `*_ref` column holds one of the person's ids, keys or keyed hashes. That
  covers the ML labels, the staging tables and every published table with a customer (`segment_history`,
  `customer_alerts`, `campaign_audience`, `customer_identity`, ...).
* text in `ops` and `ml` (`ops.quality_results.unexpected_sample`, errors): the person's values are
  replaced by `[erased]`.
* files: extracts of operational tables (`<data dir>/extracts/`) lose the person's records, and the line
  numbers of the rows after them are renumbered in `raw`; every audience file still on disk that
  `ops.audience_exports` lists loses the person's rows (`customer_id`, `crm_customer_id`), its manifest gets
  the new `rows` and `sha256` and an `erasures_applied` count. Files are written beside and renamed in after
  the commit.
* `ops.load_audit`: the erased rows move from `rows_loaded` / `rows_quarantined` to `rows_suppressed` of
  their partition's latest load, so `rows_read = rows_loaded + rows_quarantined + rows_suppressed` holds and
  the reconciliation still adds up.

Aggregates (`segment_summary`, `segment_migration`, `campaign_uplift`, `cluster_profiles`,
`segment_playbook`) hold no personal data; the next run recomputes them without the person. Models in the
registry are not refitted.

**Never again.** The keyed hashes of all the person's keys go into `raw.erasure_suppression` (the same spec
and normalisation as staging, custseg/hashing.py and dbt_project/macros/pii.sql). Ingestion
(custseg/steps/ingest.py, landing files and operational extracts alike) drops every row whose keys hash into
it, without quarantining it (quarantine would keep the PII), and counts it in `ops.load_audit.rows_suppressed`,
so a rerun or backfill never brings the person back although the landing files still hold them. Rotating
`CUSTSEG_HASH_KEY` makes the list unmatchable: erase again (from the source systems) after a rotation.

**The log**, `ops.erasure_log`: an erasure id, when, which key type was given, how many customers, rows
deleted per table and files rewritten; never a key, a hash or an e-mail (the CLI and logs mask it).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import logging
import os
import re
import tempfile
import uuid
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from custseg.catalogue import CHANNELS, Channel
from custseg.clock import utc_now
from custseg.config import ConfigError, Settings
from custseg.errors import UsageError
from custseg.hashing import (
    HASH_KEY_SQL,
    keyed_hash,
    keyed_hash_sql,
    namespace_sql,
    norm_card,
    norm_crm,
    norm_email,
    norm_phone,
    norm_social,
)
from custseg.ops.locks import run_lock
from custseg.warehouse import Warehouse, connect
from custseg.warehouse.ddl import OPS_DDL
from custseg.warehouse.sql import qualified, quote_ident, quote_literal

log = logging.getLogger(__name__)

#: Kinds of identity key an erasure suppresses, and the keyed-hash namespace each is hashed in.
SUPPRESSION_NAMESPACE = {"crm_id": "customer:crm", "email": "email", "phone": "phone",
                         "loyalty_card": "customer:card", "social": "social"}

#: Identifying columns beyond the catalogue's identity_keys: the ESP's recipient, the social handles
#: (platform, handle) of the CRM and of social interactions, and the e-mail of a social lead.
EXTRA_KEY_COLUMNS: dict[str, dict[str, tuple[str, ...]]] = {
    "marketing": {"email": ("email",)},
    "crm": {"social": ("social_platform", "social_handle")},
    "social": {"email": ("user_email",), "social": ("platform", "handle")},
}

ERASED = "[erased]"


def key_columns(channel: Channel) -> dict[str, tuple[str, ...]]:
    """Key type -> the channel's column(s) carrying it (social: platform and handle)."""
    columns = {key_type: (column,) for key_type, column in channel.identity_keys.items()}
    columns.update(EXTRA_KEY_COLUMNS.get(channel.name, {}))
    return columns


def normalised_sql(key_type: str, columns: tuple[str, ...], country_code: str, alias: str = "") -> str:
    cols = [f"{alias}{quote_ident(c)}" for c in columns]
    if key_type == "crm_id":
        return norm_crm(cols[0])
    if key_type == "email":
        return norm_email(cols[0])
    if key_type == "phone":
        return norm_phone(cols[0], country_code)
    if key_type == "loyalty_card":
        return norm_card(cols[0])
    return norm_social(cols[0], cols[1])


def hashed_sql(kind: str, key_type: str, columns: tuple[str, ...], country_code: str, key_sql: str,
               alias: str = "") -> str:
    """SQL: the keyed hash (suppression namespace) of the key type's normalised value in `columns`."""
    return keyed_hash_sql(kind, normalised_sql(key_type, columns, country_code, alias),
                          namespace_sql(SUPPRESSION_NAMESPACE[key_type]), key=key_sql)


def matches_keys_sql(kind: str, channel: Channel, country_code: str, key_sql: str, keys_table: str,
                     alias: str = "") -> str:
    """SQL condition: a row of the channel has a key whose hash is in `keys_table` (key_type, key_hash)."""
    parts = [f"{hashed_sql(kind, key_type, cols, country_code, key_sql, alias)} in "
             f"(select key_hash from {keys_table} where key_type = {quote_literal(key_type)})"
             for key_type, cols in key_columns(channel).items()]
    return "(" + " or ".join(parts) + ")" if parts else "false"


#: e-mail-like tokens of a raw record (lower-cased first), for records that never parsed into columns
EMAIL_TOKEN_REGEX = r"[a-z0-9._%+-]+@[a-z0-9-]+(\.[a-z0-9-]+)+"


def suppression_sql(channel: Channel, country_code: str, key_sql: str, keys_table: str) -> str:
    """For ingestion's scratch DuckDB (custseg/steps/ingest.py, table `checked`): true when a row belongs to
    an erased person: a key hashes into the list, or, for a row on its way to quarantine, its raw record
    holds an e-mail that does."""
    email_hash = keyed_hash_sql("duckdb", "t.token", namespace_sql("email"), key=key_sql)
    in_raw = (f"(_reason is not null and exists (select 1 from (select unnest(regexp_extract_all("
              f"lower(_raw_record), {quote_literal(EMAIL_TOKEN_REGEX)})) as token) as t where {email_hash} in "
              f"(select key_hash from {keys_table} where key_type = 'email')))")
    return f"coalesce({matches_keys_sql('duckdb', channel, country_code, key_sql, keys_table)}, false) or {in_raw}"


def suppressed_keys(wh: Warehouse) -> pa.Table:
    """raw.erasure_suppression's (key_type, key_hash), empty on a warehouse without erasures."""
    if not wh.table_exists("raw", "erasure_suppression"):
        return pa.table({"key_type": pa.array([], pa.string()), "key_hash": pa.array([], pa.string())})
    rows = wh.fetchall("select distinct key_type, key_hash from raw.erasure_suppression")
    return pa.table({"key_type": pa.array([r[0] for r in rows], pa.string()),
                     "key_hash": pa.array([r[1] for r in rows], pa.string())})


# -- the erasure ------------------------------------------------------------------------------------------
def mask_email(email: str) -> str:
    """`j***@example.com`: enough to recognise a request in a log, not the address."""
    local, _, domain = email.strip().partition("@")
    return f"{local[:1]}***@{domain}" if domain else "***"


@dataclasses.dataclass(frozen=True)
class ErasureSummary:
    erasure_id: str
    key_type: str
    customers: int
    rows_deleted: dict[str, int]
    files_rewritten: int
    rows_redacted: int

    def rows_by_layer(self, settings: Settings) -> dict[str, int]:
        layers = {"raw": "raw", settings.build_schema: "build", settings.publish_schema: "analytics",
                  "ml": "ml", "ops": "ops"}
        out: dict[str, int] = {}
        for table, n in self.rows_deleted.items():
            layer = layers.get(table.split(".", 1)[0], table.split(".", 1)[0])
            out[layer] = out.get(layer, 0) + n
        return out


@dataclasses.dataclass
class _Person:
    #: the customer ids the given key belongs to (what the summary counts)
    primary_ids: set[str]
    #: those, the ids merged into them and the natural id of each of their keys
    customer_ids: set[str]
    #: suppression key type -> keyed hashes
    hashes: dict[str, set[str]]
    crm_ids: set[str]
    cards: set[str]
    #: every id, keyed hash or clear key value of the person that a key column may hold
    values: set[str]


#: e-mail-like tokens of a raw record, in Python (EMAIL_TOKEN_REGEX without its capturing group)
_EMAIL_TOKENS = re.compile(r"[a-z0-9._%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)+")
_TEXT_TYPES = ("varchar", "text", "character varying")
#: key columns of the pipeline's tables, by name (information_schema): their values are compared with the
#: person's ids, clear CRM ids and cards, and keyed hashes
_KEY_COLUMN = re.compile(r"^(customer_id|crm_id|crm_customer_id|.*_customer_id|.*_hash|.*_key|.*_ref)$")
_KEYS_TABLE = "_erasure_keys"
_VALUES_TABLE = "_erasure_values"


def _boundary_regex(values: Iterable[str]) -> re.Pattern[str] | None:
    """A case-insensitive regex finding any of the values as a whole token (not inside a longer id)."""
    alternatives = sorted({v for v in values if v and len(v) >= 3}, key=len, reverse=True)
    if not alternatives:
        return None
    return re.compile(r"(?<![A-Za-z0-9._%+-])(?:" + "|".join(map(re.escape, alternatives))
                      + r")(?![A-Za-z0-9]|\.[A-Za-z0-9])", re.IGNORECASE)


def erase(settings: Settings, *, crm_id: str | None = None, email: str | None = None) -> ErasureSummary:
    """Erase the person with this CRM id or e-mail everywhere (module docstring); returns a PII-free summary."""
    if (crm_id is None) == (email is None):
        raise UsageError("give exactly one of --crm-id or --email")
    if crm_id is not None:
        key_type, given, shown = "crm_id", crm_id.strip(), "a CRM id"
        if not given:
            raise UsageError("--crm-id is empty")
    else:
        assert email is not None
        key_type, given = "email", email.strip().lower()
        if given.find("@") < 1:
            raise UsageError("--email: not an e-mail address (no @ after its first character)")
        shown = f"e-mail {mask_email(given)}"
    with run_lock(settings), connect(settings) as wh:
        if not wh.table_exists("raw", "pii_salt") or not wh.table_exists("raw", "identity_map"):
            raise UsageError("nothing is loaded in this warehouse yet: no customer to erase")
        stored = wh.fetchall("select pii_salt from raw.pii_salt")
        if stored and stored[0][0] != settings.hash_key:
            raise ConfigError("CUSTSEG_HASH_KEY is not the key this warehouse's ids were made with (raw.pii_salt): "
                              "erase with the environment of the nightly runs")
        return _erase(wh, settings, key_type, given, shown)


def _erase(wh: Warehouse, settings: Settings, key_type: str, given: str, shown: str) -> ErasureSummary:
    erasure_id = str(uuid.uuid4())
    with wh.transaction():
        for ddl in ERASURE_DDL:
            wh.execute(ddl)
        person = _find_person(wh, settings, key_type, given)
        matched = _count_channel_rows(wh, settings)
        if not person.primary_ids and not sum(matched.values()):
            what = "CRM id" if key_type == "crm_id" else f"e-mail ({shown})"
            [(done,)] = wh.fetchall("select min(erasure_id) from raw.erasure_suppression where key_type = %s and "
                                    "key_hash = %s", (key_type, keyed_hash(settings.hash_key,
                                                                           SUPPRESSION_NAMESPACE[key_type], given)))
            raise UsageError(f"that {what} was erased already (erasure {done}): nothing of it is left" if done
                             else f"no customer has that {what}")
        log.info("erasure %s: %s, %d customer(s)", erasure_id, shown, len(person.primary_ids))
        clear = _clear_values(wh, settings, given if key_type == "email" else None)
        deleted: dict[str, int] = {}
        removed: dict[str, set[int]] = {}
        tables: dict[str, set[str]] = {}
        _delete_channel_rows(wh, settings, deleted, removed, tables)
        _delete_quarantine(wh, settings, person, clear, deleted, removed)
        _delete_identity(wh, person, deleted)
        _delete_generic(wh, settings, person, deleted)
        redacted = _redact_text(wh, person, clear)
        pending = _rewrite_extracts(wh, settings, removed, tables)
        pending += _rewrite_audience_files(wh, person)
        now = utc_now()  # operational: when the request was carried out
        for kind, hashes in sorted(person.hashes.items()):
            for value in sorted(hashes):
                wh.execute("insert into raw.erasure_suppression (key_type, key_hash, erasure_id, added_at) "
                           "values (%s, %s, %s, %s)", (kind, value, erasure_id, now))
        deleted = {table: n for table, n in sorted(deleted.items()) if n}
        files = len([target for _, target in pending if not target.name.endswith(".manifest.json")])
        wh.execute("insert into ops.erasure_log (erasure_id, requested_at, key_type, customers, rows_deleted, "
                   "files_rewritten, rows_redacted) values (%s, %s, %s, %s, %s, %s, %s)",
                   (erasure_id, now, key_type, len(person.primary_ids), json.dumps(deleted), files, redacted))
        wh.execute(f"drop table if exists {_KEYS_TABLE}")
        wh.execute(f"drop table if exists {_VALUES_TABLE}")
    for temporary, target in pending:  # after the commit: a file never holds less than the warehouse says
        os.replace(temporary, target)
    log.info("erasure %s: %d rows deleted, %d file(s) rewritten", erasure_id, sum(deleted.values()), files)
    return ErasureSummary(erasure_id, key_type, len(person.primary_ids), deleted, files, redacted)


ERASURE_DDL = tuple(ddl for ddl in OPS_DDL if "erasure" in ddl or "audience_exports" in ddl or "rows_suppressed" in ddl)


def _in(values: Iterable[str]) -> tuple[str, list[str]]:
    items = sorted(values)
    return ", ".join(["%s"] * len(items)) or "null", items


def _find_person(wh: Warehouse, settings: Settings, key_type: str, given: str) -> _Person:
    """The person's customer ids and keys (module docstring), with the temp table of their keyed hashes."""
    key = settings.hash_key
    map_value = given if key_type == "crm_id" else keyed_hash(key, "email", given)
    primary = {r[0] for r in wh.fetchall("select distinct customer_id from raw.identity_map "
                                         "where key_type = %s and key_value = %s", (key_type, map_value))}
    hashes: dict[str, set[str]] = {k: set() for k in SUPPRESSION_NAMESPACE}
    hashes[key_type].add(keyed_hash(key, SUPPRESSION_NAMESPACE[key_type], given))
    # the guest-buyer id of the address, whether or not the map holds it
    primary_natural = {keyed_hash(key, "customer:email", map_value)} if key_type == "email" else set()
    crm_ids, cards, ids, refs = {given} if key_type == "crm_id" else set(), set(), primary | primary_natural, set()
    marks, params = _in(primary)
    for kind, value in wh.fetchall(f"select key_type, key_value from raw.identity_map where customer_id in ({marks})",
                                   params):
        if kind == "customer_id":  # an id merged into the person's
            ids.add(value)
        elif kind == "crm_id":
            crm_ids.add(value)
        elif kind == "loyalty_card":
            cards.add(value)
        elif kind in ("email", "phone"):
            hashes[kind].add(value)
            ids.add(keyed_hash(key, f"customer:{kind}", value))
    for value in crm_ids:
        hashes["crm_id"].add(keyed_hash(key, "customer:crm", value))
        refs.add(keyed_hash(key, "ref:crm", value))
    for value in cards:
        hashes["loyalty_card"].add(keyed_hash(key, "customer:card", value))
        refs.add(keyed_hash(key, "ref:card", value))
    ids |= hashes["crm_id"] | hashes["loyalty_card"]  # their natural ids
    wh.execute(f"drop table if exists {_KEYS_TABLE}")
    wh.execute(f"create temp table {_KEYS_TABLE} (key_type text not null, key_hash text not null)")
    _insert_keys(wh, hashes)
    # the social handles of their CRM records, and of social interactions under their e-mail
    social: set[str] = set()
    for channel in (CHANNELS["crm"], CHANNELS["social"]):
        columns = key_columns(channel)["social"]
        expr = hashed_sql(wh.kind, "social", columns, settings.phone_country_code, HASH_KEY_SQL)
        cond = matches_keys_sql(wh.kind, channel, settings.phone_country_code, HASH_KEY_SQL, _KEYS_TABLE)
        social |= {r[0] for r in wh.fetchall(f"select distinct {expr} from {qualified('raw', channel.table)} "
                                             f"where {cond}") if r[0]}
    hashes["social"] |= social
    _insert_keys(wh, {"social": social})
    values = ids | refs | crm_ids | cards | set().union(*hashes.values())
    wh.execute(f"drop table if exists {_VALUES_TABLE}")
    wh.execute(f"create temp table {_VALUES_TABLE} (value text not null)")
    for value in sorted(values):
        wh.execute(f"insert into {_VALUES_TABLE} (value) values (%s)", (value,))
    return _Person(primary, ids, hashes, crm_ids, cards, values)


def _insert_keys(wh: Warehouse, hashes: dict[str, set[str]]) -> None:
    for kind, values in hashes.items():
        for value in sorted(values):
            wh.execute(f"insert into {_KEYS_TABLE} (key_type, key_hash) values (%s, %s)", (kind, value))


def _channel_condition(wh: Warehouse, settings: Settings, channel: Channel) -> str:
    return matches_keys_sql(wh.kind, channel, settings.phone_country_code, HASH_KEY_SQL, _KEYS_TABLE)


def _matched(channel: Channel) -> str:
    """The temp table of the person's rows of a channel's raw table (one hashing scan of it, not one per use)."""
    return quote_ident(f"_erasure_rows_{channel.table}")


def _count_channel_rows(wh: Warehouse, settings: Settings) -> dict[str, int]:
    counts = {}
    for channel in CHANNELS.values():
        wh.execute(f"drop table if exists {_matched(channel)}")
        wh.execute(f"create temp table {_matched(channel)} as select * from {qualified('raw', channel.table)} "
                   f"where {_channel_condition(wh, settings, channel)}")
        counts[channel.table] = int(wh.fetchall(f"select count(*) from {_matched(channel)}")[0][0])
    return counts


def _clear_values(wh: Warehouse, settings: Settings, email: str | None) -> set[str]:
    """The person's key values as their raw rows hold them (as typed, and normalised), to find them in raw text."""
    values = {email} if email else set()
    for channel in CHANNELS.values():
        for key_type, columns in key_columns(channel).items():
            exprs = [quote_ident(c) for c in columns] + [normalised_sql(key_type, columns, settings.phone_country_code)]
            for expr in exprs:
                values |= {str(r[0]).strip() for r in wh.fetchall(
                    f"select distinct {expr} from {_matched(channel)}") if r[0]}
            if key_type == "social":  # the handle without its platform, as the records hold it
                values |= {v.split(":", 1)[1] for v in list(values) if v.count(":") == 1 and "@" not in v}
    return {v for v in values if len(v) >= 3}


def _move_to_suppressed(wh: Warehouse, column: str, n: int, source_file: str, partition_date: object,
                        source: str | None = None) -> None:
    """Erased rows of a partition leave `column` of its latest load for rows_suppressed: the counts still add up."""
    assert column in ("rows_loaded", "rows_quarantined")
    where = "status = 'success' and source_file = %s and partition_date = %s" + (" and source = %s" if source else "")
    params = (source_file, partition_date, *((source,) if source else ()))
    wh.execute(f"update ops.load_audit set {column} = {column} - %s, rows_suppressed = coalesce(rows_suppressed, 0) "
               f"+ %s where {where} and recorded_at = (select max(recorded_at) from ops.load_audit where {where})",
               (n, n, *params, *params))


def _delete_channel_rows(wh: Warehouse, settings: Settings, deleted: dict[str, int], removed: dict[str, set[int]],
                         tables: dict[str, set[str]]) -> None:
    for channel in CHANNELS.values():
        table = qualified("raw", channel.table)
        rows = wh.fetchall(f"select _source_file, _partition_date, _source_line from {_matched(channel)}")
        wh.execute(f"drop table if exists {_matched(channel)}")
        if not rows:
            continue
        cond = _channel_condition(wh, settings, channel)
        counts: dict[tuple[str, object], int] = {}
        for source_file, day, line in rows:
            counts[(source_file, day)] = counts.get((source_file, day), 0) + 1
            removed.setdefault(source_file, set()).add(int(line))
            tables.setdefault(source_file, set()).add(channel.table)
        wh.execute(f"delete from {table} where {cond}")
        for (source_file, day), n in counts.items():
            _move_to_suppressed(wh, "rows_loaded", n, source_file, day)
        deleted[f"raw.{channel.table}"] = len(rows)


def _delete_quarantine(wh: Warehouse, settings: Settings, person: _Person, clear: set[str],
                       deleted: dict[str, int], removed: dict[str, set[int]]) -> None:
    """Quarantined records holding one of the person's values, or an e-mail hashing to theirs."""
    pattern = _boundary_regex(clear | person.values)
    key, emails = settings.hash_key, person.hashes["email"]
    counts: dict[tuple[str, str, object], int] = {}
    for source, source_file, line, day, record in wh.fetchall(
            "select source, source_file, source_line, partition_date, raw_record from raw.quarantine "
            "where raw_record is not null"):
        hit = bool(pattern and pattern.search(record)) or any(
            keyed_hash(key, "email", token) in emails for token in _EMAIL_TOKENS.findall(record.lower()))
        if not hit:
            continue
        wh.execute("delete from raw.quarantine where source = %s and source_file = %s and source_line is not "
                   "distinct from %s and partition_date is not distinct from %s and raw_record = %s",
                   (source, source_file, line, day, record))
        counts[(source, source_file, day)] = counts.get((source, source_file, day), 0) + 1
        if line is not None:
            removed.setdefault(source_file, set()).add(int(line))
    for (source, source_file, day), n in counts.items():
        _move_to_suppressed(wh, "rows_quarantined", n, source_file, day, source)
    deleted["raw.quarantine"] = sum(counts.values())


def _delete_identity(wh: Warehouse, person: _Person, deleted: dict[str, int]) -> None:
    """The identity state: the phone-to-CRM pairs, and the state row, so the next run rebuilds the map."""
    crm_marks, crm = _in(person.crm_ids)
    phone_marks, phones = _in(person.hashes["phone"])
    cond = f"crm_id in ({crm_marks}) or phone in ({phone_marks})"
    if wh.table_exists("raw", "identity_phone_crm"):
        deleted["raw.identity_phone_crm"] = int(wh.fetchall(
            f"select count(*) from raw.identity_phone_crm where {cond}", (*crm, *phones))[0][0])
        wh.execute(f"delete from raw.identity_phone_crm where {cond}", (*crm, *phones))
    if wh.table_exists("raw", "identity_state"):
        wh.execute("delete from raw.identity_state")


#: tables the generic pass leaves alone: handled above, or the erasure's own
_HANDLED = {("raw", "quarantine"), ("raw", "identity_phone_crm"), ("raw", "erasure_suppression"),
            ("raw", "pii_salt"), ("ops", "erasure_log"), ("ops", "load_audit")}


def _base_tables(wh: Warehouse, schemas: Iterable[str]) -> dict[tuple[str, str], list[tuple[str, str]]]:
    """(schema, table) -> [(column, data type)] of every base table of the schemas."""
    marks, params = _in(schemas)
    out: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for schema, table, column, dtype in wh.fetchall(
            "select c.table_schema, c.table_name, c.column_name, c.data_type from information_schema.columns as c "
            "inner join information_schema.tables as t on t.table_schema = c.table_schema "
            "and t.table_name = c.table_name "
            f"where t.table_type = 'BASE TABLE' and c.table_schema in ({marks}) "
            "order by c.table_schema, c.table_name, c.ordinal_position", params):
        out.setdefault((schema, table), []).append((column, str(dtype).lower()))
    return out


def _delete_generic(wh: Warehouse, settings: Settings, person: _Person, deleted: dict[str, int]) -> None:
    """Rows of every other table whose key columns hold the person's ids, keys or hashes."""
    channel_tables = {("raw", c.table) for c in CHANNELS.values()}
    schemas = ("raw", settings.build_schema, settings.publish_schema, "ml", "ops")
    for (schema, table), columns in _base_tables(wh, schemas).items():
        if (schema, table) in _HANDLED or (schema, table) in channel_tables:
            continue
        keys = [c for c, dtype in columns if dtype in _TEXT_TYPES and _KEY_COLUMN.match(c)]
        if not keys:
            continue
        cond = " or ".join(f"{quote_ident(c)} in (select value from {_VALUES_TABLE})" for c in keys)
        n = int(wh.fetchall(f"select count(*) from {qualified(schema, table)} where {cond}")[0][0])
        if n:
            wh.execute(f"delete from {qualified(schema, table)} where {cond}")
            deleted[f"{schema}.{table}"] = n


def _redact_text(wh: Warehouse, person: _Person, clear: set[str]) -> int:
    """The person's values in the text of `ops` and `ml` (quality samples, errors) become [erased]."""
    pattern = _boundary_regex(clear | person.values)
    if pattern is None:
        return 0
    needles = sorted({v.lower() for v in clear | person.values if len(v) >= 3})
    rowid = "cast(ctid as text)" if wh.kind == "postgres" else "rowid"
    by_row = "ctid = cast(%s as tid)" if wh.kind == "postgres" else "rowid = %s"
    redacted = 0
    for (schema, table), columns in _base_tables(wh, ("ops", "ml")).items():
        if (schema, table) in _HANDLED:
            continue
        texts = [c for c, dtype in columns if dtype in _TEXT_TYPES]
        if not texts:
            continue
        found = " or ".join(f"strpos(lower({quote_ident(c)}), %s) > 0" for c in texts for _ in needles)
        params = [n for _ in texts for n in needles]
        cols = ", ".join(quote_ident(c) for c in texts)
        for row in wh.fetchall(f"select {rowid}, {cols} from {qualified(schema, table)} where {found}", params):
            changed = {c: pattern.sub(ERASED, v) for c, v in zip(texts, row[1:], strict=True)
                       if isinstance(v, str) and pattern.search(v)}
            if changed:
                sets = ", ".join(f"{quote_ident(c)} = %s" for c in changed)
                wh.execute(f"update {qualified(schema, table)} set {sets} where {by_row}", (*changed.values(), row[0]))
                redacted += 1
    return redacted


def _temporary_beside(path: Path) -> Path:
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".erasing")
    os.close(handle)
    return Path(name)


def _rewrite_extracts(wh: Warehouse, settings: Settings, removed: dict[str, set[int]],
                      tables: dict[str, set[str]]) -> list[tuple[Path, Path]]:
    """Extracts of operational tables without the person's records; later rows' line numbers follow."""
    root = (settings.data_dir / "extracts").resolve()
    pending = []
    for name, lines in sorted(removed.items()):
        path = Path(name)
        if not path.is_file() or root not in path.resolve().parents or path.suffix != ".csv":
            continue
        temporary = _temporary_beside(path)
        with path.open(newline="", encoding="utf-8") as src, temporary.open("w", newline="", encoding="utf-8") as out:
            reader, writer = csv.reader(src), csv.writer(out, lineterminator="\n")
            for number, record in enumerate(reader):  # 0 = the header; record n = line n of raw
                if number not in lines:
                    writer.writerow(record)
        # the file's rows in raw (its channel's table; quarantined records may have been its only erased ones)
        for table in (*sorted(tables.get(name) or {c.table for c in CHANNELS.values()}), "quarantine"):
            for line in sorted(lines, reverse=True):
                column = "source_line" if table == "quarantine" else "_source_line"
                file_column = "source_file" if table == "quarantine" else "_source_file"
                wh.execute(f"update {qualified('raw', table)} set {column} = {column} - 1 "
                           f"where {file_column} = %s and {column} > %s", (name, line))
        pending.append((temporary, path))
    return pending


def _rewrite_audience_files(wh: Warehouse, person: _Person) -> list[tuple[Path, Path]]:
    """Every audience file still on disk (ops.audience_exports) without the person's rows, and its manifest."""
    pending = []
    for file_path, manifest_path in wh.fetchall("select distinct file_path, manifest_path from ops.audience_exports"):
        path = Path(file_path)
        if not path.is_file():
            continue
        temporary = _temporary_beside(path)
        if path.suffix == ".parquet":
            table = pq.read_table(path)
            keep = [not ((row.get("customer_id") in person.customer_ids)
                         or (row.get("crm_customer_id") in person.crm_ids)) for row in table.select(
                [c for c in ("customer_id", "crm_customer_id") if c in table.column_names]).to_pylist()]
            rows, kept = table.num_rows, sum(keep)
            if kept < rows:
                pq.write_table(table.filter(pa.array(keep, pa.bool_())), temporary)
        else:
            with path.open(newline="", encoding="utf-8") as src:
                records = list(csv.reader(src))
            header, body = (records[0], records[1:]) if records else ([], [])
            ids = [header.index(c) if c in header else None for c in ("customer_id", "crm_customer_id")]
            survivors = [r for r in body if not ((ids[0] is not None and r[ids[0]] in person.customer_ids)
                                                 or (ids[1] is not None and r[ids[1]] in person.crm_ids))]
            rows, kept = len(body), len(survivors)
            if kept < rows:
                with temporary.open("w", newline="", encoding="utf-8") as out:
                    csv.writer(out, lineterminator="\n").writerows([header, *survivors])
        if kept == rows:
            temporary.unlink()
            continue
        digest = hashlib.sha256(temporary.read_bytes()).hexdigest()
        manifest_file = Path(manifest_path)
        manifest = json.loads(manifest_file.read_text(encoding="utf-8")) if manifest_file.is_file() else {}
        manifest.update(rows=kept, sha256=digest, erasures_applied=int(manifest.get("erasures_applied", 0)) + 1)
        manifest_temp = _temporary_beside(manifest_file)
        manifest_temp.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        wh.execute("update ops.audience_exports set row_count = %s, sha256 = %s where file_path = %s",
                   (kept, digest, file_path))
        pending += [(temporary, path), (manifest_temp, manifest_file)]
    return pending
