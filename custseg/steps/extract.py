"""Sources that are tables in an operational PostgreSQL database (`format: postgres_table`).

Each partition the run needs is copied out with `COPY (select ...) TO STDOUT (FORMAT csv, HEADER)`
into `<data dir>/extracts/<source>/<date>.csv`, and from there it is loaded exactly like a landing
CSV file: the same mapping, checks, quarantine and audit, and `_source_file` / `_source_line` point
at the kept extract. The connection is an Airflow connection id, resolved through Airflow's connection
API: `AIRFLOW_CONN_<ID>` in the environment (a `postgresql://` URI or Airflow's JSON form), a secrets
backend, or, inside a task, Airflow's metadata database.

- `layout: daily` (with `partition_column`): a row belongs to the date of that column (in UTC).
  Like landing files, every date up to the as-of date that was never loaded is extracted, plus
  the as-of date itself, which is always re-extracted. Rows inserted later for a date that was
  already loaded are not seen again, so date a table by when a row was written or last changed
  (`updated_at`), not by the business date, if rows can arrive late.
- `layout: snapshot`: the whole table as it is now, as the as-of date's partition.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import psycopg
from psycopg import sql

from custseg.config import postgres_from_airflow
from custseg.sources import SourceConfig


class ExtractError(RuntimeError):
    """The operational table cannot be read; the message names the source, the table and the problem."""


def extract_pending(src: SourceConfig, as_of_date: dt.date, loaded: set[dt.date], extract_dir: Path
                    ) -> list[tuple[dt.date, Path]]:
    """Copy the partitions this run loads to CSV files, over one connection.

    Daily: every date with rows up to the as-of date that was never loaded, plus the logical
    date; snapshot: the whole table as the as-of date's partition. Rows are written in a stable
    order, so a quarantined row's line number means the same on every extract.
    """
    assert src.table and src.connection
    # identifiers are allow-listed when sources.yml is read and quoted by psycopg here; dates are bound
    table = sql.Identifier(*src.table.split("."))
    # in UTC: the session's time zone is set below
    row_date = (sql.SQL("cast({} as date)").format(sql.Identifier(src.partition_column))
                if src.layout == "daily" and src.partition_column else None)
    files = []
    try:
        with psycopg.connect(postgres_from_airflow(src.connection).url, connect_timeout=30) as con:
            # timestamps as ISO text in UTC, whatever the server's defaults
            con.execute("set time zone 'UTC'")
            con.execute("set datestyle = 'ISO, YMD'")
            days = [as_of_date]
            if row_date:
                available = {row[0] for row in con.execute(
                    sql.SQL("select distinct {d} from {t} where {d} <= %s").format(d=row_date, t=table),
                    (as_of_date,))}
                days = sorted((available - loaded) | {as_of_date})
            for day in days:
                path = src.file_for(extract_dir, day.isoformat())
                path.parent.mkdir(parents=True, exist_ok=True)
                partial = path.with_suffix(".partial")
                where = sql.SQL(" where {} = %s").format(row_date) if row_date else sql.SQL("")
                query = sql.SQL("copy (select * from {t} as t{w} order by cast(t as text)) "
                                "to stdout with (format csv, header true)").format(t=table, w=where)
                with partial.open("wb") as out, con.cursor().copy(query, (day,) if row_date else None) as copy:
                    for block in copy:
                        out.write(block)
                partial.replace(path)  # a half-written extract is never taken for a whole one
                files.append((day, path))
    except psycopg.Error as exc:
        raise ExtractError(f"{src.name}: cannot read {src.table} through connection {src.connection!r}: "
                           f"{str(exc).strip()}") from exc
    return files
