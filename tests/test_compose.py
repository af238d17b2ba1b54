"""The production-like stack (docker-compose.yml) as Debian's `docker-compose` 1.29 reads it, offline.

There is no Docker engine on the development and CI machines, so nothing here starts a container:
`docker-compose config` parses, interpolates and validates the file, and the tests read what it
resolved. The warehouse's init script, which makes the BI login, runs against the real PostgreSQL.
`.ci/run` installs the `docker-compose` package; without it these tests fail under CI=true.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import shutil
import subprocess
from pathlib import Path

import psycopg
import pytest
import yaml

from tests.conftest import IN_CI

REPO = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO / "docker-compose.yml"
BI_INIT_SCRIPT = REPO / "docker" / "warehouse-init" / "10-custseg-bi.sh"

#: Airflow 3's official compose file's services, with custseg's warehouse and BI tool
SERVICES = {
    "warehouse", "airflow-db", "redis", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
    "airflow-worker", "airflow-triggerer", "airflow-init", "metabase",
}
#: every variable .env.example lists, with a value that a test can recognise (a quote to show it stays data)
SECRETS = {
    "WAREHOUSE_PASSWORD": "wh-secret",
    "AIRFLOW_DB_PASSWORD": "af-secret",
    "AIRFLOW_JWT_SECRET": "jwt-secret",
    "AIRFLOW_FERNET_KEY": "fernet-key",
    "CUSTSEG_BI_PASSWORD": "bi-pa'ss",
    "CUSTSEG_HASH_KEY": "hash-key",
}


def _compose() -> str:
    found = shutil.which("docker-compose")
    if found is None:
        message = "docker-compose (Debian's package, 1.29) is not installed; .ci/run installs it"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return found


def _config(tmp_path: Path, secrets: dict[str, str]) -> subprocess.CompletedProcess:
    env_file = tmp_path / ".env"
    env_file.write_text("".join(f"{name}={value}\n" for name, value in secrets.items()), encoding="utf-8")
    # only PATH and HOME: no variable of this shell may fill in a secret the .env file left out
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    return subprocess.run(
        [_compose(), "--project-directory", str(REPO), "--file", str(COMPOSE_FILE), "--env-file", str(env_file),
         "config"], env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def resolved(tmp_path_factory: pytest.TempPathFactory) -> dict:
    result = _config(tmp_path_factory.mktemp("compose"), SECRETS)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def _mounts(service: dict) -> dict[str, str]:
    """target -> source of a service's volumes, as compose 1.29 prints them (``source:target:mode``): a named
    volume's source is its name, a bind mount's an absolute path."""
    return {target: source for source, target, _mode in (v.split(":") for v in service.get("volumes", []))}


def test_compose_cli_is_debians_1_29() -> None:
    version = subprocess.run([_compose(), "version", "--short"], capture_output=True, text=True, timeout=60)
    assert version.stdout.startswith("1.29"), version.stdout + version.stderr


def test_stack_has_airflow_3s_services(resolved: dict) -> None:
    assert set(resolved["services"]) == SERVICES
    scheduler = resolved["services"]["airflow-scheduler"]["environment"]
    assert scheduler["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert scheduler["AIRFLOW__CELERY__BROKER_URL"] == "redis://:@redis:6379/0"
    assert resolved["services"]["airflow-worker"]["command"][:3] == ["airflow", "celery", "worker"]
    # every Airflow component shares the JWT secret and finds the execution API
    for name in SERVICES - {"warehouse", "airflow-db", "redis", "metabase"}:
        env = resolved["services"][name]["environment"]
        assert env["AIRFLOW__API_AUTH__JWT_SECRET"] == "jwt-secret", name
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/", name
        assert env["CUSTSEG_PROJECT_DIR"] == "/opt/custseg" and env["CUSTSEG_DATA_DIR"] == "/data", name


def test_every_long_running_service_has_a_healthcheck(resolved: dict) -> None:
    for name, service in resolved["services"].items():
        if name == "airflow-init":  # one-shot: the others wait for it to exit successfully instead
            assert service["healthcheck"] == {"test": ["NONE"]}  # `disable: true`, as compose resolves it
            continue
        test = service.get("healthcheck", {}).get("test")
        assert test and test[0] in {"CMD", "CMD-SHELL"}, f"{name} has no healthcheck"
    for name in SERVICES - {"warehouse", "airflow-db", "redis", "metabase", "airflow-init"}:
        depends = resolved["services"][name]["depends_on"]
        assert depends["airflow-init"]["condition"] == "service_completed_successfully", name
        assert depends["airflow-db"]["condition"] == "service_healthy", name
        assert depends["redis"]["condition"] == "service_healthy", name


def test_images_are_pinned(resolved: dict) -> None:
    for name, service in resolved["services"].items():
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and tag and tag != "latest" and "/" not in tag, f"{name}: {image} is not pinned"
        assert any(ch.isdigit() for ch in tag), f"{name}: {image} has no version in its tag"
    dockerfile = (REPO / "Dockerfile").read_text(encoding="utf-8")
    base = next(line.split()[1] for line in dockerfile.splitlines() if line.startswith("FROM "))
    assert base.count(":") == 1 and base.split(":")[1][0].isdigit(), base


def test_state_lives_in_volumes(resolved: dict) -> None:
    services = resolved["services"]
    metabase = services["metabase"]
    assert metabase["environment"]["MB_DB_FILE"].startswith("/metabase-data/")
    assert _mounts(metabase) == {"/metabase-data": "metabase-data"}
    assert _mounts(services["warehouse"])["/var/lib/postgresql/data"] == "warehouse-data"
    assert _mounts(services["airflow-db"]) == {"/var/lib/postgresql/data": "airflow-db-data"}
    # the pipeline's files: a named volume the image's uid owns, not a host folder with the host's uid
    worker = services["airflow-worker"]
    assert worker["user"].split(":")[0] == "50000"
    assert _mounts(worker)["/data"] == "custseg-data"
    # the project files are the repository's, read-only
    assert _mounts(worker)["/opt/custseg/dbt_project"] == str(REPO / "dbt_project")
    assert set(resolved["volumes"]) == {"warehouse-data", "airflow-db-data", "metabase-data", "custseg-data"}


def test_secrets_come_only_from_env_file(tmp_path: Path, resolved: dict) -> None:
    warehouse = resolved["services"]["warehouse"]
    assert warehouse["environment"]["CUSTSEG_BI_PASSWORD"] == "bi-pa'ss"
    assert _mounts(warehouse)["/docker-entrypoint-initdb.d"] == str(BI_INIT_SCRIPT.parent)
    worker = resolved["services"]["airflow-worker"]["environment"]
    assert worker["AIRFLOW_CONN_CUSTSEG_WAREHOUSE"] == "postgresql://custseg:wh-secret@warehouse:5432/warehouse"
    assert worker["CUSTSEG_HASH_KEY"] == "hash-key"
    # no secret has a default: leave one out of .env and compose refuses, naming it
    for missing in SECRETS:
        result = _config(tmp_path, {k: v for k, v in SECRETS.items() if k != missing})
        assert result.returncode != 0 and f"set {missing}" in result.stderr, (missing, result.stderr)
    example = {line.split("=", 1)[0] for line in (REPO / ".env.example").read_text(encoding="utf-8").splitlines()
               if line and not line.startswith("#")}
    assert example == set(SECRETS)


def _scram_verifies(verifier: str, password: str) -> bool:
    """Whether PostgreSQL's SCRAM-SHA-256 verifier (RFC 5803) is of ``password``."""
    iterations_salt, keys = verifier.removeprefix("SCRAM-SHA-256$").split("$")
    iterations, salt = iterations_salt.split(":")
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(salt), int(iterations))
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    return base64.b64encode(hashlib.sha256(client_key).digest()).decode() == keys.split(":")[0]


def test_bi_login_script_creates_then_updates_the_role(pg_server: str, tmp_path: Path) -> None:
    """The warehouse init script, run as the postgres image runs it, on the real server: it makes custseg_bi a
    login with the .env password (a quote in it stays data) and, run again, only changes the password."""
    if shutil.which("psql") is None:
        pytest.fail("psql is needed to run the warehouse's init script")

    def state() -> tuple | None:
        with psycopg.connect(pg_server) as con:
            return con.execute("select rolcanlogin, rolpassword from pg_authid where rolname = 'custseg_bi'"
                               ).fetchone()

    before = state()
    env = {"PATH": os.environ["PATH"], "POSTGRES_USER": "postgres", "POSTGRES_DB": "postgres",
           "PGHOST": "127.0.0.1", "PGPORT": "5432"}
    try:
        for password in ("bi-pa'ss; drop role custseg_bi; --", "second"):
            result = subprocess.run(["bash", str(BI_INIT_SCRIPT)], env={**env, "CUSTSEG_BI_PASSWORD": password},
                                    capture_output=True, text=True, timeout=60)
            assert result.returncode == 0, result.stderr
            can_login, hashed = state()
            assert can_login and hashed.startswith("SCRAM-SHA-256$"), hashed
            assert _scram_verifies(hashed, password), f"custseg_bi's password is not {password!r}"
    finally:
        with psycopg.connect(pg_server, autocommit=True) as con:
            if before is None:
                con.execute("drop role if exists custseg_bi")
            else:
                con.execute("alter role custseg_bi " + ("login" if before[0] else "nologin"))
                # the role's earlier password (none for the pipeline's nologin role) is restored as it was
                con.execute("update pg_authid set rolpassword = %s where rolname = 'custseg_bi'", (before[1],))
