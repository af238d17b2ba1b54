"""Runtime settings, read from the environment once and passed around explicitly.

Nothing here holds a secret: the PostgreSQL warehouse is the Airflow connection `custseg_warehouse`
(Airflow's connection API: the environment, a secrets backend or the metadata database), or the plain URL
`CUSTSEG_POSTGRES_URL` outside Airflow; never a file in the repo.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Literal
from urllib.parse import quote

import yaml
from psycopg.conninfo import conninfo_to_dict

#: The project files a wheel carries (pyproject.toml's [tool.hatch.build.targets.wheel.sources]).
BUNDLED_PROJECT_DIR = Path(__file__).resolve().parent / "_project"


def _default_project_dir() -> Path:
    """The source checkout this package was imported from (an editable install, `make`, the tests),
    else the copy of the project files inside the installed wheel."""
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "dbt_project" / "dbt_project.yml").is_file():
        return checkout
    return BUNDLED_PROJECT_DIR


def _default_home(project_dir: Path) -> Path:
    """Where the pipeline's own files go unless configured: a checkout's (or a user's project folder's)
    own folder, but never the installed package (site-packages is often not writable, and a reinstall
    would delete them): the user's data folder instead."""
    if project_dir != BUNDLED_PROJECT_DIR:
        return project_dir
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "custseg"


#: The folder holding `dbt_project/`, `config/` (sources, campaigns, activation) and `dags/`:
#: CUSTSEG_PROJECT_DIR, read once at import (the published tables below come from it).
PROJECT_DIR = Path(os.environ.get("CUSTSEG_PROJECT_DIR") or _default_project_dir()).resolve()
#: The default home of data/ (CUSTSEG_DATA_DIR) and of the project-local airflow_home/ (AIRFLOW_HOME).
DEFAULT_HOME = _default_home(PROJECT_DIR)
DEFAULT_DATA_DIR = DEFAULT_HOME / "data"
DBT_PROJECT_DIR = PROJECT_DIR / "dbt_project"
DAGS_DIR = PROJECT_DIR / "dags"
DEFAULT_SOURCES_FILE = PROJECT_DIR / "config" / "sources.yml"
DEFAULT_CAMPAIGNS_FILE = PROJECT_DIR / "config" / "campaigns.yml"
DEFAULT_ACTIVATION_FILE = PROJECT_DIR / "config" / "activation.yml"
#: The hash key of the demo and CI (docs/configuration.md); production must set its own.
DEV_HASH_KEY = "custseg-dev-hash-key-not-for-production"
#: Deprecated name of the same value, kept for code written before the key was renamed.
DEV_PII_SALT = DEV_HASH_KEY

WarehouseKind = Literal["duckdb", "postgres"]

#: The dbt models that are published: one ``.sql`` file each in this folder, and nowhere else.
PUBLISHED_MODELS_DIR = DBT_PROJECT_DIR / "models" / "marts" / "published"


_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _published_models() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The published tables, and those of them published by date, read from the dbt project.

    A model is published when its file is in ``PUBLISHED_MODELS_DIR``; it is published by date when
    its YAML says ``config: meta: publish_by: as_of_date`` (an incremental history whose rows of a
    date only that date's run writes). Adding a published model is adding its files there.
    """
    tables, by_date = [], []
    for sql in sorted(PUBLISHED_MODELS_DIR.glob("*.sql")):
        tables.append(sql.stem)
        spec = sql.with_suffix(".yml")
        # every process reads these at import (DAG parse, each CLI call): libyaml's loader is ~10x faster
        loaded = yaml.load(spec.read_text(encoding="utf-8"), Loader=_YAML_LOADER) if spec.exists() else None
        models = (loaded or {}).get("models", [])
        meta = next((m.get("config", {}).get("meta", {}) for m in models if m.get("name") == sql.stem), {})
        if meta.get("publish_by") == "as_of_date":
            by_date.append(sql.stem)
    # customer_segments, the table every BI tool reads, leads the publish; the rest follow by name
    tables.sort(key=lambda table: (table != "customer_segments", table))
    return tuple(tables), tuple(by_date)


#: Tables that BI reads. Publish copies exactly these from the build schema to `analytics`.
#: Published tables that grow by one as-of date per run (PUBLISHED_BY_DATE): publish copies the run's
#: date, and any dates newer than the published ones, instead of the whole history every night.
PUBLISHED_TABLES, PUBLISHED_BY_DATE = _published_models()


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


@dataclass(frozen=True)
class PostgresParams:
    host: str
    port: int
    user: str
    password: str
    dbname: str

    @property
    def url(self) -> str:
        auth = quote(self.user, safe="")
        if self.password:
            auth += ":" + quote(self.password, safe="")
        return f"postgresql://{auth}@{self.host}:{self.port}/{self.dbname}"

    @property
    def sqlalchemy_url(self) -> str:
        return self.url.replace("postgresql://", "postgresql+psycopg://", 1)


#: The Airflow connection id of the PostgreSQL warehouse (AIRFLOW_CONN_CUSTSEG_WAREHOUSE in the environment).
WAREHOUSE_CONN_ID = "custseg_warehouse"


def postgres_from_url(url: str, setting: str = "CUSTSEG_POSTGRES_URL") -> PostgresParams:
    """A ``postgresql://`` URL, parsed by libpq's rules (percent-encoded user and password, a port, the database)."""
    if not url.strip().startswith(("postgresql://", "postgres://")):
        raise ConfigError(f"{setting} must be a postgresql:// URL such as postgresql://user:password@host:5432/db")
    try:
        parts = conninfo_to_dict(url.strip())
        return PostgresParams(host=str(parts.get("host") or "127.0.0.1"), port=int(parts.get("port") or 5432),
                              user=str(parts.get("user") or "postgres"), password=str(parts.get("password") or ""),
                              dbname=str(parts.get("dbname") or "postgres"))
    except Exception as exc:  # libpq's own one-line reason (psycopg.ProgrammingError), or a port that is no number
        # libpq quotes the whole URL, password included: the message names the setting instead
        reason = str(exc).strip().replace(url.strip(), setting)
        raise ConfigError(f"{setting} is not a valid PostgreSQL URL: {reason}") from None


def postgres_from_airflow(conn_id: str, hint: str = "") -> PostgresParams:
    """A PostgreSQL connection through Airflow's connection API, wherever Airflow keeps it: the environment
    (``AIRFLOW_CONN_<ID>``, URI or JSON), a secrets backend, or (inside a task) the metadata database."""
    # imported here: Airflow (3 s) (tests/test_architecture.py LAZY); only a PostgreSQL connection needs it
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        conn = Connection.get(conn_id)
    except AirflowNotFoundException:
        raise ConfigError(
            f"connection {conn_id!r} is not defined: add it to Airflow (AIRFLOW_CONN_{conn_id.upper()}, "
            f"`airflow connections add`, or a secrets backend){hint}") from None
    if conn.conn_type not in ("postgres", "postgresql"):
        raise ConfigError(f"connection {conn_id!r} is of type {conn.conn_type!r}, not postgres")
    return PostgresParams(host=conn.host or "127.0.0.1", port=int(conn.port or 5432), user=conn.login or "postgres",
                          password=conn.password or "", dbname=conn.schema or "postgres")


#: how segment_history keeps the dates before its daily window (custseg.warehouse.base.Warehouse.prune_history)
HISTORY_THINNING = ("weekly", "month_end")
#: the shortest daily window: a date's migration compares it with the date a week before, and a rerun
#: of any date in the window must find that week-ago date still there
MIN_HISTORY_DAILY_DAYS = 8


@dataclass(frozen=True)
class HistoryRetention:
    """segment_history keeps every date of the last ``daily_days`` before its latest as-of date, and
    before that one date per ISO week (its latest) or per month (its latest, the month end of a nightly
    schedule)."""

    daily_days: int
    thinning: Literal["weekly", "month_end"] = "month_end"


@dataclass(frozen=True)
class Settings:
    warehouse: WarehouseKind = "duckdb"
    duckdb_path: Path = DEFAULT_DATA_DIR / "warehouse.duckdb"
    #: CUSTSEG_POSTGRES_URL: the warehouse as a plain URL (the CLI outside Airflow); unset, the Airflow
    #: connection ``warehouse_conn_id`` is used
    postgres_url: str | None = field(default=None, repr=False)
    warehouse_conn_id: str = WAREHOUSE_CONN_ID
    landing_dir: Path = DEFAULT_DATA_DIR / "landing"
    #: the pipeline's own working files (extracts of table sources, a bring-your-own split, models)
    data_dir: Path = DEFAULT_DATA_DIR
    sources_file: Path = DEFAULT_SOURCES_FILE
    #: the marketers' campaigns with their control groups (custseg/campaigns.py)
    campaigns_file: Path = DEFAULT_CAMPAIGNS_FILE
    #: what the activation DAG writes after each publish (custseg/steps/activate.py), and where
    activation_file: Path = DEFAULT_ACTIVATION_FILE
    export_dir: Path = DEFAULT_DATA_DIR / "exports"
    build_schema: str = "analytics_build"
    publish_schema: str = "analytics"
    #: the key of every keyed hash (customer ids, contact hashes, published references; custseg/steps/identity.py)
    hash_key: str = DEV_HASH_KEY
    docs_dir: Path = DEFAULT_DATA_DIR / "docs"
    reporting_currency: str = "EUR"
    phone_country_code: str = "44"
    duckdb_memory_limit: str = "2GB"
    #: customers read and scored at a time by the nightly score task (its memory is bounded by a chunk)
    score_chunk_customers: int = 250_000
    #: dated run reports (report-<date>.html) kept beside the latest; 0 keeps every one
    report_keep: int = 90
    #: dbt sources whose freshness error fails the night (CUSTSEG_FRESHNESS_BLOCKING); the others only warn
    freshness_blocking: tuple[str, ...] = ()
    #: None keeps every date of segment_history (CUSTSEG_HISTORY_DAILY_DAYS unset)
    history_retention: HistoryRetention | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @cached_property
    def postgres(self) -> PostgresParams | None:
        """The PostgreSQL warehouse's connection (None on DuckDB), resolved on first use, not when the DAG file
        is parsed: CUSTSEG_POSTGRES_URL if set, else the Airflow connection (:func:`postgres_from_airflow`)."""
        if self.warehouse != "postgres":
            return None
        if self.postgres_url:
            return postgres_from_url(self.postgres_url)
        return postgres_from_airflow(self.warehouse_conn_id, hint="; or set CUSTSEG_POSTGRES_URL outside Airflow")

    @property
    def pii_salt(self) -> str:
        """Deprecated name of :attr:`hash_key`."""
        return self.hash_key

    @property
    def dbt_target(self) -> str:
        return self.warehouse

    @property
    def dbt_target_dir(self) -> Path:
        """dbt's target path (manifest, partial-parse state, compiled SQL, the docs files) for this data directory.

        Not the project's own `target/`: an installed package's folder is not writable, and two warehouses
        sharing one partial-parse file make each other's next dbt command parse the whole project (the
        profile, with its DuckDB path or PostgreSQL database, is part of that state)."""
        return self.data_dir / "dbt" / "target"

    def dbt_env(self) -> dict[str, str]:
        """Environment variables that `dbt_project/profiles.yml` reads through `env_var`."""
        env = {
            "CUSTSEG_WAREHOUSE": self.warehouse,
            "CUSTSEG_DUCKDB_PATH": str(self.duckdb_path),
            "CUSTSEG_BUILD_SCHEMA": self.build_schema,
            "CUSTSEG_REPORTING_CURRENCY": self.reporting_currency,
            "CUSTSEG_PHONE_COUNTRY_CODE": self.phone_country_code,
            "CUSTSEG_DUCKDB_MEMORY_LIMIT": self.duckdb_memory_limit,
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
        }
        if self.postgres is not None:
            env.update(
                CUSTSEG_PG_HOST=self.postgres.host,
                CUSTSEG_PG_PORT=str(self.postgres.port),
                CUSTSEG_PG_USER=self.postgres.user,
                CUSTSEG_PG_PASSWORD=self.postgres.password,
                CUSTSEG_PG_DBNAME=self.postgres.dbname,
            )
        return env

    def export_dbt_env(self) -> None:
        """Put the dbt profile variables into this process's environment (dbt reads it)."""
        os.environ.update(self.dbt_env())


def _hash_key(env: dict[str, str], production: bool) -> str:
    """CUSTSEG_HASH_KEY, or its deprecated alias CUSTSEG_PII_SALT (deployments that set the salt keep
    their ids' key); required in production, DEV_HASH_KEY otherwise."""
    key, alias = env.get("CUSTSEG_HASH_KEY", ""), env.get("CUSTSEG_PII_SALT", "")
    if key and alias and key != alias:
        raise ConfigError("CUSTSEG_HASH_KEY and its deprecated alias CUSTSEG_PII_SALT differ; "
                          "set only CUSTSEG_HASH_KEY")
    key = key or alias
    if production and (not key or key == DEV_HASH_KEY):
        # the development key is published in the README: ids hashed with it can be looked up by anyone
        raise ConfigError("CUSTSEG_HASH_KEY must be set (to a secret, not the development key) "
                          "when CUSTSEG_ENV=production")
    return key or DEV_HASH_KEY


def _history_retention(env: dict[str, str]) -> HistoryRetention | None:
    days = env.get("CUSTSEG_HISTORY_DAILY_DAYS", "").strip()
    thinning = env.get("CUSTSEG_HISTORY_THINNING", "month_end").strip().lower()
    if thinning not in HISTORY_THINNING:
        raise ConfigError(f"CUSTSEG_HISTORY_THINNING must be one of {', '.join(HISTORY_THINNING)}, got {thinning!r}")
    if not days:
        return None
    if not days.isdigit() or int(days) < MIN_HISTORY_DAILY_DAYS:
        raise ConfigError(f"CUSTSEG_HISTORY_DAILY_DAYS must be a number of days of at least "
                          f"{MIN_HISTORY_DAILY_DAYS} (a date's migration compares it with a week before), "
                          f"or unset to keep every date; got {days!r}")
    return HistoryRetention(daily_days=int(days), thinning=thinning)  # type: ignore[arg-type]


def task_retries(env: dict[str, str] | None = None) -> tuple[int, dt.timedelta]:
    """How often a failed task is retried, and the first delay (custseg.ops.run_audit.default_args)."""
    env = dict(os.environ if env is None else env)
    retries = env.get("CUSTSEG_TASK_RETRIES", "2").strip()
    delay = env.get("CUSTSEG_TASK_RETRY_DELAY_SECONDS", "120").strip()
    if not retries.isdigit():
        raise ConfigError(f"CUSTSEG_TASK_RETRIES must be a number of retries (0 for none), got {retries!r}")
    if not delay.isdigit():
        raise ConfigError(f"CUSTSEG_TASK_RETRY_DELAY_SECONDS must be a number of seconds, got {delay!r}")
    return int(retries), dt.timedelta(seconds=int(delay))


def load_settings(env: dict[str, str] | None = None) -> Settings:
    """Build settings from environment variables; see the README's Configuration table."""
    env = dict(os.environ if env is None else env)
    warehouse = env.get("CUSTSEG_WAREHOUSE", "duckdb").strip().lower()
    if warehouse not in ("duckdb", "postgres"):
        raise ConfigError(f"CUSTSEG_WAREHOUSE must be 'duckdb' or 'postgres', got {warehouse!r}")
    postgres_url = env.get("CUSTSEG_POSTGRES_URL", "").strip() or None
    if warehouse == "postgres" and postgres_url:
        postgres_from_url(postgres_url)  # a malformed URL is reported before any work starts
    production = env.get("CUSTSEG_ENV", "development").lower() == "production"
    hash_key = _hash_key(env, production)
    currency = env.get("CUSTSEG_REPORTING_CURRENCY", "EUR").strip().upper()
    if not re.fullmatch(r"[A-Z]{3}", currency):
        raise ConfigError(f"CUSTSEG_REPORTING_CURRENCY must be an ISO 4217 code such as EUR, got {currency!r}")
    country_code = env.get("CUSTSEG_PHONE_COUNTRY_CODE", "44").strip().lstrip("+")
    if not re.fullmatch(r"[1-9][0-9]{0,2}", country_code):
        raise ConfigError(f"CUSTSEG_PHONE_COUNTRY_CODE must be a country calling code such as 44 or 1, "
                          f"got {country_code!r}")
    memory_limit = env.get("CUSTSEG_DUCKDB_MEMORY_LIMIT", "2GB").strip().replace(" ", "")
    if not re.fullmatch(r"\d+(\.\d+)?([KMGT]i?B)", memory_limit, flags=re.IGNORECASE):
        raise ConfigError(f"CUSTSEG_DUCKDB_MEMORY_LIMIT must be a size such as 2GB or 1500MB, got {memory_limit!r}")
    chunk = env.get("CUSTSEG_SCORE_CHUNK_CUSTOMERS", "250000").strip().replace("_", "")
    if not chunk.isdigit() or int(chunk) < 1:
        raise ConfigError(f"CUSTSEG_SCORE_CHUNK_CUSTOMERS must be a positive number of customers, got {chunk!r}")
    report_keep = env.get("CUSTSEG_REPORT_KEEP", "90").strip()
    if not report_keep.isdigit():
        raise ConfigError(f"CUSTSEG_REPORT_KEEP must be a number of dated reports (0 keeps all), got {report_keep!r}")
    data_dir = Path(env.get("CUSTSEG_DATA_DIR") or DEFAULT_DATA_DIR)
    return Settings(
        report_keep=int(report_keep),
        freshness_blocking=tuple(sorted({name.strip().lower() for name in
                                         env.get("CUSTSEG_FRESHNESS_BLOCKING", "").split(",") if name.strip()})),
        history_retention=_history_retention(env),
        warehouse=warehouse,  # type: ignore[arg-type]
        duckdb_path=Path(env.get("CUSTSEG_DUCKDB_PATH", data_dir / "warehouse.duckdb")),
        postgres_url=postgres_url,
        landing_dir=Path(env.get("CUSTSEG_LANDING_DIR", data_dir / "landing")),
        data_dir=data_dir,
        sources_file=Path(env.get("CUSTSEG_SOURCES_FILE", DEFAULT_SOURCES_FILE)),
        campaigns_file=Path(env.get("CUSTSEG_CAMPAIGNS_FILE", DEFAULT_CAMPAIGNS_FILE)),
        activation_file=Path(env.get("CUSTSEG_ACTIVATION_FILE", DEFAULT_ACTIVATION_FILE)),
        export_dir=Path(env.get("CUSTSEG_EXPORT_DIR", data_dir / "exports")),
        build_schema=env.get("CUSTSEG_BUILD_SCHEMA", "analytics_build"),
        publish_schema=env.get("CUSTSEG_PUBLISH_SCHEMA", "analytics"),
        hash_key=hash_key,
        docs_dir=Path(env.get("CUSTSEG_DOCS_DIR", data_dir / "docs")),
        reporting_currency=currency,
        phone_country_code=country_code,
        duckdb_memory_limit=memory_limit,
        score_chunk_customers=int(chunk),
    )
