"""Campaigns and their control groups (custseg/campaigns.py) and the statistics of campaign_uplift
(dbt_project/macros/uplift.sql), without a pipeline run: the campaigns file's checks, the holdout rule, and
the interval macros evaluated by DuckDB and PostgreSQL against published and independently computed values.
The end-to-end runs (tests/test_e2e.py, tests/test_history.py) check the published tables themselves.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import jinja2
import numpy as np
import pytest
from scipy import stats

from custseg.campaigns import HOLDOUT_BUCKETS, control_buckets, holdout_draw, is_control, load_campaigns
from custseg.config import DBT_PROJECT_DIR, PROJECT_DIR, ConfigError

UPLIFT_MACROS = (DBT_PROJECT_DIR / "macros" / "uplift.sql").read_text(encoding="utf-8")

VALID = """campaigns:
  - campaign_id: winback-2026-11
    description: 15% voucher
    target_playbook_ids: [at_risk_winback, cant_lose_them_winback]
    start_date: 2026-11-02
    end_date: 2026-11-29
    conversion_window_days: 14
  - campaign_id: vip
    target_rfm_segments: [Champions, "Can't Lose Them"]
    target_playbook_ids: [champions_save]
    start_date: 2026-11-02
    end_date: 2026-11-02
    conversion_window_days: 7
    control_share: 0.25
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "campaigns.yml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_valid_file_loads_with_its_defaults(tmp_path: Path) -> None:
    winback, vip = load_campaigns(_write(tmp_path, VALID))
    assert winback.campaign_id == "winback-2026-11"
    assert winback.target_playbook_ids == ("at_risk_winback", "cant_lose_them_winback")
    assert winback.target_rfm_segments == ()
    assert (winback.start_date, winback.end_date) == (dt.date(2026, 11, 2), dt.date(2026, 11, 29))
    assert winback.control_share == 0.1  # the default
    assert vip.control_share == 0.25
    assert vip.target_rfm_segments == ("Champions", "Can't Lose Them")
    # the cut the SQL compares the hash's first 8 hex digits with
    assert winback.control_threshold == "19999999"  # floor(0.1 * 2^32) = 429496729 = 0x19999999
    assert vip.control_threshold == "40000000"


def test_the_shipped_campaigns_file_loads() -> None:
    assert load_campaigns(PROJECT_DIR / "config" / "campaigns.yml") == []


@pytest.mark.parametrize(("change", "message"), [
    (("target_rfm_segments: [Champions, \"Can't Lose Them\"]", "target_rfm_segments: [Champs]"),
     "campaign vip: target_rfm_segments has unknown 'Champs'; one of: About To Sleep, At Risk"),
    (("[champions_save]", "[champions_rescue]"),
     "campaign vip: target_playbook_ids has unknown 'champions_rescue'; one of: "),
    (("end_date: 2026-11-29", "end_date: 2026-10-29"),
     "campaign winback-2026-11: end_date 2026-10-29 is before start_date 2026-11-02"),
    (("control_share: 0.25", "control_share: 0.9"),
     "campaign vip: control_share must be a share from 0.01 to 0.5, got '0.9'"),
    (("conversion_window_days: 7", "conversion_window_days: a week"),
     "campaign vip: conversion_window_days must be a whole number of days from 1 to 365, got 'a week'"),
    (("campaign_id: vip", "campaign_id: winback-2026-11"), "campaign winback-2026-11 is declared twice"),
    (("campaign_id: vip", "campaign_id: VIP; drop table x"),
     "campaign #2: campaign_id must be 1-60 lower-case letters, digits, _ or -"),
    (("    description: 15% voucher", "    channel: email"), "campaign winback-2026-11: unknown key 'channel'"),
    (("start_date: 2026-11-02\n    end_date: 2026-11-02", "start_date: 2026-11-31\n    end_date: 2026-11-02"),
     "campaign vip: start_date must be a date YYYY-MM-DD, got '2026-11-31'"),
    (("    target_playbook_ids: [at_risk_winback, cant_lose_them_winback]\n", ""),
     "campaign winback-2026-11: give target_playbook_ids or target_rfm_segments (or both)"),
    (("campaigns:", "campaign:"), "the file must hold one key, campaigns: a list of campaigns"),
    (("  - campaign_id: vip", "  - campaign_id: [vip"), "not valid YAML at line"),
])
def test_a_wrong_entry_is_one_line_naming_the_file_campaign_and_key(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    assert change[0] in VALID
    path = _write(tmp_path, VALID.replace(change[0], change[1], 1))
    with pytest.raises(ConfigError) as raised:
        load_campaigns(path)
    text = str(raised.value)
    assert "\n" not in text
    assert text.startswith(f"{path}: ")
    assert message in text


def test_a_missing_file_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot be read .* set CUSTSEG_CAMPAIGNS_FILE to an existing file"):
        load_campaigns(tmp_path / "nope.yml")


def test_the_holdout_draw_is_the_keyed_hash_spec() -> None:
    import hashlib

    # the spec by hand: sha256 of key, namespace, campaign id and customer id joined by chr(31)
    digest = hashlib.sha256(b"k\x1fcampaign\x1fwinback\x1fcust-1").hexdigest()
    assert holdout_draw("k", "winback", "cust-1") == int(digest[:8], 16)
    assert is_control("k", "winback", "cust-1", 0.1) == (int(digest[:8], 16) < 429496729)


def test_the_holdout_holds_out_the_share_and_differs_by_campaign() -> None:
    customers = [f"customer-{i}" for i in range(20_000)]
    for share in (0.1, 0.25):
        held = np.array([is_control("key", "spring", c, share) for c in customers])
        # binomial: 4.5 standard deviations either side
        assert abs(held.mean() - share) < 4.5 * np.sqrt(share * (1 - share) / held.size)
    spring = np.array([is_control("key", "spring", c, 0.5) for c in customers])
    autumn = np.array([is_control("key", "autumn", c, 0.5) for c in customers])
    # independent draws per campaign: about half of one campaign's controls are the other's
    assert abs((spring & autumn).sum() / spring.sum() - 0.5) < 0.03
    # another key, another draw: the holdout cannot be guessed without the key
    other_key = np.array([is_control("other", "spring", c, 0.5) for c in customers])
    assert abs((spring & other_key).sum() / spring.sum() - 0.5) < 0.03
    assert control_buckets(0.5) == HOLDOUT_BUCKETS // 2


# -- the interval macros, evaluated by both warehouses ------------------------------------------------------
def _render(expression: str) -> str:
    """One SQL expression of the uplift macros, rendered by Jinja as dbt renders them (they use no dbt context)."""
    return jinja2.Environment(autoescape=False).from_string(UPLIFT_MACROS + "{{ " + expression + " }}").render()


@pytest.fixture(params=["duckdb", "postgres"])
def evaluate(request: pytest.FixtureRequest):
    if request.param == "duckdb":
        con = duckdb.connect()
        yield lambda sql: con.execute(sql).fetchone()
        con.close()
        return
    import psycopg

    pg_url = request.getfixturevalue("pg_server")
    with psycopg.connect(pg_url) as con:
        yield lambda sql: con.execute(sql).fetchone()


def _newcombe_sql(x1: int, n1: int, x2: int, n2: int) -> str:
    p1, p2 = f"({x1}.0 / {n1})", f"({x2}.0 / {n2})"
    l1, u1 = _render(f"wilson_bound('{p1}', '{n1}', '-')"), _render(f"wilson_bound('{p1}', '{n1}', '+')")
    l2, u2 = _render(f"wilson_bound('{p2}', '{n2}', '-')"), _render(f"wilson_bound('{p2}', '{n2}', '+')")
    bounds = [_render(f"newcombe_bound('{p1}', '({l1})', '({u1})', '{p2}', '({l2})', '({u2})', '{sign}')")
              for sign in "-+"]
    return f"select {bounds[0]}, {bounds[1]}"


@pytest.mark.parametrize(("counts", "published"), [
    # Newcombe (1998), Statistics in Medicine 17:873-890, Table II, method 10 (hybrid score)
    ((56, 70, 48, 80), (0.0524, 0.3339)),
    ((9, 10, 3, 10), (0.1705, 0.8090)),
    ((6, 7, 2, 7), (0.0582, 0.8062)),
    ((5, 56, 0, 29), (-0.0381, 0.1926)),
    ((0, 10, 0, 20), (-0.1611, 0.2775)),
    ((10, 10, 0, 20), (0.6791, 1.0000)),
])
def test_the_conversion_interval_is_newcombes_hybrid_score_interval(evaluate, counts, published) -> None:
    lower, upper = evaluate(_newcombe_sql(*counts))
    assert (round(float(lower), 4), round(float(upper), 4)) == published


@pytest.mark.parametrize("sizes", [(4, 3), (12, 30), (200, 25), (5000, 600)])
def test_the_revenue_interval_is_welchs(evaluate, sizes: tuple[int, int]) -> None:
    rng = np.random.default_rng(sum(sizes))
    treated = np.round(rng.lognormal(3, 1, sizes[0]) * (rng.random(sizes[0]) < 0.6), 2)
    control = np.round(rng.lognormal(3, 1.2, sizes[1]) * (rng.random(sizes[1]) < 0.5), 2)
    se2_t, se2_c = treated.var(ddof=1) / treated.size, control.var(ddof=1) / control.size
    df = (se2_t + se2_c) ** 2 / (se2_t**2 / (treated.size - 1) + se2_c**2 / (control.size - 1))
    (t,) = evaluate("select " + _render(f"t_quantile_975('{float(df)!r}')"))
    expected = stats.ttest_ind(treated, control, equal_var=False).confidence_interval(0.95)
    half_width = float(t) * np.sqrt(se2_t + se2_c)
    difference = treated.mean() - control.mean()
    # the t quantile is a Cornish-Fisher expansion: within 0.13% of scipy's from 3 degrees of freedom
    assert df >= 3
    assert difference - half_width == pytest.approx(expected.low, abs=0.0013 * half_width)
    assert difference + half_width == pytest.approx(expected.high, abs=0.0013 * half_width)


@pytest.mark.parametrize("df", [2.0, 3.0, 7.5, 30.0, 1000.0])
def test_the_t_quantile(evaluate, df: float) -> None:
    (t,) = evaluate("select " + _render(f"t_quantile_975('{float(df)!r}')"))
    assert float(t) == pytest.approx(stats.t.ppf(0.975, df), rel=0.0075 if df < 3 else 0.0013)
