"""The docs task: the static dbt docs site, regenerated after a publish that changed what it shows."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import shutil
from pathlib import Path

from custseg.config import DBT_PROJECT_DIR, Settings
from custseg.dbt import dbt_run_env, run_dbt
from custseg.warehouse import connect

log = logging.getLogger(__name__)

SITE_FILES = ("static_index.html", "index.html", "manifest.json", "catalog.json")
#: what `dbt docs generate` leaves out of the project's fingerprint: its own output and dbt's logs
NOT_PROJECT = ("target", "logs", "dbt_packages")
FINGERPRINT_FILE = ".fingerprint"


def project_fingerprint(settings: Settings) -> str:
    """What the docs site shows: the dbt project's files, its target and reporting currency, and the catalogue of the
    build and published schemas (tables, columns, types). Row values are not in the site, so a night that
    only brought new data leaves the fingerprint, and the site, unchanged."""
    digest = hashlib.sha256()
    digest.update(json.dumps({"target": settings.dbt_target, "currency": settings.reporting_currency,
                              "schemas": [settings.build_schema, settings.publish_schema]}, sort_keys=True).encode())
    for path in sorted(DBT_PROJECT_DIR.rglob("*")):
        relative = path.relative_to(DBT_PROJECT_DIR)
        if path.is_file() and relative.parts[0] not in NOT_PROJECT:
            digest.update(str(relative).encode() + b"\0" + path.read_bytes() + b"\0")
    with connect(settings) as wh:
        columns = wh.fetchall(
            "select table_schema, table_name, column_name, data_type from information_schema.columns "
            "where table_schema in (%s, %s) order by table_schema, table_name, ordinal_position",
            (settings.build_schema, settings.publish_schema))
    digest.update(json.dumps([list(map(str, row)) for row in columns]).encode())
    return digest.hexdigest()


def build_docs(settings: Settings, as_of_date: dt.date, *, force: bool = False) -> Path:
    """Generate the static dbt docs site (a single self-contained HTML file) into docs_dir.

    Skipped when the site there was generated from the same project and catalogue (``force`` regenerates
    it anyway): ``dbt docs generate`` costs a few seconds and, on PostgreSQL, a catalogue query per schema.
    """
    target = settings.docs_dir / "dbt"
    site = target / "static_index.html"
    fingerprint = project_fingerprint(settings)
    stamp = target / FINGERPRINT_FILE
    if not force and site.exists() and stamp.exists() and stamp.read_text(encoding="utf-8") == fingerprint:
        log.info("dbt docs site unchanged (same project and catalogue): %s", site)
        return site
    run_dbt(settings, ["docs", "generate", "--static"], dbt_run_env(as_of_date))
    target.mkdir(parents=True, exist_ok=True)
    for name in SITE_FILES:
        src = settings.dbt_target_dir / name
        if src.exists():
            shutil.copy2(src, target / name)
    stamp.write_text(fingerprint, encoding="utf-8")
    return site
