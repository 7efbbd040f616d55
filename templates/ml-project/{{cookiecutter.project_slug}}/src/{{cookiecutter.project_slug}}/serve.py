"""Online predictions: FastAPI app with /predict, /healthz and Prometheus /metrics.

Run locally with ``make serve``. At startup the app loads ``MODEL_VERSION`` (default: latest) from
``MODEL_DIR``; when ``MODEL_BUCKET`` is set it first downloads that version from the platform's
model bucket. Metric names follow the platform's SLO rules: ``http_requests_total`` and
``http_request_duration_seconds``, labelled by method, handler (the route template, never the raw
path, to bound cardinality) and status code.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

import numpy as np
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from pydantic import BaseModel, ConfigDict, Field

from . import model as model_lib
from .data import FEATURES
from .registry import ModelVersion, load_version
from .settings import MODEL_NAME, Settings

log = logging.getLogger(__name__)
MAX_BATCH = 1000
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


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
    state: dict[str, Any] = {"model": None, "version": None, "error": None}
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

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            state["model"], state["version"] = loader()
            log.info("loaded %s version %s", MODEL_NAME, state["version"].version)
        except Exception as exc:  # keep serving /healthz (503) and /metrics; say why
            state["error"] = f"{type(exc).__name__}: {exc}"
            log.exception("model failed to load")
        yield

    app = FastAPI(title="{{ cookiecutter.project_name }}", lifespan=lifespan)

    @app.middleware("http")
    async def observe(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        start = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            route = request.scope.get("route")
            handler = getattr(route, "path", "unmatched")
            latency.labels(request.method, handler).observe(time.perf_counter() - start)
            requests.labels(request.method, handler, str(status)).inc()

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
    def healthz() -> JSONResponse:
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

    @app.post("/predict", response_model=PredictResponse)
    def predict(body: PredictRequest) -> PredictResponse | JSONResponse:
        if state["model"] is None:
            return JSONResponse(status_code=503, content={"error": "model not loaded"})
        X = np.array([[getattr(i, f) for f in FEATURES] for i in body.instances], dtype=float)
        proba = model_lib.predict_proba(state["model"], X)
        return PredictResponse(
            model=MODEL_NAME,
            model_version=state["version"].version,
            predictions=[int(p >= 0.5) for p in proba],
            probabilities=[round(float(p), 6) for p in proba],
        )

    return app


app = create_app()
