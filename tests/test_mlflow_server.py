"""The cluster's MLflow: scripts/mlflow_server.sh (PostgreSQL from the system packages, basic-auth,
artifacts served over HTTP); a model registered and loaded through it, and refused credentials."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.cluster_harness import free_port

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "mlflow_server.sh"
pytestmark = pytest.mark.slow


def _postgres_installed() -> bool:
    return bool(shutil.which("initdb") or list(Path("/usr/lib/postgresql").glob("*/bin/initdb")))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not _postgres_installed():
        pytest.skip("PostgreSQL is not installed (apt-get install -y postgresql)")
    state = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    env = {**os.environ, "MLFLOW_BIN": str(REPO / ".venv" / "bin" / "mlflow")}
    if not Path(env["MLFLOW_BIN"]).exists():  # the one beside this Python (a worktree has no .venv)
        beside = Path(sys.executable).parent / "mlflow"
        env["MLFLOW_BIN"] = str(beside) if beside.exists() else shutil.which("mlflow") or "mlflow"
    start = subprocess.run(
        [str(SCRIPT), "start", str(state), str(port)], env=env, capture_output=True, text=True, timeout=240
    )
    try:
        assert start.returncode == 0, start.stdout + start.stderr
        client = dict(
            line.removeprefix("export ").split("=", 1)
            for line in (state / "client.env").read_text().splitlines()
            if line.startswith("export ")
        )
        yield state, client
    finally:
        subprocess.run([str(SCRIPT), "stop", str(state)], env=env, timeout=120)
        pgdir = state / "pgdir"
        if pgdir.exists():
            shutil.rmtree(pgdir.read_text().strip(), ignore_errors=True)


def _get(url: str, user: str | None = None, password: str | None = None) -> int:
    req = urllib.request.Request(url)
    if user is not None:
        req.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
    try:
        # not a duration check: a socket's limit, long since basic-auth hashes the password on each
        # request (16-20 s seen per request on 2 loaded cores)
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.timeout(300)
def test_the_server_refuses_missing_wrong_and_default_credentials(server):
    state, client = server
    api = f"{client['MLFLOW_TRACKING_URI']}/api/2.0/mlflow/experiments/search?max_results=1"
    codes = {
        "none": _get(api),
        "wrong": _get(api, "admin", "wrong"),
        "old default": _get(api, "admin", "password1234"),
        "generated": _get(api, "admin", client["MLFLOW_TRACKING_PASSWORD"]),
    }
    print(f"\nHTTP status by credentials: {codes}")
    assert codes == {"none": 401, "wrong": 401, "old default": 401, "generated": 200}
    assert (state / "secrets.env").stat().st_mode & 0o077 == 0, "secrets must be private to their owner"
    assert "127.0.0.1" in client["MLFLOW_TRACKING_URI"]  # loopback unless MLFLOW_HOST says otherwise


@pytest.mark.timeout(300)
def test_a_model_is_registered_and_loaded_through_the_server(server, monkeypatch, tmp_path):
    state, client = server
    for k, v in client.items():
        monkeypatch.setenv(k, v)
    monkeypatch.chdir(tmp_path)  # nothing may land in a local store
    from dampeml.registry.bootstrap import register_catalog
    from dampeml.registry.models import list_versions, safe_load_model

    versions = register_catalog(aliases=("production",), networks=["bgo-direction-low"], aligned=False)
    model = safe_load_model("models:/bgo-direction-low@production", dst_path=tmp_path)
    listed = [(v.name, v.version, v.aliases) for v in list_versions("bgo-direction-low")]
    print(f"\nregistered {versions}, listed {listed}, params {model.count_params()}")
    assert listed == [("bgo-direction-low", versions["bgo-direction-low"], ["production"])]
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlartifacts").exists()
    # the registry lives in PostgreSQL, the artifacts in the server's destination
    secrets = dict(line.split("=", 1) for line in (state / "secrets.env").read_text().splitlines())
    rows = subprocess.run(
        ["psql", "-h", "127.0.0.1", "-p", secrets["PG_PORT"], "-U", "postgres", "-d", "mlflow", "-tAc",
         "SELECT name FROM registered_models"],
        env={**os.environ, "PGPASSWORD": secrets["PG_PASSWORD"]}, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert rows.stdout.split() == ["bgo-direction-low"], rows.stderr
    assert list((state / "artifacts").rglob("model.keras"))


def _command_lines() -> dict[int, str]:
    """Every process's command line, as `ps` shows it to any local user."""
    out = {}
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                out[int(p.name)] = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:  # the process ended
                continue
    return out


@pytest.mark.timeout(300)
def test_no_database_password_on_a_command_line_and_the_server_is_no_superuser(server):
    """Issue 19, defect 10: the server ran with the PostgreSQL superuser's password in its argv.
    Now it connects as the role `mlflow` (owner of its two databases, no superuser), its password
    in a private pgpass file."""
    state, client = server
    secrets = dict(line.split("=", 1) for line in (state / "secrets.env").read_text().splitlines())
    passwords = {k: secrets[k] for k in ("PG_PASSWORD", "MLFLOW_DB_PASSWORD")}
    server_pid = int((state / "mlflow.pid").read_text())
    lines = _command_lines()
    assert server_pid in lines and "mlflow" in lines[server_pid]
    leaks = [(pid, k) for pid, line in lines.items() for k, pw in passwords.items() if pw in line]
    assert not leaks, f"passwords on command lines: {leaks}"
    for name in ("basic_auth.ini", "client.env"):
        text = (state / name).read_text()
        assert not any(pw in text for pw in passwords.values()), name
    assert (state / "pgpass").stat().st_mode & 0o077 == 0, "pgpass must be private to its owner"

    def sql(db: str, query: str) -> list[str]:
        rows = subprocess.run(
            ["psql", "-h", "127.0.0.1", "-p", secrets["PG_PORT"], "-U", "postgres", "-d", db, "-tAc", query],
            env={**os.environ, "PGPASSWORD": secrets["PG_PASSWORD"]}, capture_output=True, text=True,
            timeout=30,
        )  # fmt: skip
        assert rows.returncode == 0, rows.stderr
        return rows.stdout.split()

    api = f"{client['MLFLOW_TRACKING_URI']}/api/2.0/mlflow/experiments/search?max_results=1"
    assert _get(api, "admin", client["MLFLOW_TRACKING_PASSWORD"]) == 200
    # the server's open connections are the mlflow role's (the tables' owner below shows that its
    # migrations ran as that role)
    active = sql("postgres", "SELECT usename FROM pg_stat_activity WHERE datname LIKE 'mlflow%'")
    assert set(active) <= {"mlflow"}, active
    assert sql(
        "postgres", "SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = 'mlflow'"
    ) == ["f|f|f"]
    for db in ("mlflow", "mlflow_auth"):
        owner = sql("postgres", f"SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{db}'")
        assert owner == ["mlflow"], (db, owner)
        owners = set(sql(db, "SELECT tableowner FROM pg_tables WHERE schemaname = 'public'"))
        assert owners == {"mlflow"}, (db, owners)
