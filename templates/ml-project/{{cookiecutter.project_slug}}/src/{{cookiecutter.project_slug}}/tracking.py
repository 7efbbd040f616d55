"""MLflow experiment tracking and model registration, used only when MLFLOW_TRACKING_URI is set.

``mlflow`` is imported lazily and is an optional extra (``uv sync --extra mlflow``), so the
default install and the serving image stay small.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

from . import model as model_lib
from .settings import MODEL_NAME


def enabled() -> bool:
    return bool(os.environ.get("MLFLOW_TRACKING_URI"))


def _mlflow() -> Any:
    try:
        return importlib.import_module("mlflow")
    except ImportError as exc:
        raise RuntimeError(
            "MLFLOW_TRACKING_URI is set but mlflow is not installed: run `uv sync --extra mlflow`"
        ) from exc


def log_training(
    model: Any,
    *,
    params: dict[str, Any],
    metrics: dict[str, float],
    version_dir: Path,
    version: int,
) -> str | None:
    """Log a training run; register the model unless MLFLOW_REGISTER=0. Returns the run id."""
    if not enabled():
        return None
    mlflow = _mlflow()
    mlflow.set_experiment(os.environ.get("MLFLOW_EXPERIMENT_NAME", MODEL_NAME))
    register = os.environ.get("MLFLOW_REGISTER", "1") != "0"
    with mlflow.start_run() as run:
        mlflow.set_tags({"framework": model_lib.FRAMEWORK, "model_version": str(version)})
        mlflow.log_params(params)
        mlflow.log_metrics(metrics)
        mlflow.log_artifacts(str(version_dir), artifact_path="version")
        model_lib.log_to_mlflow(mlflow, model, MODEL_NAME if register else None)
        return str(run.info.run_id)
