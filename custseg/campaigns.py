"""Load and check the campaigns file (`config/campaigns.yml`, or CUSTSEG_CAMPAIGNS_FILE), and the holdout rule.

A campaign targets customers by their playbook rule (`target_playbook_ids`) and/or their RFM segment
(`target_rfm_segments`); a customer is in the target when they match every list given. From
`start_date` to `end_date` each night assigns the customers who are in the target and have no
assignment yet, on that night's as-of date (`analytics.campaign_audience`). A keyed hash of the
campaign id and the customer id, against `control_share`, decides who is held out as control: the
same customer always lands on the same side of the same campaign, whatever their segment, on every
run. `conversion_window_days` is how long after assignment a purchase counts as a conversion
(`analytics.campaign_uplift`). docs/overview.md "The action loop" explains the whole loop.

The file is checked before anything runs (the prepare task), with one-line errors naming the file,
the campaign and the key, and lands in `raw.campaigns` through bound parameters; dbt reads it there.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from custseg.config import DBT_PROJECT_DIR, ConfigError
from custseg.hashing import HASH_SEPARATOR, keyed_hash

#: the hash namespace of the holdout draw (custseg/steps/identity.py NAMESPACES, macros/pii.sql)
HOLDOUT_NAMESPACE = "campaign"
#: the holdout draw is the first 8 hex digits of the keyed hash, a uniform integer below 2**32
HOLDOUT_DIGITS = 8
HOLDOUT_BUCKETS = 16**HOLDOUT_DIGITS
DEFAULT_CONTROL_SHARE = 0.10
#: a campaign id is a short slug: it is published, shown in reports and part of the holdout hash
_CAMPAIGN_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,59}$")
_KEYS = {"campaign_id", "description", "target_playbook_ids", "target_rfm_segments", "start_date", "end_date",
         "conversion_window_days", "control_share"}


class _DatesAsText(yaml.SafeLoader):
    """YAML without implicit timestamps: dates stay text, so an impossible one (2026-11-31) gets this
    module's one-line error naming the campaign and key, not PyYAML's exception."""


_DatesAsText.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
PLAYBOOK_SEED = DBT_PROJECT_DIR / "seeds" / "segment_playbook_rules.csv"
RFM_SEGMENTS_SEED = DBT_PROJECT_DIR / "seeds" / "rfm_segment_descriptions.csv"


@dataclass(frozen=True)
class Campaign:
    campaign_id: str
    description: str
    target_playbook_ids: tuple[str, ...]
    target_rfm_segments: tuple[str, ...]
    start_date: dt.date
    end_date: dt.date
    conversion_window_days: int
    control_share: float

    @property
    def control_threshold(self) -> str:
        """The holdout cut as the hex digits the hash is compared with: control when the hash's first
        HOLDOUT_DIGITS digits sort below it (fixed-width lower-case hex sorts like the number)."""
        return format(control_buckets(self.control_share), f"0{HOLDOUT_DIGITS}x")


def control_buckets(control_share: float) -> int:
    """How many of the HOLDOUT_BUCKETS draws fall in the control group."""
    return math.floor(control_share * HOLDOUT_BUCKETS)


def holdout_draw(hash_key: str, campaign_id: str, customer_id: str) -> int:
    """The customer's uniform draw for the campaign, an integer below HOLDOUT_BUCKETS."""
    digest = keyed_hash(hash_key, HOLDOUT_NAMESPACE, HASH_SEPARATOR.join((campaign_id, customer_id)))
    return int(digest[:HOLDOUT_DIGITS], 16)


def is_control(hash_key: str, campaign_id: str, customer_id: str, control_share: float) -> bool:
    """The holdout rule in Python, as dbt applies it (int_campaign_assignments): for tests and tools."""
    return holdout_draw(hash_key, campaign_id, customer_id) < control_buckets(control_share)


def _seed_values(seed: Path, column: str) -> set[str]:
    with seed.open(newline="", encoding="utf-8") as handle:
        return {row[column] for row in csv.DictReader(handle)}


def playbook_ids() -> set[str]:
    """The playbook rules a campaign may target (the seed segment_playbook_rules)."""
    return _seed_values(PLAYBOOK_SEED, "playbook_id")


def rfm_segments() -> set[str]:
    """The 11 RFM segments a campaign may target (the seed rfm_segment_descriptions)."""
    return _seed_values(RFM_SEGMENTS_SEED, "rfm_segment")


def _date(path: Path, where: str, key: str, value: object) -> dt.date:
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise ConfigError(f"{path}: {where}: {key} must be a date YYYY-MM-DD, got {str(value)[:40]!r}") from None


def _names(path: Path, where: str, key: str, value: object, allowed: set[str] | tuple[str, ...]) -> tuple[str, ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        raise ConfigError(f"{path}: {where}: {key} must be a list of names")
    unknown = [item for item in items if item not in allowed]
    if unknown:
        raise ConfigError(f"{path}: {where}: {key} has unknown {unknown[0][:60]!r}; one of: "
                          f"{', '.join(sorted(allowed))}")
    return tuple(dict.fromkeys(items))


def _campaign(path: Path, index: int, entry: object, known_playbook_ids: set[str]) -> Campaign:
    where = f"campaign #{index + 1}"
    if not isinstance(entry, dict):
        raise ConfigError(f"{path}: {where} must be a mapping of campaign_id, targets, dates and shares")
    campaign_id = entry.get("campaign_id")
    if not isinstance(campaign_id, str) or not _CAMPAIGN_ID.match(campaign_id):
        raise ConfigError(f"{path}: {where}: campaign_id must be 1-60 lower-case letters, digits, _ or -, "
                          f"starting with a letter or digit, got {str(campaign_id)[:60]!r}")
    where = f"campaign {campaign_id}"
    unknown = sorted(set(entry) - _KEYS)
    if unknown:
        raise ConfigError(f"{path}: {where}: unknown key {str(unknown[0])[:40]!r}; keys: {', '.join(sorted(_KEYS))}")
    playbook = _names(path, where, "target_playbook_ids", entry.get("target_playbook_ids"), known_playbook_ids)
    segments = _names(path, where, "target_rfm_segments", entry.get("target_rfm_segments"), rfm_segments())
    if not playbook and not segments:
        raise ConfigError(f"{path}: {where}: give target_playbook_ids or target_rfm_segments (or both)")
    for key in ("start_date", "end_date"):
        if key not in entry:
            raise ConfigError(f"{path}: {where}: {key} is required")
    start = _date(path, where, "start_date", entry["start_date"])
    end = _date(path, where, "end_date", entry["end_date"])
    if end < start:
        raise ConfigError(f"{path}: {where}: end_date {end} is before start_date {start}")
    window = entry.get("conversion_window_days")
    if isinstance(window, bool) or not isinstance(window, int) or not 1 <= window <= 365:
        raise ConfigError(f"{path}: {where}: conversion_window_days must be a whole number of days from 1 to 365, "
                          f"got {str(window)[:20]!r}")
    share = entry.get("control_share", DEFAULT_CONTROL_SHARE)
    if isinstance(share, bool) or not isinstance(share, int | float) or not 0.01 <= share <= 0.5:
        raise ConfigError(f"{path}: {where}: control_share must be a share from 0.01 to 0.5, got {str(share)[:20]!r}")
    description = entry.get("description", "")
    if not isinstance(description, str) or len(description) > 400:
        raise ConfigError(f"{path}: {where}: description must be text of at most 400 characters")
    return Campaign(campaign_id, description, playbook, segments, start, end, window, float(share))


def load_campaigns(path: Path, known_playbook_ids: set[str] | None = None) -> list[Campaign]:
    """The campaigns of the file, checked; ConfigError (one line) on the first problem."""
    known = playbook_ids() if known_playbook_ids is None else known_playbook_ids
    try:
        document = yaml.load(Path(path).read_text(encoding="utf-8"), Loader=_DatesAsText)  # a SafeLoader
    except OSError as exc:
        raise ConfigError(f"{path}: the campaigns file cannot be read ({exc.strerror or type(exc).__name__}); "
                          "set CUSTSEG_CAMPAIGNS_FILE to an existing file") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{at}") from None
    if document is None:
        return []
    if not isinstance(document, dict) or set(document) != {"campaigns"}:
        raise ConfigError(f"{path}: the file must hold one key, campaigns: a list of campaigns")
    entries = document["campaigns"] or []
    if not isinstance(entries, list):
        raise ConfigError(f"{path}: campaigns must be a list")
    campaigns = [_campaign(path, i, entry, known) for i, entry in enumerate(entries)]
    seen: set[str] = set()
    for campaign in campaigns:
        if campaign.campaign_id in seen:
            raise ConfigError(f"{path}: campaign {campaign.campaign_id} is declared twice")
        seen.add(campaign.campaign_id)
    return campaigns


def campaign_rows(campaigns: list[Campaign]) -> list[tuple]:
    """raw.campaigns rows; a target list is stored as 'a|b', the playbook seed's convention."""
    return [
        (c.campaign_id, c.description, "|".join(c.target_playbook_ids) or None,
         "|".join(c.target_rfm_segments) or None, c.start_date, c.end_date, c.conversion_window_days,
         c.control_share, c.control_threshold)
        for c in campaigns
    ]
