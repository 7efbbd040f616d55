"""submit.py: one uniquely named run per call, created through the Kubernetes API.

The API server is a stand-in on 127.0.0.1 that records what the real Kubernetes client sends:
the path (namespace, resource) and the body. The manifests themselves come from the platform's
TrainingJob builders; the platform's tests check them against the Kubernetes schema.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mlplatform.contract", reason="the platform library is not installed")

import runs
import submit

SPEC = {
    "project": "churn",
    "package": "churn",
    "namespace": "churn",
    "queue": "research",
    "service_account": "churn-trainer",
    "image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/ml/training@sha256:" + "a" * 64,
    "bucket": "models-dev",
    "region": "us-east-1",
    "data": "data/train.csv",
    "min_accuracy": "0.6",
    "mlflow_tracking_uri": "http://mlflow.mlflow.svc.cluster.local:5000",
}


@pytest.fixture
def api_server() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            received.append({"path": self.path, "body": body})
            out = json.dumps(body).encode()
            self.send_response(201)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()


def _client(url: str) -> Any:
    from kubernetes import client

    config = client.Configuration(host=url)
    return client.ApiClient(config)


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "run.json"
    path.write_text(json.dumps(SPEC))
    return path


def test_each_submit_creates_a_new_uniquely_named_job(
    api_server: tuple[str, list[dict[str, Any]]],
    spec_file: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, received = api_server
    argv = ["--spec", str(spec_file), "--data", "s3://models-dev/projects/churn/data/may.csv"]
    names = []
    for _ in range(2):
        assert submit.main([*argv, "--param", "C=0.5"], api_client=_client(url)) == 0
        names.append(json.loads(capsys.readouterr().out)["run"])
    assert len(set(names)) == 2
    assert [r["path"] for r in received] == ["/apis/batch/v1/namespaces/churn/jobs"] * 2
    job = received[0]["body"]
    assert job["metadata"]["name"] == names[0]
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "research"
    assert job["spec"]["suspend"] is True
    assert job["spec"]["ttlSecondsAfterFinished"] == runs.RunSpec(**SPEC).ttl_seconds
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["args"][:2] == ["--data", "s3://models-dev/projects/churn/data/may.csv"]
    assert container["args"][-2:] == ["--param", "C=0.5"]


def test_multi_node_runs_go_to_the_training_operator(
    api_server: tuple[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    url, received = api_server
    path = tmp_path / "run.json"
    path.write_text(json.dumps({**SPEC, "nodes": 2, "gpus_per_node": 1, "pool": "a100"}))
    assert submit.main(["--spec", str(path), "--name", "churn-big"], api_client=_client(url)) == 0
    (request,) = received
    assert request["path"] == "/apis/kubeflow.org/v1/namespaces/churn/pytorchjobs"
    assert request["body"]["kind"] == "PyTorchJob"


def test_the_spec_names_the_program(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "run.json"
    torchrun = ["torchrun", "--standalone", "--nproc-per-node=1", "-m", "churn.train"]
    path.write_text(json.dumps({**SPEC, "command": torchrun}))
    assert submit.main(["--spec", str(path), "--dry-run", "--name", "churn-2"]) == 0
    manifest = json.loads(capsys.readouterr().out)
    assert manifest["spec"]["template"]["spec"]["containers"][0]["command"] == torchrun


def test_dry_run_prints_and_creates_nothing(
    spec_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert submit.main(["--spec", str(spec_file), "--dry-run", "--name", "churn-1"]) == 0
    manifest = json.loads(capsys.readouterr().out)
    assert manifest["metadata"]["name"] == "churn-1"
    args = manifest["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[:2] == ["--data", "s3://models-dev/projects/churn/data/train.csv"]


def test_a_bad_run_is_refused_before_the_api_is_called(spec_file: Path) -> None:
    with pytest.raises(ValueError, match="name"):
        submit.main(["--spec", str(spec_file), "--name", "Not_A_Name", "--dry-run"])
