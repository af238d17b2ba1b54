"""The transform and assemble tasks: one ``dbt build`` per group, every node's outcome recorded.

Each group is one dbt invocation (dbt's own threads, one project parse) instead of one process per
model: a night used to pay ~35 dbt start-ups and parses. What a model-per-task layout showed in
Airflow is kept in three places:

* the task log lists every model, seed and test as dbt finishes it;
* ``ops.dbt_node_results`` keeps one row per node and task try (status, seconds, rows, failures, the
  first line of dbt's message), read by ``custseg status`` and the run report;
* a failed build raises one line naming the nodes that failed.

A retry, a cleared task or a new run of the date rebuilds the whole group: its models are tables in
the build schema, which nothing reads before publish, so a rebuild gives the same tables.

docs/architecture.md ("dbt in two tasks") says why this is not Cosmos's ``ExecutionMode.WATCHER``.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import logging
from typing import Any

import pyarrow as pa

from custseg.catalogue import CHANNELS
from custseg.clock import utc_now
from custseg.config import ConfigError, Settings
from custseg.dbt import dbt_run_env, release_dbt_duckdb, run_dbt
from custseg.steps.quality import record_quality
from custseg.warehouse import connect

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class DbtGroup:
    """A dbt selection the DAG builds in one task."""

    select: tuple[str, ...]
    exclude: tuple[str, ...] = ()

    def build_args(self) -> list[str]:
        # dbt's default (eager) indirect selection also leaves out every test that touches an excluded
        # model: a relationships test from a scored model to a seed runs in `assemble`, after the model
        # is built, never in `transform` against yesterday's table ("cautious" and "buildable" would
        # keep it). Unit tests check the SQL's logic on fixed inputs, not the night's data: `make test`
        # runs them (tests/test_dbt.py), a night does not (3 s of a 10k night). tests/test_dbt.py
        # checks that every other node is built in exactly one group.
        return ["build", "--select", *self.select, "--exclude", *self.exclude, "resource_type:unit_test"]


#: The nightly DAG's two dbt tasks: everything the ML task reads, then what reads its labels.
DBT_GROUPS: dict[str, DbtGroup] = {
    "transform": DbtGroup(select=("path:models", "path:seeds"), exclude=("tag:scored",)),
    "assemble": DbtGroup(select=("tag:scored",)),
}

#: dbt's statuses that are not a failure (a test's "warn" does not stop the run).
PASSING = frozenset({"success", "pass", "warn", "skipped_because_disabled", "no-op"})


class DbtBuildFailed(RuntimeError):
    """A group's build failed; the message is one line naming the failed nodes."""


class StaleSources(RuntimeError):
    """A source listed in CUSTSEG_FRESHNESS_BLOCKING is past its freshness ``error_after``; one line."""


#: ops.quality_results' suite of the nightly `dbt source freshness`
FRESHNESS_SUITE = "source_freshness"


def freshness_blocking(settings: Settings) -> set[str]:
    """The dbt sources whose freshness error fails the night (CUSTSEG_FRESHNESS_BLOCKING: names or ``all``)."""
    known = {channel.dbt_source for channel in CHANNELS.values()}
    wanted = set(settings.freshness_blocking)
    if wanted == {"all"}:
        return known
    if unknown := sorted(wanted - known):
        raise ConfigError(f"CUSTSEG_FRESHNESS_BLOCKING names unknown source(s) {', '.join(unknown)}; "
                          f"use 'all' or some of {', '.join(sorted(known))}")
    return wanted


@dataclasses.dataclass(frozen=True)
class SourceFreshness:
    """One source table's result of `dbt source freshness`."""

    source: str
    table: str
    status: str  # dbt's: pass, warn, error, runtime error
    observed: str
    blocking: bool

    @property
    def label(self) -> str:
        return f"source {self.source}.{self.table}"

    def quality_row(self, run_id: str) -> dict:
        """Its ``ops.quality_results`` row (custseg.steps.quality.record_quality)."""
        return {"run_id": run_id, "suite_name": FRESHNESS_SUITE, "expectation": "dbt_source_freshness",
                "check_description": f"{self.label}: newest landed partition within its freshness "
                                     "(warn_after / error_after)",
                "column_name": None, "severity": "blocking" if self.blocking else "warning",
                "success": self.status == "pass", "observed_value": self.observed, "unexpected_sample": None}


def freshness_results(results: Any, blocking: set[str]) -> list[SourceFreshness]:
    """The source tables' results of a `dbt source freshness` run (``dbtRunnerResult.result``)."""
    found = []
    for result in getattr(results, "results", None) or []:
        node, status = result.node, str(result.status)
        if str(node.resource_type) != "source":  # the project's on-run-start / on-run-end hooks run too
            continue
        newest, as_of_end = getattr(result, "max_loaded_at", None), getattr(result, "snapshotted_at", None)
        if status == "runtime error":
            observed = f"{status}: {str(result.message or '').strip().splitlines()[0][:300]}"
        elif newest and newest.year > 1 and as_of_end:  # dbt dates an empty table's newest row 0001-01-01
            observed = (f"{status}: newest partition {newest:%Y-%m-%d}, {(as_of_end - newest).days} day(s) "
                        "before the end of the as-of date")
        else:
            observed = f"{status}: no partition landed on or before the as-of date"
        found.append(SourceFreshness(node.source_name, node.name, status, observed, node.source_name in blocking))
    return found


def check_source_freshness(settings: Settings, as_of_date: dt.date, run_id: str) -> dict[str, int]:
    """`dbt source freshness` as of the run's date (dbt_project/macros/source_freshness.sql), recorded in
    ``ops.quality_results``; a stale source warns, unless CUSTSEG_FRESHNESS_BLOCKING lists it and it is past
    ``error_after`` (or its check could not run): then the night stops here, before the build."""
    blocking = freshness_blocking(settings)
    try:
        result = run_dbt(settings, ["source", "freshness"], dbt_run_env(as_of_date), check=False)
    finally:
        release_dbt_duckdb()
    checked = freshness_results(result.result, blocking)
    if not checked:
        error = str(result.exception or "no result").strip().splitlines()
        raise DbtBuildFailed(f"dbt source freshness failed: {error[0] if error else 'see the dbt output above'}")
    with connect(settings) as wh, wh.transaction():
        record_quality(wh, run_id, as_of_date, [c.quality_row(run_id) for c in checked])
    stale = [c for c in checked if c.blocking and c.status in ("error", "runtime error")]
    if stale:
        raise StaleSources(f"source freshness as of {as_of_date}: " + "; ".join(
            f"{c.label}: {c.observed}" for c in stale)
            + " (CUSTSEG_FRESHNESS_BLOCKING); land the missing exports, or rerun the date once they are there")
    for c in checked:
        if c.status != "pass":
            log.warning("%s: %s", c.label, c.observed)
    return dict(collections.Counter(c.status for c in checked))


def node_rows(results: Any, run_id: str, task_id: str, try_number: int, as_of_date: dt.date) -> list[dict]:
    """One row per node of a dbt run result (``dbtRunnerResult.result``)."""
    rows = []
    for result in getattr(results, "results", None) or []:
        node = result.node
        adapter_response = result.adapter_response or {}
        message = str(result.message or "").strip().splitlines()
        rows.append({
            "run_id": run_id,
            "task_id": task_id,
            "try_number": try_number,
            "as_of_date": as_of_date,
            "unique_id": node.unique_id,
            "resource_type": str(node.resource_type),
            "node_name": node.name,
            "status": str(result.status),
            "execution_seconds": float(result.execution_time or 0.0),
            "rows_affected": adapter_response.get("rows_affected"),
            "failures": result.failures,
            "message": message[0][:500] if message else None,
        })
    return rows


def record_node_results(settings: Settings, rows: list[dict], run_id: str, task_id: str, try_number: int) -> None:
    """Replace this task try's rows in ``ops.dbt_node_results``."""
    with connect(settings) as wh, wh.transaction():
        wh.execute("delete from ops.dbt_node_results where run_id = %s and task_id = %s and try_number = %s",
                   (run_id, task_id, try_number))
        if rows:
            recorded_at = utc_now()
            wh.write_arrow("ops", "dbt_node_results", pa.Table.from_pylist(
                [{**row, "recorded_at": recorded_at} for row in rows]))


def failure_summary(task_id: str, rows: list[dict], error: str | None) -> str:
    failed = [r for r in rows if r["status"] not in PASSING]
    if not failed:
        return f"dbt build of {task_id} failed: {error or 'see the dbt output above'}"
    errors = [r for r in failed if r["status"] in ("error", "fail")]
    first = (errors or failed)[0]
    counts = ", ".join(f"{sum(r['status'] == s for r in failed)} {s}"
                       for s in sorted({r["status"] for r in failed}))
    return (f"dbt build of {task_id}: {counts}; first: {first['resource_type']} {first['node_name']}: "
            f"{first['message'] or first['status']}")


def build(settings: Settings, task_id: str, as_of_date: dt.date, run_id: str, *, try_number: int = 1) -> dict[str, Any]:
    """Build one group with one ``dbt build``; record every node; raise DbtBuildFailed if one failed.
    The first group checks the sources' freshness first (:func:`check_source_freshness`)."""
    freshness = check_source_freshness(settings, as_of_date, run_id) if task_id == "transform" else None
    try:
        # check=False: dbt reports a failed node in the result (and an error of its own as its exception)
        result = run_dbt(settings, DBT_GROUPS[task_id].build_args(), dbt_run_env(as_of_date), check=False)
    finally:
        release_dbt_duckdb()  # the results go through custseg's own connection to the same file
    rows = node_rows(result.result, run_id, task_id, try_number, as_of_date)
    record_node_results(settings, rows, run_id, task_id, try_number)
    if not result.success:
        error = str(result.exception or "").strip().splitlines()
        raise DbtBuildFailed(failure_summary(task_id, rows, error[0] if error else None))
    statuses = collections.Counter(row["status"] for row in rows)
    seconds = sum(r["execution_seconds"] for r in rows)
    log.info("dbt build of %s: %d nodes (%s), %.1f s of node time", task_id, len(rows),
             ", ".join(f"{n} {s}" for s, n in sorted(statuses.items())), seconds)
    return {"nodes": len(rows), **statuses, **({"source_freshness": freshness} if freshness else {})}
