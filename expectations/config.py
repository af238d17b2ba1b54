"""Quality-gate settings, read from the environment (all optional; defaults in ``QualityConfig``).

| variable | default | meaning |
|---|---|---|
| ``CUSTSEG_ROW_COUNT_BAND`` | ``0.5`` | a raw batch may have ±50 % of the previous batch's rows |
| ``CUSTSEG_ROW_COUNT_SEVERITY`` | ``warning`` | ``blocking`` makes a volume jump stop the run |
| ``CUSTSEG_ROW_COUNT_MIN_CHANGE`` | ``50`` | a change of fewer rows than this never trips the row-count band |
| ``CUSTSEG_SEGMENT_SHARE_BAND`` | ``0.5`` | a segment's share may move by ±50 % of yesterday's share ... |
| ``CUSTSEG_SEGMENT_SHARE_TOLERANCE`` | ``0.02`` | ... or by 2 percentage points, whichever is larger |
| ``CUSTSEG_SEGMENT_SHARE_SEVERITY`` | ``blocking`` | a collapsed segment blocks publication |
| ``CUSTSEG_GX_CHUNK_ROWS`` | ``1000000`` | DuckDB batches above this are validated in chunks of this many rows |
| ``CUSTSEG_MAX_QUARANTINE_SHARE`` | ``0.05`` | a source quarantining more than 5 % of the rows a run read fails it |
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from expectations.suites import BLOCKING, WARNING, Severity


@dataclass(frozen=True)
class QualityConfig:
    row_count_band: float = 0.5
    row_count_severity: Severity = WARNING
    row_count_min_change: float = 50
    segment_share_band: float = 0.5
    segment_share_tolerance: float = 0.02
    segment_share_severity: Severity = BLOCKING
    #: rows GX validates at a time on DuckDB (CUSTSEG_GX_CHUNK_ROWS): a 1M-row frame raised the audit's RSS by
    #: 1.8 GB, the first night's peak at 1M customers; each chunk is validated on its own
    chunk_rows: int = 250_000
    #: Blocking when at least one row was quarantined and the share is above this: no minimum
    #: night size, so a 1-of-3 night fails too (a wrong mapping shows on small nights first).
    max_quarantine_share: float = 0.05

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> QualityConfig:
        env = os.environ if env is None else env
        default = cls()

        def number(name: str, value: float) -> float:
            raw = env.get(name, "").strip()
            if not raw:
                return value
            try:
                parsed = float(raw)
            except ValueError:
                raise ValueError(f"{name} must be a number, got {raw!r}") from None
            if parsed < 0:
                raise ValueError(f"{name} must not be negative, got {raw!r}")
            return parsed

        def share(name: str, value: float) -> float:
            parsed = number(name, value)
            if parsed > 1:
                raise ValueError(f"{name} is a share between 0 and 1 (0.05 = 5 %), got {parsed!r}")
            return parsed

        def severity(name: str, value: Severity) -> Severity:
            raw = env.get(name, "").strip().lower() or value
            if raw not in (BLOCKING, WARNING):
                raise ValueError(f"{name} must be 'blocking' or 'warning', got {raw!r}")
            return raw  # type: ignore[return-value]

        return cls(
            row_count_band=number("CUSTSEG_ROW_COUNT_BAND", default.row_count_band),
            row_count_severity=severity("CUSTSEG_ROW_COUNT_SEVERITY", default.row_count_severity),
            row_count_min_change=number("CUSTSEG_ROW_COUNT_MIN_CHANGE", default.row_count_min_change),
            segment_share_band=number("CUSTSEG_SEGMENT_SHARE_BAND", default.segment_share_band),
            segment_share_tolerance=number("CUSTSEG_SEGMENT_SHARE_TOLERANCE", default.segment_share_tolerance),
            segment_share_severity=severity("CUSTSEG_SEGMENT_SHARE_SEVERITY", default.segment_share_severity),
            chunk_rows=max(1, int(number("CUSTSEG_GX_CHUNK_ROWS", default.chunk_rows))),
            max_quarantine_share=share("CUSTSEG_MAX_QUARANTINE_SHARE", default.max_quarantine_share),
        )
