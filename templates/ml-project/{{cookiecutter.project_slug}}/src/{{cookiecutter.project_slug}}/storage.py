"""Upload and download model versions to the platform's model bucket (S3, or MinIO locally).

Objects live under ``<prefix>models/<name>/<version>/``. ``MODEL_BUCKET`` and ``MODEL_PREFIX`` come
from the platform stack's outputs (the prefix is the one this project's IAM role may use);
``AWS_ENDPOINT_URL`` points boto3 at MinIO or a local S3 emulator. ``metadata.json`` is uploaded
last, so a reader that sees it knows the rest of the version is complete.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import boto3

from .registry import METADATA, list_versions, read_metadata, resolve_version, sha256_file
from .settings import MODEL_NAME, Settings


def client() -> Any:
    return boto3.client("s3")


def _version_prefix(prefix: str, name: str, version: int) -> str:
    return f"{prefix}models/{name}/{version}/"


def remote_versions(s3: Any, bucket: str, prefix: str, name: str) -> list[int]:
    """Versions whose metadata.json has been uploaded (i.e. complete ones)."""
    base = f"{prefix}models/{name}/"
    versions: set[int] = set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=base):
        for obj in page.get("Contents", []):
            parts = obj["Key"][len(base) :].split("/")
            if len(parts) == 2 and parts[0].isdigit() and parts[1] == METADATA:
                versions.add(int(parts[0]))
    return sorted(versions)


def upload_version(
    s3: Any, root: Path, bucket: str, prefix: str, name: str, version: int | str = "latest"
) -> list[str]:
    number = resolve_version(root, name, version)
    local = Path(root) / name / str(number)
    files = sorted(p for p in local.iterdir() if p.is_file() and p.name != METADATA)
    keys = []
    for path in [*files, local / METADATA]:
        key = _version_prefix(prefix, name, number) + path.name
        s3.upload_file(str(path), bucket, key)
        keys.append(key)
    return keys


def download_version(
    s3: Any, root: Path, bucket: str, prefix: str, name: str, version: int | str = "latest"
) -> Path:
    available = remote_versions(s3, bucket, prefix, name)
    if not available:
        raise FileNotFoundError(f"no versions of {name!r} in s3://{bucket}/{prefix}models/{name}/")
    number = available[-1] if str(version) == "latest" else int(version)
    if number not in available:
        raise FileNotFoundError(f"s3://{bucket}: {name!r} has no version {number} ({available})")
    dest = Path(root) / name / str(number)
    if (dest / METADATA).is_file():
        return dest
    staging = Path(root) / name / f".download-{number}"
    staging.mkdir(parents=True, exist_ok=True)
    src = _version_prefix(prefix, name, number)
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=src):
        for obj in page.get("Contents", []):
            rel = obj["Key"][len(src) :]
            if rel and "/" not in rel:
                s3.download_file(bucket, obj["Key"], str(staging / rel))
    metadata = read_metadata(staging)
    if sha256_file(staging / metadata["artifact"]) != metadata["sha256"]:
        raise ValueError(f"downloaded artifact for version {number} fails its sha256 check")
    staging.rename(dest)
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Sync model versions with the model bucket.")
    parser.add_argument("direction", choices=["up", "down"])
    parser.add_argument("--version", default="latest")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    if not settings.model_bucket:
        print("MODEL_BUCKET is not set (see README: Deploy)", file=sys.stderr)
        return 2
    s3 = client()
    common = (settings.model_dir, settings.model_bucket, settings.model_prefix, MODEL_NAME)
    if args.direction == "up":
        keys = upload_version(s3, *common, args.version)
        print(json.dumps({"uploaded": keys}, indent=2))
    else:
        path = download_version(s3, *common, args.version)
        local = list_versions(settings.model_dir, MODEL_NAME)
        print(json.dumps({"downloaded": str(path), "local_versions": local}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
