"""Expectation suites as code.

A suite is a small, frozen, declarative value (``Suite`` of ``Check``\\ s) that reads like a review diff and
never carries generated ids. ``Suite.to_gx()`` turns it into a ``great_expectations.ExpectationSuite``; the
runner does that for you. Every check has a severity: ``blocking`` failures stop the pipeline, ``warning``
failures are logged and recorded. The severity is stored in each GX expectation's ``meta["severity"]`` and
mirrored to GX's own ``severity`` field (``critical`` / ``warning``).

This module does not import Great Expectations at import time, so DAG files can use it cheaply.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any, Final, Literal

if TYPE_CHECKING:
    from great_expectations import ExpectationSuite

Severity = Literal["blocking", "warning"]
BLOCKING: Final = "blocking"
WARNING: Final = "warning"
_GX_SEVERITY: Final[Mapping[str, str]] = {BLOCKING: "critical", WARNING: "warning"}

#: Load metadata columns every raw table carries (custseg.catalogue.LOAD_METADATA declares them).
LOAD_METADATA_COLUMNS: Final = ("_partition_date", "_source_file", "_source_line", "_run_id", "_extras")

RFM_SEGMENTS: Final = (
    "Champions", "Loyal", "Potential Loyalist", "New", "Promising", "Need Attention", "About To Sleep",
    "At Risk", "Can't Lose Them", "Hibernating", "Lost",
)  # fmt: skip
LIFECYCLE_STAGES: Final = ("prospect", "new", "active", "at_risk", "churned", "reactivated")
CHURN_RISK_BANDS: Final = ("low", "medium", "high", "critical")
PUBLISHED_COLUMNS: Final = (
    "customer_id", "as_of_date", "recency_days", "frequency", "monetary", "r_score", "f_score", "m_score",
    "rfm_segment", "lifecycle_stage", "value_tier", "frequency_class", "channel_preference", "loyalty_tier",
    "satisfaction_class", "cluster_id", "cluster_name", "churn_probability", "churn_risk_band", "p_alive",
    "expected_purchases_90d", "predicted_clv_12m", "model_version", "scored_at",
    # the customer portrait (additive)
    "gender", "country", "social_engagement_level", "is_advocate", "social_recency_days", "top_category",
    "interest_breadth", "interest_segment", "has_open_complaint", "complaint_rate_12m", "last_ticket_topic",
    "nps_trend", "price_sensitivity", "promo_responsiveness", "birth_month",
    # the segment playbook (additive)
    "playbook_id", "next_best_action",
    # marketing consent per channel (additive)
    "has_email_consent", "has_sms_consent", "has_ads_consent",
)  # fmt: skip
CONSENT_COLUMNS: Final = ("has_email_consent", "has_sms_consent", "has_ads_consent")
PROMO_RESPONSIVENESS: Final = ("responder", "occasional", "non_responder", "unknown")
NPS_TRENDS: Final = ("up", "flat", "down", "unknown")
PRICE_SENSITIVITIES: Final = ("deal_seeker", "mixed", "full_price", "unknown")
SOCIAL_ENGAGEMENT_LEVELS: Final = ("high", "medium", "low", "none")
GENDERS: Final = ("female", "male", "diverse", "unknown")
ML_LABEL_COLUMNS: Final = (
    "customer_id", "churn_probability", "churn_risk_band", "p_alive", "expected_purchases_90d",
    "predicted_clv_12m",
)  # fmt: skip


#: Expectations that read a table's column names, not its rows.
STRUCTURE_EXPECTATIONS: Final = frozenset({
    "expect_column_to_exist", "expect_table_columns_to_match_ordered_list", "expect_table_columns_to_match_set",
    "expect_table_column_count_to_equal", "expect_table_column_count_to_be_between",
})  # fmt: skip
#: Table-level expectations that count rows but read no column's values.
_ROW_COUNT_EXPECTATIONS: Final = frozenset({"expect_table_row_count_to_be_between", "expect_table_row_count_to_equal"})


@dataclass(frozen=True)
class Check:
    """One expectation: a GX expectation type (snake case), its column, its other kwargs and a severity."""

    expectation: str
    column: str | None = None
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    severity: Severity = BLOCKING

    def __post_init__(self) -> None:
        if self.severity not in _GX_SEVERITY:
            raise ValueError(f"severity must be 'blocking' or 'warning', not {self.severity!r}")
        if not self.expectation.startswith("expect_"):
            raise ValueError(f"not a GX expectation type: {self.expectation!r}")

    def gx_kwargs(self) -> dict[str, Any]:
        """The kwargs of the GX expectation, column included."""
        return {"column": self.column, **self.kwargs} if self.column is not None else dict(self.kwargs)

    def columns_read(self) -> frozenset[str] | None:
        """The columns whose values the check reads: none for a structure check or a row count,
        ``None`` (all of them, as far as we know) for a table-level check that names no column."""
        if self.expectation in STRUCTURE_EXPECTATIONS or self.expectation in _ROW_COUNT_EXPECTATIONS:
            return frozenset()
        named = [self.column] if self.column is not None else []
        for key, value in self.kwargs.items():
            if key.startswith("column") and isinstance(value, str):
                named.append(value)
            elif key.startswith("column") and isinstance(value, Sequence):
                named.extend(str(v) for v in value)
        return frozenset(named) if named else None


@dataclass(frozen=True)
class Suite:
    """A named, ordered list of checks."""

    name: str
    checks: tuple[Check, ...]

    def split_structure(self) -> tuple[Suite, Suite]:
        """The checks on the column names (:data:`STRUCTURE_EXPECTATIONS`) and the others, as two suites of
        this name, each in this suite's order."""
        structure = tuple(c for c in self.checks if c.expectation in STRUCTURE_EXPECTATIONS)
        rows = tuple(c for c in self.checks if c.expectation not in STRUCTURE_EXPECTATIONS)
        return Suite(self.name, structure), Suite(self.name, rows)

    def columns_read(self) -> frozenset[str] | None:
        """The columns whose values any check reads; ``None`` when a check may read any column."""
        read: set[str] = set()
        for check in self.checks:
            columns = check.columns_read()
            if columns is None:
                return None
            read |= columns
        return frozenset(read)

    def to_gx(self) -> ExpectationSuite:
        """Build the ``great_expectations.ExpectationSuite`` (imports GX). ``meta["check_index"]`` is the
        position of the check in ``checks``, which the runner uses to pair results with checks."""
        # imported here: GX (5.7 s) (tests/test_architecture.py LAZY)
        from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

        # imported here: the lazy GX loader itself (tests/test_architecture.py LAZY)
        from expectations._gx import import_gx

        gx = import_gx()
        expectations = [
            ExpectationConfiguration(
                type=check.expectation,
                kwargs=check.gx_kwargs(),
                meta={"severity": check.severity, "check_index": index},
                severity=_GX_SEVERITY[check.severity],
            ).to_domain_obj()
            for index, check in enumerate(self.checks)
        ]
        return gx.ExpectationSuite(name=self.name, expectations=expectations)


@dataclass(frozen=True)
class RawTable:
    """What the raw suite of one landed table checks: its canonical columns, key and event time, and the
    table's own value checks. The caller declares it (custseg's channel catalogue builds one per channel)."""

    name: str
    columns: tuple[str, ...]
    key: str
    event_time: str
    checks: tuple[Check, ...] = ()
    #: several rows of one key in a batch are legitimate re-exports: the uniqueness check only warns
    duplicate_keys_expected: bool = False


# -- small constructors -------------------------------------------------------------------------------


def exists(column: str, severity: Severity = BLOCKING) -> Check:
    return Check("expect_column_to_exist", column, severity=severity)


def not_null(column: str, severity: Severity = BLOCKING) -> Check:
    return Check("expect_column_values_to_not_be_null", column, severity=severity)


def unique(column: str, severity: Severity = BLOCKING) -> Check:
    return Check("expect_column_values_to_be_unique", column, severity=severity)


def between(
    column: str,
    min_value: Any = None,
    max_value: Any = None,
    severity: Severity = BLOCKING,
    *,
    strict_max: bool = False,
) -> Check:
    """Values in ``[min_value, max_value]`` (either bound may be open); nulls are not checked."""
    kwargs: dict[str, Any] = {}
    if min_value is not None:
        kwargs["min_value"] = min_value
    if max_value is not None:
        kwargs["max_value"] = max_value
    if strict_max:
        kwargs["strict_max"] = True
    return Check("expect_column_values_to_be_between", column, kwargs, severity)


def in_set(column: str, values: Sequence[Any], severity: Severity = BLOCKING) -> Check:
    """Values in ``values``; nulls are not checked (add ``not_null`` for that)."""
    return Check("expect_column_values_to_be_in_set", column, {"value_set": list(values)}, severity)


def matches(column: str, regex: str, severity: Severity = BLOCKING) -> Check:
    return Check("expect_column_values_to_match_regex", column, {"regex": regex}, severity)


# -- the suites -------------------------------------------------------------------------------------


def raw_suite(
    table: RawTable,
    as_of_date: date,
    *,
    event_time_grace: timedelta = timedelta(0),
    include_load_metadata: bool = True,
) -> Suite:
    """Checks for one loaded partition of ``raw.<table.name>`` at ``as_of_date``.

    Blocking: the canonical (and load metadata) columns exist; the key is not null; the key is unique
    within the batch (a warning where re-exports within one file are legitimate, ``duplicate_keys_expected``:
    staging keeps the latest); the event time is not null and not after the end of the as-of date
    (naive UTC, ``< as_of_date + 1 day + event_time_grace``); then the table's own ``checks``.
    """
    columns = table.columns + (LOAD_METADATA_COLUMNS if include_load_metadata else ())
    end_of_day = datetime.combine(as_of_date + timedelta(days=1), time()) + event_time_grace
    checks = [
        *(exists(column) for column in columns),
        not_null(table.key),
        unique(table.key, WARNING if table.duplicate_keys_expected else BLOCKING),
        not_null(table.event_time),
        between(table.event_time, max_value=end_of_day, strict_max=True),
        *table.checks,
    ]
    return Suite(name=f"raw.{table.name}", checks=tuple(checks))


def published_suite() -> Suite:
    """Checks for ``customer_segments`` (in the build schema before publish, or in ``analytics``)."""
    checks = [
        *(exists(column) for column in PUBLISHED_COLUMNS),
        *(not_null(column) for column in ("customer_id", "as_of_date", "lifecycle_stage")),
        *(not_null(column) for column in ("model_version", "scored_at")),
        unique("customer_id"),
        *(between(score, 1, 5) for score in ("r_score", "f_score", "m_score")),  # null for prospects
        in_set("rfm_segment", RFM_SEGMENTS),
        in_set("lifecycle_stage", LIFECYCLE_STAGES),
        between("churn_probability", 0, 1),
        in_set("churn_risk_band", CHURN_RISK_BANDS),
        between("p_alive", 0, 1),
        between("expected_purchases_90d", 0),
        between("predicted_clv_12m", 0),
        between("recency_days", 0, severity=WARNING),
        between("frequency", 0, severity=WARNING),
        *(not_null(column) for column in ("gender", "country", "social_engagement_level", "is_advocate")),
        in_set("gender", GENDERS),
        in_set("social_engagement_level", SOCIAL_ENGAGEMENT_LEVELS),
        between("social_recency_days", 0),
        *(not_null(column) for column in ("top_category", "interest_breadth", "interest_segment")),
        between("interest_breadth", 0),
        in_set("price_sensitivity", PRICE_SENSITIVITIES),
        not_null("has_open_complaint"),
        between("complaint_rate_12m", 0),
        in_set("nps_trend", NPS_TRENDS),
        in_set("promo_responsiveness", PROMO_RESPONSIVENESS),
        between("birth_month", 1, 12),
        *(not_null(column) for column in ("playbook_id", "next_best_action")),  # the playbook's last rule: anyone
        *(not_null(column) for column in CONSENT_COLUMNS),  # no statement is a refusal or the configured default
    ]
    return Suite(name="analytics.customer_segments", checks=tuple(checks))


CAMPAIGN_AUDIENCE_COLUMNS: Final = (
    "campaign_id", "customer_id", "playbook_id", "rfm_segment", "is_control", "assigned_on",
    "conversion_window_ends_on", "as_of_date",
)  # fmt: skip
UPLIFT_SEGMENT_TYPES: Final = ("campaign", "playbook_id", "rfm_segment")
#: rates and absolute conversion uplifts, each with its interval
_SHARES: Final = ("treated_conversion_rate", "control_conversion_rate")
_RATE_DIFFERENCES: Final = ("conversion_uplift", "conversion_uplift_lower", "conversion_uplift_upper")
_INTERVALS: Final = ("conversion_uplift", "relative_conversion_uplift", "revenue_uplift", "relative_revenue_uplift")
CAMPAIGN_UPLIFT_COLUMNS: Final = (
    "campaign_id", "segment_type", "segment", "as_of_date", "conversion_window_days", "is_final",
    "customers_assigned", "treated_customers", "control_customers", "treated_conversions", "control_conversions",
    *_SHARES, *(f"{name}{end}" for name in _INTERVALS for end in ("", "_lower", "_upper")),
    "treated_revenue_per_customer", "control_revenue_per_customer",
    "is_conversion_uplift_significant", "is_revenue_uplift_significant",
)  # fmt: skip


def campaign_audience_suite() -> Suite:
    """Checks for ``campaign_audience``: one row per campaign and customer, on one side of the holdout, with
    its conversion window after its assignment."""
    checks = [
        *(exists(column) for column in CAMPAIGN_AUDIENCE_COLUMNS),
        *(not_null(column) for column in ("campaign_id", "customer_id", "is_control", "assigned_on",
                                          "conversion_window_ends_on", "as_of_date")),
        Check("expect_compound_columns_to_be_unique", None, {"column_list": ["campaign_id", "customer_id"]}),
        in_set("is_control", (True, False)),
        Check("expect_column_pair_values_a_to_be_greater_than_b", None,
              {"column_A": "conversion_window_ends_on", "column_B": "assigned_on", "or_equal": False}),
        Check("expect_column_pair_values_a_to_be_greater_than_b", None,
              {"column_A": "as_of_date", "column_B": "assigned_on", "or_equal": True}),
    ]
    return Suite(name="analytics.campaign_audience", checks=tuple(checks))


def campaign_uplift_suite() -> Suite:
    """Checks for ``campaign_uplift``: counts that add up, rates in [0, 1], and every interval around its
    estimate."""
    checks = [
        *(exists(column) for column in CAMPAIGN_UPLIFT_COLUMNS),
        *(not_null(column) for column in ("campaign_id", "segment_type", "segment", "as_of_date",
                                          "customers_assigned", "treated_customers", "control_customers")),
        Check("expect_compound_columns_to_be_unique", None,
              {"column_list": ["campaign_id", "segment_type", "segment"]}),
        in_set("segment_type", UPLIFT_SEGMENT_TYPES),
        *(between(column, 0) for column in ("treated_customers", "control_customers", "treated_conversions",
                                            "control_conversions")),
        *(between(column, 0, 1) for column in _SHARES),
        *(between(column, -1, 1) for column in _RATE_DIFFERENCES),
        *(between(f"relative_{name}_lower", -1) for name in ("conversion_uplift", "revenue_uplift")),
        *(Check("expect_column_pair_values_a_to_be_greater_than_b", None,
                {"column_A": a, "column_B": b, "or_equal": True, "ignore_row_if": "either_value_is_missing"})
          for name in _INTERVALS for a, b in ((name, f"{name}_lower"), (f"{name}_upper", name))),
        # the measured customers are some of those assigned
        Check("expect_column_pair_values_a_to_be_greater_than_b", None,
              {"column_A": "customers_assigned", "column_B": "treated_customers", "or_equal": True}),
    ]
    return Suite(name="analytics.campaign_uplift", checks=tuple(checks))


CUSTOMER_ALERTS_COLUMNS: Final = (
    "as_of_date", "customer_id", "alert_type", "from_value", "to_value", "reason", "value_at_risk", "playbook_id",
    "recommended_action", "compared_to_date", "has_email_consent", "has_sms_consent", "has_ads_consent",
)  # fmt: skip
ALERT_TYPES: Final = ("churn_risk_up", "left_top_segment", "value_tier_drop")


def customer_alerts_suite() -> Suite:
    """Checks for a run's rows of ``customer_alerts``: one alert of a kind per customer, each about a change
    since an earlier run."""
    checks = [
        *(exists(column) for column in CUSTOMER_ALERTS_COLUMNS),
        *(not_null(column) for column in ("as_of_date", "customer_id", "alert_type", "from_value", "to_value",
                                          "reason", "compared_to_date", *CONSENT_COLUMNS)),
        Check("expect_compound_columns_to_be_unique", None, {"column_list": ["customer_id", "alert_type"]}),
        in_set("alert_type", ALERT_TYPES),
        between("value_at_risk", 0),
        Check("expect_column_pair_values_a_to_be_greater_than_b", None,
              {"column_A": "as_of_date", "column_B": "compared_to_date", "or_equal": False}),
    ]
    return Suite(name="analytics.customer_alerts", checks=tuple(checks))


def ml_labels_suite() -> Suite:
    """Checks for the ML labels before they are written back to the build schema."""
    checks = [
        *(exists(column) for column in ML_LABEL_COLUMNS),
        not_null("customer_id"),
        unique("customer_id"),
        between("churn_probability", 0, 1),
        in_set("churn_risk_band", CHURN_RISK_BANDS),
        between("p_alive", 0, 1),
        between("expected_purchases_90d", 0),
        between("predicted_clv_12m", 0),
    ]
    return Suite(name="ml.labels", checks=tuple(checks))


# -- checks against the previous batch --------------------------------------------------------------


def row_count_bounds(previous_rows: int, band: float, min_change: int = 0) -> tuple[int, int]:
    """Allowed row counts for a batch whose previous batch had ``previous_rows``: ``±band`` (relative), and
    never narrower than ``±min_change`` rows (3 rows one day and 1 the next is no news)."""
    allowed = max(previous_rows * band, min_change)
    return max(0, math.floor(previous_rows - allowed)), math.ceil(previous_rows + allowed)


def row_count_suite(source: str, previous_rows: int, band: float, severity: Severity = WARNING,
                    min_change: int = 0) -> Suite:
    """The batch's row count is within ``±band`` of the previous batch's, or ``±min_change`` rows when that is
    wider (``raw.<source>.row_count``)."""
    low, high = row_count_bounds(previous_rows, band, min_change)
    check = Check("expect_table_row_count_to_be_between", None, {"min_value": low, "max_value": high}, severity)
    return Suite(name=f"raw.{source}.row_count", checks=(check,))


SEGMENT_SHARE_DIMENSIONS: Final = ("rfm_segment", "lifecycle_stage")
NO_SEGMENT: Final = "(none)"


def share_column(dimension: str, value: str | None) -> str:
    """The column of the one-row shares frame that holds the share of ``dimension = value``."""
    return f"{dimension}={NO_SEGMENT if value is None else value}"


def share_bounds(previous_share: float, band: float, tolerance: float) -> tuple[float, float]:
    """Allowed share today: the previous share ± max(``tolerance`` (absolute), ``band`` × previous share)."""
    allowed = max(tolerance, band * previous_share)
    return round(max(0.0, previous_share - allowed), 6), round(min(1.0, previous_share + allowed), 6)


def segment_share_suite(
    previous_shares: Mapping[str, float], band: float, tolerance: float, severity: Severity = BLOCKING
) -> Suite:
    """Each segment's share of customers stays within a band of the previous published date's share.

    Validated on a one-row frame whose columns are ``share_column(dimension, value)`` (the shares are a tiny
    aggregate computed in the warehouse). A segment that collapses, or one that appears from nothing,
    fails the check (the observed value is today's share); columns are sorted so the suite is deterministic.
    """
    checks = []
    for column in sorted(previous_shares):
        low, high = share_bounds(float(previous_shares[column]), band, tolerance)
        # the frame has one row, so the column's mean is the share itself: GX reports it as the observed value
        checks.append(Check("expect_column_mean_to_be_between", column, {"min_value": low, "max_value": high},
                            severity))
    return Suite(name="analytics.segment_shares", checks=tuple(checks))
