"""One-line messages for the errors a `custseg` user can make: what is wrong and how to fix it.

The CLI (``custseg.cli.main``) catches every exception of a command and prints
``custseg <command>: error: <message>``, one line, instead of a traceback; ``--debug`` shows the
traceback. Known exception types get a message naming the fix; any other error gets its type and
first line plus the ``--debug`` hint. Database exceptions are matched by module and class name, so
this module imports neither DuckDB nor psycopg.
"""

from __future__ import annotations

import argparse
import errno
import re
from pathlib import Path
from typing import NoReturn

DEBUG_HINT = "rerun with --debug for the traceback"
COLUMNS_HINT = "list a table's columns with: custseg query --table analytics.customer_segments --limit 1"
TABLES_HINT = ("list the tables with: custseg query \"select table_schema, table_name from "
               "information_schema.tables order by 1, 2\"")


#: custseg.config.ConfigError, custseg.sources.SourceConfigError, custseg.steps.byo.ByoError,
#: custseg.steps.ingest.IngestError
CONFIG_ERRORS = frozenset({"ConfigError", "SourceConfigError", "ByoError", "IngestError"})


#: what ``datetime.date.fromisoformat`` says about a malformed or impossible date
DATE_ERRORS = re.compile(r"Invalid isoformat string|must be in \d+\.\.\d+|day is out of range|year .* out of range")


class UsageError(ValueError):
    """A command line that cannot run as given (beyond what argparse checks)."""


class OneLineParser(argparse.ArgumentParser):
    """argparse whose errors are one line naming the problem and where the help is, without the
    usage block; its sub-command parsers are of the same class (``add_subparsers`` default)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def first_line(text: object) -> str:
    """The first non-blank line of a message, without DuckDB's or psycopg's decorations."""
    for line in str(text).splitlines():
        if line.strip():
            return line.strip()
    return ""


def describe(exc: BaseException, command: str, duckdb_path: Path | None = None) -> str:
    """The one-line message for ``exc`` raised by ``custseg <command>``; ``duckdb_path`` is the
    configured warehouse file when the settings could be read (it names the folder to fix)."""
    # matched by class name (the class or a base): no import of the modules that raise them, so a
    # module that cannot be imported cannot break the error report of another one
    kinds = {cls.__name__ for cls in type(exc).__mro__}
    if isinstance(exc, UsageError):
        return f"{first_line(exc)} (see custseg {command} --help)"
    if "WarehouseBusyError" in kinds:
        return f"{first_line(exc)}; wait for the other run to finish, then run this again"
    if kinds & CONFIG_ERRORS:  # their messages name the setting, option or file and what it takes
        return first_line(exc)
    if "QualityGateError" in kinds:  # its first line says what failed and what to check
        return first_line(exc)
    if _is_database_error(exc):
        return _database_error(exc, duckdb_path)
    if isinstance(exc, OSError):
        return _os_error(exc, duckdb_path)
    if isinstance(exc, ValueError) and DATE_ERRORS.search(first_line(exc)):  # from date.fromisoformat
        return (f"not a date ({first_line(exc)}): write dates as YYYY-MM-DD, a day that exists "
                f"(see custseg {command} --help)")
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    return f"{type(exc).__name__}: {first_line(exc)} ({DEBUG_HINT})"


def _os_error(exc: OSError, duckdb_path: Path | None) -> str:
    name = exc.filename or ""
    path = Path(str(name)) if name else None
    if isinstance(exc, FileNotFoundError):
        return f"{name}: no such file or folder; check the path"
    if isinstance(exc, IsADirectoryError):
        return f"{name} is a folder; give the path of a file"
    if isinstance(exc, NotADirectoryError):
        return f"{name}: a part of this path is a file, not a folder; check the path"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        if path is not None and duckdb_path is not None and _under(path, duckdb_path.parent):
            return _unwritable_warehouse(duckdb_path)
        return f"{name}: permission denied ({exc.strerror}); check that you may read and write it"
    return f"{name}: {exc.strerror or first_line(exc)}" if name else f"{first_line(exc)} ({DEBUG_HINT})"


def _under(path: Path, folder: Path) -> bool:
    try:
        return path.resolve(strict=False).is_relative_to(folder.resolve(strict=False)) or path == folder
    except OSError:
        return False


def _unwritable_warehouse(duckdb_path: Path) -> str:
    return (f"cannot create or open the warehouse {duckdb_path}: the folder {duckdb_path.parent} must exist and "
            "be writable by you; or set CUSTSEG_DUCKDB_PATH to a file in a writable folder")


def _is_database_error(exc: BaseException) -> bool:
    module = type(exc).__module__ or ""
    return module.startswith(("duckdb", "_duckdb", "psycopg"))


def _suggestion(exc: BaseException, limit: int = 160) -> str:
    """DuckDB's own suggestion on a later line of its message (``Did you mean ...``, ``Candidate
    bindings: ...``), appended to the one line."""
    for line in str(exc).splitlines()[1:]:
        line = line.strip()
        if line.startswith(("Did you mean", "Candidate bindings")):
            return f"; {line if len(line) <= limit else line[:limit] + '...'}"
    return ""


def _database_error(exc: BaseException, duckdb_path: Path | None) -> str:
    name, text = type(exc).__name__, first_line(exc)
    module = type(exc).__module__ or ""
    if module.startswith("psycopg"):
        if name == "UndefinedColumn":
            return f"PostgreSQL: {text} ({COLUMNS_HINT})"
        if name in ("UndefinedTable", "InvalidSchemaName"):
            return f"PostgreSQL: {text} ({TABLES_HINT})"
        if name == "SyntaxError":
            return f"PostgreSQL: {text}: check the SQL"
        if name == "OperationalError":
            return (f"cannot reach the PostgreSQL warehouse: {text}; check CUSTSEG_POSTGRES_URL (or the Airflow "
                    "connection custseg_warehouse) and that the server is running")
        return f"PostgreSQL: {text} ({DEBUG_HINT})"
    if name == "BinderException":
        return f"DuckDB: {text}{_suggestion(exc)} ({COLUMNS_HINT})"
    if name == "CatalogException":
        return f"DuckDB: {text}{_suggestion(exc)} ({TABLES_HINT})"
    if name == "ParserException":
        return f"DuckDB: {text}: check the SQL"
    if name == "IOException":
        lowered = text.lower()
        where = duckdb_path or "the warehouse file"
        if "lock" in lowered:
            return (f"the DuckDB warehouse {where} is open in another process (a custseg run or a DuckDB "
                    "client); DuckDB allows one writer per file: wait for it to finish, then run this again")
        if "does not exist" in lowered:
            return (f"no warehouse at {where}: run `custseg run --as-of YYYY-MM-DD` first, or set "
                    "CUSTSEG_DUCKDB_PATH to the warehouse file")
        if any(word in lowered for word in ("permission denied", "read-only", "operation not permitted")):
            return _unwritable_warehouse(duckdb_path) if duckdb_path else f"DuckDB: {text}"
        return f"DuckDB: {text}; check that {where} is a DuckDB file in a writable folder"
    return f"DuckDB: {text} ({DEBUG_HINT})"
