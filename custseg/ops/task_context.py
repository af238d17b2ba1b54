"""What the ops callbacks read from an Airflow task context, in one place (audit, notify, faults)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: the nightly DAG's tasks that run after publish: their failure leaves the new tables published
AFTER_PUBLISH_TASKS = ("docs", "report")

def task_id(context: Mapping[str, Any]) -> str:
    ti = context.get("ti") or context.get("task_instance")
    task = context.get("task")
    return str(getattr(ti, "task_id", None) or getattr(task, "task_id", "") or "")


def error_text(error: BaseException | str | None, limit: int = 4000) -> str | None:
    if error is None:
        return None
    text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    return text[:limit]
