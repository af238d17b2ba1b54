"""The report task: one self-contained HTML run report with charts, written after each publish.

``build_report(settings, as_of_date)`` reads the published ``analytics`` tables and the ``ops`` and ``ml``
schemas (read-only) and writes ``<docs_dir>/report/index.html`` plus a dated copy,
``<docs_dir>/report/report-<as_of_date>.html``: one file that works offline (no script, every style
inline, no external URL), a few hundred kB whatever the customer base, since every chart is drawn
from aggregates computed in the warehouse.

**Charts: matplotlib rendered to inline SVG.** It is already installed (scikit-learn and pymc pull
it in), draws on the server without a browser, and an SVG chart of aggregates is a few kB of text
that scales and prints sharply, with text left as text (``svg.fonttype: none``). The alternatives
fail the brief: Plotly's offline HTML inlines about 3.5 MB of JavaScript per file, and Altair
(Vega-Lite) writes HTML that loads its runtime from a CDN. The SVG is made byte-stable: a fixed
``svg.hashsalt`` per chart, no ``Date`` (and no matplotlib metadata block, which names URLs), and
every element id prefixed with the chart's key so the charts of one page never share an id.

**Sections.** :data:`SECTIONS` lists one small function per section; each takes a :class:`Context` and
returns a :class:`Section` (title, a one-line caption saying what to look for, charts, tables, or the
note saying why there is nothing yet). A missing or empty table gives that note, never an error.
The template (``custseg/templates/report.html.j2``, Jinja2 with autoescape on) renders every section
the same way, so a new section is one function here, listed in :data:`SECTIONS`; the template needs no change.

**Deterministic.** Everything shown is as of ``as_of_date`` (rows of later dates are ignored) and read
in a stated order; no wall-clock value goes into the page, so a rerun on the same warehouse state
gives identical bytes.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import math
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import matplotlib
import matplotlib.dates as mdates
import numpy as np
import pandas as pd
from markupsafe import Markup
from matplotlib.figure import Figure

from custseg.config import Settings
from custseg.dbt import release_dbt_duckdb
from custseg.warehouse import Warehouse, connect
from custseg.warehouse.sql import qualified

log = logging.getLogger(__name__)

#: where the report goes, under ``settings.docs_dir``
REPORT_DIR = "report"
REPORT_FILE = "index.html"
#: the segment-size chart shows at most this many days of history before the as-of date
HISTORY_DAYS = 180
#: the report must stay small enough to mail and to open anywhere
MAX_REPORT_BYTES = 5 * 1024 * 1024

#: display order of the segment values (the contract's; values not listed follow, sorted)
RFM_ORDER = ("Champions", "Loyal", "Potential Loyalist", "New", "Promising", "Need Attention", "About To Sleep",
             "At Risk", "Can't Lose Them", "Hibernating", "Lost", "No purchase yet")
LIFECYCLE_ORDER = ("prospect", "new", "active", "at_risk", "churned", "reactivated")
SEGMENT_ORDER = {"rfm_segment": RFM_ORDER, "lifecycle_stage": LIFECYCLE_ORDER}
SEGMENT_LABEL = {"rfm_segment": "RFM segment", "lifecycle_stage": "Lifecycle stage"}
#: the churn model's scorers as the registry names them (ml.churn's evaluation_), and how the report says them
SCORER_LABEL = {"model": "churn model", "recency_days": "baseline: recency", "frequency": "baseline: frequency",
                "bgnbd_expected_purchases": "baseline: BG/NBD expected purchases"}
CLUSTER_FEATURES = {"avg_recency_days": "recency (days)", "avg_frequency": "frequency", "avg_monetary": "monetary",
                    "avg_online_share": "online share", "avg_store_share": "store share", "avg_app_share": "app share",
                    "avg_discount_share": "discount share", "avg_category_breadth": "category breadth"}

COLOURS = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f",
           "#bab0ac", "#86bcb6", "#d37295")
GOOD, WARN, BAD, NEUTRAL = "#59a14f", "#edc948", "#e15759", "#4e79a7"
STYLE = {"font.size": 9, "axes.titlesize": 10, "axes.spines.top": False, "axes.spines.right": False,
         "svg.fonttype": "none", "figure.dpi": 72,
         # text stays text in the SVG (``svg.fonttype: none``): laid out with DejaVu's metrics, shown in it or a
         # narrower fallback; the short list keeps every label's style attribute short
         "font.family": "sans-serif", "font.sans-serif": ["DejaVu Sans", "Arial", "Helvetica"]}


# -- the page's parts ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Table:
    columns: list[str]
    rows: list[list[str]]
    title: str = ""


@dataclass(frozen=True)
class Chart:
    svg: Markup
    label: str


@dataclass
class Section:
    key: str
    title: str
    caption: str
    charts: list[Chart] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    #: why there is nothing (yet) to chart; shown instead of the charts
    note: str = ""


@dataclass
class Context:
    """What a section function reads: the open warehouse, the settings and the report's date."""
    wh: Warehouse
    settings: Settings
    as_of_date: dt.date

    def relation(self, schema: str, table: str) -> str | None:
        """``schema.table`` quoted, or None when it does not exist (an older warehouse, a table not built yet)."""
        return qualified(schema, table) if self.wh.table_exists(schema, table) else None

    def published(self, table: str) -> str | None:
        return self.relation(self.settings.publish_schema, table)

    def not_published(self, table: str) -> str:
        """A section's note when the table it reads does not exist yet (in the configured publish schema)."""
        return f"Nothing yet: {self.settings.publish_schema}.{table} has not been published."

    def df(self, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        return self.wh.query_df(sql, params)

    @property
    def currency(self) -> str:
        return self.settings.reporting_currency


# -- charts: matplotlib to inline SVG --------------------------------------------------------------
def new_figure(width: float, height: float, **kwargs: Any) -> Figure:
    """A figure of the object API (no pyplot, no global figure state), in inches; drawn under
    :data:`STYLE` (``render_report`` sets it around the sections)."""
    return Figure(figsize=(width, height), layout="constrained", **kwargs)


_ID = re.compile(r'\bid="([^"]+)"')


def to_svg(fig: Figure, key: str) -> Markup:
    """The figure as an inline ``<svg>`` element, byte-stable for the same figure and ``key``.

    The XML prologue, the DOCTYPE, matplotlib's metadata block and the namespace declarations are
    dropped (an HTML parser needs none of them, and each names an external URL); every id and
    reference to it gets the ``key`` as prefix, so the charts of one page never share an id."""
    buf = io.StringIO()
    with matplotlib.rc_context({**STYLE, "svg.hashsalt": f"custseg-report-{key}"}):
        fig.savefig(buf, format="svg", metadata={"Date": None})
    text = buf.getvalue()
    text = text[text.index("<svg"):]
    text = re.sub(r"\s*<metadata>.*?</metadata>", "", text, flags=re.S)
    text = re.sub(r'<style type="text/css">.*?</style>', "", text, flags=re.S)
    text = re.sub(r'\s+xmlns(:\w+)?="[^"]*"', "", text)
    for ident in sorted(set(_ID.findall(text)), key=len, reverse=True):
        new = f"{key}-{ident}"
        text = (text.replace(f'id="{ident}"', f'id="{new}"').replace(f'href="#{ident}"', f'href="#{new}"')
                .replace(f"url(#{ident})", f"url(#{new})"))
    text = text.replace("<svg ", f'<svg class="chart" role="img" aria-label="{key}" ', 1)
    return Markup(text)  # matplotlib escapes every text it writes into the SVG


def chart(fig: Figure, key: str, label: str) -> Chart:
    return Chart(to_svg(fig, key), label)


def ordered(values: Sequence[str], order: Sequence[str]) -> list[str]:
    """``values`` in the display ``order``, unknown ones after it, sorted."""
    present = set(values)
    return [v for v in dict.fromkeys(order) if v in present] + sorted(present - set(order))


def barh(ax: Any, labels: Sequence[str], values: Sequence[float], colour: str = NEUTRAL, fmt: str = "{:,.0f}") -> None:
    """Horizontal bars, the first label on top, each bar labelled with its value."""
    y = np.arange(len(labels))
    bars = ax.barh(y, values, color=colour)
    ax.set_yticks(y, labels)
    if not ax.yaxis_inverted():  # axes sharing y share the inversion too
        ax.invert_yaxis()
    ax.bar_label(bars, labels=[fmt.format(v) for v in values], padding=2, fontsize=7)
    ax.margins(x=0.18)


def heatmap(ax: Any, matrix: np.ndarray, rows: Sequence[str], cols: Sequence[str], labels: np.ndarray,
            cmap: str = "Blues", centre: bool = False) -> Any:
    finite = matrix[np.isfinite(matrix)]
    top = float(np.abs(finite).max()) if finite.size else 1.0
    top = top or 1.0
    vmin, vmax = (-top, top) if centre else (0.0, top)
    image = ax.imshow(matrix, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    ax.set_xticks(np.arange(len(cols)), cols, rotation=40, ha="right")
    ax.set_yticks(np.arange(len(rows)), rows)
    for (i, j), text in np.ndenumerate(labels):
        if text:
            value = matrix[i, j]
            dark = np.isfinite(value) and abs(value - (vmin if not centre else 0.0)) > 0.6 * (vmax - vmin) * (
                0.5 if centre else 1.0)
            ax.text(j, i, text, ha="center", va="center", fontsize=7, color="white" if dark else "black")
    ax.spines[:].set_visible(False)
    return image


# -- formatting ------------------------------------------------------------------------------------
def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and math.isnan(value))


def fmt_int(value: Any) -> str:
    return "–" if _missing(value) else f"{int(value):,}"


def fmt_num(value: Any, digits: int = 2) -> str:
    return "–" if _missing(value) else f"{float(value):,.{digits}f}"


def fmt_pct(value: Any, digits: int = 1) -> str:
    return "–" if _missing(value) else f"{float(value) * 100:,.{digits}f}%"


def fmt_text(value: Any, limit: int = 160) -> str:
    if _missing(value):
        return "–"
    text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def fmt_interval(fmt: Callable[[Any], str], point: Any, lower: Any, upper: Any) -> str:
    return "–" if _missing(point) else f"{fmt(point)} ({fmt(lower)} to {fmt(upper)})"


def fmt_date(value: Any) -> str:
    return "–" if _missing(value) else pd.Timestamp(value).date().isoformat()


def as_float(frame: pd.DataFrame, *columns: str) -> pd.DataFrame:
    """Numeric columns as floats (PostgreSQL returns numeric as Decimal, DuckDB as float)."""
    out = frame.copy()
    for column in columns:
        out[column] = pd.to_numeric(out[column], errors="coerce").astype(float)
    return out


# -- the sections ----------------------------------------------------------------------------------
def segment_sizes(ctx: Context) -> Section:
    section = Section("segment-sizes", "Segment sizes over the run dates",
                      "Customers per RFM segment and lifecycle stage on each run date: look for a segment that "
                      "grows or shrinks sharply from one night to the next.")
    history = ctx.published("segment_history")
    if history is None:
        section.note = ctx.not_published("segment_history")
        return section
    start = ctx.as_of_date - dt.timedelta(days=HISTORY_DAYS)
    frames = []
    for dimension in ("rfm_segment", "lifecycle_stage"):
        label = "coalesce(rfm_segment, 'No purchase yet')" if dimension == "rfm_segment" else dimension
        frame = ctx.df(f"select as_of_date, {label} as segment, count(*) as customers from {history} "
                       "where as_of_date between %s and %s group by 1, 2 order by 1, 2", (start, ctx.as_of_date))
        frames.append(frame.assign(segment_type=dimension))
    sizes = pd.concat(frames, ignore_index=True)
    if sizes.empty:
        section.note = f"Nothing yet: no customers in analytics.segment_history up to {ctx.as_of_date}."
        return section
    sizes["as_of_date"] = pd.to_datetime(sizes["as_of_date"])
    sizes["customers"] = sizes["customers"].astype(int)
    dates = sorted(sizes["as_of_date"].unique())
    fig = new_figure(10, 4.2)
    axes = fig.subplots(1, 2)
    for ax, dimension in zip(axes, ("rfm_segment", "lifecycle_stage"), strict=True):
        part = sizes[sizes["segment_type"] == dimension]
        names = ordered(part["segment"].tolist(), SEGMENT_ORDER[dimension])
        ax.set_title(SEGMENT_LABEL[dimension])
        if len(dates) == 1:  # one night: the sizes themselves
            counts = part.set_index("segment")["customers"]
            barh(ax, names, [int(counts[n]) for n in names])
            ax.set_xlabel(f"customers on {pd.Timestamp(dates[0]).date()}")
            continue
        table = part.pivot_table(index="as_of_date", columns="segment", values="customers", fill_value=0)
        for i, name in enumerate(names):
            ax.plot(table.index, table[name], marker="o", markersize=3, color=COLOURS[i % len(COLOURS)], label=name)
        ax.set_ylabel("customers")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
        # one tick per run date (at most 8), as a date: matplotlib's automatic ticks would add hours between them
        run_dates = list(table.index)
        ax.set_xticks(run_dates[:: max(1, -(-len(run_dates) // 8))])
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m-%d"))
        for tick in ax.get_xticklabels():
            tick.set_rotation(30)
    section.charts.append(chart(fig, "segment-sizes", "customers per segment"))
    summary = ctx.published("segment_summary")
    if summary is not None:
        rows = as_float(ctx.df(
            f"select segment_type, segment, customers, customer_share, net_revenue_12m, avg_predicted_clv_12m, "
            f"avg_churn_probability from {summary} where as_of_date = %s order by segment_type desc, segment",
            (ctx.as_of_date,)), "customer_share", "net_revenue_12m", "avg_predicted_clv_12m", "avg_churn_probability")
        if not rows.empty:
            rank = {(t, s): i for t in SEGMENT_ORDER
                    for i, s in enumerate(ordered(rows.loc[rows.segment_type == t, "segment"].tolist(),
                                                  SEGMENT_ORDER[t]))}
            rows["rank"] = [rank.get((t, s), 0) for t, s in zip(rows.segment_type, rows.segment, strict=True)]
            rows = rows.sort_values(["segment_type", "rank"], ascending=[False, True])
            section.tables.append(Table(
                ["segmentation", "segment", "customers", "share", f"net revenue 12m ({ctx.currency})",
                 f"mean predicted CLV 12m ({ctx.currency})", "mean churn probability"],
                [[SEGMENT_LABEL.get(r.segment_type, r.segment_type), r.segment, fmt_int(r.customers),
                  fmt_pct(r.customer_share), fmt_num(r.net_revenue_12m), fmt_num(r.avg_predicted_clv_12m),
                  fmt_pct(r.avg_churn_probability)] for r in rows.itertuples()],
                f"analytics.segment_summary on {ctx.as_of_date}"))
    return section


def migration(ctx: Context) -> Section:
    section = Section("migration", "Segment migration since the previous run",
                      "Each cell counts the customers (left) and their 12-month revenue (right) who moved from the "
                      "row's segment to the column's; off the diagonal are the movers, so look for heavy cells "
                      "towards At Risk, Hibernating and Lost.")
    table = ctx.published("segment_migration")
    if table is None:
        section.note = ctx.not_published("segment_migration")
        return section
    moves = as_float(ctx.df(
        f"select segment_type, compared_to_date, from_segment, to_segment, customers, net_revenue_12m from {table} "
        "where as_of_date = %s and comparison = 'previous_run' order by 1, 3, 4", (ctx.as_of_date,)),
        "net_revenue_12m")
    if moves.empty:
        section.note = (f"Nothing yet: no earlier run date to compare {ctx.as_of_date} with (migration needs two "
                        "published dates).")
        return section
    for dimension in ("rfm_segment", "lifecycle_stage"):
        part = moves[moves["segment_type"] == dimension]
        if part.empty:
            continue
        extra = ("Not yet known", "No purchase yet", "No longer present")
        rows = ordered(part["from_segment"].tolist(), (*SEGMENT_ORDER[dimension], *extra))
        cols = ordered(part["to_segment"].tolist(), (*SEGMENT_ORDER[dimension], *extra))
        since = fmt_date(part["compared_to_date"].iloc[0])
        size = max(4.0, 0.42 * len(cols) + 2.5)
        fig = new_figure(2 * size, 0.36 * len(rows) + 2.2)
        axes = fig.subplots(1, 2)
        for ax, value, title, fmt in ((axes[0], "customers", "customers", "{:,.0f}"),
                                      (axes[1], "net_revenue_12m", f"net revenue 12m ({ctx.currency})", "{:,.0f}")):
            grid = part.pivot_table(index="from_segment", columns="to_segment", values=value, aggfunc="sum")
            grid = grid.reindex(index=rows, columns=cols).astype(float)
            matrix = grid.to_numpy()
            labels = np.vectorize(lambda v, f=fmt: "" if not np.isfinite(v) or v == 0 else f.format(v))(matrix)
            heatmap(ax, np.nan_to_num(matrix), rows, cols, labels, cmap="Blues" if value == "customers" else "Greens")
            ax.set_title(f"{SEGMENT_LABEL[dimension]}: {title}")
            ax.set_xlabel(f"on {ctx.as_of_date}")
            ax.set_ylabel(f"on {since}")
        section.charts.append(chart(fig, f"migration-{dimension}", f"{SEGMENT_LABEL[dimension]} migration"))
    return section


def _scoring_model(ctx: Context) -> tuple[str | None, dict[str, Any]]:
    """The model that scored the date (ml.scoring_runs) and its registry metrics."""
    if ctx.relation("ml", "scoring_runs") is None or ctx.relation("ml", "model_runs") is None:
        return None, {}
    scored = ctx.wh.fetchall("select model_version from ml.scoring_runs where as_of_date = %s "
                             "order by recorded_at desc, model_version limit 1", (ctx.as_of_date,))
    if not scored:
        return None, {}
    version = scored[0][0]
    rows = ctx.wh.fetchall("select metrics from ml.model_runs where model_version = %s "
                           "order by recorded_at desc limit 1", (version,))
    return version, (json.loads(rows[0][0]) if rows and rows[0][0] else {})


def churn(ctx: Context) -> Section:
    section = Section("churn", "Churn model against its baselines",
                      "Left: predicted churn probability against the churn rate that followed, a well calibrated "
                      "model stays on the diagonal; middle: ROC curves, the model's should bow furthest to the top "
                      "left; right: ROC AUC with 95% intervals, the model should sit clearly right of every "
                      "baseline.")
    version, metrics = _scoring_model(ctx)
    if version is None:
        section.note = f"Nothing yet: no model scored {ctx.as_of_date} (ml.scoring_runs)."
        return section
    evaluation = (metrics.get("churn_evaluation") or {}).get("scorers") or {}
    evaluated = {name: m for name, m in evaluation.items() if not _missing(m.get("roc_auc"))}
    if not evaluated:
        churn_metrics = metrics.get("churn") or {}
        section.note = (f"Nothing to show yet: model {version} has no holdout evaluation of its churn model "
                        f"(method {churn_metrics.get('method', 'unknown')}, evaluation "
                        f"{churn_metrics.get('evaluation', 'none')}: too few customers with a labelled window "
                        "to measure it).")
        return section
    names = [n for n in SCORER_LABEL if n in evaluated] + sorted(set(evaluated) - set(SCORER_LABEL))
    window = metrics["churn_evaluation"]
    fig = new_figure(13, 4.2)
    reliability_ax, roc_ax, auc_ax = fig.subplots(1, 3)
    roc_ax.plot([0, 1], [0, 1], color="#999999", linestyle="--", linewidth=1, label="chance")
    for i, name in enumerate(names):
        curve = pd.DataFrame(evaluated[name].get("roc_curve") or [])  # registry rows before it: no curve
        if not curve.empty:
            roc_ax.plot(curve["fpr"], curve["tpr"], color=COLOURS[i % len(COLOURS)],
                        linewidth=2 if name == "model" else 1, label=SCORER_LABEL.get(name, name))
    roc_ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    roc_ax.legend(fontsize=7, loc="lower right", frameon=False)
    reliability_ax.plot([0, 1], [0, 1], color="#999999", linestyle="--", linewidth=1, label="perfect calibration")
    for i, name in enumerate(names):
        bins = pd.DataFrame(evaluated[name].get("reliability") or [])
        if bins.empty:
            continue
        bins = bins[bins["customers"] > 0]
        colour = COLOURS[i % len(COLOURS)]
        reliability_ax.plot(bins["mean_predicted"], bins["observed_rate"], marker="o", markersize=3,
                            color=colour, linewidth=2 if name == "model" else 1, label=SCORER_LABEL.get(name, name))
    reliability_ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="predicted churn probability (bin mean)",
                       ylabel="observed churn rate", title="reliability")
    reliability_ax.legend(fontsize=7, loc="upper left", frameon=False)
    aucs = [float(evaluated[n]["roc_auc"]) for n in names]
    intervals = [evaluated[n].get("intervals", {}).get("roc_auc") or [a, a] for n, a in zip(names, aucs, strict=True)]
    low = [a - float(iv[0]) if not _missing(iv[0]) else 0.0 for a, iv in zip(aucs, intervals, strict=True)]
    high = [float(iv[1]) - a if not _missing(iv[1]) else 0.0 for a, iv in zip(aucs, intervals, strict=True)]
    y = np.arange(len(names))
    auc_ax.errorbar(aucs, y, xerr=[low, high], fmt="o", color=NEUTRAL, capsize=3)
    auc_ax.axvline(0.5, color="#999999", linestyle="--", linewidth=1)
    auc_ax.set_yticks(y, [SCORER_LABEL.get(n, n) for n in names])
    auc_ax.invert_yaxis()
    auc_ax.set(xlim=(0.4, 1.0), xlabel="ROC AUC (95% bootstrap interval)", title="ranking")
    section.charts.append(chart(fig, "churn", "churn reliability and ROC AUC"))
    section.tables.append(Table(
        ["scorer", "ROC AUC", "95% interval", "PR AUC", "Brier", "ECE", "customers", "churn rate"],
        [[SCORER_LABEL.get(n, n), fmt_num(m["roc_auc"], 3),
          "–" if not m.get("intervals") else f"{fmt_num(m['intervals']['roc_auc'][0], 3)} – "
                                             f"{fmt_num(m['intervals']['roc_auc'][1], 3)}",
          fmt_num(m.get("pr_auc"), 3), fmt_num(m.get("brier"), 3), fmt_num(m.get("ece"), 3),
          fmt_int(m.get("customers")), fmt_pct(m.get("base_rate"))]
         for n, m in ((n, evaluated[n]) for n in names)],
        f"model {version}, evaluated on the window {window.get('window_start', '?')} to "
        f"{window.get('window_end', '?')}"))
    return section


def clv(ctx: Context) -> Section:
    section = Section("clv", "Predicted 12-month customer value by value tier",
                      "Boxes span the middle half of each tier's predicted CLV and whiskers the 5th to 95th "
                      "percentile: tiers should stack up without much overlap. Below, the scoring model's holdout "
                      "check: its expected repeat purchases should track the actual ones after the dashed line, "
                      "on data it was not fitted on.")
    history = ctx.published("segment_history")
    if history is None:
        section.note = ctx.not_published("segment_history")
        return section
    q = "percentile_cont({p}) within group (order by predicted_clv_12m)"
    stats = as_float(ctx.df(
        f"select coalesce(value_tier, 'none') as value_tier, count(*) as customers, "
        f"{q.format(p=0.05)} as p05, {q.format(p=0.25)} as p25, {q.format(p=0.5)} as p50, "
        f"{q.format(p=0.75)} as p75, {q.format(p=0.95)} as p95, avg(predicted_clv_12m) as mean, "
        f"sum(predicted_clv_12m) as total from {history} where as_of_date = %s and predicted_clv_12m is not null "
        "group by 1 order by 1", (ctx.as_of_date,)), "p05", "p25", "p50", "p75", "p95", "mean", "total")
    if stats.empty:
        section.note = f"Nothing yet: no customer has a predicted CLV on {ctx.as_of_date}."
        return section
    stats = stats.sort_values(["p50", "value_tier"]).reset_index(drop=True)
    fig = new_figure(8, 3.6)
    ax = fig.subplots()
    boxes = [{"label": f"{r.value_tier}\n({r.customers:,})", "whislo": r.p05, "q1": r.p25, "med": r.p50,
              "q3": r.p75, "whishi": r.p95, "mean": r.mean, "fliers": []} for r in stats.itertuples()]
    ax.bxp(boxes, showmeans=True, showfliers=False, patch_artist=True,
           boxprops={"facecolor": "#c6dbef", "edgecolor": NEUTRAL}, medianprops={"color": "#08306b"},
           meanprops={"marker": "D", "markerfacecolor": "#f28e2b", "markeredgecolor": "#f28e2b", "markersize": 4})
    ax.set_ylabel(f"predicted CLV 12m ({ctx.currency})")
    ax.set_xlabel("value tier (customers); diamond = mean")
    section.charts.append(chart(fig, "clv", "predicted CLV by value tier"))
    section.tables.append(Table(
        ["value tier", "customers", "5th pct", "25th pct", "median", "75th pct", "95th pct", "mean",
         f"total ({ctx.currency})"],
        [[r.value_tier, fmt_int(r.customers), *(fmt_num(v) for v in (r.p05, r.p25, r.p50, r.p75, r.p95, r.mean)),
          fmt_num(r.total, 0)] for r in stats.itertuples()]))
    tracking = _clv_holdout_tracking(ctx)
    if tracking is not None:
        section.charts.append(tracking)
    return section


def clusters(ctx: Context) -> Section:
    section = Section("clusters", "Behavioural cluster profiles",
                      "Colour shows how far each cluster's average sits above (red) or below (blue) the average of "
                      "all clusters, in standard deviations; the numbers are the averages themselves.")
    table = ctx.published("cluster_profiles")
    if table is None:
        section.note = ctx.not_published("cluster_profiles")
        return section
    profiles = as_float(ctx.df(f"select * from {table} where as_of_date = %s order by cluster_id", (ctx.as_of_date,)),
                        *CLUSTER_FEATURES)
    if profiles.empty:
        section.note = f"Nothing yet: no cluster profiles for {ctx.as_of_date} (no model fitted)."
        return section
    features = [c for c in CLUSTER_FEATURES if c in profiles.columns]
    values = profiles[features].to_numpy(dtype=float)
    spread = np.nanstd(values, axis=0)
    z = (values - np.nanmean(values, axis=0)) / np.where(spread > 0, spread, 1.0)
    names = [f"{int(r.cluster_id)}: {r.cluster_name}" for r in profiles.itertuples()]
    labels = np.vectorize(lambda v: "" if not np.isfinite(v) else (f"{v:.2f}" if abs(v) < 10 else f"{v:,.0f}"))(values)
    fig = new_figure(11, 0.42 * len(names) + 2.2)
    heat_ax, size_ax = fig.subplots(1, 2, gridspec_kw={"width_ratios": [4, 1]}, sharey=True)
    image = heatmap(heat_ax, z, names, [CLUSTER_FEATURES[f] for f in features], labels, cmap="RdBu_r", centre=True)
    fig.colorbar(image, ax=heat_ax, shrink=0.8, label="standard deviations from the cluster average")
    heat_ax.set_title("feature averages per cluster")
    sizes = profiles["customers"].astype(int).to_numpy()
    bars = size_ax.barh(np.arange(len(names)), sizes, color=NEUTRAL)
    size_ax.bar_label(bars, labels=[f"{s:,}" for s in sizes], padding=2, fontsize=7)
    size_ax.margins(x=0.25)
    size_ax.set_title("customers")
    size_ax.tick_params(axis="y", left=False)
    section.charts.append(chart(fig, "clusters", "cluster feature heatmap and sizes"))
    return section


def data_quality(ctx: Context) -> Section:
    section = Section("data-quality", "Data quality of the run",
                      "Rows loaded and quarantined per source, why rows were quarantined and how the quality "
                      "gates went: any quarantined rows or failed checks deserve a look before trusting the night.")
    audit = ctx.relation("ops", "load_audit")
    runs = ctx.wh.fetchall("select run_id from ops.load_audit where as_of_date = %s "
                           "order by recorded_at desc, run_id limit 1", (ctx.as_of_date,)) if audit else []
    if not runs:
        section.note = f"Nothing yet: no load recorded in ops.load_audit for {ctx.as_of_date}."
        return section
    run_id = runs[0][0]
    loads = ctx.df(
        "select source, count(distinct partition_date) as partitions, sum(rows_read) as rows_read, "
        "sum(rows_loaded) as rows_loaded, sum(rows_quarantined) as rows_quarantined, "
        "sum(coalesce(rows_duplicate, 0)) as rows_duplicate, sum(coalesce(rows_suppressed, 0)) as rows_suppressed, "
        "min(status) as first_status, max(status) as last_status "
        "from ops.load_audit where run_id = %s and as_of_date = %s group by source order by source",
        (run_id, ctx.as_of_date))
    for column in ("rows_read", "rows_loaded", "rows_quarantined", "rows_duplicate", "rows_suppressed"):
        loads[column] = loads[column].fillna(0).astype(int)
    fig = new_figure(10, 0.32 * len(loads) + 1.6)
    loaded_ax, quarantined_ax = fig.subplots(1, 2, sharey=True)
    sources = loads["source"].tolist()
    barh(loaded_ax, sources, loads["rows_loaded"].tolist(), GOOD)
    loaded_ax.set_title("rows loaded")
    barh(quarantined_ax, sources, loads["rows_quarantined"].tolist(),
         BAD if loads["rows_quarantined"].sum() else "#bab0ac")
    quarantined_ax.set_title("rows quarantined")
    quarantined_ax.set_xlim(left=0, right=max(1, int(loads["rows_quarantined"].max())) * 1.25)
    section.charts.append(chart(fig, "loads", "rows loaded and quarantined per source"))
    section.tables.append(Table(
        ["source", "partitions", "rows read", "loaded", "quarantined", "duplicates", "suppressed (erased)",
         "status"],
        [[r.source, fmt_int(r.partitions), fmt_int(r.rows_read), fmt_int(r.rows_loaded), fmt_int(r.rows_quarantined),
          fmt_int(r.rows_duplicate), fmt_int(r.rows_suppressed),
          r.first_status if r.first_status == r.last_status else f"{r.first_status} / {r.last_status}"]
         for r in loads.itertuples()],
        f"ops.load_audit, run {run_id}"))
    if ctx.relation("raw", "quarantine") is not None:
        # the reason's text before the first ':' (the rule); what follows is the offending value, kept in raw
        reasons = ctx.df("select source, split_part(reason, ':', 1) as reason, count(*) as row_count "
                         "from raw.quarantine where run_id = %s group by 1, 2 order by 3 desc, 1, 2 limit 25",
                         (run_id,))
        section.tables.append(Table(["source", "reason", "rows"],
                                    [[r.source, r.reason, fmt_int(r.row_count)] for r in reasons.itertuples()]
                                    or [["–", "no row was quarantined", "0"]],
                                    "quarantine reasons (raw.quarantine)"))
    if ctx.relation("ops", "quality_results") is not None:
        gates = ctx.df(
            "select suite_name, severity, sum(case when success then 1 else 0 end) as passed, "
            "sum(case when success then 0 else 1 end) as failed from ops.quality_results "
            "where run_id = %s and as_of_date = %s group by 1, 2 order by 1, 2", (run_id, ctx.as_of_date))
        if not gates.empty:
            gates[["passed", "failed"]] = gates[["passed", "failed"]].astype(int)
            suites = gates.groupby("suite_name", sort=True).agg(passed=("passed", "sum"), failed=("failed", "sum"))
            blocking = gates[gates["severity"] == "blocking"].set_index("suite_name")["failed"]
            suites["blocking_failed"] = [int(blocking.get(s, 0)) for s in suites.index]
            suites["warning_failed"] = suites["failed"] - suites["blocking_failed"]
            fig = new_figure(10, 0.24 * len(suites) + 1.4)
            ax = fig.subplots()
            y = np.arange(len(suites))
            ax.barh(y, suites["passed"], color=GOOD, label="passed")
            ax.barh(y, suites["warning_failed"], left=suites["passed"], color=WARN, label="failed (warning)")
            ax.barh(y, suites["blocking_failed"], left=suites["passed"] + suites["warning_failed"], color=BAD,
                    label="failed (blocking)")
            ax.set_yticks(y, suites.index.tolist(), fontsize=7)
            ax.invert_yaxis()
            ax.set_xlabel("checks")
            ax.set_title("quality gates (ops.quality_results)")
            ax.legend(fontsize=7, loc="lower right", frameon=False)
            section.charts.append(chart(fig, "gates", "quality gate results per suite"))
            failed = ctx.df("select suite_name, expectation, column_name, severity, observed_value "
                            "from ops.quality_results where run_id = %s and as_of_date = %s and not success "
                            "order by severity, suite_name, expectation, column_name", (run_id, ctx.as_of_date))
            section.tables.append(Table(
                ["suite", "check", "column", "severity", "observed"],
                [[r.suite_name, r.expectation, fmt_text(r.column_name), r.severity, fmt_text(r.observed_value)]
                 for r in failed.itertuples()] or [["–", "every check passed", "–", "–", "–"]],
                "failed checks"))
    return section


def _clv_holdout_tracking(ctx: Context) -> Chart | None:
    """Weekly cumulative repeat purchases of the calibration cohort, actual and as BG/NBD expected them
    (Fader, Hardie & Lee 2005, figure 2), from the scoring model's holdout validation in the registry."""
    _, metrics = _scoring_model(ctx)
    holdout = metrics.get("clv_holdout") or {}
    weeks = pd.DataFrame(holdout.get("tracking") or [])
    if weeks.empty:
        return None
    fig = new_figure(8, 3.2)
    ax = fig.subplots()
    ax.plot(weeks["week"], weeks["actual_cumulative"], color=NEUTRAL, label="actual")
    ax.plot(weeks["week"], weeks["expected_cumulative"], color="#f28e2b", linestyle="--", label="BG/NBD expected")
    calibration = weeks.loc[weeks["period"] == "calibration", "week"]
    if not calibration.empty:
        ax.axvline(calibration.max() + 0.5, color="#777777", linestyle=":", linewidth=1)
        ax.text(calibration.max() + 0.7, ax.get_ylim()[1] * 0.05, "holdout", color="#777777", fontsize=8)
    ax.set_xlabel(f"week since {holdout.get('calibration_start', 'the first purchase')}")
    ax.set_ylabel("cumulative repeat purchases")
    error = (holdout.get("cumulative") or {}).get("error_pct")
    ax.set_title("CLV holdout tracking" + ("" if _missing(error) else f" (error at the end {float(error):+.1f}%)"))
    ax.legend(fontsize=8, frameon=False)
    return chart(fig, "clv-tracking", "CLV holdout tracking: cumulative repeat purchases, actual and expected")


def model_registry(ctx: Context) -> Section:
    section = Section("models", "Model registry",
                      "Each fit with its training date, decision and headline metrics: a metric that drops from "
                      "one version to the next, or a run of rejected fits, needs a data scientist.")
    if ctx.relation("ml", "model_runs") is None:
        section.note = "Nothing yet: ml.model_runs does not exist."
        return section
    runs = ctx.df("select model_version, as_of_date, status, decision_reason, dag_id, metrics from ml.model_runs "
                  "where as_of_date <= %s order by as_of_date, recorded_at, model_version", (ctx.as_of_date,))
    if runs.empty:
        section.note = f"Nothing yet: no model trained on or before {ctx.as_of_date}."
        return section
    records = []
    for r in runs.itertuples():
        m = json.loads(r.metrics) if r.metrics else {}
        churn_metrics = m.get("churn") or {}
        holdout = m.get("clv_holdout") or {}
        records.append({"version": r.model_version, "trained": pd.Timestamp(r.as_of_date), "status": r.status or "–",
                        "reason": r.decision_reason, "dag": r.dag_id, "buyers": m.get("n_train_buyers"),
                        "churn_auc": churn_metrics.get("roc_auc"), "churn_brier": churn_metrics.get("brier"),
                        "silhouette": m.get("silhouette"), "clusters": m.get("k"),
                        "clv_error": (holdout.get("revenue") or {}).get("error_pct")})
    frame = pd.DataFrame(records)
    series = [("churn_auc", "churn ROC AUC"), ("silhouette", "cluster silhouette"),
              ("clv_error", "CLV holdout revenue error (%)")]
    fig = new_figure(10, 2.8)
    axes = fig.subplots(1, len(series))
    first, last = frame["trained"].min(), frame["trained"].max()
    pad = max((last - first) * 0.08, pd.Timedelta(days=7))
    for ax, (column, title) in zip(axes, series, strict=True):
        ax.set_title(title)
        values = pd.to_numeric(frame[column], errors="coerce")
        if values.notna().sum() == 0:
            ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes, color="#777777")
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        for status, colour in (("approved", GOOD), ("rejected", BAD)):
            mask = (frame["status"] == status) & values.notna()
            if mask.any():
                ax.plot(frame.loc[mask, "trained"], values[mask], marker="o",
                        linestyle="-" if status == "approved" else "", color=colour, label=status)
        ax.set_xlim(first - pad, last + pad)
        ax.xaxis.set_major_locator(mdates.AutoDateLocator(maxticks=5))
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m-%d"))
        ax.set_xlabel("trained as of")
        ax.legend(fontsize=7, frameon=False)
        for tick in ax.get_xticklabels():
            tick.set_rotation(30)
    section.charts.append(chart(fig, "models", "model metrics by training date"))
    section.tables.append(Table(
        ["version", "trained as of", "status", "decision", "buyers", "churn ROC AUC", "churn Brier", "clusters",
         "silhouette", "CLV revenue error"],
        [[r.version, r.trained.date().isoformat(), r.status, fmt_text(r.reason, 120), fmt_int(r.buyers),
          fmt_num(r.churn_auc, 3), fmt_num(r.churn_brier, 3), fmt_int(r.clusters), fmt_num(r.silhouette, 3),
          "–" if _missing(r.clv_error) else f"{float(r.clv_error):.1f}%"] for r in frame.itertuples()]))
    return section


def playbook(ctx: Context) -> Section:
    section = Section("playbook", "Segment playbook",
                      "Customers each playbook rule catches tonight, in rule order: a rule with none may be "
                      "unreachable, and a large default rule means segments without a strategy.")
    table = ctx.published("segment_playbook")
    rules = ctx.df(f"select rule_order, playbook_id, customers, objective, next_best_action, channel from {table} "
                   "where as_of_date = %s order by rule_order, playbook_id", (ctx.as_of_date,)) if table else None
    if rules is None or rules.empty:
        section.note = f"Nothing yet: no segment playbook published for {ctx.as_of_date}."
        return section
    rules["customers"] = rules["customers"].fillna(0).astype(int)
    fig = new_figure(9, 0.22 * len(rules) + 1.2)
    barh(fig.subplots(), rules["playbook_id"].tolist(), rules["customers"].tolist())
    section.charts.append(chart(fig, "playbook", "customers per playbook rule"))
    section.tables.append(Table(["#", "rule", "customers", "objective", "next best action", "channel"],
                                [[str(int(r.rule_order)), r.playbook_id, fmt_int(r.customers), fmt_text(r.objective),
                                  fmt_text(r.next_best_action), fmt_text(r.channel)] for r in rules.itertuples()]))
    return section


def campaign_uplift(ctx: Context) -> Section:
    section = Section("uplift", "Campaign uplift",
                      "Treated minus control per campaign with its 95% interval: an interval clear of zero is a "
                      "real effect, one that straddles zero is not proven yet.")
    table = ctx.published("campaign_uplift")
    uplift = ctx.df(
        "select campaign_id, is_final, customers_assigned, treated_customers, control_customers, "
        "treated_conversion_rate, control_conversion_rate, conversion_uplift, conversion_uplift_lower, "
        "conversion_uplift_upper, revenue_uplift, revenue_uplift_lower, revenue_uplift_upper "
        f"from {table} where as_of_date = %s and segment_type = 'campaign' order by campaign_id",
        (ctx.as_of_date,)) if table else None
    if uplift is None or uplift.empty:
        section.note = f"Nothing yet: no campaign in analytics.campaign_uplift on {ctx.as_of_date}."
        return section
    uplift = as_float(uplift, "treated_conversion_rate", "control_conversion_rate", "conversion_uplift",
                      "conversion_uplift_lower", "conversion_uplift_upper", "revenue_uplift", "revenue_uplift_lower",
                      "revenue_uplift_upper")
    measured = uplift[uplift["conversion_uplift"].notna()]
    if measured.empty:
        section.note = (f"Nothing measured yet: {len(uplift)} campaign(s) have assigned customers, none whose "
                        "conversion window has passed.")
    else:
        fig = new_figure(10, 0.4 * len(measured) + 1.6)
        axes = fig.subplots(1, 2, sharey=True)
        y = np.arange(len(measured))
        for ax, column, scale, title in ((axes[0], "conversion_uplift", 100.0, "conversion uplift (points)"),
                                         (axes[1], "revenue_uplift", 1.0,
                                          f"revenue uplift per customer ({ctx.currency})")):
            point = measured[column].to_numpy() * scale
            lower = measured[f"{column}_lower"].to_numpy() * scale
            upper = measured[f"{column}_upper"].to_numpy() * scale
            significant = (lower > 0) | (upper < 0)
            err = [np.nan_to_num(point - lower), np.nan_to_num(upper - point)]
            for mask, colour in ((significant, GOOD), (~significant, "#777777")):
                if mask.any():
                    ax.errorbar(point[mask], y[mask], xerr=[err[0][mask], err[1][mask]], fmt="o", color=colour,
                                capsize=3)
            ax.axvline(0, color="#999999", linewidth=1)
            ax.set_title(title)
        axes[0].set_yticks(y, measured["campaign_id"].tolist())
        axes[0].invert_yaxis()
        section.charts.append(chart(fig, "uplift", "campaign uplift with 95% intervals"))
    section.tables.append(Table(
        ["campaign", "final", "assigned", "treated", "control", "treated conversion", "control conversion",
         "conversion uplift (95% interval)", f"revenue uplift per customer ({ctx.currency}, 95% interval)"],
        [[r.campaign_id, "yes" if r.is_final else "no", fmt_int(r.customers_assigned), fmt_int(r.treated_customers),
          fmt_int(r.control_customers), fmt_pct(r.treated_conversion_rate), fmt_pct(r.control_conversion_rate),
          fmt_interval(fmt_pct, r.conversion_uplift, r.conversion_uplift_lower, r.conversion_uplift_upper),
          fmt_interval(fmt_num, r.revenue_uplift, r.revenue_uplift_lower, r.revenue_uplift_upper)]
         for r in uplift.itertuples()]))
    return section


def alerts(ctx: Context) -> Section:
    section = Section("alerts", "Customer alerts",
                      "Customers who crossed into high churn risk, left a top segment or dropped a value tier "
                      "since the last run, with the predicted value at risk: the biggest bars are where to act first.")
    table = ctx.published("customer_alerts")
    counts = as_float(ctx.df(f"select alert_type, count(*) as customers, sum(value_at_risk) as value_at_risk "
                             f"from {table} where as_of_date = %s group by 1 order by 1", (ctx.as_of_date,)),
                      "value_at_risk") if table else None
    if counts is None or counts.empty:
        section.note = f"Nothing yet: no alert on {ctx.as_of_date} (alerts compare with the previous run)."
        return section
    fig = new_figure(10, 0.35 * len(counts) + 1.5)
    count_ax, value_ax = fig.subplots(1, 2, sharey=True)
    types = counts["alert_type"].tolist()
    barh(count_ax, types, counts["customers"].astype(int).tolist(), BAD)
    count_ax.set_title("customers")
    barh(value_ax, types, counts["value_at_risk"].fillna(0).tolist(), WARN)
    value_ax.set_title(f"value at risk ({ctx.currency}, predicted CLV)")
    section.charts.append(chart(fig, "alerts", "alerts by type"))
    section.tables.append(Table(["alert type", "customers", f"value at risk ({ctx.currency})"],
                                [[r.alert_type, fmt_int(r.customers), fmt_num(r.value_at_risk)]
                                 for r in counts.itertuples()]))
    return section


def interests(ctx: Context) -> Section:
    section = Section("interests", "Top interest categories",
                      "How many customers have each category as their top interest, and what they spent on it in "
                      "the last 12 months: the categories to build campaigns and recommendations around.")
    table = ctx.published("customer_interests")
    top = as_float(ctx.df(
        "select category, sum(case when interest_rank = 1 then 1 else 0 end) as top_customers, "
        "count(distinct customer_id) as customers, sum(spend) as spend, avg(affinity_index) as affinity "
        f"from {table} where as_of_date = %s group by 1 order by 2 desc, 1 limit 15",
        (ctx.as_of_date,)), "spend", "affinity") if table else None
    if top is None or top.empty:
        section.note = f"Nothing yet: no customer interests published for {ctx.as_of_date}."
        return section
    fig = new_figure(10, 0.3 * len(top) + 1.5)
    top_ax, spend_ax = fig.subplots(1, 2, sharey=True)
    categories = top["category"].tolist()
    barh(top_ax, categories, top["top_customers"].astype(int).tolist())
    top_ax.set_title("customers with it as top category")
    barh(spend_ax, categories, top["spend"].fillna(0).tolist(), "#76b7b2")
    spend_ax.set_title(f"spend, last 12 months ({ctx.currency})")
    section.charts.append(chart(fig, "interests", "top interest categories"))
    section.tables.append(Table(["category", "top interest of", "customers with any interest",
                                 f"spend ({ctx.currency})", "mean affinity index (100 = average)"],
                                [[r.category, fmt_int(r.top_customers), fmt_int(r.customers), fmt_num(r.spend),
                                  fmt_num(r.affinity, 0)] for r in top.itertuples()]))
    return section


#: the report's sections, in page order: a new section is one function here
SECTIONS: tuple[Callable[[Context], Section], ...] = (
    segment_sizes, migration, churn, clv, clusters, playbook, campaign_uplift, alerts, interests, data_quality,
    model_registry,
)


# -- the page ---------------------------------------------------------------------------------------
def _environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.PackageLoader("custseg", "templates"), autoescape=True,
                              undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


def headline(ctx: Context) -> list[tuple[str, str]]:
    """The figures at the top of the page: customers, buyers and the model of the date."""
    facts = [("as of", ctx.as_of_date.isoformat()), ("warehouse", ctx.settings.warehouse)]
    history = ctx.published("segment_history")
    if history is not None:
        customers, buyers = ctx.wh.fetchall(
            f"select count(*), sum(case when rfm_segment is not null then 1 else 0 end) from {history} "
            "where as_of_date = %s", (ctx.as_of_date,))[0]
        facts += [("customers", fmt_int(customers)), ("buyers", fmt_int(buyers or 0))]
    version, _ = _scoring_model(ctx)
    facts.append(("model", version or "–"))
    return facts


def render_report(settings: Settings, as_of_date: dt.date) -> str:
    """The report's HTML for ``as_of_date``, from the warehouse as it is now (read-only)."""
    # under `custseg run` (dag.test(): one process) dbt-duckdb still holds the file open read-write after the
    # docs task, and DuckDB refuses a read-only connection beside it
    release_dbt_duckdb()
    with connect(settings, read_only=True) as wh:
        ctx = Context(wh, settings, as_of_date)
        with matplotlib.rc_context(STYLE):  # read when each artist is made, not only when it is saved
            sections = [section(ctx) for section in SECTIONS]
        facts = headline(ctx)
    return _environment().get_template("report.html.j2").render(
        as_of_date=as_of_date.isoformat(), facts=facts, sections=sections, currency=settings.reporting_currency)


def report_path(settings: Settings) -> Path:
    """The latest report: ``<docs_dir>/report/index.html`` (``custseg status`` and the run summary print it)."""
    return settings.docs_dir / REPORT_DIR / REPORT_FILE


def build_report(settings: Settings, as_of_date: dt.date) -> Path:
    """Write the run report for ``as_of_date`` to ``<docs_dir>/report/index.html`` and its dated copy
    ``report-<as_of_date>.html`` beside it; returns the path of ``index.html``."""
    html = render_report(settings, as_of_date).encode("utf-8")
    if len(html) > MAX_REPORT_BYTES:
        log.warning("run report is %.1f MB, above the %.0f MB it should stay under", len(html) / 2**20,
                    MAX_REPORT_BYTES / 2**20)
    target = report_path(settings)
    target.parent.mkdir(parents=True, exist_ok=True)
    for path in (target.with_name(f"report-{as_of_date.isoformat()}.html"), target):
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(html)
        tmp.replace(path)  # atomic: a reader sees the old report or the new one
    log.info("run report for %s: %s (%d bytes)", as_of_date, target, len(html))
    for old in prune_dated_reports(target.parent, settings.report_keep):
        log.info("removed the dated run report %s (CUSTSEG_REPORT_KEEP=%d)", old.name, settings.report_keep)
    return target


def prune_dated_reports(folder: Path, keep: int) -> list[Path]:
    """Delete all but the ``keep`` newest dated reports (``report-<date>.html``, by their date; 0 keeps all)
    and return what was deleted. A night adds about 0.3 MB; index.html is never touched."""
    dated = []
    for path in folder.glob("report-*.html"):
        try:
            dated.append((dt.date.fromisoformat(path.stem.removeprefix("report-")), path))
        except ValueError:  # not one of ours
            continue
    if keep == 0 or len(dated) <= keep:
        return []
    removed = [path for _, path in sorted(dated)[:-keep]]
    for path in removed:
        path.unlink(missing_ok=True)
    return removed
