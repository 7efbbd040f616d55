"""MLflow authentication (issue 16 item 15): per-project users, credentials, the user Job.

The scripts the pods run are tested here too: ``sync_users.py`` against a stand-in for the auth
REST API (the routes of mlflow/server/auth/routes.py: users/get, users/create,
users/update-password, admin by HTTP basic auth), ``create_auth_db.py`` against a stand-in
connection.
"""

from __future__ import annotations

import base64
import configparser
import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from components.generated_secret import TYPE_TOKEN as GENERATED_SECRET
from components.registry_auth import ASSETS, RegistryAuth, render_auth_config
from mlplatform.graph import Graph
from mlplatform.plan import run_program

from .helpers import registry_program, validate_manifests


@pytest.fixture(scope="module")
def rds() -> Graph:
    return run_program(registry_program({"protect": False, "database": {"kind": "rds"}}))


@pytest.fixture(scope="module")
def sqlite() -> Graph:
    data = {"protect": False, "database": {"kind": "sqlite"}}
    return run_program(registry_program(data, on_aws=False))


def _one(g: Graph, kind: str, name: str, namespace: str = "mlflow") -> dict[str, Any]:
    (m,) = [
        m
        for m in g.manifests()
        if m["kind"] == kind
        and m["metadata"]["name"] == name
        and m["metadata"].get("namespace") == namespace
    ]
    return m


def _server(g: Graph) -> dict[str, Any]:
    return _one(g, "Deployment", "mlflow")["spec"]["template"]["spec"]


def test_the_server_runs_the_basic_auth_app_from_a_mounted_config(rds: Graph) -> None:
    pod = _server(rds)
    (c,) = pod["containers"]
    assert c["args"][-2:] == ["--app-name", "basic-auth"]
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["MLFLOW_AUTH_CONFIG_PATH"] == "/etc/mlflow/auth/basic_auth.ini"
    (vol,) = [v for v in pod["volumes"] if v.get("secret", {}).get("secretName") == "mlflow-auth"]
    (mount,) = [m for m in c["volumeMounts"] if m["name"] == vol["name"]]
    assert mount == {"name": "auth", "mountPath": "/etc/mlflow/auth", "readOnly": True}
    assert _one(rds, "Secret", "mlflow-auth")["stringData"] == "[secret]"
    assert validate_manifests(rds) == []


def test_the_auth_config_denies_by_default_and_uses_its_own_database() -> None:
    text = render_auth_config(RegistryAuth(), "pw", "postgresql://u:p@db:5432/mlflow_auth")
    ini = configparser.ConfigParser()
    ini.read_string(text)
    assert dict(ini["mlflow"]) == {
        "default_permission": "NO_PERMISSIONS",
        "database_uri": "postgresql://u:p@db:5432/mlflow_auth",
        "admin_username": "admin",
        "admin_password": "pw",
        "authorization_function": "mlflow.server.auth:authenticate_request_basic_auth",
    }


def test_postgres_gets_an_auth_database_created_before_the_server(rds: Graph) -> None:
    pod = _server(rds)
    (init,) = pod["initContainers"]
    assert init["name"] == "create-auth-db"
    assert init["command"] == ["python", "/opt/mlplatform/create_auth_db.py"]
    env = {e["name"]: e["value"] for e in init["env"]}
    assert env["BACKEND_STORE_URI_FILE"] == "/etc/mlflow/db/backend-store-uri"
    assert env["AUTH_DB_NAME"] == "mlflow_auth"
    # the URI stays a mounted file: not in env values, not in argv
    assert not any("postgresql://" in str(v) for v in [*env.values(), *init["command"]])
    mounts = {m["mountPath"]: m for m in init["volumeMounts"]}
    assert mounts["/etc/mlflow/db"]["readOnly"] is True
    scripts = _one(rds, "ConfigMap", "mlflow-platform-scripts")
    assert set(scripts["data"]) == {"create_auth_db.py", "sync_users.py"}


def test_sqlite_keeps_the_auth_store_beside_the_tracking_store(sqlite: Graph) -> None:
    assert _server(sqlite)["initContainers"] == []
    (c,) = _server(sqlite)["containers"]
    assert "--app-name" in c["args"]


def test_each_project_namespace_gets_its_users_credentials(rds: Graph) -> None:
    for ns in ("churn", "team-vision"):
        secret = _one(rds, "Secret", "mlflow-tracking", namespace=ns)
        assert secret["stringData"] == "[secret]"
    users = _one(rds, "Secret", "mlflow-users")
    assert users["stringData"] == "[secret]"
    passwords = [r for r in rds.by_type(GENERATED_SECRET) if r.name.startswith("registry-user-")]
    assert sorted(r.name for r in passwords) == ["registry-user-churn", "registry-user-vision"]
    assert all(r.inputs["length"] >= 32 for r in passwords)


def test_a_job_creates_the_users_once_the_server_is_up(rds: Graph) -> None:
    (job_res,) = rds.by_type("kubernetes:batch/v1:Job")
    job = _one(rds, "Job", job_res.inputs["metadata"]["name"])
    assert job["metadata"]["name"].startswith("mlflow-users-")
    # a Pulumi-managed Job: kept after it succeeds (no TTL), replaced when the user set changes
    assert "ttlSecondsAfterFinished" not in job["spec"]
    assert job_res.delete_before_replace
    assert rds.depends_on(job_res, rds.by_name("registry-server"))
    assert rds.depends_on(job_res, rds.by_name("registry-service"))
    pod = job["spec"]["template"]["spec"]
    secrets = {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    assert secrets == {"mlflow-admin", "mlflow-users"}
    (c,) = pod["containers"]
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["MLFLOW_URL"] == "http://mlflow.mlflow.svc.cluster.local:5000"


def test_without_auth_nothing_of_it_is_declared() -> None:
    data = {"protect": False, "database": {"kind": "rds"}, "auth": {"enabled": False}}
    g = run_program(registry_program(data))
    (c,) = _server(g)["containers"]
    assert "--app-name" not in c["args"]
    assert not [m for m in g.manifests() if m["metadata"]["name"].startswith("mlflow-users")]
    assert not [m for m in g.manifests() if m["metadata"]["name"] == "mlflow-tracking"]


# --- the scripts the pods run -----------------------------------------------------------------


class FakeMlflowAuth(BaseHTTPRequestHandler):
    users: dict[str, str] = {}
    admin = ("admin", "admin-pw")

    def log_message(self, *args: Any) -> None:
        pass

    def _authorized(self) -> bool:
        header = self.headers.get("Authorization", "")
        expected = base64.b64encode(":".join(self.admin).encode()).decode()
        if header != f"Basic {expected}":
            self._reply(401)
            return False
        return True

    def _reply(self, code: int, body: dict | None = None) -> None:
        data = json.dumps(body or {}).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _json(self) -> dict:
        return json.loads(self.rfile.read(int(self.headers["Content-Length"])))

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/health":
            self._reply(200)
        elif url.path == "/api/2.0/mlflow/users/get" and self._authorized():
            user = parse_qs(url.query)["username"][0]
            if user in self.users:
                self._reply(200, {"user": {"username": user}})
            else:
                self._reply(404, {"error_code": "RESOURCE_DOES_NOT_EXIST"})

    def do_POST(self) -> None:
        if self.path == "/api/2.0/mlflow/users/create" and self._authorized():
            body = self._json()
            self.users[body["username"]] = body["password"]
            self._reply(200, {"user": {"username": body["username"]}})

    def do_PATCH(self) -> None:
        if self.path == "/api/2.0/mlflow/users/update-password" and self._authorized():
            body = self._json()
            self.users[body["username"]] = body["password"]
            self._reply(200)


@pytest.fixture
def fake_mlflow():
    FakeMlflowAuth.users = {"churn": "old"}
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeMlflowAuth)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def _secret_dir(path: Path, files: dict[str, str]) -> Path:
    """A directory shaped like a mounted Secret (with the kubelet's ..data link)."""
    path.mkdir()
    (path / "..data").mkdir()
    for name, value in files.items():
        (path / name).write_text(value + "\n")
    return path


def _sync(url: str, tmp_path: Path, admin_pw: str = "admin-pw") -> subprocess.CompletedProcess:
    admin = _secret_dir(tmp_path / "admin", {"username": "admin", "password": admin_pw})
    users = _secret_dir(tmp_path / "users", {"churn": "new-churn", "vision": "new-vision"})
    env = {"MLFLOW_URL": url, "ADMIN_DIR": str(admin), "USERS_DIR": str(users), "WAIT_SECONDS": "5"}
    return subprocess.run(
        [sys.executable, str(ASSETS / "sync_users.py")],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_sync_users_creates_missing_users_and_resets_existing_ones(fake_mlflow, tmp_path):
    proc = _sync(fake_mlflow, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert FakeMlflowAuth.users == {"churn": "new-churn", "vision": "new-vision"}
    assert proc.stdout.splitlines() == ["churn: updated", "vision: created"]


def test_sync_users_fails_loudly_with_wrong_admin_credentials(fake_mlflow, tmp_path):
    proc = _sync(fake_mlflow, tmp_path, admin_pw="wrong")
    assert proc.returncode != 0
    assert "HTTP 401" in proc.stderr
    assert FakeMlflowAuth.users == {"churn": "old"}


class _Cursor:
    def __init__(self, existing: set[str], log: list[str]) -> None:
        self.existing, self.log, self.row = existing, log, None

    def __enter__(self) -> _Cursor:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    def execute(self, query: Any, params: tuple = ()) -> None:
        self.log.append(query)
        self.row = (1,) if params and params[0] in self.existing else None

    def fetchone(self) -> Any:
        return self.row


class _Conn:
    def __init__(self, existing: set[str], log: list[str]) -> None:
        self.existing, self.log, self.autocommit, self.closed = existing, log, False, False

    def cursor(self) -> _Cursor:
        assert self.autocommit, "CREATE DATABASE cannot run in a transaction"
        return _Cursor(self.existing, self.log)

    def close(self) -> None:
        self.closed = True


def test_create_auth_db_creates_the_database_once():
    sys.path.insert(0, str(ASSETS))
    try:
        import create_auth_db  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(ASSETS))
    log: list[str] = []
    conns: list[_Conn] = []

    def connect(uri: str, existing: set[str]) -> _Conn:
        assert uri == "postgresql://u:p@db:5432/mlflow"
        conns.append(_Conn(existing, log))
        return conns[-1]

    assert create_auth_db.ensure_database(
        lambda u: connect(u, set()), "postgresql://u:p@db:5432/mlflow", "mlflow_auth"
    )
    assert not create_auth_db.ensure_database(
        lambda u: connect(u, {"mlflow_auth"}), "postgresql://u:p@db:5432/mlflow", "mlflow_auth"
    )
    assert all(c.closed for c in conns)
    assert log.count("SELECT 1 FROM pg_database WHERE datname = %s") == 2
    assert [q for q in log if q.startswith("CREATE")] == ['CREATE DATABASE "mlflow_auth"']
    with pytest.raises(ValueError, match="database name"):
        create_auth_db.ensure_database(lambda u: connect(u, set()), "x", 'a"; DROP')


def test_clients_reach_the_server_by_its_service_names(rds: Graph) -> None:
    """MLflow >= 3.5 rejects Host headers it does not list; in-cluster clients use the DNS name."""
    (c,) = _server(rds)["containers"]
    env = {e["name"]: e["value"] for e in c["env"]}
    hosts = env["MLFLOW_SERVER_ALLOWED_HOSTS"].split(",")
    assert "mlflow.mlflow.svc.cluster.local:5000" in hosts  # the tracking URI's host
    assert "mlflow:5000" in hosts and "10.*" in hosts  # short name; probes by pod IP
