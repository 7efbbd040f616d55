"""The serving app, exercised over real HTTP against uvicorn on 127.0.0.1."""

import gc
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import uvicorn

from {{ cookiecutter.project_slug }} import model as model_lib
from {{ cookiecutter.project_slug }} import serve
from {{ cookiecutter.project_slug }}.registry import load_version
from {{ cookiecutter.project_slug }}.serve import MAX_BATCH, create_app, inline_rows
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
        ({"instances": [{**GOOD, "tenure_months": 3.5}]}, "instances.0.tenure_months", "integer"),
        ({"instances": [{**GOOD, "usage_hours": None}]}, "instances.0.usage_hours", "valid number"),
        ({"instances": [GOOD] * (MAX_BATCH + 1)}, "instances", "at most 1000 items"),
        ({"instances": 5}, "instances", "valid list"),
        ({"instances": [5]}, "instances.0", "object to extract fields from"),
        ([GOOD], "body", "object to extract fields from"),
        (None, "body", "Field required"),
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
    # The problem names the character where parsing stopped, as FastAPI's own body parsing does.
    assert r.json()["problems"] == [{"field": "1", "problem": "JSON decode error"}]


@pytest.mark.parametrize(
    ("content", "content_type", "status", "problems"),
    [
        (b"", "application/json", 422, [{"field": "body", "problem": "Field required"}]),
        (json.dumps({"instances": [GOOD]}).encode(), None, 422, None),
        (json.dumps({"instances": [GOOD]}).encode(), "text/plain", 422, None),
        (json.dumps({"instances": [GOOD]}).encode(), "application/json; charset=utf-8", 200, None),
        (json.dumps({"instances": [GOOD]}).encode(), "application/vnd.churn+json", 200, None),
        (
            b'{"instances": []} trailing',
            "application/json",
            422,
            [{"field": "18", "problem": "JSON decode error"}],
        ),
        (b'{"instances": "\xff"}', "application/json", 400, None),
    ],
)
def test_body_encodings_are_treated_as_fastapi_treats_them(
    live: httpx.Client,
    content: bytes,
    content_type: str | None,
    status: int,
    problems: list[dict[str, str]] | None,
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    r = live.post("/predict", content=content, headers=headers)
    assert r.status_code == status, r.text
    if status == 422:
        not_json = "Input should be a valid dictionary or object to extract fields from"
        assert r.json()["problems"] == (problems or [{"field": "body", "problem": not_json}])
    if status == 400:
        assert r.json() == {"detail": "There was an error parsing the body"}


def test_lenient_numbers_are_accepted_as_before(live: httpx.Client) -> None:
    """Numeric strings and whole floats validate as they always have (pydantic's lax mode)."""
    lax = {"tenure_months": "3", "monthly_spend": "120", "support_tickets": 6.0, "usage_hours": 2.5}
    strict = live.post("/predict", json={"instances": [GOOD]}).json()
    assert live.post("/predict", json={"instances": [lax]}).json() == strict


def test_probabilities_are_the_models_rounded(live: httpx.Client, trained: TrainResult) -> None:
    rows = [GOOD, {**GOOD, "tenure_months": 70, "support_tickets": 0}] * 16
    body = live.post("/predict", json={"instances": rows}).json()
    model, _ = load_version(trained.version.path.parent.parent, MODEL_NAME)
    X = np.array([[row[f] for f in serve.FEATURES] for row in rows], dtype=float)
    expected = model_lib.predict_proba(model, X)
    assert body["probabilities"] == [round(float(p), 6) for p in expected]
    assert body["predictions"] == [int(p >= 0.5) for p in expected]


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
    # The SLO rules read these exact bucket bounds.
    for le in ("0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "5.0"):
        assert bucket.replace('"0.005"', f'"{le}"') in text
    assert bucket.replace('"0.005"', '"+Inf"') + " 2.0" in text


def test_metrics_count_a_crash_as_500(trained: TrainResult) -> None:
    root = trained.version.path.parent.parent
    app = create_app(lambda: load_version(root, MODEL_NAME))

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    base, stop = run_live(app)
    try:
        with httpx.Client(base_url=base, timeout=10) as client:
            assert client.get("/boom").status_code == 500
        with httpx.Client(base_url=base, timeout=10) as client:  # uvicorn closed the last one
            text = client.get("/metrics").text
    finally:
        stop()
    assert 'http_requests_total{handler="/boom",method="GET",status="500"} 1.0' in text
    assert 'http_request_duration_seconds_count{handler="/boom",method="GET"} 1.0' in text


def test_openapi_documents_the_request_body(live: httpx.Client) -> None:
    doc = live.get("/openapi.json").json()
    body = doc["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/PredictRequest"}
    schemas = doc["components"]["schemas"]
    assert schemas["PredictRequest"]["properties"]["instances"]["maxItems"] == MAX_BATCH
    assert schemas["Features"]["properties"]["usage_hours"]["maximum"] == 744
    assert set(schemas["Features"]["required"]) == set(serve.FEATURES)


@pytest.mark.parametrize(
    ("one_row_s", "max_batch_s", "rows"),
    [
        (0.0002, 0.0015, MAX_BATCH),  # the whole batch fits the budget: always inline
        (0.003, 0.5, 0),  # one row already over it: always a worker thread
        (0.0005, 0.0035, 500),  # ~3 us a row: the 1.5 ms left after the first buys ~500 rows
    ],
)
def test_inline_rows_follow_the_budget(one_row_s: float, max_batch_s: float, rows: int) -> None:
    assert serve.INLINE_BUDGET_S == 0.002
    assert inline_rows(one_row_s, max_batch_s) == rows


def _probe_model(
    monkeypatch: pytest.MonkeyPatch, load_delay_s: float
) -> tuple[threading.Event, threading.Event, list[int], Callable[[], None]]:
    """Replace the server's predictor: load_delay_s per call while loading; after arm(), block until released."""
    armed, started, release = threading.Event(), threading.Event(), threading.Event()
    threads: list[int] = []

    def predict(X: np.ndarray) -> np.ndarray:
        threads.append(threading.get_ident())
        if armed.is_set():
            started.set()
            release.wait(timeout=30)
        else:
            time.sleep(load_delay_s)
        return np.zeros(len(X))

    monkeypatch.setattr(serve.model_lib, "predictor", lambda model, probe: predict)
    return started, release, threads, armed.set


def test_the_servers_predictor_is_the_models_predict_proba(trained: TrainResult) -> None:
    model, _ = load_version(trained.version.path.parent.parent, MODEL_NAME)
    rng = np.random.default_rng(7)
    X = np.vstack([rng.uniform(0, 100, (200, len(serve.FEATURES))), np.zeros((1, 4))])
    predict = model_lib.predictor(model, serve._probe_rows())
    np.testing.assert_allclose(predict(X), model_lib.predict_proba(model, X), rtol=0, atol=1e-12)
    assert predict(X[:1]).shape == (1,)
{%- if cookiecutter.framework == 'sklearn' %}
    # The template's own pipeline takes the fast path; one it does not know keeps predict_proba.
    import functools

    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MinMaxScaler

    assert not isinstance(predict, functools.partial)
    other = make_pipeline(MinMaxScaler(), LogisticRegression())
    other.fit(X, (X[:, 0] > 50).astype(int))
    assert isinstance(model_lib.predictor(other, X), functools.partial)
{%- endif %}


def test_a_slow_model_does_not_hold_up_health_checks(
    trained: TrainResult, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 5 ms per call at load: over the inline budget, so predictions go to a worker thread.
    started, release, threads, arm = _probe_model(monkeypatch, load_delay_s=0.005)
    root = trained.version.path.parent.parent
    base, stop = run_live(create_app(lambda: load_version(root, MODEL_NAME)))
    arm()
    result: dict[str, int] = {}
    try:
        with httpx.Client(base_url=base, timeout=20) as client:
            predicting = threading.Thread(
                target=lambda: result.update(
                    status=client.post("/predict", json={"instances": [GOOD]}).status_code
                )
            )
            predicting.start()
            assert started.wait(timeout=20), "the prediction never reached the model"
            with httpx.Client(base_url=base, timeout=5) as probe:
                assert probe.get("/healthz").status_code == 200  # answered mid-prediction
            release.set()
            predicting.join(timeout=20)
    finally:
        release.set()
        stop()
    assert result == {"status": 200}
    assert threads[-1] != threads[0], "the prediction should have left the event loop's thread"


def test_a_fast_model_predicts_on_the_event_loop(
    trained: TrainResult, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, release, threads, _ = _probe_model(monkeypatch, load_delay_s=0)
    release.set()
    root = trained.version.path.parent.parent
    base, stop = run_live(create_app(lambda: load_version(root, MODEL_NAME)))
    try:
        with httpx.Client(base_url=base, timeout=10) as client:
            assert client.post("/predict", json={"instances": [GOOD] * 32}).status_code == 200
    finally:
        stop()
    # Load-time timing runs in the lifespan, on the event loop: the prediction ran there too.
    assert threads[-1] == threads[0]


def test_startup_objects_are_frozen_out_of_full_collections(live: httpx.Client) -> None:
    assert live.get("/healthz").status_code == 200
    assert gc.get_freeze_count() > 0


def test_unloadable_model_reports_503_with_reason(tmp_path: Path) -> None:
    base, stop = run_live(create_app(lambda: load_version(tmp_path, MODEL_NAME)))
    try:
        with httpx.Client(base_url=base, timeout=10) as client:
            r = client.get("/healthz")
            assert r.status_code == 503
            assert "no saved versions" in r.json()["reason"]
            assert client.post("/predict", json={"instances": [GOOD]}).status_code == 503
            # Liveness stays green: restarting the pod would not bring the model.
            assert client.get("/livez").status_code == 200
    finally:
        stop()
