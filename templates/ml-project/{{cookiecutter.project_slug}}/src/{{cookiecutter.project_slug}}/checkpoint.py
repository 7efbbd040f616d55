"""Training checkpoints under ``CHECKPOINT_URI``: an ``s3://bucket/prefix`` or a local directory.

The platform sets ``CHECKPOINT_URI`` for every training job
(``s3://<model bucket>/projects/<project>/checkpoints/<job>``, inside the prefix the project's
role may write). One object, ``checkpoint.pt``, holds the latest state; it is replaced whole (an
S3 PUT, or a local write then rename), so a reader never sees half of one. States hold tensors,
numbers and strings only and are read back with ``weights_only=True``: no pickled code runs.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

NAME = "checkpoint.pt"


class CheckpointStore:
    def __init__(self, uri: str):
        if not uri:
            raise ValueError("CHECKPOINT_URI is empty")
        self.uri = uri.rstrip("/")

    def __str__(self) -> str:
        return f"{self.uri}/{NAME}"

    @classmethod
    def from_env(cls) -> CheckpointStore | None:
        uri = os.environ.get("CHECKPOINT_URI", "")
        return cls(uri) if uri else None

    def _s3(self) -> tuple[Any, str, str]:
        import boto3

        bucket, _, prefix = self.uri.removeprefix("s3://").partition("/")
        key = f"{prefix}/{NAME}" if prefix else NAME
        return boto3.client("s3"), bucket, key

    def load(self) -> dict[str, Any] | None:
        """The latest checkpoint, or None when the run has not written one yet."""
        if self.uri.startswith("s3://"):
            s3, bucket, key = self._s3()
            try:
                body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            except s3.exceptions.NoSuchKey:
                return None
            return torch.load(io.BytesIO(body), map_location="cpu", weights_only=True)
        path = Path(self.uri) / NAME
        if not path.is_file():
            return None
        return torch.load(path, map_location="cpu", weights_only=True)

    def save(self, state: dict[str, Any]) -> None:
        buffer = io.BytesIO()
        torch.save(state, buffer)
        if self.uri.startswith("s3://"):
            s3, bucket, key = self._s3()
            s3.put_object(Bucket=bucket, Key=key, Body=buffer.getvalue())
            return
        directory = Path(self.uri)
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{NAME}.", dir=directory)
        with os.fdopen(fd, "wb") as fh:
            fh.write(buffer.getvalue())
        os.replace(tmp, directory / NAME)
