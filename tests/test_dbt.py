"""dbt on its own: unit tests of the scoring rules, the segment-map checks, and the project's
documentation and style rules read from the manifest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from custseg.config import load_settings
from custseg.dbt import run_dbt
from custseg.steps.prepare import prepare_warehouse

#: dbt's unique test, its incremental-table variant (macros/generic_tests/) and the composite key test
PRIMARY_KEY_TESTS = ("unique", "unique_incremental", "unique_combination_of_columns")


@pytest.fixture(scope="module")
def dbt_settings(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("dbt")
    settings = load_settings({"CUSTSEG_DATA_DIR": str(tmp), "CUSTSEG_DUCKDB_PATH": str(tmp / "wh.duckdb")})
    prepare_warehouse(settings)
    run_dbt(settings, ["seed"])
    # unit tests need their input relations to exist; --empty builds them without data
    run_dbt(settings, ["run", "--empty", "--exclude", "tag:scored"])
    return settings


def test_release_dbt_duckdb_closes_the_database_dbt_keeps_open(dbt_settings) -> None:
    # `custseg run` runs every task in one process, and dbt-duckdb keeps its DuckDB database (with
    # its buffer pool) open after a dbt command: the score task's frames came on top of it.
    import duckdb

    from custseg.dbt import release_dbt_duckdb

    run_dbt(dbt_settings, ["show", "--inline", "select 1 as one"])
    path = str(dbt_settings.duckdb_path)
    # DuckDB refuses a differently configured connection while an instance of the file is open
    with pytest.raises(duckdb.Error, match="different configuration"):
        duckdb.connect(path, config={"threads": 1})
    release_dbt_duckdb()
    duckdb.connect(path, config={"threads": 1}).close()
    release_dbt_duckdb()  # nothing left to release: a no-op
    run_dbt(dbt_settings, ["show", "--inline", "select 1 as one"])  # the next dbt command opens a new one


def test_a_new_as_of_date_reaches_every_model_without_a_full_reparse(dbt_settings) -> None:
    # The run date reaches dbt through the environment (custseg/dbt.py), because a changed --vars
    # value made dbt re-parse the whole project in the first dbt task of every night. Partial
    # parsing must still give every model tonight's date, never the date of the run before.
    import datetime as dt
    import shutil

    from custseg.dbt import dbt_run_env

    def compile_as_of(day: dt.date) -> tuple[set[str], list[str]]:
        shutil.rmtree(dbt_settings.dbt_target_dir / "compiled", ignore_errors=True)
        events: list[str] = []
        run_dbt(dbt_settings, ["compile", "--exclude", "tag:scored"], dbt_run_env(day),
                callbacks=[lambda event: events.append(event.info.name)])
        compiled = {path.relative_to(dbt_settings.dbt_target_dir / "compiled"): path.read_text()
                    for path in (dbt_settings.dbt_target_dir / "compiled").rglob("*.sql")}
        return {str(path) for path, sql in compiled.items() if day.isoformat() in sql}, events

    yesterday, tonight = dt.date(2026, 3, 10), dt.date(2026, 5, 20)
    dated_yesterday, _ = compile_as_of(yesterday)
    dated_tonight, events = compile_as_of(tonight)
    assert "UnableToPartialParse" not in events
    assert "PartialParsingSkipParsing" in events  # nothing re-parsed: parsing does not read the date
    assert len(dated_tonight) >= 10, dated_tonight  # the staging, intermediate and feature models
    assert dated_tonight == dated_yesterday
    # a data test whose argument is the date (stg_pipeline__identity_map.yml) gets tonight's too
    assert any("stg_pipeline__identity_map.yml/accepted_values" in path for path in dated_tonight)
    stale = [str(path) for path in (dbt_settings.dbt_target_dir / "compiled").rglob("*.sql")
             if any(d.isoformat() in path.read_text()
                    for d in (yesterday, yesterday + dt.timedelta(days=1), yesterday - dt.timedelta(days=90)))]
    assert stale == []


def test_rfm_and_lifecycle_unit_tests_pass(dbt_settings) -> None:
    # dbt unit tests (models/intermediate/*__unit_tests.yml): RFM quintiles, ties, the segment
    # map lookup, every lifecycle stage with its precedence, and the segment playbook's first match
    run_dbt(dbt_settings, ["test", "--select", "test_type:unit"])


def test_each_of_the_125_rfm_codes_maps_to_exactly_one_segment(dbt_settings) -> None:
    run_dbt(dbt_settings, ["test", "--select", "assert_rfm_segment_map_covers_all_codes",
                           "assert_rfm_segment_map_uses_all_segments", "rfm_segment_map"])


def test_segment_map_check_catches_a_gap(dbt_settings) -> None:
    from custseg.dbt import DbtError
    from custseg.warehouse import connect

    with connect(dbt_settings) as wh:
        wh.execute("delete from analytics_build.rfm_segment_map where r_score = 3 and f_score = 3 and m_score = 3")
    try:
        with pytest.raises(DbtError):
            run_dbt(dbt_settings, ["test", "--select", "assert_rfm_segment_map_covers_all_codes"])
    finally:
        run_dbt(dbt_settings, ["seed", "--select", "rfm_segment_map"])


def test_the_shipped_segment_playbook_has_no_hidden_rule_and_no_gap(dbt_settings) -> None:
    # every rule of the default playbook catches someone, and every (rfm_segment, churn_risk_band) a customer
    # can have, prospects and unscored customers included, has a rule before the default
    run_dbt(dbt_settings, ["test", "--select", "assert_segment_playbook_rules_are_reachable",
                           "segment_playbook_values"])


def test_segment_playbook_check_catches_a_hidden_rule_and_a_gap(dbt_settings) -> None:
    from custseg.dbt import DbtError
    from custseg.warehouse import connect

    rules = "analytics_build.segment_playbook_rules"
    with connect(dbt_settings) as wh:
        # Lost and critical, after lost_suppress (Lost, high|critical): every customer it holds for meets
        # lost_suppress first, or service_recovery (detractors) before that
        wh.execute(f"insert into {rules} (rule_order, playbook_id, rfm_segment, churn_risk_band, objective, "
                   "next_best_action, channel, offer_type, kpi) values (245, 'lost_critical', 'Lost', 'critical', "
                   "'Say goodbye', 'Last mail', 'email', 'none', 'unsubscribe_rate')")
        # without its catch-all, Hibernating customers who are no bargain hunters only meet the default
        wh.execute(f"delete from {rules} where playbook_id = 'hibernating_reactivate'")
    try:
        with pytest.raises(DbtError):
            run_dbt(dbt_settings, ["test", "--select", "assert_segment_playbook_rules_are_reachable",
                                   "--store-failures"])
        with connect(dbt_settings) as wh:
            problems = wh.fetchall("select problem, playbook_id, rfm_segment, churn_risk_band, detail "
                                   "from analytics_build_dbt_test__audit.assert_segment_playbook_rules_are_reachable")
    finally:
        run_dbt(dbt_settings, ["seed", "--select", "segment_playbook_rules"])
    bands = ("low", "medium", "high", "critical", None)  # None: no churn score
    assert sorted(problems, key=repr) == sorted([
        ("never matches", "lost_critical", None, None, "hidden by lost_suppress, service_recovery"),
        *(("only the default", None, "Hibernating", band, None) for band in bands),
    ], key=repr)


def test_every_model_and_column_is_documented_and_keyed(dbt_settings) -> None:
    run_dbt(dbt_settings, ["parse"])
    manifest = json.loads((dbt_settings.dbt_target_dir / "manifest.json").read_text())
    models = {k: v for k, v in manifest["nodes"].items() if v["resource_type"] == "model"}
    tests = [v for v in manifest["nodes"].values() if v["resource_type"] == "test"]
    problems = []
    for uid, node in models.items():
        name, path = node["name"], Path(node["original_file_path"])
        if not node["description"].strip():
            problems.append(f"{name}: no description")
        for col, spec in node["columns"].items():
            if not spec.get("description", "").strip():
                problems.append(f"{name}.{col}: no description")
        keyed = any(
            uid in t["depends_on"]["nodes"]
            and t.get("test_metadata", {}).get("name") in PRIMARY_KEY_TESTS
            for t in tests
        )
        if not keyed:
            problems.append(f"{name}: no primary-key test")
        reads_source = bool(node["sources"])
        if reads_source and path.parts[1] != "staging":
            problems.append(f"{name}: only staging models may read sources")
        published = "published" in path.parts
        prefix = {"staging": "stg_", "intermediate": "int_"}.get(path.parts[1])
        if prefix and not name.startswith(prefix):
            problems.append(f"{name}: models in {path.parts[1]} must start with {prefix}")
        if path.parts[1] == "marts" and not published and not name.startswith(("fct_", "dim_")):
            problems.append(f"{name}: internal marts must be fct_ or dim_")
        if published and not node["config"]["contract"]["enforced"]:
            problems.append(f"{name}: published model without an enforced contract")
        if path.parts[1] == "staging" and name.count("__") != 1:
            problems.append(f"{name}: staging models are named stg_<source>__<entity>")
    assert problems == []


def test_unique_incremental_reads_only_what_was_written_since_the_table_was_verified(tmp_path: Path) -> None:
    # The incremental tables' key tests (macros/generic_tests/unique_incremental.sql) look up only the
    # keys written since the table last passed the test, instead of grouping millions of keys a night.
    # A duplicate that a faulty night writes must still fail the test that night and every night
    # after, until a rebuild; and without a verified date the whole table is checked.
    import datetime as dt

    from custseg.dbt import DbtError, dbt_run_env
    from custseg.warehouse import connect

    settings = load_settings({"CUSTSEG_DATA_DIR": str(tmp_path), "CUSTSEG_DUCKDB_PATH": str(tmp_path / "wh.duckdb")})
    prepare_warehouse(settings)
    table, day = "analytics_build.stg_web__sessions", dt.date(2026, 3, 1)
    nights = [day + dt.timedelta(days=n) for n in range(4)]

    def land(night: dt.date, *session_ids: str) -> None:
        with connect(settings) as wh:
            for line, session_id in enumerate(session_ids, 1):
                wh.execute("insert into raw.web_sessions (session_id, started_at, platform, _partition_date, "
                           "_source_file, _source_line, _run_id) values (%s, %s, 'web', %s, 'test.jsonl', %s, 'test')",
                           (session_id, dt.datetime.combine(night, dt.time(9)), night, line))
            wh.execute("insert into ops.load_audit (run_id, as_of_date, source, partition_date, source_file, "
                       "rows_read, rows_loaded, rows_quarantined, status, recorded_at) "
                       "values ('test', %s, 'web_sessions', %s, 'test.jsonl', %s, %s, 0, 'success', %s)",
                       (night, night, len(session_ids), len(session_ids), dt.datetime.now(dt.UTC).replace(tzinfo=None)))

    def dbt(command: str, night: dt.date) -> None:
        run_dbt(settings, [command, "--select", "stg_web__sessions"], dbt_run_env(night))

    def failed_tests(command: str, night: dt.date) -> dict[str, int]:
        """The tests that did not pass, with their failing rows; the command must fail."""
        results = []
        with pytest.raises(DbtError):
            run_dbt(settings, [command, "--select", "stg_web__sessions"], dbt_run_env(night),
                    callbacks=[lambda event: results.append(event) if event.info.name == "LogTestResult" else None])
        return {event.data.name: event.data.num_failures for event in results if event.data.status != "pass"}

    key_test = {"unique_incremental_stg_web__sessions_session_id": 1}  # one key with two rows

    def verified() -> dt.date | None:
        with connect(settings) as wh:
            return wh.fetchall("select verified_as_of from analytics_build.dbt_incremental_state "
                               "where model_name = 'stg_web__sessions'")[0][0]

    def duplicate(session_id: str, built_as_of: dt.date) -> None:
        # a second row for the key, as a faulty build (or a hand edit) would leave it
        with connect(settings) as wh:
            columns = [c for c in wh.columns("analytics_build", "stg_web__sessions") if c != "built_as_of"]
            wh.execute(f"insert into {table} ({', '.join(columns)}, built_as_of) "
                       f"select {', '.join(columns)}, %s from {table} where session_id = %s", (built_as_of, session_id))

    land(nights[0], "S1", "S2")
    dbt("build", nights[0])
    assert verified() == nights[0]
    land(nights[1], "S3")
    dbt("build", nights[1])  # extends the table; its test reads S3 only
    assert verified() == nights[1]
    with connect(settings) as wh:
        assert wh.fetchall(f"select session_id, built_as_of from {table} order by 1") == [
            ("S1", nights[0]), ("S2", nights[0]), ("S3", nights[1])]

    duplicate("S1", nights[2])  # written after the verified build: found
    assert failed_tests("test", nights[2]) == key_test
    assert verified() == nights[1]
    land(nights[3], "S4")
    # the next night extends the table, and the duplicate still fails it
    assert failed_tests("build", nights[3]) == key_test
    assert verified() == nights[1]

    dbt("build", nights[3])  # a rerun of the date rebuilds from the landed rows: the duplicate is gone
    assert verified() == nights[3]
    duplicate("S2", nights[0])  # a row dated before the verified build is trusted, not re-read ...
    dbt("test", nights[3])
    with connect(settings) as wh:  # ... until the table has no verified date (as after a rebuild)
        wh.execute("update analytics_build.dbt_incremental_state set verified_as_of = null")
    assert failed_tests("test", nights[3]) == key_test


def test_the_two_dbt_tasks_build_every_node_exactly_once(dbt_settings) -> None:
    # The nightly DAG's transform and assemble tasks are one `dbt build` each (custseg/steps/transform.py).
    # Together they must build every model, seed and test of the project, none twice, and every test in
    # the task that builds all its parents: a relationships test from a scored (assemble) model to a seed
    # must not run in transform, against the table the night before left.
    from custseg.steps.transform import DBT_GROUPS

    def listed(args: list[str]) -> dict[str, dict]:
        result = run_dbt(dbt_settings, ["ls", *args, "--output", "json", "--output-keys", "unique_id",
                                        "resource_type", "depends_on", "--quiet"])
        return {node["unique_id"]: node for node in map(json.loads, result.result)}

    everything = {uid: node for uid, node in listed([]).items() if node["resource_type"] in ("model", "seed", "test")}
    built = {task: listed(group.build_args()[1:]) for task, group in DBT_GROUPS.items()}
    assert set(built["transform"]).isdisjoint(built["assemble"])
    assert set(built["transform"]) | set(built["assemble"]) >= set(everything)
    # unit tests check the SQL on fixed inputs: `make test` runs them (below), a night does not
    assert not any(uid.startswith("unit_test.") for nodes in built.values() for uid in nodes)
    scored = {uid for uid in built["assemble"] if uid.startswith("model.")}
    assert "model.custseg.customer_segments" in scored and "model.custseg.fct_customer_features" in built["transform"]
    for uid, node in built["transform"].items():
        if node["resource_type"] == "test":
            assert not set(node["depends_on"]["nodes"]) & scored, f"{uid} reads a model built after transform"
    assert any(uid.startswith("test.custseg.relationships_customer_segments") for uid in built["assemble"])


def test_a_failed_node_is_recorded_and_named_in_one_line(dbt_settings) -> None:
    # What the transform and assemble tasks record of a real dbt failure: a duplicated seed row makes the
    # seed's unique test fail.
    import datetime as dt

    from custseg.dbt import release_dbt_duckdb
    from custseg.steps.transform import failure_summary, node_rows, record_node_results
    from custseg.warehouse import connect

    with connect(dbt_settings) as wh:
        wh.execute("insert into analytics_build.rfm_segment_descriptions "
                   "select * from analytics_build.rfm_segment_descriptions limit 1")
    try:
        result = run_dbt(dbt_settings, ["test", "--select", "unique_rfm_segment_descriptions_rfm_segment",
                                        "not_null_rfm_segment_descriptions_rfm_segment"], check=False)
        release_dbt_duckdb()  # as the dbt tasks do before writing their results through custseg's connection
        assert not result.success
        rows = node_rows(result.result, "run-1", "transform", 1, dt.date(2026, 10, 31))
        failed = [r for r in rows if r["status"] == "fail"]
        assert [r["node_name"] for r in failed] == ["unique_rfm_segment_descriptions_rfm_segment"]
        assert failed[0]["failures"] == 1 and failed[0]["resource_type"] == "test"
        summary = failure_summary("transform", rows, None)
        assert summary.startswith("dbt build of transform: 1 fail; first: test "
                                  "unique_rfm_segment_descriptions_rfm_segment: "), summary
        assert "\n" not in summary
        record_node_results(dbt_settings, rows, "run-1", "transform", 1)
        record_node_results(dbt_settings, rows, "run-1", "transform", 1)  # a task try's rows are replaced
        with connect(dbt_settings) as wh:
            stored = wh.fetchall("select node_name, status, failures from ops.dbt_node_results "
                                 "where run_id = 'run-1' and status not in ('pass', 'success')")
        assert stored == [("unique_rfm_segment_descriptions_rfm_segment", "fail", 1)]
        # `custseg status` names the failed node under its failed task
        from custseg.ops.status import status_report

        with connect(dbt_settings) as wh:
            wh.execute("insert into ops.run_audit (run_id, dag_id, task_id, as_of_date, try_number, status, error, "
                       "recorded_at) values ('run-1', 'customer_segmentation', 'transform', '2026-10-31', 1, "
                       "'failed', %s, '2026-11-01 00:05:00')", (summary,))
        report = status_report(dbt_settings)
        assert "      failed: transform: dbt build of transform: 1 fail" in report, report
        assert "        test unique_rfm_segment_descriptions_rfm_segment: fail (1 rows)" in report, report
    finally:
        run_dbt(dbt_settings, ["seed", "--select", "rfm_segment_descriptions"])
