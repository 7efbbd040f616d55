"""Runtime settings, read from the environment.

On the platform, the deployment sets these from the platform stack's outputs: the serving endpoint
gets ``MODEL_BUCKET``, ``MODEL_PREFIX`` and ``MODEL_DIR``; the training job gets ``CHECKPOINT_URI``
(``s3://<bucket>/projects/<project>/checkpoints/<job>``), from which the bucket and this project's
prefix are taken when ``MODEL_BUCKET`` is not set, ``MODEL_DIR`` under its writable ``/tmp`` (the
root filesystem is read-only) and ``RUN_ID`` (the Job's name, unique per run). Locally the
defaults work without AWS; a local run gets a fresh ``RUN_ID``.
"""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
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
    run_id: str

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
            run_id=os.environ.get("RUN_ID") or new_run_id(),
        )


def new_run_id() -> str:
    """A run id for runs outside the cluster: sortable by time, unique across machines."""
    return f"local-{datetime.now(UTC):%Y%m%dt%H%M%S}-{secrets.token_hex(3)}"
