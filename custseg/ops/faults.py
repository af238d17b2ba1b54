"""Fault injection for tests and drills, off unless its variables are set.

``CUSTSEG_FAIL_TASK=<task_id>[,<task_id>...]`` fails those tasks before they execute (``fnmatch``
patterns such as ``ingest.*`` fail every task of a group); ``CUSTSEG_FAIL_IN_PUBLISH=1``
raises, and ``CUSTSEG_KILL_IN_PUBLISH=1`` kills the process with ``os._exit``, inside the publish
transaction right after the first table was replaced (through ``Warehouse.publish``'s hook).
"""

from __future__ import annotations

import contextlib
import fnmatch
import logging
import os
import time
from collections.abc import Mapping
from typing import Any

from custseg.ops.task_context import task_id

log = logging.getLogger(__name__)


FAIL_TASK_ENV = "CUSTSEG_FAIL_TASK"


FAIL_IN_PUBLISH_ENV = "CUSTSEG_FAIL_IN_PUBLISH"


KILL_IN_PUBLISH_ENV = "CUSTSEG_KILL_IN_PUBLISH"


PUBLISH_PAUSE_ENV = "CUSTSEG_PUBLISH_PAUSE_SECONDS"


KILL_EXIT_CODE = 137  # what a SIGKILL-ed process reports


class InjectedFault(RuntimeError):
    """A failure injected on purpose (CUSTSEG_FAIL_TASK / CUSTSEG_FAIL_IN_PUBLISH)."""


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def should_fail(task_id: str, env: Mapping[str, str] | None = None) -> bool:
    """True when ``CUSTSEG_FAIL_TASK`` lists ``task_id`` (comma-separated ids or fnmatch patterns)."""
    spec = (os.environ if env is None else env).get(FAIL_TASK_ENV, "")
    return any(fnmatch.fnmatchcase(task_id, p.strip()) for p in spec.split(",") if p.strip())


def check_fault(task_id: str) -> None:
    """Raise ``InjectedFault`` if this task is to fail. The DAG's pre_execute hook and the test harness
    call this same function, so both inject faults the same way."""
    if should_fail(task_id):
        raise InjectedFault(f"injected failure in task {task_id!r} ({FAIL_TASK_ENV})")


def fault_injection_hook(context: Mapping[str, Any]) -> None:
    """Fails the task when asked to; called by ``before_task``, the ``pre_execute`` hook of every task.

    Raises ``AirflowFailException`` so an injected failure is final (no retry), like bad data."""
    task = task_id(context)
    if task and should_fail(task):
        # imported here: Airflow (3 s) (tests/test_architecture.py LAZY)
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(f"injected failure in task {task!r} ({FAIL_TASK_ENV})")


def publish_fault_point(table: str, replaced: int) -> None:
    """Called inside the publish transaction after each table was replaced (``replaced`` so far)."""
    if replaced != 1:
        return
    pause = os.environ.get(PUBLISH_PAUSE_ENV)
    if pause:
        log.warning("publish paused for %s s inside the transaction (%s)", pause, PUBLISH_PAUSE_ENV)
        time.sleep(float(pause))
    if _truthy(os.environ.get(KILL_IN_PUBLISH_ENV)):
        log.error("killing the process inside the publish transaction after replacing %s (%s)",
                  table, KILL_IN_PUBLISH_ENV)
        for handler in logging.getLogger().handlers:
            with contextlib.suppress(Exception):
                handler.flush()
        os._exit(KILL_EXIT_CODE)
    if _truthy(os.environ.get(FAIL_IN_PUBLISH_ENV)):
        raise InjectedFault(f"injected failure inside the publish transaction after replacing {table}")
