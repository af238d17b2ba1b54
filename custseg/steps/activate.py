"""Activation: hand audiences and alerts of the published tables to a CRM or ad tool.

Two ways in: `custseg export` writes one audience on request, and the `activate_audiences` DAG, scheduled on the
Asset the nightly publish emits, writes what `config/activation.yml` (CUSTSEG_ACTIVATION_FILE) lists after each
successful publish, into `<CUSTSEG_EXPORT_DIR>/<as-of date>/`: its audiences, and the run's alerts per channel.
A failed publish emits no Asset event, so nothing is written from a failed night.

An audience is a playbook rule (`playbook_id`), an RFM segment, or a campaign (`campaign:<campaign_id>`, its
treated customers). It is read from the published `analytics` tables as of their latest date, and written as
a CSV or Parquet file beside a manifest (`<file>.manifest.json`: audience, as-of date, rows, columns, format,
the file's sha256, which contact columns it carries and how many campaign controls were left out).

* **The CRM's own reference.** `analytics` holds keyed hashes only; the file carries `crm_customer_id`, the
  CRM's id of the customer, mapped from the identity map in `raw` (null for a guest buyer), so the tool can
  find the person.
* **Contact details only on request.** `email` and `phone` (the CRM's latest values in `raw`) are written only
  when asked for by name (`--include email,phone`), per export; the manifest records it.
* **Consent per channel.** An export is for one channel (`email`, `sms` or `ads`): customers without that
  channel's consent as of the published date (`customer_segments.has_<channel>_consent`, docs/overview.md
  "Consent") are left out, and the manifest counts them.
* **Every file is on record.** Each written file is recorded in `ops.audience_exports` (path, audience, channel,
  as-of date, rows, sha256), so `custseg erase` can take an erased person out of the files already handed over.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from custseg.clock import utc_now
from custseg.config import ConfigError, Settings
from custseg.errors import UsageError
from custseg.warehouse import Warehouse, connect
from custseg.warehouse.sql import quote_ident

FORMATS = ("csv", "parquet")
CONTACT_COLUMNS = ("email", "phone")
#: marketing channel -> its consent column on customer_segments (the allow-list the SQL is built from)
CHANNEL_CONSENT = {"email": "has_email_consent", "sms": "has_sms_consent", "ads": "has_ads_consent"}
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


def _file_stem(audience: str, channel: str, as_of_date: dt.date) -> str:
    return f"{re.sub(r'[^a-z0-9]+', '-', audience.lower()).strip('-')}-{channel}-{as_of_date.isoformat()}"


# Connections here are read-write although activation only reads `analytics`: under `custseg run` / `custseg demo`
# the nightly DAG ran in this same process, and DuckDB refuses a read-only connection to a file this process
# already opened read-write (dbt keeps its connection). It also records every file in ops.audience_exports.


def _check_options(channel: str, fmt: str, include: tuple[str, ...]) -> None:
    if channel not in CHANNEL_CONSENT:
        raise UsageError(f"--channel {channel[:20]!r}: one of {', '.join(CHANNEL_CONSENT)}")
    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt[:20]!r}: one of {', '.join(FORMATS)}")
    unknown = [column for column in include if column not in CONTACT_COLUMNS]
    if unknown:
        raise UsageError(f"--include {unknown[0][:20]!r}: one of {', '.join(CONTACT_COLUMNS)}")


def _published_date(wh: Warehouse, settings: Settings) -> dt.date:
    if not wh.table_exists(settings.publish_schema, "customer_segments"):
        raise UsageError("nothing is published yet: run `custseg run --as-of YYYY-MM-DD` first")
    schema = quote_ident(settings.publish_schema)
    [(as_of_date,)] = wh.fetchall(f"select max(as_of_date) from {schema}.customer_segments")
    return as_of_date


#: the CRM's own reference of each customer, mapped from raw (analytics holds keyed hashes only)
_CRM_REFERENCE = ("left join (select customer_id, min(key_value) as crm_customer_id from raw.identity_map "
                  "where key_type = 'crm_id' group by customer_id) as ref on ref.customer_id = s.customer_id ")
#: the CRM's latest landed version of each record as of the published date (its one parameter), for contact columns
_CRM_CONTACT = ("left join (select crm_customer_id, email, phone, row_number() over (partition by "
                "crm_customer_id order by _partition_date desc, updated_at desc, _source_line desc) as version "
                "from raw.crm_customers where _partition_date <= %s) as crm "
                "on crm.crm_customer_id = ref.crm_customer_id and crm.version = 1 ")


def _running_controls(schema: str) -> str:
    """SQL condition (one parameter: the as-of date): the customer `s` is a control of a campaign still running or
    measuring (its conversion window not yet passed). Contacting them would spoil its measurement."""
    return (f"s.customer_id in (select a.customer_id from {schema}.campaign_audience as a "
            "where a.is_control and a.conversion_window_ends_on >= %s)")


def export_audience(settings: Settings, audience: str, fmt: str, to_dir: Path, channel: str,
                    include: tuple[str, ...] = ()) -> dict[str, Any]:
    """Write the audience file for `channel` and its manifest into `to_dir`, record it; return the manifest."""
    _check_options(channel, fmt, include)
    schema = quote_ident(settings.publish_schema)
    with connect(settings) as wh:
        as_of_date = _published_date(wh, settings)
        kind, condition, params = _audience_filter(wh, settings.publish_schema, audience)
        # a campaign's own audience is its treated side: other campaigns draw their controls independently, so
        # treating one campaign's controls with another leaves both measurements fair
        controls = _running_controls(schema)
        not_controls, control_params = (f"not ({controls})", (as_of_date,)) if kind != "campaign" else ("true", ())
        consent = f"s.{quote_ident(CHANNEL_CONSENT[channel])}"
        contact_columns = "".join(f", crm.{quote_ident(column)}" for column in include)
        sql = (
            f"select s.customer_id, ref.crm_customer_id, s.playbook_id, s.next_best_action, s.rfm_segment, "
            f"s.churn_risk_band, s.predicted_clv_12m{contact_columns}, s.as_of_date "
            f"from {schema}.customer_segments as s {_CRM_REFERENCE}{_CRM_CONTACT if include else ''}"
            f"where {condition} and {not_controls} and {consent} order by s.customer_id"
        )
        frame = wh.query_df(sql, (*((as_of_date,) if include else ()), *params, *control_params))
        if kind == "campaign":
            [(held_out,)] = wh.fetchall(f"select count(*) from {schema}.campaign_audience "
                                        "where campaign_id = %s and is_control", params)
        else:
            [(held_out,)] = wh.fetchall(
                f"select count(*) from {schema}.customer_segments as s where {condition} and {controls}",
                (*params, as_of_date))
        [(without_consent,)] = wh.fetchall(
            f"select count(*) from {schema}.customer_segments as s where {condition} and {not_controls} "
            f"and not {consent}", (*params, *control_params))
    return _hand_over(settings, frame, to_dir / f"{_file_stem(audience, channel, as_of_date)}.{fmt}", {
        "audience": audience,
        "audience_kind": kind,
        "as_of_date": as_of_date.isoformat(),
        "channel": channel,
        "contact_columns": list(include),
        "campaign_controls_left_out": int(held_out),
        "without_consent_left_out": int(without_consent),
    })


def export_alerts(settings: Settings, fmt: str, to_dir: Path, channel: str,
                  include: tuple[str, ...] = ()) -> dict[str, Any]:
    """Write the published date's `customer_alerts` for `channel` (customers without its consent and running
    campaigns' controls left out) with the CRM reference, beside a manifest; record it; return the manifest."""
    _check_options(channel, fmt, include)
    schema = quote_ident(settings.publish_schema)
    with connect(settings) as wh:
        as_of_date = _published_date(wh, settings)
        consent = f"s.{quote_ident(CHANNEL_CONSENT[channel])}"
        controls = _running_controls(schema)
        contact_columns = "".join(f", crm.{quote_ident(column)}" for column in include)
        frame = wh.query_df(
            f"select s.customer_id, ref.crm_customer_id, s.alert_type, s.reason, s.value_at_risk, s.playbook_id, "
            f"s.recommended_action{contact_columns}, s.compared_to_date, s.as_of_date "
            f"from {schema}.customer_alerts as s {_CRM_REFERENCE}{_CRM_CONTACT if include else ''}"
            f"where s.as_of_date = %s and {consent} and not ({controls}) order by s.customer_id, s.alert_type",
            (*((as_of_date,) if include else ()), as_of_date, as_of_date))
        [(without_consent, held_out)] = wh.fetchall(
            f"select count(case when not {consent} then 1 end), count(case when {controls} then 1 end) "
            f"from {schema}.customer_alerts as s where s.as_of_date = %s", (as_of_date, as_of_date))
    return _hand_over(settings, frame, to_dir / f"{_file_stem('alerts', channel, as_of_date)}.{fmt}", {
        "audience": "alerts",
        "audience_kind": "alerts",
        "as_of_date": as_of_date.isoformat(),
        "channel": channel,
        "contact_columns": list(include),
        "campaign_controls_left_out": int(held_out),
        "without_consent_left_out": int(without_consent),
    })


def _hand_over(settings: Settings, frame: pd.DataFrame, path: Path, about: dict[str, Any]) -> dict[str, Any]:
    """Write the file and its manifest (`<file>.manifest.json`) and record both in ops.audience_exports.

    The manifest holds nothing that changes between two writes of the same date, so a rerun writes the same bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = path.suffix.lstrip(".")
    _write_atomically(frame, path, fmt)
    manifest = {**about, "rows": len(frame), "columns": list(frame.columns), "format": fmt, "file": path.name,
                "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    manifest_path = path.with_name(path.name + ".manifest.json")
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    _record_export(settings, path, manifest_path, manifest)
    return manifest


def _record_export(settings: Settings, path: Path, manifest_path: Path, manifest: dict[str, Any]) -> None:
    """One row in ops.audience_exports per file written (a rewrite of the same file replaces its row)."""
    with connect(settings) as wh:
        wh.execute("delete from ops.audience_exports where file_path = %s", (str(path.resolve()),))
        wh.execute(
            "insert into ops.audience_exports (file_path, manifest_path, audience, channel, as_of_date, row_count, "
            "sha256, written_at) values (%s, %s, %s, %s, %s, %s, %s, %s)",
            (str(path.resolve()), str(manifest_path.resolve()), manifest["audience"], manifest["channel"],
             dt.date.fromisoformat(manifest["as_of_date"]), manifest["rows"], manifest["sha256"],
             utc_now()))


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


# -- the activation DAG: what it writes after each publish ------------------------------------------------------

_AUDIENCE_KEYS = {"audience", "channel", "format", "include"}
_ALERT_KEYS = {"channels", "format", "include"}


@dataclass(frozen=True)
class AudienceFile:
    audience: str
    channel: str
    format: str = "csv"
    include: tuple[str, ...] = ()


@dataclass(frozen=True)
class ActivationPlan:
    audiences: tuple[AudienceFile, ...]
    alert_channels: tuple[str, ...]
    alert_format: str = "csv"
    alert_include: tuple[str, ...] = ()


def load_activation_plan(path: Path) -> ActivationPlan:
    """Read and check the activation file (config/activation.yml); a ConfigError names the file and the key."""
    def fail(where: str, problem: str) -> ConfigError:
        return ConfigError(f"{path}: {where}: {problem}")

    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot be read as YAML ({str(exc).splitlines()[0][:120]})") from exc
    if not isinstance(document, dict) or set(document) - {"audiences", "alerts"}:
        raise fail("top level", "a mapping with the keys audiences and alerts")

    def include_of(entry: dict, where: str) -> tuple[str, ...]:
        include = entry.get("include") or []
        if not isinstance(include, list) or any(column not in CONTACT_COLUMNS for column in include):
            raise fail(where + ".include", f"a list of {', '.join(CONTACT_COLUMNS)}")
        return tuple(include)

    def format_of(entry: dict, where: str) -> str:
        fmt = entry.get("format", "csv")
        if fmt not in FORMATS:
            raise fail(where + ".format", f"one of {', '.join(FORMATS)}")
        return fmt

    audiences = []
    for number, entry in enumerate(document.get("audiences") or [], start=1):
        where = f"audiences[{number}]"
        if not isinstance(entry, dict) or set(entry) - _AUDIENCE_KEYS:
            raise fail(where, f"a mapping of {', '.join(sorted(_AUDIENCE_KEYS))}")
        if not isinstance(entry.get("audience"), str) or not entry["audience"]:
            raise fail(where + ".audience", "a playbook rule, an RFM segment or campaign:<campaign_id>")
        if entry.get("channel") not in CHANNEL_CONSENT:
            raise fail(where + ".channel", f"one of {', '.join(CHANNEL_CONSENT)}")
        audiences.append(AudienceFile(entry["audience"], entry["channel"], format_of(entry, where),
                                      include_of(entry, where)))
    alerts = document.get("alerts") or {}
    if not isinstance(alerts, dict) or set(alerts) - _ALERT_KEYS:
        raise fail("alerts", f"a mapping of {', '.join(sorted(_ALERT_KEYS))}")
    channels = alerts.get("channels") or []
    if not isinstance(channels, list) or any(channel not in CHANNEL_CONSENT for channel in channels):
        raise fail("alerts.channels", f"a list of {', '.join(CHANNEL_CONSENT)}")
    return ActivationPlan(tuple(audiences), tuple(channels), format_of(alerts, "alerts"),
                          include_of(alerts, "alerts"))


def published_date_of(triggering_asset_events: Any) -> dt.date | None:
    """The as-of date the latest triggering publish published (publish puts it in its events' extra), or None
    for a run started by hand."""
    events = [event for events in (triggering_asset_events or {}).values() for event in events
              if (getattr(event, "extra", None) or {}).get("as_of_date")]
    if not events:
        return None
    latest = max(events, key=lambda event: event.timestamp)
    return dt.date.fromisoformat(latest.extra["as_of_date"])


class Superseded(RuntimeError):
    """The published tables are no longer of the date the activation was triggered for."""


def activate(settings: Settings, published_as_of: dt.date | None = None) -> dict[str, Any]:
    """Write the activation file's audiences and alert files of the published date into
    `<export dir>/<as-of date>/`; return what was written.

    `published_as_of` is the date the publish that triggered this run published; when the tables have moved on
    since (a later publish), Superseded is raised and nothing is written: that publish's own activation writes."""
    plan = load_activation_plan(settings.activation_file)
    with connect(settings) as wh:
        as_of_date = _published_date(wh, settings)
        # every audience name is checked against the published values before the first file is written
        for entry in plan.audiences:
            _audience_filter(wh, settings.publish_schema, entry.audience)
    if published_as_of is not None and published_as_of != as_of_date:
        raise Superseded(f"the published tables are as of {as_of_date}, not {published_as_of}: "
                         f"the activation of {as_of_date} writes them")
    to_dir = settings.export_dir / as_of_date.isoformat()
    written = [export_audience(settings, entry.audience, entry.format, to_dir, entry.channel, entry.include)
               for entry in plan.audiences]
    written += [export_alerts(settings, plan.alert_format, to_dir, channel, plan.alert_include)
                for channel in plan.alert_channels]
    return {"as_of_date": as_of_date.isoformat(), "directory": str(to_dir),
            "files": {manifest["file"]: manifest["rows"] for manifest in written}}
