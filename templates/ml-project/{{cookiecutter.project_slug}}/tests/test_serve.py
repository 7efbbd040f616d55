"""The serving app, exercised over real HTTP against uvicorn on 127.0.0.1."""

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from {{ cookiecutter.project_slug }}.registry import load_version
from {{ cookiecutter.project_slug }}.serve import create_app
from {{ cookiecutter.project_slug }}.settings import MODEL_NAME
from {{ cookiecutter.project_slug }}.train import TrainResult

STARTUP_TIMEOUT_S = 15.0
GOOD = {"tenure_months": 3, "monthly_spend": 120.0, "support_tickets": 6, "usage_hours": 2.5}


def run_live(app: Any) -> tuple[str, Callable[[], None]]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))  # the OS picks a free port
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start within the time limit")
        time.sleep(0.02)

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=STARTUP_TIMEOUT_S)
        sock.close()

    return f"http://127.0.0.1:{port}", stop


@pytest.fixture
def live(trained: TrainResult) -> Iterator[httpx.Client]:
    root = trained.version.path.parent.parent
    base, stop = run_live(create_app(lambda: load_version(root, MODEL_NAME)))
    with httpx.Client(base_url=base, timeout=10) as client:
        yield client
    stop()


def test_healthz_reports_loaded_version(live: httpx.Client, trained: TrainResult) -> None:
    r = live.get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "model": MODEL_NAME, "version": trained.version.version}


def test_predict_returns_a_prediction_per_instance(live: httpx.Client) -> None:
    low_risk = {"tenure_months": 70, "monthly_spend": 20.0, "support_tickets": 0, "usage_hours": 90}
    r = live.post("/predict", json={"instances": [GOOD, low_risk]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == MODEL_NAME
    assert len(body["predictions"]) == len(body["probabilities"]) == 2
    assert all(0.0 <= p <= 1.0 for p in body["probabilities"])
    # The synthetic data's churn signal: new, high-spend, many-ticket customers churn more.
    assert body["probabilities"][0] > body["probabilities"][1]


@pytest.mark.parametrize(
    ("payload", "field", "problem"),
    [
        ({"instances": [{**GOOD, "tenure_months": -1}]}, "instances.0.tenure_months", "greater"),
        (
            {"instances": [{k: v for k, v in GOOD.items() if k != "usage_hours"}]},
            "instances.0.usage_hours",
            "required",
        ),
        ({"instances": [{**GOOD, "colour": "red"}]}, "instances.0.colour", "not permitted"),
        (
            {"instances": [{**GOOD, "monthly_spend": "lots"}]},
            "instances.0.monthly_spend",
            "valid number",
        ),
        ({"instances": []}, "instances", "at least 1"),
        ({"rows": [GOOD]}, "rows", "not permitted"),
    ],
)
def test_bad_input_gets_422_naming_the_field(
    live: httpx.Client, payload: dict[str, Any], field: str, problem: str
) -> None:
    r = live.post("/predict", json=payload)
    assert r.status_code == 422
    problems = {p["field"]: p["problem"] for p in r.json()["problems"]}
    assert field in problems, problems
    assert problem in problems[field]


def test_malformed_json_is_a_4xx(live: httpx.Client) -> None:
    r = live.post("/predict", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert r.json()["error"] == "invalid request"


def test_metrics_count_requests_by_route_and_status(live: httpx.Client) -> None:
    live.post("/predict", json={"instances": [GOOD]})
    live.post("/predict", json={"instances": []})
    live.get("/no-such-page")
    text = live.get("/metrics").text
    assert 'http_requests_total{handler="/predict",method="POST",status="200"} 1.0' in text
    assert 'http_requests_total{handler="/predict",method="POST",status="422"} 1.0' in text
    assert 'http_requests_total{handler="unmatched",method="GET",status="404"} 1.0' in text
    assert 'http_request_duration_seconds_count{handler="/predict",method="POST"} 2.0' in text
    bucket = 'http_request_duration_seconds_bucket{handler="/predict",le="0.005",method="POST"}'
    assert bucket in text


def test_unloadable_model_reports_503_with_reason(tmp_path: Path) -> None:
    base, stop = run_live(create_app(lambda: load_version(tmp_path, MODEL_NAME)))
    try:
        with httpx.Client(base_url=base, timeout=10) as client:
            r = client.get("/healthz")
            assert r.status_code == 503
            assert "no saved versions" in r.json()["reason"]
            assert client.post("/predict", json={"instances": [GOOD]}).status_code == 503
    finally:
        stop()
