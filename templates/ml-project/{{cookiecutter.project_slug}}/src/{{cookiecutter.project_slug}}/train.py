"""Train, evaluate, save a new model version; log to MLflow and upload to S3 when configured.

Usage: ``python -m {{ cookiecutter.project_slug }}.train --data data.csv --min-accuracy 0.6``
(``--data`` also takes ``s3://<bucket>/<key>``).

With a model bucket, the version number is claimed in the bucket before anything is saved (see
:mod:`.storage`), so concurrent runs on different pods get different versions and never overwrite
each other. ``--min-accuracy`` sets the quality gate's accuracy floor for this run (default: the
gate's ``MIN_ACCURACY``; see :mod:`.gates`, the one owner of the floor), checked with the rest of
the gate before anything is saved or uploaded. Whether a version is better than the one in
production is decided by ``promote`` on held-out data, against the current champion.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import model as model_lib
from . import model_card, tracking
from .data import load_dataset, train_test_split
from .evaluate import evaluate
from .gates import Thresholds, check_before_saving
from .registry import ModelVersion, save_version
from .settings import MODEL_NAME, Settings
from .validation import validate_training_data


@dataclass(frozen=True)
class TrainResult:
    version: ModelVersion
    metrics: dict[str, float]
    device: str
    mlflow_run_id: str | None = None


@dataclass(frozen=True)
class Fitted:
    model: Any
    params: dict[str, Any]
    metrics: dict[str, float]
    data_sha256: str
    split: dict[str, Any]
    # (gate result, dataset, training features): what the model card and drift reference need
    quality: tuple[Any, Any, Any] | None = None


def fit_and_evaluate(
    data_path: str | Path | None,
    params: dict[str, Any] | None = None,
    seed: int = 0,
    test_fraction: float = 0.25,
    thresholds: Thresholds | None = None,
) -> Fitted:
    validate_training_data(data_path)  # quality seam (#20): bad data stops here, with a report
    data = load_dataset(data_path)
    X_train, X_test, y_train, y_test = train_test_split(data, test_fraction, seed)
    merged = {**model_lib.DEFAULT_PARAMS, **(params or {})}
    model = model_lib.fit(model_lib.build(merged), X_train, y_train, seed=seed)
    model_lib.stop_unless_primary()  # torchrun ranks > 0 exit here; rank 0 evaluates and saves
    split = {"seed": seed, "test_fraction": test_fraction}
    metrics = evaluate(model, X_test, y_test)
    # Quality seam (#20): a model that fails the gate is never saved, uploaded or registered.
    gate = check_before_saving(
        model,
        data,
        data_path,
        X_test,
        y_test,
        metrics,
        seed=seed,
        test_fraction=test_fraction,
        thresholds=thresholds,
    )
    return Fitted(model, merged, metrics, data.sha256, split, (gate, data, X_train))


def save(
    fitted: Fitted,
    model_dir: Path,
    *,
    run_id: str | None = None,
    version: int | None = None,
    track: bool = True,
) -> TrainResult:
    saved = save_version(
        fitted.model,
        model_dir,
        MODEL_NAME,
        metrics=fitted.metrics,
        params=fitted.params,
        data_sha256=fitted.data_sha256,
        run_id=run_id,
        version=version,
        split=fitted.split,
    )
    if fitted.quality is not None:  # quality seam (#20): card and drift reference beside the model
        gate, data, X_train = fitted.quality
        model_card.document_version(saved, gate, data, fitted.model, X_train)
    result = TrainResult(saved, fitted.metrics, model_lib.device())
    return log(fitted, result, run_id) if track else result


def log(fitted: Fitted, result: TrainResult, run_id: str | None) -> TrainResult:
    """Log the run to MLflow (when MLFLOW_TRACKING_URI is set)."""
    mlflow_run_id = tracking.log_training(
        fitted.model,
        params=fitted.params,
        metrics=fitted.metrics,
        version_dir=result.version.path,
        version=result.version.version,
        run_id=run_id,
    )
    model_card.record_in_mlflow(mlflow_run_id, result.version)  # quality seam (#20): lineage
    return TrainResult(result.version, result.metrics, result.device, mlflow_run_id)


def train(
    *,
    data_path: str | Path | None = None,
    model_dir: Path,
    params: dict[str, Any] | None = None,
    seed: int = 0,
    test_fraction: float = 0.25,
    run_id: str | None = None,
) -> TrainResult:
    return save(fit_and_evaluate(data_path, params, seed, test_fraction), model_dir, run_id=run_id)


def _param(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(raw)
    except json.JSONDecodeError:
        return key, raw


def writable_problem(model_dir: Path) -> str | None:
    """Why ``model_dir`` cannot hold new versions, before an hour of training is spent."""
    existing = next((p for p in (model_dir, *model_dir.parents) if p.exists()), None)
    if existing is not None and os.access(existing, os.W_OK):
        try:
            model_dir.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=model_dir):
                return None
        except OSError as exc:
            reason = exc.strerror
    else:
        reason = "not writable"
    return (
        f"MODEL_DIR={model_dir} is {reason}: on the platform the root filesystem is read-only "
        "and only /tmp is writable; set MODEL_DIR under /tmp"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="training CSV, local or s3:// (default: the bundled sample)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--param", type=_param, action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument(
        "--min-accuracy",
        type=float,
        help="the quality gate's held-out accuracy floor for this run (default: MIN_ACCURACY, 0.6)",
    )
    parser.add_argument(
        "--upload",
        choices=["auto", "yes", "no"],
        default="auto",
        help="upload the new version to MODEL_BUCKET (auto: when MODEL_BUCKET is set)",
    )
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    if args.upload == "yes" and not settings.model_bucket:
        print("--upload yes needs MODEL_BUCKET", file=sys.stderr)
        return 2
    problem = writable_problem(settings.model_dir)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    thresholds = Thresholds.from_env().with_min_accuracy(args.min_accuracy)
    # The gate (accuracy floor and fairness) runs inside, before anything is saved or uploaded.
    fitted = fit_and_evaluate(args.data, dict(args.param), args.seed, thresholds=thresholds)
    report: dict[str, Any] = {
        "model": MODEL_NAME,
        "run_id": settings.run_id,
        "device": model_lib.device(),
        "metrics": fitted.metrics,
    }
    upload = bool(settings.model_bucket) and args.upload != "no"
    version = None
    if upload:
        from .storage import claim_version, client, upload_version

        s3 = client()
        assert settings.model_bucket is not None
        version = claim_version(
            s3, settings.model_bucket, settings.model_prefix, MODEL_NAME, settings.run_id
        )
    result = save(fitted, settings.model_dir, run_id=settings.run_id, version=version, track=False)
    report.update(version=result.version.version, path=str(result.version.path))
    # The bucket first: a tracking server that is down must not cost the model.
    if upload:
        assert settings.model_bucket is not None
        report["uploaded"] = upload_version(
            s3,
            settings.model_dir,
            settings.model_bucket,
            settings.model_prefix,
            MODEL_NAME,
            result.version.version,
        )
    try:
        report["mlflow_run_id"] = log(fitted, result, settings.run_id).mlflow_run_id
    except Exception as exc:
        print(json.dumps(report, indent=2))
        saved = result.version.version
        print(f"version {saved} is saved, but logging to MLflow failed: {exc}", file=sys.stderr)
        return 3
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
