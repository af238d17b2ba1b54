"""`custseg` command line: generate demo data, run the nightly DAG for a date or a range, query.

Commands import what they run inside their function: `custseg --help`, `custseg query` and
`custseg status` start without Airflow, dbt, GX or the ML stack (tests/test_architecture.py).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import sys
import time
from pathlib import Path

from custseg.clock import utc_now
from custseg.config import DEFAULT_DATA_DIR, Settings
from custseg.ops.dag_runs import airflow_env_defaults, run_dag

DEMO_CUSTOMERS = 2_000
DEMO_DAYS = 365
DEMO_END = dt.date(2026, 10, 31)
#: the nights `custseg demo` runs: a first night and two more, so the campaigns of the demo data get measured
DEMO_NIGHTS = tuple(DEMO_END - dt.timedelta(days=n) for n in (2, 1, 0))


def _dates(args: argparse.Namespace) -> list[dt.date]:
    if args.as_of:
        return [dt.date.fromisoformat(args.as_of)]
    start, end = dt.date.fromisoformat(args.date_from), dt.date.fromisoformat(args.date_to)
    if end < start:
        raise SystemExit("--to must not be before --from")
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]


def cmd_generate(args: argparse.Namespace) -> int:
    from custseg.demo.generate import generate

    t0 = time.perf_counter()
    summary = generate(Path(args.out), customers=args.customers, days=args.days,
                       end_date=dt.date.fromisoformat(args.end_date), seed=args.seed)
    print(f"generated {summary.customers} customers, {summary.start_date}..{summary.end_date} "
          f"into {summary.landing_dir} in {time.perf_counter() - t0:.1f}s")
    for source, rows in summary.rows.items():
        print(f"  {source:<19} {rows:>10,} rows")
    return 0


def byo_options(args: argparse.Namespace) -> dict:
    """Export options from the flags over the optional --orders-config YAML (same keys, see custseg.steps.byo)."""
    import yaml

    from custseg.steps.byo import BYO_FIELDS, ByoError

    cfg: dict = {}
    if args.orders_config:
        try:
            cfg = yaml.safe_load(Path(args.orders_config).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ByoError(f"--orders-config {args.orders_config}: cannot be read as YAML "
                           f"({type(exc).__name__}); see README 'Bring your own orders'") from exc
        if not isinstance(cfg, dict):
            raise ByoError(f"--orders-config {args.orders_config}: must be a mapping of option -> value")
    columns = dict(cfg.get("columns") or {})
    for field in BYO_FIELDS:
        if flag_value := getattr(args, f"byo_{field}"):
            columns[field] = flag_value
    options = {**cfg, "columns": columns}
    for key in ("delimiter", "names", "date_format", "currency", "encoding"):
        if value := getattr(args, key):
            options[key] = value
    # CUSTSEG_REPORTING_CURRENCY, when set, beats the export's own currency
    if reporting := os.environ.get("CUSTSEG_REPORTING_CURRENCY"):
        options["reporting_currency"] = reporting
    return {k: v for k, v in options.items() if v not in (None, "", {}, [])}


def cli_run_id() -> str:
    """This invocation's id: names its own split folder, so no two runs ever share staged input."""
    return f"cli-{utc_now():%Y%m%dT%H%M%S}-{os.getpid()}"


def _split_orders(args: argparse.Namespace, settings: Settings, options: dict, until: dt.date) -> dict:
    """Split the export into this invocation's own folder (the caller holds the run lock)."""
    from custseg.steps import byo

    path = Path(args.orders).resolve()
    work_dir = byo.work_dir_for(settings, cli_run_id(), Path(args.work_dir).resolve() if args.work_dir else None)
    # split once for the whole range up front: every DAG run of the range reuses it (custseg.steps.byo.ensure_split)
    info = byo.ensure_split(path, until, work_dir, options)
    print(f"orders from {args.orders}: {info['rows']:,} rows up to {until} in {info['days']} daily partitions, "
          f"{info['rejected']:,} records rejected (quarantined with their reasons), {info['after_as_of']:,} rows "
          f"after {until} not loaded (counted); split in {work_dir}; columns used: "
          + ", ".join(f"{k}={byo.one_line(v, 40)}" for k, v in info["columns"].items() if v))
    return {"orders": str(path), "orders_options": options, "orders_work_dir": str(work_dir)}


def _log_path(settings) -> Path:
    """Where a command's DAG runs log: one file per invocation under `<data dir>/logs/`."""
    from custseg.clock import utc_now

    return settings.data_dir / "logs" / f"custseg-{utc_now():%Y%m%dT%H%M%S}.log"


def cmd_run(args: argparse.Namespace) -> int:
    if args.warehouse:
        os.environ["CUSTSEG_WAREHOUSE"] = args.warehouse
    from custseg.config import load_settings
    from custseg.ops.locks import WarehouseBusyError, run_lock
    from custseg.ops.progress import quiet_console
    from custseg.steps import byo

    dates = _dates(args)
    settings = load_settings()
    options: dict | None = None
    try:
        if args.orders:
            # options and the file are checked before anything is locked or written
            options = byo.normalise_options(byo_options(args))
            byo.check_export(Path(args.orders).resolve(), options)
        # a second `custseg run` on the same warehouse is refused at once, before it writes
        # anything (its export's split included), instead of interleaving with the first
        with run_lock(settings):
            conf = _split_orders(args, settings, options, dates[-1]) if options is not None else {}
            with quiet_console(_log_path(settings), args.verbose) as console:
                if console.log_path:
                    console.say(f"logs (Airflow, dbt): {console.log_path}")
                for day in dates:
                    t0 = time.perf_counter()
                    state = run_dag(day, conf)
                    console.say(f"customer_segmentation as of {day}: {state} ({time.perf_counter() - t0:.0f}s)")
                    if state != "success":
                        return 1
    except (byo.ByoError, WarehouseBusyError) as exc:
        raise SystemExit(str(exc)) from exc
    return 0


def cmd_query(args: argparse.Namespace) -> int:
    import pandas as pd

    from custseg.config import load_settings
    from custseg.warehouse import connect

    settings = load_settings()
    # --table is a name, never SQL: checked and quoted; the positional SQL is the user's own query,
    # run on a read-only connection
    sql = args.sql or f"select * from {_table_name(args.table)} limit {_row_limit(args.limit)}"
    with connect(settings, read_only=True) as wh:
        frame = wh.query_df(sql)
    # SQL's NULL reads as null, not as pandas' NaN / None / NaT; the rows stay in the query's order
    shown = frame.astype(object).where(frame.notna(), "null")
    with pd.option_context("display.max_columns", 50, "display.width", 200):
        print(shown.to_string(index=False))
    return 0


def _table_name(table: str) -> str:
    """``schema.table`` (or ``table``) as quoted identifiers; anything else is a usage error."""
    from custseg.errors import UsageError
    from custseg.warehouse import quote_ident

    parts = table.split(".")
    if not 1 <= len(parts) <= 2 or not all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", p) for p in parts):
        raise UsageError(f"--table {table!r}: give a table name such as analytics.customer_segments")
    return ".".join(quote_ident(p) for p in parts)


def _row_limit(limit: int) -> int:
    from custseg.errors import UsageError

    if limit < 0:
        raise UsageError(f"--limit {limit}: give 0 or more rows")
    return limit


def cmd_models(args: argparse.Namespace) -> int:
    """The model registry as a table: versions, decisions and their main metrics (custseg.registry)."""
    import pandas as pd

    from custseg.config import load_settings
    from custseg.registry import registry_summary
    from custseg.warehouse import connect

    with connect(load_settings(), read_only=True) as wh:
        if not wh.table_exists("ml", "model_runs"):
            print("no model registered yet: the first `custseg run` fits one")
            return 0
        frame = registry_summary(wh, args.limit)
    if frame.empty:
        print("no model registered yet: the first `custseg run` fits one")
        return 0
    frame["decision"] = frame["decision"].str.slice(0, 60)
    shown = frame.astype(object).where(frame.notna(), "-")
    with pd.option_context("display.max_columns", 50, "display.width", 250, "display.float_format", "{:.3f}".format):
        print(shown.to_string(index=False))
    print("\nchurn: ROC AUC of the model and of the best simple baseline, PR AUC and Brier score on the holdout; "
          "clusters: how many, and their silhouette; clv_holdout: error of the predicted purchases and revenue "
          "on the holdout period (%). Full metrics: ml.model_runs.metrics.")
    return 0


def cmd_docs(args: argparse.Namespace) -> int:
    from custseg.config import load_settings
    from custseg.steps.docs import build_docs
    from custseg.steps.report import build_report

    as_of_date = dt.date.fromisoformat(args.as_of)
    settings = load_settings()
    print(f"dbt docs site: {build_docs(settings, as_of_date, force=True)}")
    print(f"run report:    {build_report(settings, as_of_date)}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """The last runs, what is published, and the latest quality failures (custseg.ops.status_report)."""
    from custseg.config import load_settings
    from custseg.ops.status import status_report
    from custseg.steps.report import report_path

    settings = load_settings()
    print(status_report(settings, runs=args.runs, failures=args.failures))
    report = report_path(settings)
    print(f"\nrun report: {report}" if report.exists() else "\nrun report: none yet (written after each publish)")
    return 0


def cmd_paths(args: argparse.Namespace) -> int:
    """Where this install finds its project files and writes its own (docs/configuration.md "Paths")."""
    from custseg.config import DAGS_DIR, DBT_PROJECT_DIR, PROJECT_DIR, load_settings

    settings = load_settings()
    airflow_env_defaults()
    rows = {
        "project (CUSTSEG_PROJECT_DIR)": PROJECT_DIR,
        "dbt project": DBT_PROJECT_DIR,
        "DAGs (point AIRFLOW__CORE__DAGS_FOLDER here)": DAGS_DIR,
        "sources (CUSTSEG_SOURCES_FILE)": settings.sources_file,
        "data (CUSTSEG_DATA_DIR)": settings.data_dir,
        "landing (CUSTSEG_LANDING_DIR)": settings.landing_dir,
        "Airflow home (AIRFLOW_HOME)": os.environ["AIRFLOW_HOME"],
    }
    width = max(map(len, rows))
    for name, path in rows.items():
        print(f"{name:<{width}}  {path}")
    return 0


def cmd_rebuild(args: argparse.Namespace) -> int:
    """Recompute every published date from raw with the current key and code (custseg.rebuild)."""
    from custseg.config import load_settings
    from custseg.ops.progress import quiet_console
    from custseg.rebuild import RebuildError, rebuild

    if args.warehouse:
        os.environ["CUSTSEG_WAREHOUSE"] = args.warehouse
    settings = load_settings()
    try:
        # one progress bar per date's DAG run, like `custseg run`; the logs go to a file
        with quiet_console(_log_path(settings), args.verbose) as console:
            if console.log_path:
                console.say(f"logs (Airflow, dbt): {console.log_path}")
            summary = rebuild(settings, keep_models=args.keep_models, echo=console.say)
    except RebuildError as exc:
        raise SystemExit(str(exc)) from exc
    first, last = summary.dates[0], summary.dates[-1]
    models = "models kept" if args.keep_models else f"{summary.models_retired} model(s) retired, refitted"
    print(f"rebuilt {len(summary.dates)} date(s) {first}..{last} from raw with the current hash key "
          f"in {summary.seconds:.0f}s ({models})")
    return 0


def print_summary() -> None:
    from custseg.config import load_settings
    from custseg.steps.report import report_path
    from custseg.warehouse import connect

    settings = load_settings()
    # not read_only: dbt (run in this process by the DAG) may still hold the file open read-write,
    # and DuckDB refuses a second connection to one file with a different configuration
    with connect(settings) as wh:
        as_of_date = wh.fetchall("select max(as_of_date), count(*) from analytics.customer_segments")[0]
        print(f"\nanalytics.customer_segments as of {as_of_date[0]}: {as_of_date[1]:,} customers\n")
        for column in ("rfm_segment", "lifecycle_stage"):
            rows = wh.fetchall(
                f"select coalesce({column}, 'No purchase yet'), count(*) from analytics.customer_segments "
                f"group by 1 order by 2 desc"
            )
            print(f"customers per {column}:")
            for value, n in rows:
                print(f"  {value:<22} {n:>8,}")
            print()
        uplift = wh.fetchall(
            "select campaign_id, treated_customers, control_customers, conversion_uplift, conversion_uplift_lower, "
            "conversion_uplift_upper, is_conversion_uplift_significant from analytics.campaign_uplift "
            "where segment_type = 'campaign' order by campaign_id")
        if uplift:
            print("campaigns (analytics.campaign_uplift; conversion uplift, treated - control, 95% interval):")
            for campaign, treated, control, effect, lower, upper, significant in uplift:
                if effect is None or lower is None:
                    print(f"  {campaign:<28} {treated + control:>6,} measured: not enough yet")
                    continue
                verdict = "an effect" if significant else "no effect shown"
                print(f"  {campaign:<28} {treated:>6,} treated vs {control:>5,} control: {effect:+.1%} "
                      f"[{lower:+.1%}, {upper:+.1%}], {verdict}")
            print()
        alerts = wh.fetchall(
            "select alert_type, count(*), sum(value_at_risk) from analytics.customer_alerts "
            "where as_of_date = %s group by 1 order by 1", (as_of_date[0],))
        if alerts:
            print(f"alerts of {as_of_date[0]} (analytics.customer_alerts; predicted 12-month value at risk):")
            for alert_type, n, at_risk in alerts:
                print(f"  {alert_type:<22} {n:>6,} customers  {at_risk or 0:>12,.0f}")
            print()
        files = wh.fetchall("select file_path, row_count, channel from ops.audience_exports "
                            "where as_of_date = %s order by file_path", (as_of_date[0],))
        if files:
            print("audience and alert files (ops.audience_exports):")
            for path, rows, channel in files:
                print(f"  {path}  {rows:,} rows for {channel}")
            print()
    docs = settings.docs_dir / "dbt" / "static_index.html"
    print(f"warehouse file: {settings.duckdb_path}  (any DuckDB client; BI tools through the DuckDB driver)")
    print(f"dbt docs site:  {docs}")
    # quality.html is self-contained; GX's own Data Docs beside it load their styles from the internet
    print(f"data quality:   {settings.docs_dir / 'gx'}/<raw|ml_labels|audit>/quality.html")
    print("query it:       .venv/bin/custseg query \"select rfm_segment, count(*) from analytics.customer_segments "
          "group by 1\"")
    print(f"run report:     {report_path(settings)}")


def cmd_export(args: argparse.Namespace) -> int:
    from custseg.config import load_settings
    from custseg.steps.activate import export_audience

    include = tuple(part.strip() for part in args.include.split(",") if part.strip())
    manifest = export_audience(load_settings(), args.audience, args.format, Path(args.to), args.channel, include)
    print(f"{manifest['rows']:,} customers of {manifest['audience']} for {manifest['channel']} as of "
          f"{manifest['as_of_date']} -> {Path(args.to) / manifest['file']} (+ .manifest.json; "
          f"{manifest['campaign_controls_left_out']:,} campaign controls and {manifest['without_consent_left_out']:,} "
          f"customers without {manifest['channel']} consent left out)")
    return 0


def cmd_erase(args: argparse.Namespace) -> int:
    """GDPR Art. 17: erase one person everywhere and suppress them on reruns (custseg.erasure)."""
    from custseg.config import load_settings
    from custseg.erasure import erase
    from custseg.ops.locks import WarehouseBusyError

    settings = load_settings()
    try:
        summary = erase(settings, crm_id=args.crm_id, email=args.email)
    except WarehouseBusyError as exc:
        raise SystemExit(str(exc)) from exc
    layers = ", ".join(f"{layer} {n:,}" for layer, n in summary.rows_by_layer(settings).items()) or "none"
    print(f"erasure {summary.erasure_id}: {summary.customers} customer(s) erased by {summary.key_type}; rows deleted: "
          f"{layers}; {summary.files_rewritten} file(s) rewritten; {summary.rows_redacted} ops/ml row(s) redacted; "
          "suppressed on every later run (ops.erasure_log)")
    return 0


def cmd_catalogue(args: argparse.Namespace) -> int:
    from custseg.catalogue_docs import stale_files, write_files

    root = Path(args.project_dir).resolve()
    if args.write:
        for path in write_files(root):
            print(f"wrote {path.relative_to(root)}")
        return 0
    stale = stale_files(root)
    if stale:
        print("out of date with custseg/catalogue.py: " + ", ".join(str(p.relative_to(root)) for p in stale)
              + " (run `custseg catalogue --write`)", file=sys.stderr)
        return 1
    print("dbt sources YAML and docs/sources.md agree with the channel catalogue")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from custseg.config import load_settings
    from custseg.demo.generate import generate
    from custseg.ops.progress import quiet_console

    settings = load_settings()
    if settings.warehouse != "duckdb":
        raise SystemExit("the demo runs on the embedded DuckDB warehouse; unset CUSTSEG_WAREHOUSE")
    # the log file keeps Airflow's warnings and errors; its task logs at INFO would be mostly dbt's lines again
    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
    data_dir = settings.landing_dir.parent
    t0 = time.perf_counter()
    print(f"generating demo data ({args.customers:,} customers, {DEMO_DAYS} days up to {DEMO_END})...")
    summary = generate(data_dir, customers=args.customers, days=DEMO_DAYS, end_date=DEMO_END, seed=args.seed)
    # the demo's campaigns (planted with a known effect) start two nights before its last date, with a
    # two-day conversion window: three nights assign their audiences and measure the first night's
    os.environ.setdefault("CUSTSEG_CAMPAIGNS_FILE", str(summary.out_dir / "campaigns.yml"))
    # the planted win-back works: on its two response days a few percent of the demo's customers come back
    # (lifecycle_stage reactivated), more than the segment-share gate's default 2 points allow overnight on
    # 2,000 customers; the demo lets a share move by 5 points (set the variable to check it tighter)
    os.environ.setdefault("CUSTSEG_SEGMENT_SHARE_TOLERANCE", "0.05")
    with quiet_console(_log_path(settings), args.verbose) as console:
        if console.log_path:
            console.say(f"logs (Airflow, dbt): {console.log_path}")
        for night in DEMO_NIGHTS:
            state = run_dag(night)
            if state != "success":
                console.say(f"the customer_segmentation run of {night} ended {state}", style="red")
                return 1
        # what the scheduler starts after each publish (there is none here): the audience and alert files
        if run_dag(DEMO_NIGHTS[-1], dag_id="activate_audiences") != "success":
            console.say("the activate_audiences run failed", style="red")
            return 1
    print(f"demo finished in {time.perf_counter() - t0:.0f}s")
    print_summary()
    return 0


def build_parser() -> argparse.ArgumentParser:
    from custseg.errors import OneLineParser

    # one-line usage errors, for this parser and (add_subparsers' default) every sub-command's
    parser = OneLineParser(prog="custseg", description=__doc__)
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an error (also accepted after the command)")
    sub = parser.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="write deterministic demo landing files for seven channels")
    g.add_argument("--customers", type=int, default=DEMO_CUSTOMERS)
    g.add_argument("--days", type=int, default=DEMO_DAYS)
    g.add_argument("--end-date", default=DEMO_END.isoformat())
    g.add_argument("--seed", type=int, default=42)
    g.add_argument("--out", default=str(DEFAULT_DATA_DIR))
    g.set_defaults(func=cmd_generate)

    r = sub.add_parser("run", help="run the nightly DAG for one date (--as-of) or a range (--from/--to)")
    when = r.add_mutually_exclusive_group(required=True)
    when.add_argument("--as-of")
    when.add_argument("--from", dest="date_from")
    r.add_argument("--to", dest="date_to")
    r.add_argument("--warehouse", choices=["duckdb", "postgres"])
    r.add_argument("--verbose", action="store_true",
                   help="print Airflow's and dbt's logs here instead of a progress display and a log file")
    byo = r.add_argument_group(
        "bring your own orders (README: 'Bring your own orders')",
        "The options are checked first; then the run lock is taken, and the export is split by order date "
        "into a folder of this run's own (<data>/byo/<run id>). A malformed record (wrong number of fields, "
        "bad encoding, NUL byte, missing customer, an order id on two different records) is quarantined with "
        "its line and reason, and the rest loads; rows after the as-of date are counted, not loaded.")
    byo.add_argument("--orders", metavar="PATH",
                     help="run the pipeline on this order export instead of the landing files")
    byo.add_argument("--orders-config", metavar="YAML", help="column mapping and format options for --orders")
    from custseg.steps.byo import BYO_FIELDS

    for field, (flag, candidates) in BYO_FIELDS.items():
        byo.add_argument(flag, dest=f"byo_{field}", metavar="COLUMN",
                         help=f"column holding the {field} (default: first of {', '.join(candidates)})")
    byo.add_argument("--delimiter", help="field separator: ',' (default), ';', '\\t', '|' or 'whitespace'")
    byo.add_argument("--names", help="comma-separated column names when the file has no header line "
                                     "(without it, the first line is the header)")
    byo.add_argument("--date-format", help="strptime format of the order date, e.g. %%d.%%m.%%Y "
                                           "(default: ISO 8601 or YYYYMMDD)")
    byo.add_argument("--currency", help="currency of the amounts when there is no currency column: "
                                        "EUR (default), GBP or USD")
    byo.add_argument("--encoding", help="the file's text encoding: utf-8 (default, a BOM is fine), "
                                        "latin-1, cp1252 (Excel's 'ANSI'), ...")
    byo.add_argument("--work-dir", help="where the daily split and its sources file go "
                                        "(default: <data>/byo/<run id>, a new folder per run)")
    r.set_defaults(func=cmd_run)

    q = sub.add_parser("query", help="query a warehouse table")
    q.add_argument("sql", nargs="?")
    q.add_argument("--table", default="analytics.customer_segments")
    q.add_argument("--limit", type=int, default=20)
    q.set_defaults(func=cmd_query)

    ex = sub.add_parser("export", help="write an audience file (and its manifest) for a CRM or ad tool")
    ex.add_argument("--audience", required=True,
                    help="a playbook rule (playbook_id), an RFM segment, or campaign:<campaign_id> (its treated side)")
    ex.add_argument("--channel", required=True, choices=("email", "sms", "ads"),
                    help="the marketing channel the file is for: customers without its consent are left out")
    ex.add_argument("--format", choices=("csv", "parquet"), default="csv")
    ex.add_argument("--to", required=True, help="directory to write the file and its manifest into")
    ex.add_argument("--include", default="",
                    help="contact columns to add from the CRM, comma-separated: email, phone (off by default)")
    ex.set_defaults(func=cmd_export)
    mo = sub.add_parser("models", help="the model registry: versions, approval decisions and their main metrics")
    mo.add_argument("--limit", type=int, default=20, help="the latest this many registry rows")
    mo.set_defaults(func=cmd_models)
    d = sub.add_parser("docs", help="build the static dbt docs site and the run report")
    d.add_argument("--as-of", default=DEMO_END.isoformat())
    d.set_defaults(func=cmd_docs)

    st = sub.add_parser("status", help="last runs, what is published, and quality failures")
    st.add_argument("--runs", type=int, default=5)
    st.add_argument("--failures", type=int, default=20)
    st.set_defaults(func=cmd_status)

    pa = sub.add_parser("paths", help="where the project files are read from and the data is written")
    pa.set_defaults(func=cmd_paths)

    rb = sub.add_parser("rebuild", help="recompute every published date from raw with the current key and code "
                                         "(after rotating CUSTSEG_HASH_KEY or an upgrade; CHANGELOG.md)")
    rb.add_argument("--warehouse", choices=["duckdb", "postgres"])
    rb.add_argument("--keep-models", action="store_true",
                    help="score with the registry's approved models instead of retiring them and fitting anew")
    rb.add_argument("--verbose", action="store_true",
                    help="print Airflow's and dbt's logs here instead of a progress display and a log file")
    rb.set_defaults(func=cmd_rebuild)

    er = sub.add_parser("erase", help="GDPR Art. 17: erase one person from every layer and suppress them on "
                        "every later run (takes the run lock)")
    who = er.add_mutually_exclusive_group(required=True)
    who.add_argument("--crm-id", help="the person's CRM customer id")
    who.add_argument("--email", help="the person's e-mail address (masked in every output)")
    er.set_defaults(func=cmd_erase)

    cat = sub.add_parser("catalogue", help="check (or --write) the dbt sources YAML and docs/sources.md against "
                         "the channel catalogue")
    cat.add_argument("--write", action="store_true", help="rewrite the files that disagree")
    cat.add_argument("--project-dir", default=".", help="the custseg checkout (default: the current directory)")
    cat.set_defaults(func=cmd_catalogue)

    demo = sub.add_parser("demo", help="generate demo data, run the DAG on DuckDB, print a summary")
    demo.add_argument("--customers", type=int, default=DEMO_CUSTOMERS)
    demo.add_argument("--seed", type=int, default=42)
    demo.add_argument("--verbose", action="store_true",
                      help="print Airflow's and dbt's logs here instead of a progress display and a log file")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command. A user error prints one line, ``custseg <command>: error: <problem and fix>``,
    on stderr and exits non-zero (custseg.errors maps the exception types); ``--debug`` re-raises it
    with its traceback. A DAG run that failed gets one line naming its failed task and the reason."""
    from custseg.errors import UsageError

    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv  # anywhere on the line: `custseg run ... --debug` too
    airflow_env_defaults()
    args = build_parser().parse_args([a for a in argv if a != "--debug"])
    started = utc_now()  # operational: which failures are this command's
    try:
        if args.command == "run" and args.date_from and not args.date_to:
            raise UsageError("--from needs --to")
        if args.command in DAG_COMMANDS:
            _check_configuration()
        code = args.func(args)
    except (Exception, KeyboardInterrupt) as exc:
        if debug:
            raise
        return _error_exit(args.command, exc)
    except SystemExit as exc:  # a command's own `raise SystemExit("message")`: already a message
        if debug or not isinstance(exc.code, str):
            raise
        print(f"custseg {args.command}: error: {_exit_message(exc.code)}", file=sys.stderr)
        return 1
    finally:
        if args.command in DAG_COMMANDS:
            from custseg.ops.run_audit import release_long_lived_objects

            release_long_lived_objects()
    if code and args.command in DAG_COMMANDS:
        _report_failed_run(args.command, started)
    return code


#: commands that run the customer_segmentation DAG
DAG_COMMANDS = ("run", "demo", "rebuild")


def _check_configuration() -> None:
    """Read the settings, the sources and campaigns files and the gates' settings before the DAG is
    loaded: the DAG file reads the first two when it is parsed, the tasks the others, and a mistake
    would surface as a DAG import error with Airflow's traceback or as a failed task."""
    from custseg.campaigns import load_campaigns
    from custseg.config import ConfigError, load_settings
    from custseg.sources import load_sources
    from custseg.steps.score import FitMinimum
    from expectations.config import QualityConfig

    settings = load_settings()
    load_sources(settings.sources_file)
    load_campaigns(settings.campaigns_file)
    FitMinimum.from_env()
    try:
        QualityConfig.from_env()
    except ValueError as exc:  # expectations/ does not know custseg's ConfigError
        raise ConfigError(str(exc)) from exc


def _exit_message(text: str) -> str:
    """A ``SystemExit`` message on one line; of one that carries a traceback (a DAG import error),
    the exception at its end."""
    text = text.replace("\\n", "\n")
    if "Traceback (most recent call last)" in text:
        last = [kept for line in text.splitlines() if (kept := line.strip().strip("'\"{} "))][-1]
        return f"{text.split(':', 1)[0]}: {last} (rerun with --debug for the traceback)"
    return " ".join(text.split())


def _error_exit(command: str, exc: BaseException) -> int:
    """Print the one-line message for ``exc`` on stderr; the exit code (2 for usage, 130 interrupted)."""
    from custseg.errors import UsageError, describe

    print(f"custseg {command}: error: {describe(exc, command, _duckdb_path())}", file=sys.stderr)
    return 2 if isinstance(exc, UsageError) else 130 if isinstance(exc, KeyboardInterrupt) else 1


def _duckdb_path() -> Path | None:
    """The configured DuckDB file (it names the folder in a message), None if settings do not load."""
    from custseg.config import load_settings

    try:
        settings = load_settings()
    except Exception:  # the error being reported may be the settings' own
        return None
    return settings.duckdb_path if settings.warehouse == "duckdb" else None


def _report_failed_run(command: str, since: dt.datetime) -> None:
    """One line for a DAG run of this command that failed: its first failed task and the reason,
    from ops.run_audit (the task log above it has the traceback)."""
    from custseg.config import load_settings
    from custseg.ops.status import latest_failure
    from custseg.warehouse import connect

    try:
        with connect(load_settings()) as wh:
            failure = latest_failure(wh, since) if wh.table_exists("ops", "run_audit") else None
    except Exception as exc:  # the failure report must not hide the failure
        failure, problem = None, f"{type(exc).__name__}: {exc}".splitlines()[0]
    else:
        problem = "no failed task recorded in ops.run_audit"
    if failure is None:
        print(f"custseg {command}: error: the DAG run did not succeed ({problem}); see custseg status",
              file=sys.stderr)
        return
    print(f"custseg {command}: error: {failure.describe()}; {failure.fix()}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
