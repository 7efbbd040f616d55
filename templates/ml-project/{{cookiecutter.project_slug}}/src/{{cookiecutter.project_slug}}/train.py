"""Train, evaluate, save a new model version; log to MLflow and upload to S3 when configured.

Usage: ``python -m {{ cookiecutter.project_slug }}.train --data data.csv --min-accuracy 0.7``
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import model as model_lib
from . import model_card, tracking
from .data import load_dataset, train_test_split
from .evaluate import evaluate
from .gates import check_before_saving
from .registry import ModelVersion, save_version
from .settings import MODEL_NAME, Settings
from .validation import validate_training_data


@dataclass(frozen=True)
class TrainResult:
    version: ModelVersion
    metrics: dict[str, float]
    device: str
    mlflow_run_id: str | None = None


def train(
    *,
    data_path: str | Path | None = None,
    model_dir: Path,
    params: dict[str, Any] | None = None,
    seed: int = 0,
    test_fraction: float = 0.25,
) -> TrainResult:
    validate_training_data(data_path)  # quality seam (#20): bad data stops here, with a report
    data = load_dataset(data_path)
    X_train, X_test, y_train, y_test = train_test_split(data, test_fraction, seed)
    merged = {**model_lib.DEFAULT_PARAMS, **(params or {})}
    model = model_lib.fit(model_lib.build(merged), X_train, y_train, seed=seed)
    metrics = evaluate(model, X_test, y_test)
    # Quality seam (#20): a model that fails the gate is never saved, uploaded or registered.
    gate = check_before_saving(
        model, data, data_path, X_test, y_test, metrics, seed=seed, test_fraction=test_fraction
    )
    version = save_version(
        model, model_dir, MODEL_NAME, metrics=metrics, params=merged, data_sha256=data.sha256
    )
    model_card.document_version(version, gate, data, model, X_train)  # quality seam (#20)
    run_id = tracking.log_training(
        model, params=merged, metrics=metrics, version_dir=version.path, version=version.version
    )
    model_card.record_in_mlflow(run_id, version)  # quality seam (#20): lineage tags
    return TrainResult(version, metrics, model_lib.device(), run_id)


def _param(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(raw)
    except json.JSONDecodeError:
        return key, raw


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="training CSV (default: the bundled sample)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--param", type=_param, action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument(
        "--min-accuracy", type=float, default=0.0, help="fail (exit 1) below this test accuracy"
    )
    parser.add_argument(
        "--upload",
        choices=["auto", "yes", "no"],
        default="auto",
        help="upload the new version to MODEL_BUCKET (auto: when MODEL_BUCKET is set)",
    )
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    result = train(
        data_path=args.data, model_dir=settings.model_dir, params=dict(args.param), seed=args.seed
    )
    report: dict[str, Any] = {
        "model": MODEL_NAME,
        "version": result.version.version,
        "path": str(result.version.path),
        "device": result.device,
        "metrics": result.metrics,
        "mlflow_run_id": result.mlflow_run_id,
    }
    # The quality gate runs before the upload: a model below the bar never reaches the bucket.
    if result.metrics["accuracy"] < args.min_accuracy:
        print(json.dumps(report, indent=2))
        print(
            f"accuracy {result.metrics['accuracy']:.3f} is below --min-accuracy "
            f"{args.min_accuracy}; not uploading",
            file=sys.stderr,
        )
        return 1
    if args.upload == "yes" and not settings.model_bucket:
        print("--upload yes needs MODEL_BUCKET", file=sys.stderr)
        return 2
    if settings.model_bucket and args.upload != "no":
        from .storage import client, upload_version

        report["uploaded"] = upload_version(
            client(),
            settings.model_dir,
            settings.model_bucket,
            settings.model_prefix,
            MODEL_NAME,
            result.version.version,
        )
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
