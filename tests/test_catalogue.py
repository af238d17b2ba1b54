"""The channel catalogue (custseg/catalogue.py) is the one declaration of each channel: every copy of it
elsewhere (dbt sources, docs, the default sources file, the generator, identity, the GX suites, the DDL)
agrees with it, and a missing copy fails here."""

from __future__ import annotations

import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
import yaml

from custseg.catalogue import CHANNELS, CHANNELS_BY_TABLE, LOAD_METADATA, Channel, Column
from custseg.catalogue_docs import dbt_sources_yaml, docs_with_raw_tables, stale_files
from custseg.demo.generate import SOURCE_FILES
from custseg.sources import load_sources
from custseg.steps.identity import RECORD_SOURCES
from expectations.suites import raw_suite

ROOT = Path(__file__).resolve().parents[1]
STAGING = ROOT / "dbt_project" / "models" / "staging"
#: dbt sources in `raw` that are pipeline state, not channels
PIPELINE_SOURCES = {"pipeline"}


def test_generated_files_agree_with_the_catalogue() -> None:
    assert stale_files(ROOT) == [], "run `custseg catalogue --write`"


def test_the_cli_check_fails_on_a_stale_copy_and_write_mends_it(tmp_path: Path) -> None:
    channel = CHANNELS["support"]
    copy = tmp_path / "dbt_project" / "models" / "staging" / channel.dbt_source / f"_{channel.dbt_source}__sources.yml"
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "sources.md").write_text((ROOT / "docs" / "sources.md").read_text())
    for other in CHANNELS.values():
        path = tmp_path / "dbt_project" / "models" / "staging" / other.dbt_source / f"_{other.dbt_source}__sources.yml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(dbt_sources_yaml(other))
    copy.write_text(copy.read_text().replace("          - name: topic\n", "          - name: subject\n"))
    cli = [sys.executable, "-m", "custseg.cli", "catalogue", "--project-dir", str(tmp_path)]
    check = subprocess.run(cli, capture_output=True, text=True, check=False)
    assert check.returncode == 1
    assert check.stderr.strip().splitlines() == [
        "out of date with custseg/catalogue.py: dbt_project/models/staging/support/_support__sources.yml "
        "(run `custseg catalogue --write`)"]
    subprocess.run([*cli, "--write"], capture_output=True, check=True)
    assert copy.read_text() == dbt_sources_yaml(channel)
    assert subprocess.run(cli, capture_output=True, check=False).returncode == 0


def test_docs_section_lists_every_channel_column() -> None:
    docs = (ROOT / "docs" / "sources.md").read_text()
    assert docs == docs_with_raw_tables(docs)
    for channel in CHANNELS.values():
        assert f"### `raw.{channel.table}`: channel `{channel.name}`" in docs
        for col in channel.columns:
            assert f"| `{col.name}` |" in docs


def _dbt_raw_sources() -> dict[str, dict]:
    """Every dbt source reading schema `raw`, by name, from every YAML file under models/staging."""
    found: dict[str, dict] = {}
    for path in STAGING.rglob("*.yml"):
        for source in (yaml.safe_load(path.read_text()) or {}).get("sources", []):
            if source.get("schema") == "raw":
                found[source["name"]] = {"folder": path.parent.name, **source}
    return found


def test_every_raw_dbt_source_is_a_catalogue_channel_and_back() -> None:
    sources = _dbt_raw_sources()
    channels = {c.dbt_source: c for c in CHANNELS.values()}
    assert set(sources) - PIPELINE_SOURCES == set(channels)
    for name, channel in channels.items():
        (table,) = sources[name]["tables"]
        assert sources[name]["folder"] == channel.dbt_source
        assert table["name"] == channel.table
        assert [c["name"] for c in table["columns"]] == [c.name for c in channel.columns] + [
            m[0] for m in LOAD_METADATA]


def test_every_channel_has_its_staging_model_with_yaml() -> None:
    for channel in CHANNELS.values():
        folder = STAGING / channel.dbt_source
        model = folder / f"{channel.staging_model}.sql"
        assert model.exists(), model
        assert (folder / f"{channel.staging_model}.yml").exists()
        assert channel.staging_model.startswith(f"stg_{channel.dbt_source}__")
        assert f"source('{channel.dbt_source}', '{channel.table}')" in model.read_text()


def test_default_sources_file_maps_every_column_of_every_channel() -> None:
    sources = load_sources(ROOT / "config" / "sources.yml")
    by_channel = {src.channel.name: src for src in sources.values()}
    assert set(by_channel) == set(CHANNELS)
    for name, src in by_channel.items():
        assert [m.canonical for m in src.columns] == [c.name for c in CHANNELS[name].columns], name


def test_the_generator_writes_every_channel() -> None:
    assert set(SOURCE_FILES) == set(CHANNELS_BY_TABLE)


def test_identity_reads_every_channel_with_identity_keys_and_only_those() -> None:
    tables = [table for table, *_ in RECORD_SOURCES]
    assert tables == [c.table for c in CHANNELS.values() if c.identity_keys]
    assert "email_events" not in tables  # the ESP's recipients attach to customers, they do not make them
    crm = next(row for row in RECORD_SOURCES if row[0] == "crm_customers")
    assert crm == ("crm_customers", "crm_customer_id", "email", "phone", "loyalty_card", "updated_at")


@pytest.mark.parametrize("channel", CHANNELS.values(), ids=list(CHANNELS))
def test_gx_checks_name_only_the_channels_columns(channel: Channel) -> None:
    suite = raw_suite(channel.raw_table(date(2026, 3, 1)), date(2026, 3, 1))
    assert suite.name == f"raw.{channel.table}"
    named = suite.columns_read()
    assert named is not None
    assert named <= {c.name for c in channel.columns}
    assert channel.key in named and channel.event_time in named


def test_a_channel_naming_a_column_it_does_not_have_is_refused_at_import() -> None:
    with pytest.raises(ValueError, match=r"channel 'fax': unknown columns \['sent_at'\]"):
        Channel("fax", table="fax_orders", dbt_source="fax", description="", table_description="", key="fax_id",
                event_time="sent_at", columns=(Column("fax_id", "text", "Fax id."),), staging_model="stg_fax__orders")


@pytest.mark.parametrize("kind", ["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_warehouse_from_an_earlier_release_gets_the_new_channel_columns(kind: str, tmp_path: Path,
                                                                        request: pytest.FixtureRequest) -> None:
    from custseg.config import load_settings
    from custseg.steps.prepare import prepare_warehouse
    from custseg.warehouse import connect

    env = {"CUSTSEG_WAREHOUSE": kind, "CUSTSEG_DATA_DIR": str(tmp_path),
           "CUSTSEG_DUCKDB_PATH": str(tmp_path / "wh.duckdb")}
    if kind == "postgres":
        env["CUSTSEG_POSTGRES_URL"] = request.getfixturevalue("pg_database")
    settings = load_settings(env)
    old_columns = ("session_id text, started_at timestamp, crm_customer_id text, user_email text, platform text, "
                   "page_views integer, added_to_cart boolean, _partition_date date, _source_file text, "
                   "_source_line bigint, _run_id text, _extras text")
    with connect(settings) as wh:
        wh.execute("create schema if not exists raw")
        wh.execute(f"create table raw.web_sessions ({old_columns})")
        wh.execute("insert into raw.web_sessions (session_id, page_views) values ('WS-OLD', 3)")
    prepare_warehouse(settings)
    prepare_warehouse(settings)  # idempotent: the column is added once
    with connect(settings) as wh:
        # appended after the load metadata: ingestion and dbt name their columns, never rely on positions
        assert wh.columns("raw", "web_sessions")[-1] == "category"
        assert wh.fetchall("select session_id, page_views, category from raw.web_sessions") == [("WS-OLD", 3, None)]
        for channel in CHANNELS.values():  # every other table, new or not, has every catalogue column
            assert set(wh.columns("raw", channel.table)) >= {c.name for c in channel.columns}, channel.name
