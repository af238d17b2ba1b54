"""Activation: hand an audience of the published tables to a CRM or ad tool (`custseg export`).

An audience is a playbook rule (`playbook_id`), an RFM segment, or a campaign (`campaign:<campaign_id>`, its
treated customers). It is read from the published `analytics` tables as of their latest date, and written as
a CSV or Parquet file beside a manifest (`<file>.manifest.json`: audience, as-of date, rows, columns, format,
the file's sha256, which contact columns it carries and how many campaign controls were left out).

* **The CRM's own reference.** `analytics` holds keyed hashes only; the file carries `crm_customer_id`, the
  CRM's id of the customer, mapped from the identity map in `raw` (null for a guest buyer), so the tool can
  find the person.
* **Contact details only on request.** `email` and `phone` (the CRM's latest values in `raw`) are written only
  when asked for by name (`--include email,phone`), per export; the manifest records it.
* **Controls are never handed over.** A campaign audience is its treated customers. A playbook rule or segment
  audience leaves out every customer held out as a control of a campaign still running or measuring (its
  conversion window not yet passed): contacting them would spoil its measurement.

The audience name is checked against the published values before anything is read, and every value reaches
the SQL as a bound parameter.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from custseg.config import Settings
from custseg.errors import UsageError
from custseg.warehouse import Warehouse, connect
from custseg.warehouse.sql import quote_ident

FORMATS = ("csv", "parquet")
CONTACT_COLUMNS = ("email", "phone")
CAMPAIGN_PREFIX = "campaign:"


def _published_values(wh: Warehouse, schema: str, column: str, table: str) -> set[str]:
    rows = wh.fetchall(f"select distinct {quote_ident(column)} from {quote_ident(schema)}.{quote_ident(table)} "
                       f"where {quote_ident(column)} is not null")
    return {str(value) for (value,) in rows}


def _audience_filter(wh: Warehouse, schema: str, audience: str) -> tuple[str, str, tuple[Any, ...]]:
    """(kind, SQL condition on the customers `s`, parameters) for an audience; UsageError naming the choices."""
    if audience.startswith(CAMPAIGN_PREFIX):
        campaign = audience[len(CAMPAIGN_PREFIX):]
        known = _published_values(wh, schema, "campaign_id", "campaign_audience")
        if campaign not in known:
            raise UsageError(f"--audience {audience[:80]!r}: no campaign of that id has an audience; one of: "
                             + (", ".join(CAMPAIGN_PREFIX + c for c in sorted(known)) or "(none)"))
        return ("campaign", "s.customer_id in (select a.customer_id from "
                f"{quote_ident(schema)}.campaign_audience as a where a.campaign_id = %s and not a.is_control)",
                (campaign,))
    playbook = _published_values(wh, schema, "playbook_id", "segment_playbook")
    if audience in playbook:
        return "playbook_id", "s.playbook_id = %s", (audience,)
    segments = _published_values(wh, schema, "rfm_segment", "customer_segments")
    if audience in segments:
        return "rfm_segment", "s.rfm_segment = %s", (audience,)
    raise UsageError(f"--audience {audience[:80]!r}: give a playbook rule ({', '.join(sorted(playbook)[:5])}, ...), "
                     f"an RFM segment ({', '.join(sorted(segments)[:3])}, ...) or campaign:<campaign_id>")


def _file_stem(audience: str, as_of_date: dt.date) -> str:
    return f"{re.sub(r'[^a-z0-9]+', '-', audience.lower()).strip('-')}-{as_of_date.isoformat()}"


def export_audience(settings: Settings, audience: str, fmt: str, to_dir: Path,
                    include: tuple[str, ...] = ()) -> dict[str, Any]:
    """Write the audience file and its manifest into `to_dir`; return the manifest."""
    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt[:20]!r}: one of {', '.join(FORMATS)}")
    unknown = [column for column in include if column not in CONTACT_COLUMNS]
    if unknown:
        raise UsageError(f"--include {unknown[0][:20]!r}: one of {', '.join(CONTACT_COLUMNS)}")
    schema = quote_ident(settings.publish_schema)
    with connect(settings, read_only=True) as wh:
        if not wh.table_exists(settings.publish_schema, "customer_segments"):
            raise UsageError("nothing is published yet: run `custseg run --as-of YYYY-MM-DD` first")
        [(as_of_date,)] = wh.fetchall(f"select max(as_of_date) from {schema}.customer_segments")
        kind, condition, params = _audience_filter(wh, settings.publish_schema, audience)
        # the controls of campaigns still running or measuring, left out of a rule or segment audience (a
        # campaign's own audience is its treated side: other campaigns draw their controls independently, so
        # treating one campaign's controls with another leaves both measurements fair)
        controls = (f"s.customer_id in (select a.customer_id from {schema}.campaign_audience as a "
                    "where a.is_control and a.conversion_window_ends_on >= %s)")
        not_controls, control_params = (f"not ({controls})", (as_of_date,)) if kind != "campaign" else ("true", ())
        contact = ""
        if include:
            # the CRM's latest landed version of each record, as of the published date
            contact = ("left join (select crm_customer_id, email, phone, row_number() over (partition by "
                       "crm_customer_id order by _partition_date desc, updated_at desc, _source_line desc) as version "
                       "from raw.crm_customers where _partition_date <= %s) as crm "
                       "on crm.crm_customer_id = ref.crm_customer_id and crm.version = 1")
        contact_columns = "".join(f", crm.{column}" for column in include)
        sql = (
            f"select s.customer_id, ref.crm_customer_id, s.playbook_id, s.next_best_action, s.rfm_segment, "
            f"s.churn_risk_band, s.predicted_clv_12m{contact_columns}, s.as_of_date "
            f"from {schema}.customer_segments as s "
            "left join (select customer_id, min(key_value) as crm_customer_id from raw.identity_map "
            "where key_type = 'crm_id' group by customer_id) as ref on ref.customer_id = s.customer_id "
            f"{contact} where {condition} and {not_controls} order by s.customer_id"
        )
        frame = wh.query_df(sql, (*((as_of_date,) if include else ()), *params, *control_params))
        if kind == "campaign":
            [(held_out,)] = wh.fetchall(f"select count(*) from {schema}.campaign_audience "
                                        "where campaign_id = %s and is_control", params)
        else:
            [(held_out,)] = wh.fetchall(
                f"select count(*) from {schema}.customer_segments as s where {condition} and {controls}",
                (*params, as_of_date))
    to_dir.mkdir(parents=True, exist_ok=True)
    path = to_dir / f"{_file_stem(audience, as_of_date)}.{fmt}"
    _write_atomically(frame, path, fmt)
    manifest = {
        "audience": audience,
        "audience_kind": kind,
        "as_of_date": as_of_date.isoformat(),
        "rows": len(frame),
        "columns": list(frame.columns),
        "format": fmt,
        "file": path.name,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "contact_columns": list(include),
        "campaign_controls_left_out": int(held_out),
    }
    manifest_path = path.with_name(path.name + ".manifest.json")
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def _write_atomically(frame: pd.DataFrame, path: Path, fmt: str) -> None:
    """Write next to `path` and rename: a reader never sees half a file."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(handle)
    try:
        if fmt == "csv":
            frame.to_csv(temporary, index=False)
        else:
            frame.to_parquet(temporary, index=False)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
