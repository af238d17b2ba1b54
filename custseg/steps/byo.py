"""Bring your own orders: run the whole nightly pipeline on one plain order export.

`custseg run --orders PATH --as-of D` and a DAG run triggered with the params ``orders`` (and
optionally ``orders_options``) take the same path: the run's ``prepare`` task splits the export by
order date into daily landing files of the ``shop_orders`` layout, with a generated sources file
that declares that one source, and every later task of the run reads those instead of the
configured landing files (:func:`run_settings`). Rows dated after the run's date are not written
(they are counted), so nothing after the as-of date reaches any computation.

The split is plain Python (``csv``, ``datetime``), never SQL: option values, the path and the
header's column names are data here, and options are checked against allow-lists before any work
starts (:func:`normalise_options`). Each run splits into a folder of its own
(``<data>/byo/<run id>``), so two runs never share staged input.

Nothing is lost silently. Every record of the export ends up in exactly one of: a row of a daily
landing file (which ingestion loads or quarantines), a rejected record in the sidecar
``<day>.csv.rejects.jsonl`` (which ingestion quarantines with its reason), or the count of rows
after the as-of date in ``<as-of>.csv.meta.json`` (which ingestion records in ``ops.load_audit``).
Rejected records and rows whose date does not parse all go to one stable partition: the export's
earliest order date (or the as-of date if that is earlier), so whatever run or date range reads
the export, they are quarantined once.
"""

from __future__ import annotations

import codecs
import csv
import dataclasses
import datetime as dt
import hashlib
import json
import os
import re
import shutil
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from custseg.catalogue import KNOWN_CURRENCIES
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
    # optional: the product category feeds customer_interests (unknown when the export has none)
    "category": ("--category", ("category", "product_category", "department")),
}
BYO_REQUIRED = ("customer", "ordered_at", "amount")
#: The landing layout (shop_orders). ``store_id`` and ``export_line`` (the record's line in the
#: export) are not mapped, so ingestion keeps them in ``raw.shop_orders._extras``.
BYO_COLUMNS = ("order_id", "order_ts", "customer_ref", "customer_email", "customer_phone", "currency", "order_total",
               "discount_amount", "item_count", "category", "order_status", "device", "store_id", "export_line")
BYO_HEADER = ",".join(BYO_COLUMNS)
UNMAPPED_COLUMNS = ("store_id", "export_line")

#: The options an export can carry (CLI flags, --orders-config YAML, or the DAG param orders_options).
OPTION_KEYS = ("columns", "delimiter", "names", "date_format", "currency", "reporting_currency", "encoding")

WHITESPACE = "whitespace"
#: --delimiter as written -> the separator; `\t` is accepted as typed in a shell (two characters).
DELIMITERS = {",": ",", ";": ";", "\t": "\t", "\\t": "\t", "|": "|", WHITESPACE: WHITESPACE}
#: strptime directives Python understands; anything else after a `%` is refused up front.
DATE_DIRECTIVES = frozenset("aAwdbBmyYHIpMSfzZjUWcxXGuV%")
#: what may stand between directives: letters, digits, blanks and ordinary date punctuation.
DATE_LITERAL = re.compile(r"[A-Za-z0-9 .,:/_+\-]")
MAX_DATE_FORMAT_CHARS = 40
DEFAULT_ENCODING = "utf-8"

#: The first bytes read to recognise a file that is not text at all.
SNIFF_BYTES = 8192
#: File signatures of what users commonly save under a .csv name, with the fix.
MAGIC = (
    (b"\x1f\x8b", "gzip-compressed data", "decompress it first (gunzip)"),
    (b"PK\x03\x04", "a ZIP archive or an Excel .xlsx workbook", "extract the CSV, or save the sheet as CSV"),
    (b"PAR1", "a Parquet file", "export the orders as CSV"),
    (b"\xd0\xcf\x11\xe0", "an Excel .xls workbook", "save the sheet as CSV"),
    (b"%PDF", "a PDF document", "export the orders as CSV"),
    (b"\xff\xfe", "UTF-16 text", "re-export it as UTF-8 (Excel: 'CSV UTF-8')"),
    (b"\xfe\xff", "UTF-16 text", "re-export it as UTF-8 (Excel: 'CSV UTF-8')"),
)
_SURROGATE = re.compile("[\udc80-\udcff]")
_CONTROL = re.compile("[\x00-\x1f\x7f\u2028\u2029\ud800-\udfff]")
#: The split's layout version: a split written by older code is never reused.
SPLIT_VERSION = 2


# -- options ---------------------------------------------------------------------------------------


def one_line(text: object, limit: int = 80) -> str:
    """User text fit for a one-line message: control characters escaped, long text cut."""
    shown = _CONTROL.sub(lambda m: repr(m.group())[1:-1], str(text))
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


def _check_delimiter(value: object) -> str:
    if not isinstance(value, str) or value not in DELIMITERS:
        raise ByoError(f"orders option delimiter: {one_line(value)!r} is not allowed; use one of "
                       "',' ';' '\\t' '|' 'whitespace'")
    return DELIMITERS[value]


def _check_currency(key: str, value: object) -> str | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str) or value.strip().upper() not in KNOWN_CURRENCIES:
        raise ByoError(f"orders option {key}: {one_line(value)!r} is not a known currency; use one of "
                       f"{', '.join(KNOWN_CURRENCIES)}")
    return value.strip().upper()


def _check_date_format(value: object) -> str | None:
    if value in (None, ""):
        return None
    allowed = "strptime directives (%Y %m %d %H %M %S ...) with letters, digits, blanks and . , : / _ + -"
    if not isinstance(value, str) or len(value) > MAX_DATE_FORMAT_CHARS:
        raise ByoError(f"orders option date_format: {one_line(value)!r} is not a date format (at most "
                       f"{MAX_DATE_FORMAT_CHARS} characters of {allowed})")
    i, directives = 0, 0
    while i < len(value):
        if value[i] == "%":
            if i + 1 >= len(value) or value[i + 1] not in DATE_DIRECTIVES:
                raise ByoError(f"orders option date_format: {one_line(value)!r} has an unknown directive at "
                               f"position {i + 1}; allowed: {allowed}")
            directives, i = directives + 1, i + 2
            continue
        if not DATE_LITERAL.fullmatch(value[i]):
            raise ByoError(f"orders option date_format: {one_line(value)!r} contains {value[i]!r}; allowed: {allowed}")
        i += 1
    if not directives:
        raise ByoError(f"orders option date_format: {one_line(value)!r} has no directive; allowed: {allowed}")
    return value


def _check_encoding(value: object) -> str:
    if value in (None, ""):
        return DEFAULT_ENCODING
    problem = f"orders option encoding: {one_line(value)!r} is not a usable encoding; use e.g. utf-8, latin-1, cp1252"
    if not isinstance(value, str):
        raise ByoError(problem)
    try:
        info = codecs.lookup(value)
    except (LookupError, ValueError) as exc:  # ValueError: a NUL in the name
        raise ByoError(problem) from exc
    # Lines are split on ASCII newlines before decoding (so one bad line is rejected alone): only
    # encodings that write ASCII as ASCII (not UTF-16/32, not transforms like rot13) can be split so.
    if info.name == "utf-8-sig":
        return "utf-8"  # a UTF-8 BOM is always accepted
    probe = "order_id,customer;|\t\"\r\n 0123456789"
    try:
        ascii_compatible = probe.encode(info.name) == probe.encode("ascii")
    except (LookupError, UnicodeError, TypeError):
        ascii_compatible = False
    if not ascii_compatible:
        raise ByoError(f"orders option encoding: {one_line(value)!r} is not supported (not ASCII-compatible); "
                       "re-export the file as UTF-8, or use e.g. latin-1, cp1252")
    return info.name


def _check_names(value: object) -> list[str] | None:
    if value in (None, "", []):
        return None
    if isinstance(value, str):
        names = [n.strip() for n in value.split(",")]
    elif isinstance(value, list) and all(isinstance(n, str) for n in value):
        names = [n.strip() for n in value]
    else:
        raise ByoError("orders option names: a comma-separated string or a list of column names")
    if any(not n for n in names):
        raise ByoError(f"orders option names: {one_line(','.join(names))!r} has an empty name; "
                       "give every column a name")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ByoError(f"orders option names: duplicate name(s) {one_line(', '.join(duplicates))}; "
                       "every column needs its own name")
    return names


def _check_columns(value: object) -> dict[str, str]:
    if value in (None, {}):
        return {}
    if not isinstance(value, dict):
        raise ByoError("orders option columns: a mapping of field -> column name, e.g. {customer: cust_no}")
    bad = sorted(str(k) for k in set(value) - set(BYO_FIELDS))
    if bad:
        raise ByoError(f"orders options: unknown column field(s) {one_line(', '.join(bad))}; "
                       f"allowed: {', '.join(BYO_FIELDS)}")
    for field, column in value.items():
        if not isinstance(column, str) or not column:
            raise ByoError(f"orders option columns.{field}: a column name of the export (text), "
                           f"not {one_line(column)!r}")
    return dict(value)


def normalise_options(options: dict[str, Any] | None) -> dict[str, Any]:
    """Defaults and types for the export options, every value checked against its allow-list.

    Raises ByoError naming the option and what is allowed; nothing has been read or written by
    then. Idempotent: normalised options pass through unchanged.
    """
    options = dict(options or {})
    unknown = sorted(str(k) for k in set(options) - set(OPTION_KEYS))
    if unknown:
        raise ByoError(f"orders options: unknown key(s) {one_line(', '.join(unknown))}; "
                       f"allowed: {', '.join(OPTION_KEYS)}")
    currency = _check_currency("currency", options.get("currency"))
    reporting = _check_currency("reporting_currency", options.get("reporting_currency"))
    return {
        "columns": _check_columns(options.get("columns")),
        "delimiter": _check_delimiter(options.get("delimiter") or ","),
        "names": _check_names(options.get("names")),
        "date_format": _check_date_format(options.get("date_format")),
        # the currency of amounts when the export has no currency column (None: EUR)
        "currency": currency,
        # an export in one stated currency is reported in it, unless a reporting currency is given
        "reporting_currency": reporting or currency,
        "encoding": _check_encoding(options.get("encoding")),
    }


# -- where a run's split lives ---------------------------------------------------------------------


def run_folder_name(run_id: str) -> str:
    """A folder name for a run id: safe characters only, plus a hash so two ids never share one."""
    safe = re.sub(r"[^A-Za-z0-9_-]+", "_", run_id).strip("_")[:80] or "run"
    if safe == run_id:
        return safe
    return f"{safe}-{hashlib.sha256(run_id.encode()).hexdigest()[:8]}"


def work_dir_for(settings: Settings, run_id: str, work_dir: str | Path | None = None) -> Path:
    """The run's own split folder: ``work_dir`` when given, else ``<data>/byo/<run id>``."""
    return Path(work_dir) if work_dir else settings.landing_dir.parent / "byo" / run_folder_name(run_id)


def run_settings(settings: Settings, params: dict[str, Any] | None, run_id: str) -> Settings:
    """The settings a DAG run works with: a bring-your-own-orders run reads its own split."""
    params = params or {}
    if not params.get("orders"):
        return settings
    work_dir = work_dir_for(settings, run_id, params.get("orders_work_dir"))
    return dataclasses.replace(settings, landing_dir=work_dir / "landing", sources_file=work_dir / "sources.yml")


def reporting_settings(settings: Settings, params: dict[str, Any] | None) -> Settings:
    """The settings dbt works with in a run: an orders run reports in its export's currency when it
    states one. dbt reads it from the environment (dbt_project.yml's var default), not from --vars,
    so that an ordinary night does not make dbt re-parse the project."""
    params = params or {}
    if not params.get("orders"):
        return settings
    reporting = normalise_options(params.get("orders_options"))["reporting_currency"]
    return dataclasses.replace(settings, reporting_currency=reporting) if reporting else settings


def resolve_orders_path(settings: Settings, orders: str) -> Path:
    """An absolute path, or one relative to the data directory (the parent of the landing dir)."""
    path = Path(orders)
    return path if path.is_absolute() else settings.landing_dir.parent / path


def check_params(params: dict[str, Any] | None) -> dict[str, Any] | None:
    """A DAG run's export options checked before the run touches anything (None: not an orders run)."""
    params = params or {}
    if not params.get("orders"):
        return None
    if not isinstance(params["orders"], str):
        raise ByoError("orders: a path (text) to one order export")
    return normalise_options(params.get("orders_options"))


def split_for_run(settings: Settings, params: dict[str, Any], as_of_date: dt.date, run_id: str
                  ) -> dict[str, object] | None:
    """The ``prepare`` task's part: make sure the run's split of the export covers ``as_of_date``."""
    options = check_params(params)
    if options is None:
        return None
    path = resolve_orders_path(settings, params["orders"])
    return ensure_split(path, as_of_date, work_dir_for(settings, run_id, params.get("orders_work_dir")), options)


# -- reading the export ----------------------------------------------------------------------------


def _unreadable(path: Path, problem: str, fix: str) -> ByoError:
    return ByoError(f"orders: {one_line(path, 300)} {problem}; {fix}")


def check_readable(path: Path) -> None:
    """Fail at once, in one line naming the file and the fix, when ``path`` is not a text export."""
    if not path.exists():
        raise _unreadable(path, "does not exist", "check the path (absolute, or relative to the data directory)")
    if path.is_dir():
        raise _unreadable(path, "is a directory", "pass the export file itself")
    if not path.is_file():
        raise _unreadable(path, "is not a regular file", "pass the export file itself")
    try:
        with path.open("rb") as fh:
            head = fh.read(SNIFF_BYTES)
    except OSError as exc:
        raise _unreadable(path, f"cannot be read ({one_line(exc.strerror or exc)})",
                          "check its permissions") from exc
    for magic, what, fix in MAGIC:
        if head.startswith(magic):
            raise _unreadable(path, f"is {what}, not a CSV text file", fix)
    nuls = head.count(b"\x00")
    if nuls > 8 and nuls * 20 > len(head):
        raise _unreadable(path, "holds binary data (NUL bytes), not CSV text",
                          "export the orders as CSV (UTF-8 text)")
    if not head.strip().strip(b"\xef\xbb\xbf").strip():
        raise _unreadable(path, "is empty (no header line)", "export the orders with a header line")


def _physical_lines(fh: IO[bytes]) -> Iterator[bytes]:
    """The file's lines as bytes; old-Mac files that end lines with CR alone are split on CR."""
    head = fh.read(SNIFF_BYTES)
    if b"\n" not in head and b"\r" in head:
        yield from (head + fh.read()).splitlines(keepends=True)
        return
    fh.seek(0)
    yield from fh


class _Lines:
    """Decoded lines for the csv module, remembering the raw bytes of the record being read.

    Each line is decoded on its own with ``surrogateescape``, so a line that is not valid in the
    encoding is recognisable (and rejected) without failing the file; lines can be pushed back to
    re-read them after a stray quote swallowed them.
    """
    def __init__(self, raw: Iterator[bytes], encoding: str) -> None:
        self.raw, self.encoding = raw, encoding
        self.pending: deque[tuple[int, bytes]] = deque()
        self.consumed: list[tuple[int, bytes]] = []
        self.number = 0  # physical lines read so far (1 = the file's first line)

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        if self.pending:
            number, line = self.pending.popleft()
        else:
            line = next(self.raw)
            self.number += 1
            number = self.number
            if number == 1 and line.startswith(b"\xef\xbb\xbf") and self.encoding == "utf-8":
                line = line[3:]
        self.consumed.append((number, line))
        return line.decode(self.encoding, errors="surrogateescape")

    def take(self) -> list[tuple[int, bytes]]:
        taken, self.consumed = self.consumed, []
        return taken


@dataclasses.dataclass(frozen=True)
class Record:
    """One record of the export: ``line`` is its first line counted from the first data line (1)."""
    line: int
    fields: list[str]
    raw: bytes
    problem: str | None


def _encoding_problem(encoding: str) -> str:
    if encoding == "utf-8":
        return "not valid UTF-8; if the file is Latin-1 or Windows-1252 pass --encoding cp1252"
    return f"not valid {encoding}; pass the file's --encoding (utf-8, latin-1, cp1252, ...)"


def _problem(fields: list[str], width: int | None, encoding: str) -> str | None:
    joined = "\x1f".join(fields)  # one scan of the record, not one per field
    if _SURROGATE.search(joined):
        return _encoding_problem(encoding)
    if "\x00" in joined:
        return "contains a NUL byte (binary data in a text export)"
    if width is not None and len(fields) != width:
        return f"expected {width} fields, found {len(fields)}"
    return None


def _is_blank(fields: list[str]) -> bool:
    return not fields or (len(fields) == 1 and not fields[0].strip())


def _raw_records(path: Path, options: dict[str, Any]) -> Iterator[tuple[int, list[str], bytes, str | None]]:
    """(physical line, fields, raw bytes, problem) of every non-blank record, the header included.

    A record that the csv module joined over several lines (a quoted field with a line break) is
    kept when it has the header's number of fields; otherwise a stray quote swallowed the lines
    after it, so only its first line is rejected and the others are read again.
    """
    encoding, delimiter = options["encoding"], options["delimiter"]
    width = len(options["names"]) if options["names"] else None  # else: the header's
    with path.open("rb") as fh:
        lines = _Lines(_physical_lines(fh), encoding)
        if delimiter == WHITESPACE:  # space-aligned columns: no quoting, one record per line
            for text in lines:
                (number, raw), = lines.take()
                if text.strip():
                    yield number, text.split(), raw, None
            return
        while True:
            reader = csv.reader(lines, delimiter=delimiter, strict=False)
            try:
                for fields in reader:
                    taken = lines.take()
                    if _is_blank(fields):
                        continue
                    if width is None:
                        width = len(fields)
                    elif len(taken) > 1 and len(fields) != width:
                        lines.pending.extendleft(reversed(taken[1:]))
                        yield taken[0][0], fields, taken[0][1], (
                            f"unclosed quote: expected {width} fields, found {len(fields)} over "
                            f"{len(taken)} lines")
                        break
                    yield taken[0][0], fields, b"".join(raw for _, raw in taken), None
                else:
                    return
            except csv.Error as exc:
                taken = lines.take() or [(lines.number, b"")]
                lines.pending.extendleft(reversed(taken[1:]))
                yield taken[0][0], [], taken[0][1], f"not parseable as CSV: {one_line(exc)}"


def read_export(path: Path, options: dict[str, Any]) -> tuple[list[str], Iterator[Record]]:
    """The export's column names and its data records (header explicit: the first line, or --names)."""
    check_readable(path)
    records = _raw_records(path, options)
    names = options["names"]
    offset = 0  # the header line is not counted: line 1 is the first data line
    if names is None:
        try:
            first_line, header, _, problem = next(records)
        except StopIteration:
            raise _unreadable(path, "is empty (no header line)", "export the orders with a header line") from None
        if problem or _SURROGATE.search("".join(header)) or "\x00" in "".join(header):
            fix = (_encoding_problem(options["encoding"]) if _SURROGATE.search("".join(header))
                   else "the first line must be the header (or pass --names)")
            raise _unreadable(path, "has an unreadable header line", fix)
        names = [h.strip() for h in header]
        offset = first_line

    def data() -> Iterator[Record]:
        for line, fields, raw, problem in records:
            yield Record(line - offset, fields, raw, problem or _problem(fields, len(names), options["encoding"]))

    return names, data()


# -- one record -> one landing row -----------------------------------------------------------------


def resolve_columns(path: Path, names: list[str], options: dict[str, Any]) -> dict[str, int | None]:
    """Field -> index in the export's columns; a missing required column fails the whole file."""
    lower: dict[str, int] = {}
    for i, name in enumerate(names):
        lower.setdefault(name.lower(), i)
    listed = ", ".join(repr(one_line(n, 40)) for n in names[:30])
    col: dict[str, int | None] = {}
    for field, (flag, candidates) in BYO_FIELDS.items():
        given = options["columns"].get(field)
        if given is not None:
            if given not in names:
                raise ByoError(f"orders: {one_line(path, 300)} has no column {one_line(given)!r} (for {flag}); "
                               f"columns: {listed}")
            col[field] = names.index(given)
        else:
            col[field] = next((lower[c] for c in candidates if c in lower), None)
        if col[field] is None and field in BYO_REQUIRED:
            raise ByoError(f"orders: {one_line(path, 300)}: no column for {field}; name it with {flag} COLUMN "
                           f"or columns.{field} (columns: {listed})")
    return col


def check_export(path: Path, options: dict[str, Any]) -> dict[str, int | None]:
    """Everything that fails a whole export, checked without writing anything: the options, the
    file (readable text with a header) and its columns. Returns field -> column index."""
    options = normalise_options(options)
    names, _ = read_export(path, options)
    return resolve_columns(path, names, options)


#: Tried in order when no --date-format is given (ISO 8601 in all its forms comes first).
FALLBACK_DATE_FORMATS = ("%Y/%m/%d", "%Y/%m/%d %H:%M:%S", "%Y-%m-%d %H:%M:%S %z")


def parse_order_time(text: str, date_format: str | None) -> dt.datetime | None:
    """The order's time in UTC (naive), or None when the text does not parse."""
    parsed = None
    if date_format:
        try:
            parsed = dt.datetime.strptime(text, date_format)
        except ValueError:
            return None
    else:
        try:
            parsed = dt.datetime.fromisoformat(text)
        except ValueError:
            for fmt in FALLBACK_DATE_FORMATS:
                try:
                    parsed = dt.datetime.strptime(text, fmt)
                    break
                except ValueError:
                    continue
    if parsed is None:
        return None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(dt.UTC).replace(tzinfo=None)
    return parsed


@dataclasses.dataclass(frozen=True)
class Order:
    """One record as a landing row, with the day it belongs to (None: its date does not parse)."""
    row: list[str]
    day: dt.date | None
    order_id: str | None  # None: generated from the line number (the export had none)
    customer: str


def to_order(record: Record, col: dict[str, int | None], options: dict[str, Any]) -> Order:
    def value(field: str) -> str:
        index = col[field]
        return record.fields[index].strip() if index is not None else ""

    order_id, raw_ts = value("order_id"), value("ordered_at")
    when = parse_order_time(raw_ts, options["date_format"]) if raw_ts else None
    row = [
        order_id or f"L{record.line:09d}",
        # an unparseable date keeps its raw value, so ingestion quarantines it with the reason
        when.isoformat(timespec="seconds") + "Z" if when else raw_ts,
        value("customer"), "", "",
        value("currency") or options["currency"] or "EUR",
        value("amount"), "", value("items"), value("category"), "completed",
        "app" if value("channel").lower() == "app" else "web",
        value("store"),
        str(record.line),
    ]
    return Order(row, when.date() if when else None, order_id or None, value("customer"))


def _digest(fields: list[str]) -> bytes:
    return hashlib.blake2b("\x1f".join(f.strip() for f in fields).encode("utf-8", "surrogateescape"),
                           digest_size=16).digest()


def find_repeated_ids(orders: Iterator[tuple[Record, Order]], until: dt.date) -> tuple[dict[int, str], dt.date | None]:
    """Which records to reject because their order id repeats, and the export's earliest order day.

    Among the rows that would be loaded (with a customer, not after ``until``), an exact duplicate
    (every field identical) keeps its first record; two different records with one order id are a
    conflict, and every record of that id is rejected (which one is right cannot be known).
    """
    seen: dict[str, list[tuple[int, bytes]]] = {}
    earliest: dt.date | None = None
    for record, order in orders:
        if order.day is not None and (earliest is None or order.day < earliest):
            earliest = order.day
        if (order.day is not None and order.day > until) or not order.customer:
            continue
        if order.order_id is not None:
            seen.setdefault(order.order_id, []).append((record.line, _digest(record.fields)))
    rejects: dict[int, str] = {}
    for order_id, occurrences in seen.items():
        if len(occurrences) < 2:
            continue
        lines = [line for line, _ in occurrences]
        if len({digest for _, digest in occurrences}) == 1:
            for line in lines[1:]:
                rejects[line] = f"duplicate of record {lines[0]}"
            continue
        for line in lines:
            others = ", ".join(str(n) for n in lines if n != line)
            rejects[line] = f"conflicting order_id {one_line(order_id)}: also on record(s) {others}"
    return rejects, earliest


# -- the split --------------------------------------------------------------------------------------

MARKER = "split.json"
#: A file in every landing folder the split writes: only such a folder is ever replaced.
SPLIT_TAG = ".custseg-byo-split"


def _fingerprint(path: Path, options: dict[str, Any]) -> str:
    stat = path.stat()
    payload = json.dumps({"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                          "options": options, "version": SPLIT_VERSION}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def ensure_split(path: Path, until: dt.date, work_dir: Path, options: dict[str, Any]) -> dict[str, object]:
    """Split ``path`` up to ``until`` unless the existing split of the same file and options covers it."""
    options = normalise_options(options)
    check_readable(path)
    marker = work_dir / MARKER
    fingerprint = _fingerprint(path, options)
    previous = json.loads(marker.read_text(encoding="utf-8")) if marker.exists() else {}
    if previous.get("fingerprint") == fingerprint and dt.date.fromisoformat(previous["until"]) >= until:
        return {**previous["info"], "reused": True}
    info = prepare_byo_orders(path, until, work_dir, options)
    public = {k: (str(v) if isinstance(v, Path) else v) for k, v in info.items()}
    marker.write_text(json.dumps({"fingerprint": fingerprint, "until": until.isoformat(), "info": public},
                                 sort_keys=True, indent=1), encoding="utf-8")
    return {**public, "reused": False}


class _DayFiles:
    """Daily landing files, written in batches: rows are buffered per day and appended when the
    buffer is full, so memory stays bounded and an unsorted export does not reopen a file per row."""

    MAX_BUFFERED_ROWS = 100_000

    def __init__(self, target: Path) -> None:
        self.target = target
        self.buffers: dict[dt.date, list[list[str]]] = {}
        self.buffered = 0
        self.rows: dict[dt.date, int] = {}

    def path(self, day: dt.date) -> Path:
        return self.target / f"{day.isoformat()}.csv"

    def write(self, day: dt.date, row: list[str]) -> None:
        self.buffers.setdefault(day, []).append(row)
        self.rows[day] = self.rows.get(day, 0) + 1
        self.buffered += 1
        if self.buffered >= self.MAX_BUFFERED_ROWS:
            self.flush()

    def ensure(self, day: dt.date) -> None:
        """A day's file exists even without rows (a header-only file is a quiet day)."""
        self.buffers.setdefault(day, [])
        self.rows.setdefault(day, 0)

    def flush(self) -> None:
        for day, rows in self.buffers.items():
            path = self.path(day)
            new = not path.exists()
            with path.open("a", encoding="utf-8", newline="") as handle:
                writer = csv.writer(handle, lineterminator="\n")
                if new:
                    writer.writerow(BYO_COLUMNS)
                writer.writerows(rows)
        self.buffers.clear()
        self.buffered = 0

    def close(self) -> None:
        self.flush()


#: A rejected record's text is kept up to this length in the quarantine (a broken export can hold
#: one "record" of megabytes; its start is enough to find and fix it).
MAX_RAW_RECORD_CHARS = 20_000


def raw_record_text(raw: bytes, encoding: str) -> str:
    """A rejected record as text for ``raw.quarantine``: undecodable bytes and NUL (which PostgreSQL
    text cannot hold) become U+FFFD, the line ending goes, and a huge record is cut."""
    text = raw.decode(encoding, "replace").rstrip("\r\n").replace("\x00", "\ufffd")
    if len(text) > MAX_RAW_RECORD_CHARS:
        text = text[:MAX_RAW_RECORD_CHARS] + f"... ({len(text):,} characters)"
    return text


def prepare_byo_orders(path: Path, until: dt.date, work_dir: Path, options: dict[str, Any]) -> dict[str, object]:
    """Turn one order export into daily landing files of the shop_orders layout plus a sources file.

    Rows are partitioned by their order date; rows dated after ``until`` are not written but counted
    (``<until>.csv.meta.json``). A record that cannot be used as it stands (wrong number of fields,
    bad encoding, NUL byte, missing customer, repeated order id) goes to the rejects sidecar of the
    reject day, with its line and reason; a row whose date does not parse is written to the reject
    day's file with its raw value, and ingestion quarantines it. The reject day is the export's
    earliest order date, or ``until`` if that is earlier: the same for every run and date range.
    """
    options = normalise_options(options)
    source_file = str(path.resolve())
    names, records = read_export(path, options)
    col = resolve_columns(path, names, options)

    def well_formed(records: Iterator[Record]) -> Iterator[tuple[Record, Order]]:
        return ((record, to_order(record, col, options)) for record in records if record.problem is None)

    # a first pass finds repeated order ids (anywhere in the export) and its earliest day
    repeated, earliest = find_repeated_ids(well_formed(read_export(path, options)[1]), until)
    reject_day = min(earliest, until) if earliest else until

    tmp = work_dir / f".landing-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    target = tmp / "shop" / "orders"
    target.mkdir(parents=True)
    files = _DayFiles(target)
    counts = {"records": 0, "rows": 0, "rejected": 0, "after_as_of": 0}
    rejects_path = files.path(reject_day).with_name(f"{reject_day.isoformat()}.csv.rejects.jsonl")
    with rejects_path.open("w", encoding="utf-8") as rejects:

        def reject(record: Record, reason: str) -> None:
            rejects.write(json.dumps({"source_file": source_file, "line": record.line,
                                      "raw_record": raw_record_text(record.raw, options["encoding"]),
                                      "reason": reason}, ensure_ascii=False) + "\n")
            counts["rejected"] += 1

        for record in records:
            counts["records"] += 1
            if record.problem is not None:
                reject(record, record.problem)
                continue
            order = to_order(record, col, options)
            if order.day is not None and order.day > until:
                counts["after_as_of"] += 1  # not loaded, but counted in ops.load_audit
            elif not order.customer:
                reject(record, "missing customer")
            elif record.line in repeated:
                reject(record, repeated[record.line])
            else:
                # (no surrogate in it: a record that was not valid in its encoding was rejected)
                files.write(order.day or reject_day, order.row)
                counts["rows"] += 1
    files.ensure(until)
    files.ensure(reject_day)  # its rejects sidecar needs a landing file beside it
    files.close()
    if not counts["rejected"]:
        rejects_path.unlink()
    (target / f"{until.isoformat()}.csv.meta.json").write_text(
        json.dumps({"rows_after_as_of": counts["after_as_of"]}) + "\n", encoding="utf-8")
    landing = work_dir / "landing"
    (tmp / SPLIT_TAG).write_text("written by custseg.steps.byo: replaced whole by the next split\n", encoding="utf-8")
    if landing.exists() and not (landing / SPLIT_TAG).exists():
        # orders_work_dir can be any folder: never delete a landing folder this code did not write
        shutil.rmtree(tmp, ignore_errors=True)
        raise ByoError(f"orders work dir {one_line(work_dir, 300)} already holds a landing folder that is not an "
                       "order export's split; choose a new or empty folder")
    shutil.rmtree(landing, ignore_errors=True)
    tmp.rename(landing)
    sources = _write_sources_file(work_dir)
    return {"source_file": source_file, "landing_dir": landing, "sources_file": sources, **counts,
            "days": sum(1 for n in files.rows.values() if n), "reject_day": reject_day.isoformat(),
            "columns": {field: (names[i] if i is not None else None) for field, i in col.items()}}


def _write_sources_file(work_dir: Path) -> Path:
    mapped = [c for c in BYO_COLUMNS if c not in UNMAPPED_COLUMNS]
    mapping = "\n".join(f"      {c}: {c}" for c in mapped).replace(
        "      order_ts: order_ts", "      ordered_at: {from: order_ts, parse: iso}")
    sources = work_dir / "sources.yml"
    sources.write_text(
        "# generated by `custseg run --orders` (custseg/steps/byo.py): one shop_orders source over the export's "
        "daily split\n"
        "sources:\n  shop_orders:\n    channel: online_orders\n    format: csv\n"
        f"    path: shop/orders/{{date}}.csv\n    columns:\n{mapping}\n", encoding="utf-8")
    return sources
