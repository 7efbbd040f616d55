"""Online predictions: FastAPI app with /predict, /healthz, /livez and Prometheus /metrics.

Run locally with ``make serve``. At startup the app loads ``MODEL_VERSION`` (default: latest) from
``MODEL_DIR``; when ``MODEL_BUCKET`` is set it first downloads that version from the platform's
model bucket. On the platform the endpoint pins ``MODEL_VERSION`` to the ``champion`` alias, so every
replica serves the same version. ``/healthz`` is readiness (503 until a model is loaded: no
traffic); ``/livez`` is liveness (200 while the process answers), so a pod whose model failed to
load says why in ``/healthz`` instead of being restarted in a loop. Metric names follow the platform's SLO rules: ``http_requests_total`` and
``http_request_duration_seconds``, labelled by method, handler (the route template, never the raw
path, to bound cardinality) and status code.

What keeps it fast (benchmarks/bench_serving.py in the platform repo measures it against KServe;
rerun it after changing this file):
- metrics come from a pure ASGI middleware (``HttpMetrics``), not ``@app.middleware("http")``,
  whose per-request task and stream plumbing cost about as much as the prediction itself;
- ``/predict`` is ``async`` and reads the body itself: pydantic parses and validates the JSON in
  one pass; only a request that fails takes the slower path that words errors as FastAPI does;
- the model runs on the event loop when a batch is predicted within ``INLINE_BUDGET_S`` (timed at
  load) and in a worker thread otherwise, so a slow model never holds up ``/healthz``;
- the model is called through ``model.predictor``: for the scikit-learn pipeline that skips
  sklearn's second round of input checks (the request is validated already), used only when it
  agrees with ``predict_proba`` at load;
- the response is serialised once, by pydantic-core, without re-validating it;
- the Dockerfile runs uvicorn on uvloop and httptools, and the objects loaded at startup are
  frozen out of the garbage collector's full passes.
Keep new per-request work out of the middleware and off the happy path of ``/predict``.
"""

from __future__ import annotations

import email.message
import gc
import json
import logging
import operator
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

import numpy as np
import pydantic_core
from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import model as model_lib
from .data import FEATURES
from .drift import ServingMonitor
from .registry import ModelVersion, load_version
from .settings import MODEL_NAME, Settings

log = logging.getLogger(__name__)
MAX_BATCH = 1000
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# A prediction expected to take longer than this runs in a worker thread, so the event loop
# (and /healthz) never waits on it for long; faster ones skip the thread hand-off.
INLINE_BUDGET_S = 0.002


class Features(BaseModel):
    """One customer. Bounds reject values the model never saw in a plausible form."""

    model_config = ConfigDict(extra="forbid")

    tenure_months: Annotated[int, Field(ge=0, le=600, description="Months as a customer")]
    monthly_spend: Annotated[float, Field(ge=0, le=100_000, description="Spend per month")]
    support_tickets: Annotated[int, Field(ge=0, le=1000, description="Tickets opened")]
    usage_hours: Annotated[float, Field(ge=0, le=744, description="Hours of use per month")]


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    instances: Annotated[list[Features], Field(min_length=1, max_length=MAX_BATCH)]


class PredictResponse(BaseModel):
    model: str
    model_version: int
    predictions: list[int]
    probabilities: list[float]


assert tuple(Features.model_fields) == FEATURES, "serving schema out of step with data.FEATURES"
_feature_row = operator.attrgetter(*FEATURES)


class HttpMetrics:
    """Pure ASGI middleware: request count and latency by method, route template and status."""

    def __init__(self, app: ASGIApp, requests: Counter, latency: Histogram) -> None:
        self.app, self.requests, self.latency = app, requests, latency

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # what the client gets if the app raises before it responds

        async def send_and_record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record_status)
        finally:
            # The router stores the matched route in the scope; unmatched paths share one label.
            handler = getattr(scope.get("route"), "path", "unmatched")
            method = scope["method"]
            self.latency.labels(method, handler).observe(time.perf_counter() - start)
            self.requests.labels(method, handler, str(status)).inc()


def _is_json(content_type: str | None) -> bool:
    """FastAPI's rule for when a body is JSON: application/json or application/*+json."""
    if content_type == "application/json":
        return True
    if not content_type:
        return False
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


def parse_request(body: bytes, content_type: str | None) -> PredictRequest:
    """Validate a /predict body exactly as FastAPI's ``body: PredictRequest`` parameter would.

    The fast path parses and validates in one pass in pydantic-core. Anything it rejects is
    parsed again the way FastAPI does (stdlib JSON, then validation of the Python object), so
    errors, and the rare input only that path accepts, stay as they were.
    """
    if body and _is_json(content_type):
        try:
            return PredictRequest.model_validate_json(body)
        except ValidationError:
            pass
    value: Any = None
    if body:
        if not _is_json(content_type):
            value = body  # FastAPI validates a non-JSON body as bytes: "valid dictionary" error
        else:
            try:
                value = json.loads(body)
            except json.JSONDecodeError as exc:
                raise RequestValidationError(
                    [{"type": "json_invalid", "loc": ("body", exc.pos), "msg": "JSON decode error"}]
                ) from exc
            except ValueError as exc:  # not UTF-8
                raise HTTPException(400, "There was an error parsing the body") from exc
    if value is None:
        raise RequestValidationError(
            [{"type": "missing", "loc": ("body",), "msg": "Field required"}]
        )
    try:  # from_attributes, as FastAPI validates bodies: same wording of type errors
        return PredictRequest.model_validate(value, from_attributes=True)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**err, "loc": ("body", *err["loc"])} for err in exc.errors()]
        ) from exc


def inline_rows(one_row_s: float, max_batch_s: float) -> int:
    """Largest batch whose prediction fits INLINE_BUDGET_S, from timings at 1 and MAX_BATCH rows."""
    if max_batch_s <= INLINE_BUDGET_S:
        return MAX_BATCH
    if one_row_s > INLINE_BUDGET_S:
        return 0
    per_row = (max_batch_s - one_row_s) / (MAX_BATCH - 1)
    return 1 + int((INLINE_BUDGET_S - one_row_s) / per_row)


def _time_prediction(predict: Callable[[np.ndarray], np.ndarray], rows: int) -> float:
    X = np.zeros((rows, len(FEATURES)))
    predict(X)  # warm-up: first calls pay for lazy imports and caches
    best = float("inf")  # the fastest of five: a busy node at startup must not skew the choice
    for _ in range(5):
        start = time.perf_counter()
        predict(X)
        best = min(best, time.perf_counter() - start)
    return best


def _probe_rows() -> np.ndarray:
    """Rows to check the server's predictor against the model's own ``predict_proba``."""
    rng = np.random.default_rng(0)
    return np.vstack([np.zeros(len(FEATURES)), rng.uniform(0, 100, (63, len(FEATURES)))])


def _default_loader() -> tuple[Any, ModelVersion]:
    settings = Settings.from_env()
    if settings.model_bucket:
        from .storage import client, download_version

        download_version(
            client(),
            settings.model_dir,
            settings.model_bucket,
            settings.model_prefix,
            MODEL_NAME,
            settings.model_version,
        )
    return load_version(settings.model_dir, MODEL_NAME, settings.model_version)


def create_app(loader: Callable[[], tuple[Any, ModelVersion]] = _default_loader) -> FastAPI:
    state: dict[str, Any] = {
        "model": None,
        "predict": None,
        "version": None,
        "error": None,
        "inline_rows": 0,
    }
    registry = CollectorRegistry()
    requests = Counter(
        "http_requests_total",
        "HTTP requests by method, route template and status code.",
        ["method", "handler", "status"],
        registry=registry,
    )
    latency = Histogram(
        "http_request_duration_seconds",
        "HTTP request latency by method and route template.",
        ["method", "handler"],
        buckets=LATENCY_BUCKETS,
        registry=registry,
    )
    # Quality seam (#20): drift histograms, sampled inference log (off the request path) and
    # the drift job's scores as gauges; see drift.py.
    monitor = ServingMonitor.from_env(registry)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            model, version = loader()
            predict = model_lib.predictor(model, _probe_rows())
            state["inline_rows"] = inline_rows(
                _time_prediction(predict, 1), _time_prediction(predict, MAX_BATCH)
            )
            state["model"], state["predict"], state["version"] = model, predict, version
            log.info(
                "loaded %s version %s; batches up to %d rows predict on the event loop",
                MODEL_NAME,
                version.version,
                state["inline_rows"],
            )
        except Exception as exc:  # keep serving /healthz (503) and /metrics; say why
            state["error"] = f"{type(exc).__name__}: {exc}"
            log.exception("model failed to load")
        # What startup loaded lives as long as the process: keep it out of full GC passes.
        gc.freeze()
        yield

    app = FastAPI(title="{{ cookiecutter.project_name }}", lifespan=lifespan)
    app.add_middleware(HttpMetrics, requests=requests, latency=latency)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {
                "field": ".".join(str(p) for p in err["loc"] if p != "body") or "body",
                "problem": err["msg"],
            }
            for err in exc.errors()
        ]
        return JSONResponse(
            status_code=422,
            content={
                "error": "invalid request",
                "problems": problems,
                "expected": {"instances": [dict.fromkeys(FEATURES, "number")]},
            },
        )

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        if state["model"] is None:
            return JSONResponse(
                status_code=503, content={"status": "unavailable", "reason": state["error"]}
            )
        return JSONResponse(
            content={"status": "ok", "model": MODEL_NAME, "version": state["version"].version}
        )

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.post(
        "/predict",
        response_model=PredictResponse,
        # The body is read and validated in the handler; document it as FastAPI would.
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/PredictRequest"}}
                },
            }
        },
        responses={
            422: {"description": "Invalid request: each problem names its field"},
            503: {"description": "Model not loaded"},
        },
    )
    async def predict(request: Request) -> Response:
        body = parse_request(await request.body(), request.headers.get("content-type"))
        if state["model"] is None:
            return JSONResponse(status_code=503, content={"error": "model not loaded"})
        rows = [_feature_row(row) for row in body.instances]
        X = np.array(rows, dtype=float).reshape(len(rows), len(FEATURES))
        if len(X) <= state["inline_rows"]:
            proba = state["predict"](X)
        else:
            proba = await run_in_threadpool(state["predict"], X)
        monitor.observe(state["version"], X, proba)  # quality seam (#20)
        probabilities = proba.tolist()
        content = {
            "model": MODEL_NAME,
            "model_version": state["version"].version,
            "predictions": [int(p >= 0.5) for p in probabilities],
            "probabilities": [round(p, 6) for p in probabilities],
        }
        return Response(pydantic_core.to_json(content), media_type="application/json")

    # Registered after /predict, so the router tries /predict's route no later than before.
    @app.get("/livez")
    async def livez() -> JSONResponse:
        return JSONResponse(content={"status": "alive"})

    openapi = app.openapi

    def openapi_with_request_schema() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = openapi()
            request_schema = PredictRequest.model_json_schema(
                ref_template="#/components/schemas/{model}"
            )
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components.update(request_schema.pop("$defs", {}))
            components["PredictRequest"] = request_schema
        return app.openapi_schema

    app.openapi = openapi_with_request_schema
    return app


app = create_app()
