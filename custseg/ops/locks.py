"""The run lock: one run of the pipeline per warehouse at a time (a file lock beside the DuckDB
file, a PostgreSQL advisory lock), and the one-line error a second run gets.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

import psycopg

if TYPE_CHECKING:
    from custseg.config import Settings


class WarehouseBusyError(RuntimeError):
    """Another process holds the warehouse (DuckDB: one writer per file)."""


def explain_lock_error(settings: Settings, exc: BaseException) -> BaseException:
    """Turn DuckDB's file-lock error into a clear one; other errors pass through unchanged."""
    text = str(exc)
    if settings.warehouse == "duckdb" and "lock" in text.lower():
        return WarehouseBusyError(
            f"the DuckDB warehouse {settings.duckdb_path} is being written by another process (another custseg "
            f"run or task?); DuckDB allows one writer per file, so this step stopped without changing anything. "
            f"Rerun it when the other run has finished. DuckDB said: {text.splitlines()[0]}"
        )
    return exc


@contextlib.contextmanager
def run_lock(settings: Settings, name: str = "customer_segmentation") -> Iterator[None]:
    """Hold an exclusive, process-wide lock for a whole run; a second holder is rejected at once with a
    clear error. PostgreSQL: a session advisory lock (released if the process dies). DuckDB: an
    ``fcntl`` lock on ``<warehouse>.run.lock`` beside the file (released by the OS if the process dies)."""
    if settings.warehouse == "postgres":
        assert settings.postgres is not None
        conn = psycopg.connect(settings.postgres.url, autocommit=True)
        try:
            got = conn.execute("select pg_try_advisory_lock(hashtext(%s))", (f"custseg:{name}",)).fetchone()
            if not got or not got[0]:
                raise WarehouseBusyError(f"another {name} run holds the warehouse lock; not starting a second one")
            yield
        finally:
            conn.close()
        return
    # imported here: POSIX only (tests/test_architecture.py LAZY)
    import fcntl

    path = settings.duckdb_path.with_name(settings.duckdb_path.name + ".run.lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise WarehouseBusyError(f"another {name} run holds {path}; not starting a second one") from exc
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
