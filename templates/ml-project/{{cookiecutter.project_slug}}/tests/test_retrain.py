"""Continuous training: the decision on real drift scores, and the in-cluster trigger."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import numpy as np
import pytest

from {{ cookiecutter.project_slug }} import drift, retrain
from {{ cookiecutter.project_slug }} import model as model_lib
from {{ cookiecutter.project_slug }}.data import generate, parse_csv
from {{ cookiecutter.project_slug }}.registry import load_version
from {{ cookiecutter.project_slug }}.settings import MODEL_NAME
from {{ cookiecutter.project_slug }}.train import TrainResult

NS = "{{ cookiecutter.project_slug.replace('_', '-') }}"


def _drift_result(trained: TrainResult, X: np.ndarray) -> dict[str, Any]:
    model, version = load_version(trained.version.path.parent.parent, MODEL_NAME)
    reference = drift.load_reference(version.path)
    return drift.compute(reference, X, model_lib.predict_proba(model, X), min_accuracy=0.6)


def test_retrains_on_a_shifted_sample_and_not_on_an_unshifted_one(trained: TrainResult) -> None:
    fresh = parse_csv(generate(1000, seed=91)).X  # the training process, new rows
    young = datetime.now(UTC) - timedelta(days=2)
    assert not retrain.decide(_drift_result(trained, fresh), young).retrain
    shifted = fresh.copy()
    shifted[:, 0] = np.clip(shifted[:, 0] + 36, 0, 600)  # customers stay three years longer
    decision = retrain.decide(_drift_result(trained, shifted), young)
    assert decision.retrain
    assert any(r.startswith("drift: tenure_months PSI") for r in decision.reasons)


def test_scores_of_the_replaced_version_do_not_retrain_a_fresh_champion(
    trained: TrainResult,
) -> None:
    fresh = parse_csv(generate(600, seed=94)).X
    fresh[:, 0] = np.clip(fresh[:, 0] + 36, 0, 600)
    result = _drift_result(trained, fresh) | {"model_version": 6}
    young = datetime.now(UTC) - timedelta(days=1)
    assert retrain.decide(result, young, version=6).retrain
    stale = retrain.decide(result, young, version=7)
    assert not stale.retrain
    assert stale.notes == ("the drift result scores version 6, not 7: wait for the job",)


# --- the trigger -----------------------------------------------------------------------------


def _job(name: str, created: datetime, *, done: str | None = "Complete") -> dict[str, Any]:
    conditions = [{"type": done, "status": "True"}] if done else []
    return {
        "metadata": {
            "name": name,
            "creationTimestamp": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
        "status": {"conditions": conditions},
    }


def test_the_trigger_waits_for_runs_in_flight_and_cools_down() -> None:
    now = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    t = now.timestamp()
    assert retrain.may_submit([], now=t) == (True, "no earlier triggered run")
    queued = _job("r-1", now - timedelta(hours=30), done=None)  # suspended by Kueue, or running
    ok, why = retrain.may_submit([queued], now=t)
    assert not ok
    assert "r-1 is still queued or running" in why
    recent = _job("r-2", now - timedelta(hours=3), done="Failed")  # e.g. a gate refused it
    ok, why = retrain.may_submit([_job("r-0", now - timedelta(days=9)), recent], now=t)
    assert not ok
    assert "r-2 started 3.0 h ago" in why
    assert retrain.may_submit([recent], now=t, cooldown_h=2)[0]
    assert retrain.may_submit([_job("r-3", now - timedelta(hours=25))], now=t)[0]


def _template() -> dict[str, Any]:
    """The shape runs.job_manifest renders (infra/tests/test_retraining.py checks the real one)."""
    labels = {
        "app.kubernetes.io/name": f"{NS}-retrain",
        "app.kubernetes.io/component": "training",
        "app.kubernetes.io/managed-by": "pulumi",
        "kueue.x-k8s.io/queue-name": "research",
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": f"{NS}-retrain", "namespace": NS, "labels": dict(labels)},
        "spec": {
            "suspend": True,
            "template": {"metadata": {"labels": dict(labels)}, "spec": {"containers": []}},
        },
    }


def test_each_triggered_run_gets_a_fresh_valid_name_and_the_trigger_label() -> None:
    when = datetime(2026, 12, 3, 12, 0, 5, tzinfo=UTC)
    a, b = (retrain.triggered_job(_template(), when) for _ in range(2))
    assert a["metadata"]["name"] != b["metadata"]["name"]
    name = a["metadata"]["name"]
    assert name.startswith(f"{NS}-retrain-20261203-120005-")
    assert len(name) <= 63
    for labels in (a["metadata"]["labels"], a["spec"]["template"]["metadata"]["labels"]):
        assert labels[retrain.TRIGGER_LABEL] == retrain.TRIGGER
        assert labels["app.kubernetes.io/name"] == name
        assert labels["kueue.x-k8s.io/queue-name"] == "research"  # still the team's queue
    assert a["spec"]["suspend"] is True
    long = _template()
    long["metadata"]["name"] = "x" * 60 + "-retrain"
    assert len(retrain.triggered_job(long)["metadata"]["name"]) == 63
    with pytest.raises(ValueError, match="single-node Jobs"):
        retrain.triggered_job({**_template(), "kind": "PyTorchJob"})


class _ApiServer:
    """Answers the two batch/v1 calls the trigger makes, and records them."""

    def __init__(self, jobs: list[dict[str, Any]]) -> None:
        self.jobs, self.calls = jobs, []
        self.refuse = 0  # an HTTP status to answer creates with, instead of 201
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:
                pass

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                url = urlparse(self.path)
                owner.calls.append(("GET", url.path, parse_qs(url.query), self.headers))
                self._answer(200, {"kind": "JobList", "items": owner.jobs})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                owner.calls.append(("POST", self.path, body, self.headers))
                if owner.refuse:
                    self._answer(owner.refuse, {"kind": "Status", "reason": "Forbidden"})
                    return
                self._answer(201, body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def drifted(
    trained: TrainResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, Path]:
    monkeypatch.setenv("MODEL_DIR", str(trained.version.path.parent.parent))
    result = tmp_path / "latest.json"
    monkeypatch.setenv("DRIFT_RESULT", str(result))
    fresh = parse_csv(generate(600, seed=92)).X
    fresh[:, 0] = np.clip(fresh[:, 0] + 36, 0, 600)
    result.write_text(json.dumps(_drift_result(trained, fresh)))
    template = tmp_path / "job.json"
    template.write_text(json.dumps(_template()))
    return result, template


def test_drift_starts_one_run_through_the_api_with_the_pods_token(
    drifted: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, template = drifted
    api = _ApiServer([])
    try:
        client = retrain.KubeApi(api.url, "t0k", None)
        assert retrain.main(["--submit", str(template)], api=client) == 0
    finally:
        api.close()
    (get, post) = api.calls
    assert get[:3] == (
        "GET",
        f"/apis/batch/v1/namespaces/{NS}/jobs",
        {"labelSelector": [f"{retrain.TRIGGER_LABEL}={retrain.TRIGGER}"]},
    )
    assert post[0:2] == ("POST", f"/apis/batch/v1/namespaces/{NS}/jobs")
    assert post[2]["metadata"]["name"].startswith(f"{NS}-retrain-")
    assert post[3]["Authorization"] == "Bearer t0k"
    report = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert report["submitted"] == post[2]["metadata"]["name"]
    assert any(r.startswith("drift: tenure_months") for r in report["reasons"])


def test_no_run_while_one_is_in_flight_and_none_without_drift(
    drifted: tuple[Path, Path], trained: TrainResult, capsys: pytest.CaptureFixture[str]
) -> None:
    result, template = drifted
    in_flight = _job(f"{NS}-retrain-x", datetime.now(UTC), done=None)
    api = _ApiServer([in_flight])
    try:
        client = retrain.KubeApi(api.url, "t", None)
        assert retrain.main(["--submit", str(template)], api=client) == 0
        assert [c[0] for c in api.calls] == ["GET"]  # listed, created nothing
        assert "still queued or running" in capsys.readouterr().out
        calm = parse_csv(generate(600, seed=93)).X
        result.write_text(json.dumps(_drift_result(trained, calm)))
        api.calls.clear()
        # Not due: exit 0 (a finished check is not a failed Job), and no API call at all.
        assert retrain.main(["--submit", str(template)], api=client) == 0
        assert api.calls == []
        assert "no retraining needed" in capsys.readouterr().out
    finally:
        api.close()


def test_a_refusal_from_the_api_server_fails_the_check_with_its_answer(
    drifted: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    api = _ApiServer([])
    api.refuse = 403
    try:
        client = retrain.KubeApi(api.url, "t", None)
        assert retrain.main(["--submit", str(drifted[1])], api=client) == 1
    finally:
        api.close()
    assert "the API server refused: 403" in capsys.readouterr().err


def test_submit_outside_the_cluster_says_so(
    drifted: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(SystemExit, match="runs in the cluster"):
        retrain.main(["--submit", str(drifted[1])])
