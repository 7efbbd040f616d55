"""Runtime settings, read from the environment.

On the platform, the deployment sets these from the platform stack's outputs: the serving endpoint
gets ``MODEL_BUCKET``, ``MODEL_PREFIX`` and ``MODEL_DIR``; the training job gets ``CHECKPOINT_URI``
(``s3://<bucket>/projects/<project>/checkpoints/<job>``), from which the bucket and this project's
prefix are taken when ``MODEL_BUCKET`` is not set. Locally the defaults work without AWS.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

PROJECT = "{{ cookiecutter.project_slug.replace('_', '-') }}"
MODEL_NAME = "{{ cookiecutter.project_slug }}"
_CHECKPOINT_URI = re.compile(r"^s3://(?P<bucket>[^/]+)/(?P<prefix>projects/[^/]+/)")


@dataclass(frozen=True)
class Settings:
    model_dir: Path
    model_bucket: str | None
    model_prefix: str
    model_version: str
    mlflow_tracking_uri: str | None

    @classmethod
    def from_env(cls) -> Settings:
        bucket = os.environ.get("MODEL_BUCKET") or None
        prefix = os.environ.get("MODEL_PREFIX", f"projects/{PROJECT}/")
        checkpoint = _CHECKPOINT_URI.match(os.environ.get("CHECKPOINT_URI", ""))
        if bucket is None and checkpoint:
            bucket, prefix = checkpoint["bucket"], checkpoint["prefix"]
        return cls(
            model_dir=Path(os.environ.get("MODEL_DIR", "models")),
            model_bucket=bucket,
            model_prefix=prefix if prefix.endswith("/") or not prefix else prefix + "/",
            model_version=os.environ.get("MODEL_VERSION", "latest"),
            mlflow_tracking_uri=os.environ.get("MLFLOW_TRACKING_URI") or None,
        )
