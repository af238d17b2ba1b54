"""Lazy, offline import of Great Expectations (importing it takes several seconds)."""

from __future__ import annotations

import logging
import os
from types import ModuleType


def import_gx() -> ModuleType:
    """Import ``great_expectations`` with analytics switched off, and return the module."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    # GX logs one INFO line per API helper it registers at import time: noise in task logs.
    logging.getLogger("great_expectations._docs_decorators").setLevel(logging.WARNING)
    # imported here: GX (5.7 s) (tests/test_architecture.py LAZY)
    import great_expectations

    return great_expectations
