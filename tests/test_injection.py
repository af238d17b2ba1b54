"""Injection payloads through every entry point of user text: no SQL is ever built from it.

Entry points: `custseg run --orders` flags (and --orders-config), the DAG's params (`orders`,
`orders_options`), `config/sources.yml` values, and the column names in an export's header.

Each case asserts one of two outcomes:
* a one-line error naming the option, and no side effect: no file created or changed under the
  data directory, no marker file where a payload tries to write one, no table changed (a
  fingerprint of every table before and after); or
* where the text is only data (a column name, a customer reference), a normal load that stores
  it verbatim.

The payloads try to close a quoted SQL string or identifier and run a statement that writes a
marker file (`copy ... to`, `attach`), to smuggle an option into a DuckDB reader call
(`', delim='|`), or to break a reader with a NUL byte or a very long value.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from custseg import cli
from custseg.config import load_settings
from custseg.ops.locks import run_lock
from custseg.steps import byo
from custseg.steps.prepare import prepare_warehouse
from custseg.warehouse import connect
from tests.conftest import run_cli, warehouse_env

MARKER = Path("/tmp/custseg-injection-marker")
AS_OF = dt.date(2026, 6, 30)
HEAD = "order_id,customer,order_date,amount\n"
ROWS = "A1,C1,2026-01-05,10\nA2,C2,2026-01-06,5\n"

PAYLOADS = {
    "close-string": f"'; copy (select 1) to '{MARKER}.csv'; --",
    "reader-option": "', delim='|",
    "close-identifier": f"\"); attach '{MARKER}.db' as x; --",
    "close-paren": f"x')); copy (select 1) to '{MARKER}.paren'; select (('",
    "nul": "\x00",
    "newline": "a\nb; copy (select 1) to '/tmp/custseg-injection-marker.nl'",
    "long": "'" + "x" * 20_000,
}


# -- side-effect checks -------------------------------------------------------------------------------------


def markers() -> list[Path]:
    return sorted(MARKER.parent.glob(MARKER.name + "*"))


def files_under(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def table_fingerprint(duckdb_path: Path) -> dict[str, str]:
    """Every table's rows, hashed (order-independent): any change to any table shows."""
    con = duckdb.connect(str(duckdb_path), read_only=True)
    try:
        tables = con.execute("select table_schema, table_name from information_schema.tables "
                             "where table_type = 'BASE TABLE' order by 1, 2").fetchall()
        out = {}
        for schema, table in tables:
            rows = con.execute(f'select * from "{schema}"."{table}"').fetchall()
            out[f"{schema}.{table}"] = hashlib.sha256("\n".join(sorted(map(repr, rows))).encode()).hexdigest()
        return out
    finally:
        con.close()


class World:
    """A data directory with a bootstrapped DuckDB warehouse and an export; snapshots its state."""

    def __init__(self, root: Path) -> None:
        self.data = root / "data"
        self.env = warehouse_env("duckdb", self.data, duckdb_path=self.data / "warehouse.duckdb")
        self.settings = load_settings(self.env)
        prepare_warehouse(self.settings)
        with run_lock(self.settings):  # the lock file of earlier runs exists, as in real life
            pass
        self.export = self.data / "orders.csv"
        self.export.write_text(HEAD + ROWS, encoding="utf-8")
        for marker in markers():
            marker.unlink()
        self.before = self.state()

    def state(self) -> tuple[dict, dict]:
        return files_under(self.data), table_fingerprint(self.settings.duckdb_path)

    def assert_untouched(self) -> None:
        assert markers() == []
        files, tables = self.state()
        assert files == self.before[0], "a file was created or changed"
        assert tables == self.before[1], "a table was changed"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    yield World(tmp_path_factory.mktemp("injection"))
    for marker in markers():
        marker.unlink()


def one_line_error(exc: BaseException | str, *must_contain: str) -> str:
    text = str(exc)
    assert "\n" not in text and "\r" not in text and len(text) < 1200, text[:300]
    for part in must_contain:
        assert part in text, (part, text[:300])
    return text


# -- CLI flags ------------------------------------------------------------------------------------------------

#: flag -> words the error must contain
CLI_FLAGS = {
    "--delimiter": "orders option delimiter",
    "--date-format": "orders option date_format",
    "--currency": "orders option currency",
    "--encoding": "orders option encoding",
    "--customer": "(for --customer)",
    "--amount": "(for --amount)",
    "--ordered-at": "(for --ordered-at)",
    "--order-id": "(for --order-id)",
    "--store": "(for --store)",
    "--names": "no column for customer",  # names are data: these just do not name the columns
}


def run_in_process(world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, *flags: str,
                   orders: str | None = None) -> str:
    """`custseg run --orders ...` in this process (the real CLI code): its exit code must be non-zero
    and its stderr one line; returns that line."""
    for key, value in world.env.items():
        monkeypatch.setenv(key, value)
    capsys.readouterr()
    try:
        code = cli.main(["run", "--orders", orders or str(world.export), "--as-of", AS_OF.isoformat(), *flags])
    except SystemExit as exc:  # a main() that leaves printing the message to the interpreter
        code, message = 1, str(exc.code)
    else:
        message = capsys.readouterr().err.strip()
    assert code not in (0, None), message
    return message


@pytest.mark.parametrize("payload", list(PAYLOADS.values()), ids=list(PAYLOADS))
@pytest.mark.parametrize("flag", list(CLI_FLAGS))
def test_cli_flags_refuse_payloads_in_one_line_without_side_effects(world: World, monkeypatch, capsys, flag: str,
                                                                      payload: str) -> None:
    error = run_in_process(world, monkeypatch, capsys, flag, payload)
    one_line_error(error, CLI_FLAGS[flag])
    world.assert_untouched()


@pytest.mark.parametrize(("names", "message"), [
    ("order_id,,customer", "has an empty name"),
    ("a,b,a", "duplicate name(s) a"),
])
def test_names_must_be_distinct_and_non_empty(world: World, monkeypatch, capsys, names: str, message: str) -> None:
    one_line_error(run_in_process(world, monkeypatch, capsys, "--names", names), "orders option names", message)
    world.assert_untouched()


def test_orders_path_and_orders_config_payloads(world: World, monkeypatch, capsys, tmp_path: Path) -> None:
    for name, payload in PAYLOADS.items():
        if name != "nul":  # (a NUL cannot be in a path)
            one_line_error(run_in_process(world, monkeypatch, capsys, orders=payload[:200]), "orders: ")
        config = tmp_path / "orders.yml"
        config.write_text(json.dumps({"delimiter": payload, "columns": {"customer": "customer"}}), encoding="utf-8")
        one_line_error(run_in_process(world, monkeypatch, capsys, "--orders-config", str(config)),
                       "orders option delimiter")
        config.write_text(json.dumps({payload: 1}), encoding="utf-8")
        message = one_line_error(run_in_process(world, monkeypatch, capsys, "--orders-config", str(config)))
        # (YAML itself refuses a key of over 1024 characters)
        assert "unknown key(s)" in message or (name == "long" and "cannot be read as YAML" in message), message
    world.assert_untouched()


def test_the_real_cli_prints_one_line_and_exits_non_zero(world: World, airflow_home: Path) -> None:
    result = run_cli(["run", "--orders", str(world.export), "--as-of", AS_OF.isoformat(),
                      "--delimiter", PAYLOADS["close-string"]], world.env, airflow_home)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [result.stderr.strip()], result.stderr
    assert "orders option delimiter:" in result.stderr and "use one of" in result.stderr
    world.assert_untouched()


# -- DAG conf -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("payload", list(PAYLOADS.values()), ids=list(PAYLOADS))
@pytest.mark.parametrize("key", ["delimiter", "date_format", "currency", "reporting_currency", "encoding",
                                 "columns", "names", "key"])
def test_dag_params_refuse_payloads_before_any_work(world: World, key: str, payload: str) -> None:
    options: dict = {key: payload}
    expect = f"orders option {key}"
    if key == "columns":
        options, expect = {"columns": {"customer": payload}}, "(for --customer)"
    elif key == "names":
        expect = "no column for customer"
    elif key == "key":
        options, expect = {payload: ","}, "unknown key(s)"
    params = {"orders": str(world.export), "orders_options": options}
    with pytest.raises(byo.ByoError) as caught:
        byo.split_for_run(world.settings, params, AS_OF, "manual__" + payload[:50])
    one_line_error(caught.value, expect)
    world.assert_untouched()


def test_the_orders_param_itself_is_a_path_only(world: World) -> None:
    for payload in PAYLOADS.values():
        with pytest.raises(byo.ByoError) as caught:
            byo.split_for_run(world.settings, {"orders": payload[:200]}, AS_OF, "r")
        one_line_error(caught.value, "orders: ")
    world.assert_untouched()


@pytest.mark.e2e
def test_a_real_dag_run_with_a_crafted_delimiter_fails_at_prepare_and_changes_nothing(
        world: World, airflow_home: Path) -> None:
    conf = {"orders": str(world.export), "orders_options": {"delimiter": PAYLOADS["close-string"],
                                                            "date_format": PAYLOADS["reader-option"]}}
    result = run_cli(["dags", "test", "customer_segmentation", AS_OF.isoformat(), "--conf", json.dumps(conf)],
                     world.env, airflow_home, program="airflow")
    output = result.stdout + result.stderr
    assert markers() == []
    files, tables = world.state()
    # the failed task is recorded in ops.run_audit (that is the audit working), so the warehouse file
    # changes; no other file does, and no other table
    warehouse = str(world.settings.duckdb_path)
    assert {f: v for f, v in files.items() if not f.startswith(warehouse)} == {
        f: v for f, v in world.before[0].items() if not f.startswith(warehouse)}, "the refused run wrote a file"
    changed = {t for t in tables if tables[t] != world.before[1].get(t)}
    assert changed <= {"ops.run_audit"}, changed
    with connect(world.settings) as wh:
        audit = wh.fetchall("select task_id, status, error from ops.run_audit")
    assert [(task, status) for task, status, _ in audit] == [("prepare", "failed")], output[-3000:]
    one_line_error(audit[0][2].strip(), "orders option delimiter", "is not allowed; use one of")
    # (the table is restored for the other cases of this module)
    with connect(world.settings) as wh:
        wh.execute("delete from ops.run_audit")
    world.before = world.state()


# -- column names in the export's header: data, stored verbatim -------------------------------------------


def test_header_column_names_and_values_are_data(world: World, tmp_path: Path) -> None:
    """Crafted header names mapped with the column flags, crafted values: the load stores them as they are."""
    names = {"customer": PAYLOADS["close-string"], "amount": PAYLOADS["close-identifier"],
             "ordered_at": PAYLOADS["reader-option"].replace(",", ";")}
    refs = [PAYLOADS["close-paren"].replace(",", ";"), "'; drop table raw.shop_orders; --", "\"x\"\"y"]
    export = tmp_path / "crafted.csv"
    lines = [",".join(["order_id", _csv(names["customer"]), _csv(names["ordered_at"]), _csv(names["amount"])])]
    lines += [f"A{i},{_csv(ref)},2026-01-0{i + 1},{i + 1}" for i, ref in enumerate(refs)]
    export.write_text("\n".join(lines) + "\n", encoding="utf-8")
    data = tmp_path / "data"
    env = warehouse_env("duckdb", data, duckdb_path=data / "warehouse.duckdb")
    settings = load_settings(env)
    prepare_warehouse(settings)
    params = {"orders": str(export), "orders_options": {"columns": names}}
    info = byo.split_for_run(settings, params, AS_OF, "crafted-run")
    assert info is not None and info["rows"] == 3 and info["rejected"] == 0
    assert info["columns"]["customer"] == names["customer"]
    from custseg.steps.ingest import ingest_source

    ingest_source(byo.run_settings(settings, params, "crafted-run"), "shop_orders", AS_OF, "crafted-run")
    with connect(settings) as wh:
        stored = sorted(r[0] for r in wh.fetchall("select customer_ref from raw.shop_orders"))
        tables = {r[0] for r in wh.fetchall("select table_name from information_schema.tables "
                                            "where table_schema = 'raw'")}
    assert stored == sorted(refs) and "shop_orders" in tables
    assert markers() == []


def _csv(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


# -- config/sources.yml -------------------------------------------------------------------------------------

SOURCES_TEMPLATE = """
sources:
  shop_orders:
    channel: online_orders
    format: csv
    path: {path}
    delimiter: {delimiter}
    columns:
      order_id: order_id
      ordered_at: {ordered_at}
      customer_ref: {customer_ref}
      currency: currency
      order_total: order_total
"""
LANDING_HEADER = "order_id,order_ts,{customer_ref},currency,order_total"


def _sources(tmp_path: Path, *, path: str = "shop/orders/{date}.csv", delimiter: str = ",",
             ordered_at: str = "{from: order_ts, parse: iso}", customer_ref: str = "customer_ref") -> Path:
    file = tmp_path / "sources.yml"
    file.write_text(SOURCES_TEMPLATE.format(path=json.dumps(path), delimiter=json.dumps(delimiter),
                                            ordered_at=ordered_at, customer_ref=json.dumps(customer_ref)),
                    encoding="utf-8")
    return file


@pytest.fixture
def landing(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    data = tmp_path / "data"
    env = warehouse_env("duckdb", data, duckdb_path=data / "warehouse.duckdb")
    prepare_warehouse(load_settings(env))
    for marker in markers():
        marker.unlink()
    yield data, env
    shutil.rmtree(data, ignore_errors=True)


@pytest.mark.parametrize("payload", list(PAYLOADS.values()), ids=list(PAYLOADS))
@pytest.mark.parametrize("key", ["delimiter", "parse"])
def test_sources_yml_option_values_are_refused_in_one_line(tmp_path: Path, key: str, payload: str) -> None:
    from custseg.sources import SourceConfigError, load_sources

    if key == "delimiter":
        file = _sources(tmp_path, delimiter=payload)
    else:
        file = _sources(tmp_path, ordered_at="{from: order_ts, parse: " + json.dumps("date:" + payload) + "}")
    with pytest.raises(SourceConfigError) as caught:
        load_sources(file)
    one_line_error(caught.value, "key 'columns.ordered_at.parse'" if key == "parse" else "key 'delimiter'")
    assert markers() == []


#: (a NUL or a line break cannot be in a CSV header's column name that ingestion reads line by line,
#: and 20,000 characters cannot be a file name)
DATA_PAYLOADS = {k: p for k, p in PAYLOADS.items() if k not in ("nul", "long", "newline")}


@pytest.mark.parametrize("payload", list(DATA_PAYLOADS.values()), ids=list(DATA_PAYLOADS))
def test_sources_yml_column_names_and_paths_are_data(landing, payload: str) -> None:
    """A crafted column name (quoted identifier) and a crafted file name (bound/quoted path) load as data."""
    from custseg.steps.ingest import ingest_source

    data, env = landing
    folder = "shop" + payload.replace("/", "_").replace("\n", "_")[:60]
    file = _sources(data, path=folder + "/{date}.csv", customer_ref=payload)
    day = dt.date(2026, 3, 2)
    target = data / "landing" / folder / f"{day.isoformat()}.csv"
    target.parent.mkdir(parents=True)
    target.write_text(LANDING_HEADER.format(customer_ref=_csv(payload)) + "\nSO-1,2026-03-02T10:00:00Z,"
                      + _csv(payload) + ",EUR,10.50\n", encoding="utf-8")
    settings = load_settings({**env, "CUSTSEG_SOURCES_FILE": str(file)})
    settings = settings if settings.sources_file == file else _with_sources(settings, file)
    before = files_under(data)
    ingest_source(settings, "shop_orders", day, "inj")
    with connect(settings) as wh:
        assert wh.fetchall("select customer_ref from raw.shop_orders") == [(payload,)]
    assert markers() == []
    assert {p for p in files_under(data) if p not in before} <= {str(settings.duckdb_path) + ".wal"}


def _with_sources(settings, file: Path):
    import dataclasses

    return dataclasses.replace(settings, sources_file=file)


def test_no_marker_file_was_ever_written() -> None:
    assert markers() == [], "an injected statement wrote a file"
    assert not os.path.exists(f"{MARKER}.csv")
