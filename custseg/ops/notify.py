"""Failure summaries and notifications.

``notify_failure`` logs a clear summary and, when ``CUSTSEG_NOTIFY_CONN_ID`` names an Airflow
connection, sends it through ``FailureNotifier`` (a webhook for ``http``/``https`` connections,
e-mail through the SMTP provider's notifier for ``smtp`` connections). Off by default.
"""

from __future__ import annotations

import json
import logging
import os
import traceback
import urllib.request
from collections.abc import Mapping
from typing import Any

from custseg.ops.task_context import AFTER_PUBLISH_TASKS, error_text, task_id

log = logging.getLogger(__name__)


NOTIFY_CONN_ENV = "CUSTSEG_NOTIFY_CONN_ID"


def failure_summary(context: Mapping[str, Any]) -> str:
    """A short, complete account of a failed task for logs, chat and e-mail."""
    ti = context.get("ti") or context.get("task_instance")
    error = context.get("exception")
    first_line = (error_text(error) or "unknown error").strip()
    lines = [
        f"custseg: task {task_id(context)!r} of DAG {getattr(ti, 'dag_id', '?')!r} FAILED",
        f"  run: {context.get('run_id') or getattr(ti, 'run_id', '?')}, logical date: {context.get('ds', '?')}, "
        f"try {getattr(ti, 'try_number', '?')}",
        "  the published analytics tables were not changed by this run (publish happens last, atomically)"
        if task_id(context) not in AFTER_PUBLISH_TASKS
        else f"  the analytics tables were already published; only the {task_id(context)} task failed",
        f"  error: {first_line[:2000]}",
    ]
    if isinstance(error, BaseException) and error.__traceback__ is not None:
        where = traceback.extract_tb(error.__traceback__)[-1]
        lines.append(f"  at: {where.filename}:{where.lineno} in {where.name}")
    url = getattr(ti, "log_url", None)
    if url:
        lines.append(f"  log: {url}")
    lines.append("  fix the cause and rerun the same date (`custseg run --as-of <date>` or clear the run)")
    return "\n".join(lines)


def _notifier_base() -> type:
    try:
        # imported here: Airflow (3 s) (tests/test_architecture.py LAZY)
        from airflow.sdk import BaseNotifier

        return BaseNotifier
    except ImportError:  # pragma: no cover - outside Airflow
        return object


class FailureNotifier(_notifier_base()):  # type: ignore[misc]
    """Send the failure summary through an Airflow connection: a webhook (``http``/``https``; JSON
    ``{"text": ..., "dag_id": ..., ...}`` POSTed to the connection's URL, or ``extra.url``) or e-mail
    (``smtp``; recipients in the connection's ``extra.to``), through the SMTP provider's notifier."""

    template_fields = ()

    def __init__(self, conn_id: str, timeout: float = 10.0):
        super().__init__()
        self.conn_id = conn_id
        self.timeout = timeout

    def notify(self, context: Mapping[str, Any]) -> None:
        # imported here: Airflow (3 s) (tests/test_architecture.py LAZY)
        from airflow.sdk import BaseHook

        conn = BaseHook.get_connection(self.conn_id)
        summary = failure_summary(context)
        conn_type = (conn.conn_type or "").lower()
        extra = conn.extra_dejson or {}
        if conn_type in {"http", "https", "webhook"}:
            self._post(webhook_url(conn), summary, context)
        elif conn_type in {"smtp", "email"}:
            # imported here: Airflow (3 s) (tests/test_architecture.py LAZY)
            from airflow.providers.smtp.notifications.smtp import SmtpNotifier

            to = extra.get("to") or conn.login
            SmtpNotifier(
                to=to, smtp_conn_id=self.conn_id, from_email=extra.get("from_email"),
                subject=f"custseg: {task_id(context)} failed ({context.get('ds', '')})",
                html_content=f"<pre>{summary}</pre>",
            ).notify(context)  # fmt: skip
        else:
            raise ValueError(f"connection {self.conn_id!r} has type {conn_type!r}; use http(s) or smtp")

    def _post(self, url: str, summary: str, context: Mapping[str, Any]) -> None:
        ti = context.get("ti") or context.get("task_instance")
        body = json.dumps({
            "text": summary,
            "dag_id": getattr(ti, "dag_id", None),
            "task_id": task_id(context),
            "run_id": context.get("run_id"),
            "as_of_date": context.get("ds"),
        }).encode()
        request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=self.timeout) as response:  # the operator's own connection
            response.read()


def webhook_url(conn: Any) -> str:
    extra = conn.extra_dejson or {}
    if extra.get("url"):
        return str(extra["url"])
    scheme = "https" if (conn.conn_type or "").lower() == "https" else "http"
    port = f":{conn.port}" if conn.port else ""
    path = f"/{conn.schema.lstrip('/')}" if conn.schema else ""
    return f"{scheme}://{conn.host}{port}{path}"


def notify_failure(context: Mapping[str, Any]) -> bool:
    """Notify through ``CUSTSEG_NOTIFY_CONN_ID`` when set (off by default). Never raises."""
    conn_id = os.environ.get(NOTIFY_CONN_ENV, "").strip()
    if not conn_id:
        return False
    try:
        FailureNotifier(conn_id).notify(context)
        return True
    except Exception as exc:
        log.warning("failure notification through connection %r failed: %s", conn_id, exc)
        return False
