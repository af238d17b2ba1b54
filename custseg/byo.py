"""Bring your own orders: run the whole nightly pipeline on one plain order export.

`custseg run --orders PATH --as-of D` and a DAG run triggered with the params ``orders`` (and
optionally ``orders_options``) take the same path: the run's ``prepare`` task splits the export by
order date into daily landing files of the ``shop_orders`` layout, with a generated sources file
that declares that one source, and every later task of the run reads those instead of the
configured landing files (:func:`run_settings`). Rows dated after the run's date are not written,
so nothing after the as-of date reaches any computation.

A split is reused while the export, the options and the covered dates are unchanged (a marker file
records them): the CLI splits a file once for a whole ``--from/--to`` range, and rows whose date
does not parse stay in the partition where they were first quarantined instead of moving to every
later date's partition (and being counted again).
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

from custseg.config import Settings


class ByoError(ValueError):
    """The export or its options cannot be used; the message names the file and the option."""


#: BYO order file fields: canonical name -> (flag, column names tried when the flag is not given).
BYO_FIELDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "order_id": ("--order-id", ("order_id", "order", "id")),
    "customer": ("--customer", ("customer_id", "customer_ref", "customer", "client_id")),
    "ordered_at": ("--ordered-at", ("order_ts", "ordered_at", "order_date", "date", "timestamp")),
    "amount": ("--amount", ("amount", "order_total", "total", "revenue", "dollars", "value")),
    "items": ("--items", ("item_count", "items", "quantity", "cds")),
    "currency": ("--currency-column", ("currency",)),
    "channel": ("--channel", ("channel",)),
    "store": ("--store", ("store_id", "store")),
}
BYO_REQUIRED = ("customer", "ordered_at", "amount")
BYO_HEADER = ("order_id,order_ts,customer_ref,customer_email,customer_phone,currency,order_total,"
              "discount_amount,item_count,category,order_status,device,store_id")



#: The options an export can carry (CLI flags, --orders-config YAML, or the DAG param orders_options).
OPTION_KEYS = ("columns", "delimiter", "names", "date_format", "currency", "reporting_currency")


def normalise_options(options: dict[str, Any] | None) -> dict[str, Any]:
    """Defaults and types for the export options; unknown keys are an error, not silently ignored."""
    options = dict(options or {})
    unknown = sorted(set(options) - set(OPTION_KEYS))
    if unknown:
        raise ByoError(f"orders options: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(OPTION_KEYS)}")
    columns = dict(options.get("columns") or {})
    bad = sorted(set(columns) - set(BYO_FIELDS))
    if bad:
        raise ByoError(f"orders options: unknown column field(s) {', '.join(bad)}; allowed: {', '.join(BYO_FIELDS)}")
    names = options.get("names")
    currency = options.get("currency")
    return {
        "columns": columns,
        "delimiter": options.get("delimiter") or ",",
        "names": names.split(",") if isinstance(names, str) else (list(names) if names else None),
        "date_format": options.get("date_format"),
        # the currency of amounts when the export has no currency column (None: EUR)
        "currency": currency.upper() if currency else None,
        # an export in one stated currency is reported in it, unless a reporting currency is given
        "reporting_currency": (options.get("reporting_currency") or currency or "").upper() or None,
    }


def work_dir_for(settings: Settings, work_dir: str | Path | None = None) -> Path:
    return Path(work_dir) if work_dir else settings.landing_dir.parent / "byo"


def run_settings(settings: Settings, params: dict[str, Any] | None) -> Settings:
    """The settings a DAG run works with: a bring-your-own-orders run reads its own split."""
    params = params or {}
    if not params.get("orders"):
        return settings
    work_dir = work_dir_for(settings, params.get("orders_work_dir"))
    return dataclasses.replace(settings, landing_dir=work_dir / "landing", sources_file=work_dir / "sources.yml")


def resolve_orders_path(settings: Settings, orders: str) -> Path:
    """An absolute path, or one relative to the data directory (the parent of the landing dir)."""
    path = Path(orders)
    return path if path.is_absolute() else settings.landing_dir.parent / path


def split_for_run(settings: Settings, params: dict[str, Any], run_date: dt.date) -> dict[str, object] | None:
    """The ``prepare`` task's part: make sure the export's split covers ``run_date`` (None: no export)."""
    if not params.get("orders"):
        return None
    path = resolve_orders_path(settings, params["orders"])
    return ensure_split(path, run_date, work_dir_for(settings, params.get("orders_work_dir")),
                        normalise_options(params.get("orders_options")))


MARKER = "split.json"


def _fingerprint(path: Path, options: dict[str, Any]) -> str:
    stat = path.stat()
    payload = json.dumps({"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                          "options": options}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def ensure_split(path: Path, until: dt.date, work_dir: Path, options: dict[str, Any]) -> dict[str, object]:
    """Split ``path`` up to ``until`` unless the existing split of the same file and options covers it."""
    if not path.exists():
        raise ByoError(f"orders: {path} does not exist")
    marker = work_dir / MARKER
    fingerprint = _fingerprint(path, options)
    previous = json.loads(marker.read_text(encoding="utf-8")) if marker.exists() else {}
    same_export = previous.get("fingerprint") == fingerprint
    if same_export and dt.date.fromisoformat(previous["until"]) >= until:
        return {**previous["info"], "reused": True}
    # rows whose date does not parse stay where they were first put (and quarantined)
    unparseable_day = dt.date.fromisoformat(previous["unparseable_day"]) if same_export else until
    info = prepare_byo_orders(path, until, work_dir, options, unparseable_day=unparseable_day)
    public = {k: (str(v) if isinstance(v, Path) else v) for k, v in info.items()}
    marker.write_text(json.dumps({"fingerprint": fingerprint, "until": until.isoformat(),
                                  "unparseable_day": unparseable_day.isoformat(), "info": public},
                                 sort_keys=True, indent=1), encoding="utf-8")
    return {**public, "reused": False}


def prepare_byo_orders(path: Path, until: dt.date, work_dir: Path, options: dict,
                       unparseable_day: dt.date | None = None) -> dict[str, object]:
    """Turn one order export into daily landing files of the shop_orders layout plus a sources file.

    Rows are partitioned by their order date; rows dated after `until` are not written (they are
    ignored everywhere). A row whose date does not parse lands in the `until` partition with its raw
    value (or in ``unparseable_day``), so ingestion quarantines it with the reason: nothing is
    dropped silently.
    """
    import duckdb

    options = normalise_options(options)
    unparseable_day = unparseable_day or until

    if not path.exists():
        raise ByoError(f"orders: {path} does not exist")
    con = duckdb.connect()
    con.execute("set TimeZone = 'UTC'")
    p = "'" + str(path).replace("'", "''") + "'"
    names, delim = options["names"], options["delimiter"]
    if delim in ("whitespace", "ws", " "):
        con.execute(f"create table lines as select line, row_number() over () as n from read_csv({p}, "
                    "columns = {'line': 'VARCHAR'}, header = false, delim = '\x1f', quote = '', escape = '', "
                    "auto_detect = false)")
        if not names:
            header = con.execute("select line from lines where n = 1").fetchone()
            names = (header[0] if header else "").split()
            con.execute("delete from lines where n = 1")
        parts = "regexp_split_to_array(regexp_replace(line, '^\\s+|\\s+$', '', 'g'), '\\s+')"
        cols = ", ".join(f"{parts}[{i + 1}] as \"{c}\"" for i, c in enumerate(names))
        con.execute(f"create table src as select {cols}, n as _line from lines "
                    "where regexp_replace(line, '\\s', '', 'g') <> ''")
    else:
        named = ", names = [" + ", ".join(f"'{c}'" for c in names) + "]" if names else ""
        con.execute(f"create table src as select *, row_number() over () as _line from read_csv({p}, "
                    f"header = {'false' if names else 'true'}, all_varchar = true, delim = '{delim}'{named})")
    file_cols = [d[0] for d in con.execute("select * from src limit 0").description if d[0] != "_line"]
    lower = {c.lower().strip(): c for c in file_cols}
    col: dict[str, str | None] = {}
    for field, (flag, candidates) in BYO_FIELDS.items():
        given = options["columns"].get(field)
        if given and given not in file_cols:
            raise ByoError(f"--orders: {path} has no column {given!r} (for {flag}); columns: {', '.join(file_cols)}")
        col[field] = given or next((lower[c] for c in candidates if c in lower), None)
        if col[field] is None and field in BYO_REQUIRED:
            raise ByoError(f"--orders: {path}: no column for {field}; name it with {flag} COLUMN or columns.{field} "
                             f"(columns: {', '.join(file_cols)})")

    def q(field: str) -> str:
        return f'trim("{col[field]}")' if col[field] else "cast(null as varchar)"

    fmt = options["date_format"]
    raw_ts = q("ordered_at")
    parsed = (f"try_strptime({raw_ts}, '{fmt}')" if fmt else
              f"coalesce(timezone('UTC', try_cast({raw_ts} as timestamptz)), try_strptime({raw_ts}, '%Y%m%d'))")
    currency = f"coalesce(nullif({q('currency')}, ''), '{options['currency'] or 'EUR'}')"
    con.execute(f"""
        create table orders as
        select
            coalesce(nullif({q('order_id')}, ''), 'L' || lpad(cast(_line as varchar), 9, '0')) as order_id,
            coalesce(strftime({parsed}, '%Y-%m-%dT%H:%M:%SZ'), {raw_ts}) as order_ts,
            {q('customer')} as customer_ref,
            {currency} as currency,
            {q('amount')} as order_total,
            {q('items')} as item_count,
            case when lower({q('channel')}) = 'app' then 'app' else 'web' end as device,
            {q('store')} as store_id,
            coalesce(cast({parsed} as date), date '{unparseable_day.isoformat()}') as _day
        from src
    """)
    later = con.execute(f"select count(*) from orders where _day > date '{until.isoformat()}'").fetchone()[0]
    rows = con.execute(f"select * from orders where _day <= date '{until.isoformat()}' order by _day, order_id")
    landing = work_dir / "landing"
    target = landing / "shop" / "orders"
    if target.exists():
        for old in target.glob("*.csv"):
            old.unlink()
    target.mkdir(parents=True, exist_ok=True)
    days, written = set(), 0
    handle, writer, current = None, None, None
    for row in iter(lambda: rows.fetchmany(50_000), []):
        for order_id, ts, ref, cur, total, items, device, store, day in row:
            if day != current:
                if handle:
                    handle.close()
                current = day
                days.add(day)
                handle = (target / f"{day.isoformat()}.csv").open("w", encoding="utf-8", newline="")
                handle.write(BYO_HEADER + "\n")
                writer = csv.writer(handle, lineterminator="\n")
            writer.writerow([order_id, ts, ref, "", "", cur, total, "", items or "", "", "completed", device,
                             store or ""])
            written += 1
    if handle:
        handle.close()
    if until not in days:  # the logical date's file must exist (a header-only file is a quiet day)
        (target / f"{until.isoformat()}.csv").write_text(BYO_HEADER + "\n", encoding="utf-8")
    con.close()
    sources = work_dir / "sources.yml"
    mapping = "\n".join(f"      {c}: {c}" for c in BYO_HEADER.split(",")[:-1]).replace(
        "      order_ts: order_ts", "      ordered_at: {from: order_ts, parse: iso}")
    sources.write_text(
        f"# generated by `custseg run --orders {path}`: one shop_orders source over its daily split\n"
        "sources:\n  shop_orders:\n    channel: online_orders\n    format: csv\n"
        f"    path: shop/orders/{{date}}.csv\n    columns:\n{mapping}\n", encoding="utf-8")
    return {"landing_dir": landing, "sources_file": sources, "rows": written, "after_as_of": later,
            "days": len(days), "columns": col}
