"""A quiet console for the DAG runs of `custseg run` and `custseg demo`: a live progress display on the
terminal, and every log line in a file.

One night of the real DAG prints hundreds of lines: Airflow's task logs and dbt's
own log. :func:`quiet_console` sends this process's standard output and error (file
descriptors 1 and 2, so the output of dbt and of C extensions goes too) to a log file, and shows on the
terminal one progress bar per DAG run with the task running, tasks done of all, the elapsed time and the
rows of the last task that reported some. The run-audit callbacks that Airflow calls around every task
(:mod:`custseg.ops.run_audit`) report to it through :func:`task_event`; in a deployed Airflow nothing listens
and they do nothing. `--verbose` keeps the logs on the terminal instead.

`rich` draws the display (the well-kept terminal library Airflow itself depends on); the descriptor
redirection is plain `os.dup2`, as no library redirects what C extensions and dbt write.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn


@dataclass
class QuietConsole:
    """What a command prints while its DAG runs are quiet: `say` for its own lines, and the progress bars."""

    console: Console
    log_path: Path | None
    progress: Progress | None = None
    _run: TaskID | None = None
    _label: str = ""
    _rows: dict[str, int] = field(default_factory=dict)

    def say(self, message: str, style: str | None = None) -> None:
        """One line of the command's own on the terminal (plain text: brackets are not markup)."""
        # soft_wrap: a long path stays on one line (rich would wrap it at 80 columns when not on a terminal)
        self.console.print(message, style=style, markup=False, highlight=False, soft_wrap=True)

    def run_started(self, label: str, total_tasks: int) -> None:
        if self.progress is None:
            return
        self._label, self._rows = label, {}
        self._run = self.progress.add_task(label, total=total_tasks)

    def run_finished(self, state: str) -> None:
        if self.progress is None or self._run is None:
            return
        task = self.progress.tasks[self._run]
        # tasks Airflow skipped report nothing: a finished run is complete whatever it skipped
        completed = task.total if state == "success" else task.completed
        self.progress.update(self._run, completed=completed, description=f"{self._label}: {state}")
        self._run = None

    def task_event(self, task_id: str, event: str, rows: int | None) -> None:
        if self.progress is None or self._run is None:
            return
        if rows is not None:
            self._rows[task_id] = rows
        detail = f" ({rows:,} rows)" if rows is not None else ""
        if event == "started":
            self.progress.update(self._run, description=f"{self._label}: {task_id}")
        else:
            self.progress.update(self._run, advance=1, description=f"{self._label}: {task_id} {event}{detail}")


_active: QuietConsole | None = None


def task_event(task_id: str, event: str, rows: int | None = None) -> None:
    """A task started, succeeded or failed (called by the run-audit callbacks); shown when a display is on."""
    if _active is not None and task_id:
        _active.task_event(task_id, event, rows)


def active() -> QuietConsole | None:
    return _active


@contextlib.contextmanager
def quiet_console(log_path: Path, verbose: bool = False) -> Iterator[QuietConsole]:
    """Within the block, logs go to `log_path` and the terminal shows progress; `verbose` changes nothing."""
    global _active
    if verbose:
        _active = QuietConsole(Console(), None)
        try:
            yield _active
        finally:
            _active = None
        return
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved_out, saved_err = os.dup(1), os.dup(2)
    terminal = os.fdopen(os.dup(saved_out), "w", buffering=1, encoding="utf-8")
    console = Console(file=terminal)
    try:
        with open(log_path, "ab") as log:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            try:
                progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                    TimeElapsedColumn(), console=console)
                with progress:
                    _active = QuietConsole(console, log_path, progress)
                    yield _active
            finally:
                _active = None
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved_out, 1)
                os.dup2(saved_err, 2)
    finally:
        os.close(saved_out)
        os.close(saved_err)
        terminal.close()
