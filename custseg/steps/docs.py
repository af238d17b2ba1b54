"""The docs task: the static dbt docs site, regenerated after each publish."""

from __future__ import annotations

import datetime as dt
import logging
import shutil
from pathlib import Path

from custseg.config import DBT_PROJECT_DIR, Settings
from custseg.dbt import dbt_run_env, run_dbt

log = logging.getLogger(__name__)


def build_docs(settings: Settings, as_of_date: dt.date) -> Path:
    """Generate the static dbt docs site (a single self-contained HTML file) into docs_dir."""
    run_dbt(settings, ["docs", "generate", "--static"], dbt_run_env(as_of_date))
    settings.docs_dir.mkdir(parents=True, exist_ok=True)
    target = settings.docs_dir / "dbt"
    target.mkdir(parents=True, exist_ok=True)
    for name in ("static_index.html", "index.html", "manifest.json", "catalog.json"):
        src = DBT_PROJECT_DIR / "target" / name
        if src.exists():
            shutil.copy2(src, target / name)
    return target / "static_index.html"
