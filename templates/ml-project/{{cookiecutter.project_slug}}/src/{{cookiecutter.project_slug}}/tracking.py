"""MLflow experiment tracking and model registration, used only when MLFLOW_TRACKING_URI is set.

``mlflow`` is imported lazily and is an optional extra (``uv sync --extra mlflow``), so the
default install and the serving image stay small. The extra pins the client to the minor version
of the platform's MLflow server (the client calls APIs, such as logged models, that an older
server answers with 404). On the platform, the training job gets ``MLFLOW_TRACKING_URI`` from the
platform stack and the project's MLflow user as ``MLFLOW_TRACKING_USERNAME`` /
``MLFLOW_TRACKING_PASSWORD`` (the ``mlflow-tracking`` Secret in the project's namespace).

The model bucket stays the record of what is served; MLflow gets the run (parameters, metrics,
the version directory) and a registered model version tagged with the bucket's version number and
the run id, and the ``champion`` alias follows promotions.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

from . import model as model_lib
from .settings import MODEL_NAME

VERSION_TAG = "model_version"  # the model bucket's version number
RUN_TAG = "run_id"  # the platform run (the Job's name)


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
    run_id: str | None = None,
) -> str | None:
    """Log a training run; register the model unless MLFLOW_REGISTER=0. Returns the run id."""
    if not enabled():
        return None
    mlflow = _mlflow()
    mlflow.set_experiment(os.environ.get("MLFLOW_EXPERIMENT_NAME", MODEL_NAME))
    register = os.environ.get("MLFLOW_REGISTER", "1") != "0"
    tags = {"framework": model_lib.FRAMEWORK, VERSION_TAG: str(version)}
    if run_id:
        tags[RUN_TAG] = run_id
    with mlflow.start_run(run_name=run_id) as run:
        mlflow.set_tags(tags)
        mlflow.log_params(params)
        mlflow.log_metrics(metrics)
        mlflow.log_artifacts(str(version_dir), artifact_path="version")
        model_lib.log_to_mlflow(mlflow, model, MODEL_NAME if register else None)
        mlflow_run_id = str(run.info.run_id)
    if register:
        client = mlflow.MlflowClient()
        for mv in client.search_model_versions(f"run_id = '{mlflow_run_id}'"):
            for key, value in tags.items():
                client.set_model_version_tag(MODEL_NAME, mv.version, key, value)
    return mlflow_run_id


def registered_version(model_version: int) -> str | None:
    """The registered MLflow version of the bucket's ``model_version`` (None if never registered)."""
    mlflow = _mlflow()
    found = mlflow.MlflowClient().search_model_versions(
        f"name = '{MODEL_NAME}' and tags.{VERSION_TAG} = '{model_version}'"
    )
    return str(found[0].version) if found else None


def set_alias(alias: str, model_version: int) -> str | None:
    """Point the registry alias at the bucket's ``model_version``; its MLflow version, or None
    when tracking is off or that version was never registered."""
    if not enabled():
        return None
    registered = registered_version(model_version)
    if registered is not None:
        _mlflow().MlflowClient().set_registered_model_alias(MODEL_NAME, alias, registered)
    return registered
