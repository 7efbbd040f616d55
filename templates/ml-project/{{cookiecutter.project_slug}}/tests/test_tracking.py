"""Tracking against a real MLflow server of the platform's version, on 127.0.0.1 (SQLite backend).

The server is the one this project's ``mlflow`` extra pins (the platform's version); it runs from
this environment, so the client and the server are exactly the versions the platform pairs.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from {{ cookiecutter.project_slug }} import model as model_lib
from {{ cookiecutter.project_slug }} import tracking
from {{ cookiecutter.project_slug }}.settings import MODEL_NAME
from {{ cookiecutter.project_slug }}.train import train

mlflow = pytest.importorskip("mlflow", reason="the mlflow extra is not installed (uv sync)")
START_TIMEOUT_S = 240


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("mlflow")
    port = _free_port()
    log = (root / "server.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "mlflow", "server",
            "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination", str(root / "artifacts"),
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        # No background job runner (a dozen huey workers): the tests need the API only.
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        start_new_session=True,  # its own process group: the server's workers stop with it
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(
                        "mlflow server did not start:\n" + (root / "server.log").read_text()
                    )
                time.sleep(1)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


@pytest.fixture
def tracking_uri(
    mlflow_server: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> str:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", request.node.name)
    mlflow.set_tracking_uri(mlflow_server)
    return mlflow_server


def test_client_and_server_are_the_same_minor_version(tracking_uri: str) -> None:
    with urllib.request.urlopen(f"{tracking_uri}/version", timeout=5) as resp:
        server = resp.read().decode().strip()
    assert server.split(".")[:2] == mlflow.__version__.split(".")[:2]


def test_training_logs_the_run_and_registers_the_version(
    tracking_uri: str, tiny_csv: Path, tmp_path: Path
) -> None:
    result = train(data_path=tiny_csv, model_dir=tmp_path, run_id="churn-train-abc")
    assert result.mlflow_run_id is not None
    client = mlflow.MlflowClient()
    run = client.get_run(result.mlflow_run_id)
    assert run.data.metrics["accuracy"] == pytest.approx(result.metrics["accuracy"])
    assert run.data.tags[tracking.VERSION_TAG] == str(result.version.version)
    assert run.data.tags[tracking.RUN_TAG] == "churn-train-abc"
    assert run.info.run_name == "churn-train-abc"
    assert set(run.data.params) == set(model_lib.DEFAULT_PARAMS)
    listed = {f.path for f in client.list_artifacts(result.mlflow_run_id, "version")}
    assert listed == {
        f"version/{model_lib.ARTIFACT}",
        "version/metadata.json",
        "version/README.md",  # the model card (model_card.py)
        "version/drift_reference.json",
    }
    (mv,) = client.search_model_versions(f"run_id = '{result.mlflow_run_id}'")
    assert mv.name == MODEL_NAME
    assert mv.tags[tracking.VERSION_TAG] == str(result.version.version)
    assert tracking.registered_version(result.version.version) == mv.version


def test_alias_follows_the_bucket_version(
    tracking_uri: str, tiny_csv: Path, tmp_path: Path
) -> None:
    first = train(data_path=tiny_csv, model_dir=tmp_path, run_id="r1")
    second = train(data_path=tiny_csv, model_dir=tmp_path, run_id="r2", seed=1)
    client = mlflow.MlflowClient()
    registered = tracking.set_alias("champion", second.version.version)
    assert client.get_model_version_by_alias(MODEL_NAME, "champion").version == registered
    tracking.set_alias("champion", first.version.version)
    by_alias = client.get_model_version_by_alias(MODEL_NAME, "champion")
    assert by_alias.tags[tracking.VERSION_TAG] == str(first.version.version)
    # The registered model loads back through the alias, as a consumer of the registry would.
    loaded = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}@champion")
    assert loaded.metadata.run_id == first.mlflow_run_id


def test_registration_can_be_turned_off(
    tracking_uri: str, tiny_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_REGISTER", "0")
    result = train(data_path=tiny_csv, model_dir=tmp_path)
    assert result.mlflow_run_id is not None
    assert mlflow.MlflowClient().search_model_versions(f"run_id = '{result.mlflow_run_id}'") == []


def test_mlflow_is_not_imported_without_tracking_uri(tiny_csv: Path, tmp_path: Path) -> None:
    code = (
        "import sys; from pathlib import Path; "
        "from {{ cookiecutter.project_slug }}.train import train; "
        f"r = train(data_path={str(tiny_csv)!r}, model_dir=Path({str(tmp_path)!r})); "
        "assert r.mlflow_run_id is None; assert 'mlflow' not in sys.modules, 'imported'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_missing_mlflow_extra_is_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import raises ImportError
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:1")
    with pytest.raises(RuntimeError, match="--extra mlflow"):
        tracking._mlflow()


def test_the_run_and_its_registered_version_carry_the_lineage(
    tracking_uri: str, tiny_csv: Path, tmp_path: Path
) -> None:
    """Model version <-> git commit <-> data hash <-> image digest, as the model card states it."""
    result = train(data_path=tiny_csv, model_dir=tmp_path, run_id="lineage-run")
    client = mlflow.MlflowClient()
    run = client.get_run(result.mlflow_run_id)
    lineage = {k: v for k, v in run.data.tags.items() if k.startswith("lineage.")}
    assert lineage, run.data.tags
    assert any(v == result.version.metadata["data_sha256"] for v in lineage.values()), lineage
    cards = {f.path for f in client.list_artifacts(result.mlflow_run_id, "model_card")}
    assert cards == {"model_card/README.md"}
    (mv,) = client.search_model_versions(f"run_id = '{result.mlflow_run_id}'")
    assert {k: v for k, v in mv.tags.items() if k.startswith("lineage.")} == lineage
