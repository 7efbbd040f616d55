"""Drift: the training reference, what the server records, and the scheduled drift job.

Reference (``drift_reference.json``, written next to each model version): per-feature bin edges
at the training data's deciles and the share of training rows in each bin; the same for the
predicted probability, on ten fixed bins. Both the server and the job bin against these edges, so
a bin on a dashboard means the same thing as a bin in the job's score.

Server (``ServingMonitor``): counts each row into its bin (``model_feature_bin_total{feature,bin}``,
labels bounded by features x bins), observes each score (``model_prediction_score``), and hands a
sampled share of requests (``INFERENCE_LOG_SAMPLE_RATE``) to a bounded queue that a background
thread writes as gzip JSON lines to ``s3://<bucket>/<prefix>inference-logs/`` (the bucket's default
SSE-KMS key encrypts them; no keys or credentials here). A full queue drops samples and counts them
(``model_inference_log_dropped_total``): logging never slows a prediction. The server also exposes
the drift job's latest results as gauges, re-read from S3 at most every ``DRIFT_RELOAD_S``.

Job (``python -m <package>.drift``): reads the recent inference logs and any labelled rows under
``ground-truth/``, scores each feature and the prediction against the reference with the
population stability index (PSI: the symmetric KL divergence of the binned shares, from
``scipy.special.rel_entr``) plus a chi-square test (``scipy.stats.chisquare``) for significance,
computes live accuracy on the labelled rows (and, while a canary is served,
``CANARY_MODEL_VERSION``'s accuracy on the same rows: the promote workflow rolls the canary back
when it is below the card's floor or well below the champion), and writes
``monitoring/drift/latest.json``. Why
there: Prometheus cannot scrape a finished CronJob pod and there is no Pushgateway, so the
long-running server publishes the job's results as metrics.
"""

from __future__ import annotations

import argparse
import bisect
import gzip
import io
import json
import logging
import os
import queue
import random
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from .data import FEATURES
from .settings import MODEL_NAME

log = logging.getLogger(__name__)
REFERENCE = "drift_reference.json"
SCORE_EDGES = [round(0.1 * i, 1) for i in range(1, 10)]  # inner edges: ten bins on [0, 1]
_SCORE_BUCKETS = [*SCORE_EDGES, 1.0]  # the histogram's finite upper bounds
_SCORE_ARRAY = np.array(_SCORE_BUCKETS)
SMALL_BATCH = 16
PSI_ALERT = 0.2  # the usual reading: < 0.1 stable, 0.1-0.2 moderate, > 0.2 significant shift
EPSILON = 1e-4  # floor for empty bins, so PSI stays finite
LOG_PREFIX = "inference-logs/"
RESULT_KEY = "monitoring/drift/latest.json"
GROUND_TRUTH_PREFIX = "ground-truth/"

# Metric names; tests check the alert rules use exactly these.
FEATURE_BINS = "model_feature_bin_total"
PREDICTION_SCORE = "model_prediction_score"
LOG_DROPPED = "model_inference_log_dropped_total"
FEATURE_PSI = "model_feature_drift_psi"
PREDICTION_PSI = "model_prediction_drift_psi"
LIVE_ACCURACY = "model_live_accuracy"
CANARY_LIVE_ACCURACY = "model_canary_live_accuracy"
ACCURACY_THRESHOLD = "model_accuracy_threshold"
FAIRNESS_DPD = "model_fairness_demographic_parity_difference"
DRIFT_TIMESTAMP = "model_drift_last_run_timestamp_seconds"


# ---- reference -----------------------------------------------------------------------------


def _edges(values: np.ndarray) -> list[float]:
    inner = np.unique(np.quantile(values, np.linspace(0.1, 0.9, 9)))
    return [float(e) for e in inner]


def shares(values: np.ndarray, edges: list[float]) -> np.ndarray:
    counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)
    return counts / max(1, counts.sum())


def write_reference(directory: Path, X_train: np.ndarray, proba: np.ndarray) -> Path:
    features = {}
    for i, name in enumerate(FEATURES):
        edges = _edges(X_train[:, i])
        features[name] = {"edges": edges, "shares": shares(X_train[:, i], edges).tolist()}
    reference = {
        "features": features,
        "prediction": {"edges": SCORE_EDGES, "shares": shares(proba, SCORE_EDGES).tolist()},
        "rows": len(X_train),
    }
    path = Path(directory) / REFERENCE
    path.write_text(json.dumps(reference, indent=2) + "\n", encoding="utf-8")
    return path


def load_reference(directory: Path) -> dict[str, Any]:
    return json.loads((Path(directory) / REFERENCE).read_text(encoding="utf-8"))


# ---- statistics ----------------------------------------------------------------------------


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    from scipy.special import rel_entr

    e = np.clip(np.asarray(expected, float), EPSILON, None)
    a = np.clip(np.asarray(actual, float), EPSILON, None)
    e, a = e / e.sum(), a / a.sum()
    return float(np.sum(rel_entr(a, e) + rel_entr(e, a)))


def chi_square_p(expected_shares: np.ndarray, values: np.ndarray, edges: list[float]) -> float:
    from scipy.stats import chisquare

    counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)
    expected = np.clip(np.asarray(expected_shares, float), EPSILON, None)
    expected = expected / expected.sum() * counts.sum()
    return float(chisquare(counts, expected).pvalue)


@dataclass(frozen=True)
class DriftScore:
    psi: float
    p_value: float

    @property
    def drifted(self) -> bool:
        return self.psi > PSI_ALERT


def score(reference: dict[str, Any], X: np.ndarray, proba: np.ndarray) -> dict[str, Any]:
    """PSI and chi-square p-value per feature and for the prediction, against the reference."""
    out: dict[str, DriftScore] = {}
    for i, name in enumerate(FEATURES):
        ref = reference["features"][name]
        out[name] = DriftScore(
            psi(ref["shares"], shares(X[:, i], ref["edges"])),
            chi_square_p(np.array(ref["shares"]), X[:, i], ref["edges"]),
        )
    pred = reference["prediction"]
    prediction = DriftScore(
        psi(pred["shares"], shares(proba, pred["edges"])),
        chi_square_p(np.array(pred["shares"]), proba, pred["edges"]),
    )
    return {"features": out, "prediction": prediction}


# ---- server side ---------------------------------------------------------------------------


class InferenceLog:
    """Sampled, size-capped log of inputs and outputs, written to S3 off the request path."""

    def __init__(
        self,
        s3: Any,
        bucket: str,
        prefix: str,
        *,
        sample_rate: float,
        max_queue: int = 1000,
        batch_rows: int = 5000,
        flush_s: float = 60.0,
    ) -> None:
        self.s3, self.bucket, self.prefix = s3, bucket, prefix
        self.sample_rate, self.batch_rows, self.flush_s = sample_rate, batch_rows, flush_s
        self.queue: queue.Queue[tuple[float, int, np.ndarray, np.ndarray]] = queue.Queue(max_queue)
        self.dropped = 0
        self._thread: threading.Thread | None = None

    def offer(self, version: int, X: np.ndarray, proba: np.ndarray) -> None:
        if random.random() >= self.sample_rate:  # noqa: S311 - sampling, not security
            return
        try:
            self.queue.put_nowait((time.time(), version, X, proba))
        except queue.Full:
            self.dropped += 1
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="inference-log", daemon=True)
            self._thread.start()

    def _records(self, items: Iterable[tuple[float, int, np.ndarray, np.ndarray]]) -> bytes:
        buf = io.BytesIO()
        with gzip.GzipFile(fileobj=buf, mode="wb") as gz:
            for ts, version, X, proba in items:
                for row, p in zip(X.tolist(), proba.tolist(), strict=True):
                    record = {
                        "ts": ts,
                        "model_version": version,
                        "features": dict(zip(FEATURES, row, strict=True)),
                        "probability": p,
                    }
                    gz.write(json.dumps(record).encode() + b"\n")
        return buf.getvalue()

    def flush(self, block_s: float = 0.0) -> int:
        """Write what is queued as one object; return the rows written."""
        items, rows = [], 0
        deadline = time.monotonic() + block_s
        while rows < self.batch_rows:
            try:
                item = self.queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            items.append(item)
            rows += len(item[2])
        if items:
            now = datetime.now(UTC)
            key = f"{self.prefix}{LOG_PREFIX}{now:%Y/%m/%d/%H%M%S}-{uuid.uuid4().hex[:8]}.jsonl.gz"
            # No SSE arguments: the bucket's default SSE-KMS key applies (an explicit aws:kms
            # without a key id would fall back to the AWS-managed key instead).
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=self._records(items))
        return rows

    def _run(self) -> None:
        while True:
            try:
                self.flush(block_s=self.flush_s)
            except Exception:  # a failed upload loses one batch, never the server
                log.exception("inference log upload failed")


class ServingMonitor:
    """What the server records for drift; ``observe`` is the one call on the predict path.

    Counts live in plain lists updated on the event loop (no lock, no per-row metric calls: a
    one-row request costs a few bisections) and become metrics only when /metrics is scraped.
    """

    def __init__(self, registry: Any, *, log_sink: InferenceLog | None = None) -> None:
        self.log_sink = log_sink
        self._version: int | None = None
        self._edges: list[list[float]] = []
        self._edge_arrays: list[np.ndarray] = []
        self._counts: list[list[int]] = []
        self._score_counts = [0] * (len(SCORE_EDGES) + 2)  # ... le=1.0, +Inf
        self._score_sum = 0.0
        self.results = _DriftResults()
        registry.register(_Collector(self))

    def _bind(self, version: Any) -> None:
        self._version = version.version
        try:
            reference = load_reference(version.path)
        except FileNotFoundError:  # a model saved before references existed: scores only
            self._edges, self._edge_arrays, self._counts = [], [], []
            return
        self._edges = [reference["features"][name]["edges"] for name in FEATURES]
        self._edge_arrays = [np.array(edges) for edges in self._edges]
        # New bins mean new counts: Prometheus reads the reset as a counter restart.
        self._counts = [[0] * (len(edges) + 1) for edges in self._edges]

    def observe(self, version: Any, X: np.ndarray, proba: np.ndarray) -> None:
        if version.version != self._version:
            self._bind(version)
        if len(X) <= SMALL_BATCH:  # bisect on lists beats numpy's per-call overhead here
            for row, p in zip(X.tolist(), proba.tolist(), strict=True):
                for edges, counts, value in zip(self._edges, self._counts, row, strict=False):
                    counts[bisect.bisect_right(edges, value)] += 1
                self._score_counts[bisect.bisect_left(_SCORE_BUCKETS, p)] += 1
                self._score_sum += p
        else:
            for i, (edges, counts) in enumerate(zip(self._edge_arrays, self._counts, strict=False)):
                idx = np.searchsorted(edges, X[:, i], side="right")
                for b, n in enumerate(np.bincount(idx, minlength=len(counts)).tolist()):
                    counts[b] += n
            idx = np.searchsorted(_SCORE_ARRAY, proba, side="left")
            for b, n in enumerate(np.bincount(idx, minlength=len(self._score_counts)).tolist()):
                self._score_counts[b] += n
            self._score_sum += float(proba.sum())
        if self.log_sink is not None:
            self.log_sink.offer(version.version, X, proba)

    @classmethod
    def from_env(cls, registry: Any) -> ServingMonitor:
        from .settings import Settings

        settings = Settings.from_env()
        raw = os.environ.get("INFERENCE_LOG_SAMPLE_RATE", "0.01")
        try:
            rate = float(raw)
        except ValueError:
            rate = -1.0
        if not 0 <= rate <= 1:
            raise ValueError(f"INFERENCE_LOG_SAMPLE_RATE must be between 0 and 1, got {raw!r}")
        sink = None
        if settings.model_bucket and rate > 0:
            from .storage import client

            sink = InferenceLog(
                client(), settings.model_bucket, settings.model_prefix, sample_rate=rate
            )
        return cls(registry, log_sink=sink)


class _DriftResults:
    """The drift job's latest results, re-read in the background at most every DRIFT_RELOAD_S."""

    def __init__(self) -> None:
        self.reload_s = float(os.environ.get("DRIFT_RELOAD_S", "300"))
        self.result: dict[str, Any] | None = None
        self._loaded_at = float("-inf")
        self._loading = threading.Lock()

    def _load(self) -> None:
        try:
            self.result = read_result()
        except Exception:
            log.warning("could not read the drift job's results", exc_info=True)
        finally:
            self._loading.release()

    def latest(self) -> dict[str, Any] | None:
        if time.monotonic() - self._loaded_at > self.reload_s and self._loading.acquire(False):
            self._loaded_at = time.monotonic()
            threading.Thread(target=self._load, name="drift-results", daemon=True).start()
        return self.result


class _Collector:
    """Builds the drift metrics at scrape time from the monitor's counts and the job's results."""

    def __init__(self, monitor: ServingMonitor) -> None:
        self.monitor = monitor

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        m = self.monitor
        bins = CounterMetricFamily(
            FEATURE_BINS.removesuffix("_total"),
            "Rows served, by feature and training-reference bin (bin 0: below the first decile).",
            labels=["feature", "bin"],
        )
        for name, counts in zip(FEATURES, list(m._counts), strict=False):
            for b, n in enumerate(list(counts)):
                bins.add_metric([name, str(b)], n)
        yield bins
        cumulative, total = [], 0
        for le, n in zip([*SCORE_EDGES, 1.0, float("inf")], list(m._score_counts), strict=True):
            total += n
            cumulative.append(("+Inf" if le == float("inf") else str(le), total))
        yield HistogramMetricFamily(
            PREDICTION_SCORE,
            "Predicted probability of the positive class.",
            buckets=cumulative,
            sum_value=m._score_sum,
        )
        sink = m.log_sink
        yield CounterMetricFamily(
            LOG_DROPPED.removesuffix("_total"),
            "Inference-log samples dropped because the upload queue was full.",
            value=sink.dropped if sink else 0,
        )
        r = m.results.latest()
        if r is None:
            return
        feature = GaugeMetricFamily(
            FEATURE_PSI, "PSI of a feature vs training.", labels=["model", "feature"]
        )
        for name, s in r["features"].items():
            feature.add_metric([MODEL_NAME, name], s["psi"])
        yield feature
        scalars = (
            (PREDICTION_PSI, "PSI of predictions vs training.", r["prediction"]["psi"]),
            (DRIFT_TIMESTAMP, "When the drift job last ran.", r["timestamp"]),
            (ACCURACY_THRESHOLD, "The model card's accuracy floor.", r["min_accuracy"]),
            (LIVE_ACCURACY, "Accuracy on labelled production rows.", r.get("live_accuracy")),
            (
                CANARY_LIVE_ACCURACY,
                "The canary's accuracy on the same labelled rows.",
                (r.get("canary") or {}).get("live_accuracy"),
            ),
            (
                FAIRNESS_DPD,
                "Demographic parity difference on labelled production rows.",
                r.get("demographic_parity_difference"),
            ),
        )
        for name, doc, value in scalars:
            if value is not None:  # no labels yet: no live accuracy, rather than a made-up one
                gauge = GaugeMetricFamily(name, doc, labels=["model"])
                gauge.add_metric([MODEL_NAME], value)
                yield gauge


# ---- the drift job -------------------------------------------------------------------------


def compute(
    reference: dict[str, Any],
    X: np.ndarray,
    proba: np.ndarray,
    *,
    min_accuracy: float,
    model: Any = None,
    labelled: Any = None,
    sensitive: str = "",
    canary: tuple[int, Any] | None = None,
) -> dict[str, Any]:
    """The job's result: drift per feature and for predictions; live accuracy when labels exist
    (the canary's too: ``canary`` is its version and model)."""
    if len(X) == 0:
        raise SystemExit("no inference-log rows in the window: nothing to compare")
    scores = score(reference, X, proba)
    result: dict[str, Any] = {
        "timestamp": time.time(),
        "rows": len(X),
        "psi_threshold": PSI_ALERT,
        "min_accuracy": min_accuracy,
        "features": {
            k: {"psi": s.psi, "p_value": s.p_value} for k, s in scores["features"].items()
        },
        "prediction": {"psi": scores["prediction"].psi, "p_value": scores["prediction"].p_value},
        "drifted_features": sorted(k for k, s in scores["features"].items() if s.drifted),
        "prediction_drifted": scores["prediction"].drifted,
        "live_accuracy": None,
        "demographic_parity_difference": None,
    }
    if labelled is not None and model is not None and len(labelled):
        from . import model as model_lib
        from .data import TARGET
        from .fairness import assess

        Xl = labelled[list(FEATURES)].to_numpy(dtype=float)
        y = labelled[TARGET].to_numpy(dtype=int)
        pred = (model_lib.predict_proba(model, Xl) >= 0.5).astype(int)
        result["live_accuracy"] = float(np.mean(pred == y))
        result["labelled_rows"] = len(y)
        if canary is not None:
            canary_pred = (model_lib.predict_proba(canary[1], Xl) >= 0.5).astype(int)
            result["canary"] = {
                "model_version": canary[0],
                "live_accuracy": float(np.mean(canary_pred == y)),
            }
        if sensitive and sensitive in labelled.columns:
            report = assess(y, pred, labelled[sensitive].to_numpy(), sensitive)
            result["demographic_parity_difference"] = report.demographic_parity_difference
    return result


def read_log_records(blobs: Iterable[bytes]) -> tuple[np.ndarray, np.ndarray]:
    rows, proba = [], []
    for blob in blobs:
        for line in gzip.decompress(blob).splitlines():
            record = json.loads(line)
            rows.append([record["features"][f] for f in FEATURES])
            proba.append(record["probability"])
    return np.array(rows, dtype=float).reshape(-1, len(FEATURES)), np.array(proba, dtype=float)


def _recent_objects(s3: Any, bucket: str, prefix: str, since: datetime) -> Iterator[bytes]:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            if obj["LastModified"] >= since:
                yield s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()


def _result_location() -> tuple[Any, str, str] | Path:
    from .settings import Settings

    settings = Settings.from_env()
    if settings.model_bucket:
        from .storage import client

        return client(), settings.model_bucket, settings.model_prefix + RESULT_KEY
    return Path(os.environ.get("DRIFT_RESULT", settings.model_dir / "drift-latest.json"))


def read_result() -> dict[str, Any] | None:
    where = _result_location()
    if isinstance(where, Path):
        return json.loads(where.read_text()) if where.is_file() else None
    s3, bucket, key = where
    try:
        return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    except s3.exceptions.NoSuchKey:
        return None


def write_result(result: dict[str, Any]) -> str:
    where = _result_location()
    body = json.dumps(result, indent=2, sort_keys=True)
    if isinstance(where, Path):
        where.parent.mkdir(parents=True, exist_ok=True)
        where.write_text(body + "\n")
        return str(where)
    s3, bucket, key = where
    s3.put_object(Bucket=bucket, Key=key, Body=body.encode(), ContentType="application/json")
    return f"s3://{bucket}/{key}"


def main(argv: list[str] | None = None) -> int:
    import pandas as pd

    from .gates import Thresholds
    from .model_card import CARD, parse
    from .registry import load_version
    from .settings import MODEL_NAME, Settings
    from .validation import validate_frame

    parser = argparse.ArgumentParser(description="Score recent inputs for drift against training.")
    parser.add_argument("--window-hours", type=float, default=24.0)
    parser.add_argument("--logs", nargs="*", type=Path, help="local .jsonl.gz logs instead of S3")
    parser.add_argument("--ground-truth", nargs="*", type=Path, help="local labelled CSVs")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    since = datetime.now(UTC) - timedelta(hours=args.window_hours)
    s3 = None
    if settings.model_bucket:
        from .storage import client

        s3 = client()

    def fetch(number: str) -> tuple[Any, Any]:
        """A version from the bucket (when there is one), loaded."""
        if s3 is not None:
            from .storage import download_version

            assert settings.model_bucket is not None
            download_version(
                s3,
                settings.model_dir,
                settings.model_bucket,
                settings.model_prefix,
                MODEL_NAME,
                number,
            )
        return load_version(settings.model_dir, MODEL_NAME, number)

    model, version = fetch(settings.model_version)
    card, _ = parse((version.path / CARD).read_text(encoding="utf-8"))
    if args.logs is not None:
        blobs: Iterable[bytes] = (p.read_bytes() for p in args.logs)
    elif s3 is not None:
        blobs = _recent_objects(
            s3, settings.model_bucket, settings.model_prefix + LOG_PREFIX, since
        )
    else:
        raise SystemExit("no inference logs: set MODEL_BUCKET or pass --logs")
    X, proba = read_log_records(blobs)
    sensitive = card["thresholds"].get("sensitive_feature") or Thresholds.from_env().sensitive
    labelled = None
    if args.ground_truth is not None:
        texts = [p.read_bytes() for p in args.ground_truth]
    elif s3 is not None:
        texts = list(
            _recent_objects(
                s3, settings.model_bucket, settings.model_prefix + GROUND_TRUTH_PREFIX, since
            )
        )
    else:
        texts = []
    if texts:
        frames = [
            pd.read_csv(io.BytesIO(t), dtype=str, keep_default_na=False, na_values=[""])
            for t in texts
        ]
        labelled = validate_frame(
            pd.concat(frames, ignore_index=True), Path("ground-truth"), sensitive or None
        )
    canary = None
    canary_version = os.environ.get("CANARY_MODEL_VERSION") or None
    if canary_version is not None and labelled is not None:
        canary_model, canary_mv = fetch(canary_version)
        canary = (canary_mv.version, canary_model)
    result = compute(
        load_reference(version.path),
        X,
        proba,
        min_accuracy=float(card["thresholds"]["min_accuracy"]),
        model=model,
        labelled=labelled,
        sensitive=sensitive,
        canary=canary,
    )
    result["model_version"] = version.version
    result["written_to"] = write_result(result)
    print(json.dumps(result, indent=2, sort_keys=True), file=sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
