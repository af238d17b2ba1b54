"""The run report (custseg/steps/report.py): built from a copy of the session's published DuckDB night,
self-contained and byte-stable, and rendered in a real headless Chromium (Debian's chromium and
chromedriver, driven by selenium with both paths set, so nothing is downloaded).

Without Chromium the browser test skips loudly; under CI=true it fails instead (.ci/run installs it).
The full-page screenshot is kept at ``test-artifacts/report.png``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from custseg.config import PROJECT_DIR, load_settings
from custseg.steps.report import MAX_REPORT_BYTES, SECTIONS, build_report, report_path
from custseg.warehouse import connect
from tests.conftest import E2E_END, IN_CI

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENSHOT = PROJECT_DIR / "test-artifacts" / "report.png"
#: sections the session's one published night (400 customers, one date) has data for
CHARTED = {"segment-sizes", "clv", "clusters", "playbook", "interests", "data-quality", "models"}
#: and those it cannot have yet: migration and alerts compare with an earlier date, uplift waits for the
#: conversion window, and the first night's churn model has too few labelled customers to be evaluated
NOTHING_YET = {"migration", "alerts", "uplift", "churn"}
SECTION_KEYS = ("segment-sizes", "migration", "churn", "clv", "clusters", "playbook", "uplift", "alerts", "interests",
                "data-quality", "models")
URL = re.compile(r"(?:https?:)?//[\w.-]+\.\w", re.I)


@pytest.fixture(scope="module")
def report(e2e_duckdb_env, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The report of E2E_END, built twice from a copy of the session's warehouse (never written to)."""
    root = tmp_path_factory.mktemp("report")
    shutil.copy2(e2e_duckdb_env["CUSTSEG_DUCKDB_PATH"], root / "warehouse.duckdb")
    env = {**e2e_duckdb_env, "CUSTSEG_DUCKDB_PATH": str(root / "warehouse.duckdb"),
           "CUSTSEG_DOCS_DIR": str(root / "docs")}
    settings = load_settings(env)
    path = build_report(settings, E2E_END)
    first = path.read_bytes()
    again = build_report(settings, E2E_END)
    return {"path": path, "bytes": first, "rerun": again.read_bytes(), "settings": settings,
            "nightly": Path(e2e_duckdb_env["CUSTSEG_DOCS_DIR"]) / "report" / "index.html"}


def test_the_nightly_dag_writes_the_report(report: dict) -> None:
    """The DAG's report task (after docs) wrote the session night's report beside the docs sites."""
    nightly = report["nightly"]
    assert nightly.is_file(), f"the nightly run wrote no report at {nightly}"
    assert nightly.with_name(f"report-{E2E_END}.html").is_file()
    html = nightly.read_text(encoding="utf-8")
    assert f"<title>custseg run report, as of {E2E_END}</title>" in html
    assert re.findall(r'data-section="([^"]+)"', html) == list(SECTION_KEYS)


def test_report_is_one_small_offline_file(report: dict) -> None:
    path, html = report["path"], report["bytes"].decode("utf-8")
    assert path == report_path(report["settings"]) == report["settings"].docs_dir / "report" / "index.html"
    assert path.with_name(f"report-{E2E_END}.html").read_bytes() == report["bytes"]
    size = len(report["bytes"])
    print(f"\nrun report: {path} ({size:,} bytes)")
    assert 20_000 < size < MAX_REPORT_BYTES
    # offline: no URL at all (not even the SVG namespaces), nothing to fetch, no script
    assert not URL.findall(html), URL.findall(html)[:5]
    assert not re.search(r"<(script|link|iframe|img|object|embed)\b", html, re.I)
    assert not re.search(r"\b(src|srcset)\s*=", html, re.I)
    assert "@import" not in html and "url(http" not in html
    # every section, in order, each with its one-line caption
    assert len(SECTIONS) == len(SECTION_KEYS)
    assert re.findall(r'data-section="([^"]+)"', html) == list(SECTION_KEYS)
    assert len(re.findall(r'<p class="caption">[^<]{40,}</p>', html)) == len(SECTION_KEYS)
    # as of the date, and no wall-clock value: the rerun is byte-identical
    assert f"as of {E2E_END}" in html
    assert report["rerun"] == report["bytes"], "a rerun on the same warehouse state changed the report"
    # autoescaped: a playbook action with an apostrophe (seed segment_playbook_rules.csv) comes out as an entity
    assert "first order&#39;s category" in html


def test_report_on_an_empty_warehouse_says_nothing_yet(tmp_path: Path) -> None:
    """A fresh warehouse (schemas and pipeline tables, nothing published): every section says why it is empty."""
    env = {"CUSTSEG_WAREHOUSE": "duckdb", "CUSTSEG_DATA_DIR": str(tmp_path),
           "CUSTSEG_DUCKDB_PATH": str(tmp_path / "empty.duckdb"), "CUSTSEG_DOCS_DIR": str(tmp_path / "docs")}
    settings = load_settings(env)
    with connect(settings) as wh:
        wh.bootstrap()
    html = build_report(settings, E2E_END).read_text(encoding="utf-8")
    assert html.count('<p class="empty">Nothing') == len(SECTION_KEYS)
    assert "<svg" not in html


def test_only_the_newest_dated_reports_are_kept(tmp_path: Path) -> None:
    # CUSTSEG_REPORT_KEEP dated copies beside index.html; the oldest go, whatever order the dates ran in
    env = {"CUSTSEG_WAREHOUSE": "duckdb", "CUSTSEG_DATA_DIR": str(tmp_path), "CUSTSEG_REPORT_KEEP": "2",
           "CUSTSEG_DUCKDB_PATH": str(tmp_path / "empty.duckdb"), "CUSTSEG_DOCS_DIR": str(tmp_path / "docs")}
    settings = load_settings(env)
    with connect(settings) as wh:
        wh.bootstrap()
    folder = report_path(settings).parent
    folder.mkdir(parents=True)
    (folder / "report-notes.html").write_text("not a dated report")
    for day in (E2E_END, E2E_END - dt.timedelta(days=3), E2E_END - dt.timedelta(days=1)):
        build_report(settings, day)
    assert sorted(p.name for p in folder.iterdir()) == [
        "index.html", f"report-{E2E_END - dt.timedelta(days=1)}.html", f"report-{E2E_END}.html", "report-notes.html"]
    assert load_settings({**env, "CUSTSEG_REPORT_KEEP": "0"}).report_keep == 0


def add_a_second_night(settings) -> None:
    """What the one-night warehouse cannot show yet, written into the copy: a churn model evaluated on a
    holdout (a real ``ml.churn.ChurnModel`` fitted on ``ml.synthetic``'s customer base, its registry metrics
    as ``ml.bundle`` stores them), and migration, alerts and measured uplift as a second night would publish
    them, derived from the night's own customers (a real second DAG night would cost minutes)."""
    from ml.bundle import json_safe
    from ml.churn import ChurnModel
    from ml.synthetic import make_customer_base

    as_of = dt.date(2024, 6, 30)
    churn = ChurnModel(random_state=0, bootstrap_draws=200).fit(make_customer_base(1500, as_of, seed=11).transactions,
                                                                as_of)
    before = E2E_END - dt.timedelta(days=1)
    pub = settings.publish_schema
    with connect(settings) as wh:
        [(version, metrics)] = wh.fetchall("select model_version, metrics from ml.model_runs")
        metrics = {**json.loads(metrics), "churn": json_safe(churn.metrics_),
                   "churn_evaluation": json_safe(churn.evaluation_)}
        wh.execute("update ml.model_runs set metrics = %s where model_version = %s",
                   (json.dumps(metrics, sort_keys=True), version))
        for dimension, moved_to in (("rfm_segment", "At Risk"), ("lifecycle_stage", "at_risk")):
            segment = f"coalesce({dimension}, 'No purchase yet')"
            wh.execute(
                f"insert into {pub}.segment_migration (as_of_date, comparison, compared_to_date, segment_type, "
                "from_segment, to_segment, customers, net_revenue_12m) "
                f"select %s, 'previous_run', %s, %s, {segment}, case when churn_risk_band in ('high', 'critical') "
                f"then %s else {segment} end, count(*), sum(net_revenue_12m) from {pub}.customer_segments "
                "group by 5, 6", (E2E_END, before, dimension, moved_to))
        wh.execute(
            f"insert into {pub}.customer_alerts (as_of_date, customer_id, alert_type, from_value, to_value, reason, "
            "value_at_risk, playbook_id, recommended_action, compared_to_date, has_email_consent, has_sms_consent, "
            "has_ads_consent) "
            "select %s, customer_id, case when churn_risk_band in ('high', 'critical') then 'churn_risk_up' "
            "else 'value_tier_drop' end, 'low', coalesce(churn_risk_band, value_tier), 'derived for the report test', "
            f"predicted_clv_12m, playbook_id, next_best_action, %s, has_email_consent, has_sms_consent, "
            f"has_ads_consent from {pub}.customer_segments where churn_risk_band in ('high', 'critical', 'medium')",
            (E2E_END, before))
        wh.execute(
            f"update {pub}.campaign_uplift set treated_customers = 120, control_customers = 30, "
            "treated_conversion_rate = 0.25, control_conversion_rate = 0.15, conversion_uplift = 0.10, "
            "conversion_uplift_lower = case when campaign_id like '%%no-effect%%' then -0.05 else 0.02 end, "
            "conversion_uplift_upper = 0.18, revenue_uplift = 12.5, revenue_uplift_lower = -3.0, "
            "revenue_uplift_upper = 28.0 where segment_type = 'campaign'")


def test_every_chart_renders_when_every_table_has_data(report: dict, e2e_duckdb_env, tmp_path: Path,
                                                       browser) -> None:
    root = report["path"].parents[2]
    shutil.copy2(root / "warehouse.duckdb", tmp_path / "warehouse.duckdb")
    env = {**e2e_duckdb_env, "CUSTSEG_DUCKDB_PATH": str(tmp_path / "warehouse.duckdb"),
           "CUSTSEG_DOCS_DIR": str(tmp_path / "docs")}
    settings = load_settings(env)
    add_a_second_night(settings)
    path = build_report(settings, E2E_END)
    html = path.read_text(encoding="utf-8")
    assert not URL.findall(html) and len(html.encode()) < MAX_REPORT_BYTES
    assert "Nothing" not in html, re.findall(r'<p class="empty">([^<]*)', html)
    sections = _render(browser, path)
    assert set(sections) == set(SECTION_KEYS)
    for key, section in sections.items():
        assert section["charts"] and not section["note"], (key, section["note"])
        _assert_charts_drawn(key, section)
    assert "baseline: recency" in html and "churn_risk_up" in html and "demo-winback-voucher" in html
    _screenshot(browser, SCREENSHOT.with_name("report-every-section.png"))


def _chromium_or_skip() -> None:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package (pip install -e '.[dev]')")
    if missing:
        message = f"no headless browser: {', '.join(missing)} missing (apt-get install chromium chromium-driver)"
        if IN_CI:
            pytest.fail(f"{message}; under CI=true the browser test must run, not skip")
        pytest.skip(f"!!! SKIPPING THE BROWSER TEST: {message}")


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    _chromium_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_OFFLINE"] = "true"  # selenium must never fetch a driver or a browser
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900",
                "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-default-apps", "--hide-scrollbars"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _render(driver, path: Path) -> dict[str, dict]:
    """Load the report; no console error or warning, no request; each section's note, charts and table rows."""
    driver.get(path.as_uri())
    assert driver.title == f"custseg run report, as of {E2E_END}"
    errors = [entry for entry in driver.get_log("browser") if entry["level"] in ("SEVERE", "WARNING")]
    assert not errors, errors
    # the page asked for nothing, over the network or from disk
    assert driver.execute_script("return performance.getEntriesByType('resource').length") == 0
    sections = driver.execute_script("""
        return Array.from(document.querySelectorAll('section.report-section')).map(s => ({
          key: s.dataset.section,
          note: s.querySelector('p.empty') ? s.querySelector('p.empty').textContent : '',
          caption: s.querySelector('p.caption').textContent,
          charts: Array.from(s.querySelectorAll('figure.chart svg')).map(svg => {
            const box = svg.getBoundingClientRect();
            return {width: box.width, height: box.height, shapes: svg.querySelectorAll('path, rect, use').length,
                    texts: Array.from(svg.querySelectorAll('text')).filter(t => t.getBBox().width > 0).length};
          }),
          rows: s.querySelectorAll('tbody tr').length,
        }));""")
    keys = [s["key"] for s in sections]
    assert keys == list(SECTION_KEYS)
    return {s["key"]: s for s in sections}


def _assert_charts_drawn(key: str, section: dict) -> None:
    assert len(section["caption"]) > 40, key
    for svg in section["charts"]:
        assert svg["width"] > 200 and svg["height"] > 80, (key, svg)
        assert svg["shapes"] > 10 and svg["texts"] > 3, (key, svg)


def _screenshot(driver, target: Path) -> None:
    """A full-page PNG of the loaded page, kept as the test's artefact."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    # the viewport itself as high as the page (a window size would include the browser's own frame)
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": 1280, "height": height, "deviceScaleFactor": 1, "mobile": False})
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        assert driver.save_screenshot(str(target))
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    assert target.stat().st_size > 50_000
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"\nscreenshot of the run report: {target} ({height} px high)")


def test_report_renders_in_chromium(report: dict, browser) -> None:
    sections = _render(browser, report["path"])
    for key, section in sections.items():
        if key in CHARTED:
            assert section["charts"] and not section["note"], (key, section["note"])
            _assert_charts_drawn(key, section)
        else:
            assert key in NOTHING_YET and section["note"].startswith("Nothing"), (key, section)
            assert not section["charts"], key
    assert sections["data-quality"]["rows"] >= 7 and sections["playbook"]["rows"] >= 10
    # value tiers, and the scoring model's CLV holdout tracking (150 days of history hold a 75-day holdout)
    assert len(sections["clv"]["charts"]) == 2
    assert sections["uplift"]["rows"] >= 3, "the campaigns' assignments are listed while nothing is measured"
    _screenshot(browser, SCREENSHOT)
