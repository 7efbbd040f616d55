"""Runtime settings, read from the environment.

On the platform, the deployment sets these from the platform stack's outputs (the model bucket and
this project's prefix in it, the MLflow tracking URI); locally the defaults work without AWS.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROJECT = "{{ cookiecutter.project_slug.replace('_', '-') }}"
MODEL_NAME = "{{ cookiecutter.project_slug }}"


@dataclass(frozen=True)
class Settings:
    model_dir: Path
    model_bucket: str | None
    model_prefix: str
    model_version: str
    mlflow_tracking_uri: str | None

    @classmethod
    def from_env(cls) -> Settings:
        prefix = os.environ.get("MODEL_PREFIX", f"projects/{PROJECT}/")
        return cls(
            model_dir=Path(os.environ.get("MODEL_DIR", "models")),
            model_bucket=os.environ.get("MODEL_BUCKET") or None,
            model_prefix=prefix if prefix.endswith("/") or not prefix else prefix + "/",
            model_version=os.environ.get("MODEL_VERSION", "latest"),
            mlflow_tracking_uri=os.environ.get("MLFLOW_TRACKING_URI") or None,
        )
