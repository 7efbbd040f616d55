"""Model versions and aliases in the platform's model bucket (S3, or MinIO locally).

Objects live under ``<prefix>models/<name>/<version>/``. ``MODEL_BUCKET`` and ``MODEL_PREFIX`` come
from the platform stack's outputs (the prefix is the one this project's IAM role may use);
``AWS_ENDPOINT_URL`` points boto3 at MinIO or a local S3 emulator.

Nothing is ever overwritten. A run first *claims* its version number by creating
``<version>/claim.json`` with a conditional write (``If-None-Match: *``): of two runs that pick the
same number, S3 lets exactly one create it and the other moves on to the next. Every object of a
version is written the same way, so a version, once written, is immutable; ``metadata.json`` is
written last, so a reader that sees it knows the rest of the version is complete. Aliases
(``<prefix>models/<name>/aliases/<alias>.json``, e.g. ``champion``) move by compare-and-swap
(``If-Match`` on the ETag read), so two promotions never silently undo each other.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import ClientError

from .registry import METADATA, list_versions, read_metadata, resolve_version, sha256_file
from .settings import MODEL_NAME, Settings

CLAIM = "claim.json"
MAX_CLAIM_ATTEMPTS = 50


class VersionExistsError(FileExistsError):
    """An object of a version is already in the bucket: versions are immutable."""


class AliasMovedError(RuntimeError):
    """The alias changed between reading and writing it: someone else promoted meanwhile."""


def client() -> Any:
    return boto3.client("s3")


def _precondition_failed(exc: ClientError) -> bool:
    error = exc.response.get("Error", {})
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return error.get("Code") in ("PreconditionFailed", "ConditionalRequestConflict") or status in (
        409,
        412,
    )


def _base(prefix: str, name: str) -> str:
    return f"{prefix}models/{name}/"


def _version_prefix(prefix: str, name: str, version: int) -> str:
    return f"{_base(prefix, name)}{version}/"


def _scan(s3: Any, bucket: str, prefix: str, name: str) -> tuple[set[int], set[int]]:
    """(claimed, complete) version numbers."""
    base = _base(prefix, name)
    claimed: set[int] = set()
    complete: set[int] = set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=base):
        for obj in page.get("Contents", []):
            parts = obj["Key"][len(base) :].split("/")
            if len(parts) == 2 and parts[0].isdigit():
                claimed.add(int(parts[0]))
                if parts[1] == METADATA:
                    complete.add(int(parts[0]))
    return claimed, complete


def remote_versions(s3: Any, bucket: str, prefix: str, name: str) -> list[int]:
    """Versions whose metadata.json has been uploaded (i.e. complete ones)."""
    return sorted(_scan(s3, bucket, prefix, name)[1])


def put_new(s3: Any, bucket: str, key: str, body: bytes) -> str:
    """Create ``key``; :class:`VersionExistsError` if it exists. Returns the ETag."""
    try:
        return str(s3.put_object(Bucket=bucket, Key=key, Body=body, IfNoneMatch="*")["ETag"])
    except ClientError as exc:
        if _precondition_failed(exc):
            raise VersionExistsError(f"s3://{bucket}/{key} already exists") from exc
        raise


def claim_version(s3: Any, bucket: str, prefix: str, name: str, run_id: str) -> int:
    """Reserve the next version number for ``run_id``; safe against concurrent runs."""
    claimed, _ = _scan(s3, bucket, prefix, name)
    number = max(claimed, default=0) + 1
    body = json.dumps(
        {"run_id": run_id, "claimed_at": datetime.now(UTC).isoformat(timespec="seconds")}
    ).encode()
    for _ in range(MAX_CLAIM_ATTEMPTS):
        try:
            put_new(s3, bucket, _version_prefix(prefix, name, number) + CLAIM, body)
            return number
        except VersionExistsError:
            number += 1  # another run took it between our listing and our write
    raise RuntimeError(f"could not claim a version of {name!r} in {MAX_CLAIM_ATTEMPTS} attempts")


def upload_version(
    s3: Any, root: Path, bucket: str, prefix: str, name: str, version: int | str = "latest"
) -> list[str]:
    """Upload a local version under its own number, never replacing an object.

    A version trained with an upload claimed its number first; a version uploaded later
    (``make sync_models_up``) claims it here and fails if another run already holds it.
    """
    number = resolve_version(root, name, version)
    local = Path(root) / name / str(number)
    metadata = read_metadata(local)
    claim_key = _version_prefix(prefix, name, number) + CLAIM
    try:
        owner = json.loads(s3.get_object(Bucket=bucket, Key=claim_key)["Body"].read())
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("NoSuchKey", "404"):
            raise
        claim = {"run_id": metadata.get("run_id"), "claimed_at": metadata.get("created_at")}
        put_new(s3, bucket, claim_key, json.dumps(claim).encode())
    else:
        if owner.get("run_id") != metadata.get("run_id"):
            raise VersionExistsError(
                f"version {number} of {name!r} in s3://{bucket} belongs to run "
                f"{owner.get('run_id')!r}, not {metadata.get('run_id')!r}: versions are immutable"
            )
    files = sorted(p for p in local.iterdir() if p.is_file() and p.name != METADATA)
    keys = []
    for path in [*files, local / METADATA]:
        key = _version_prefix(prefix, name, number) + path.name
        put_new(s3, bucket, key, path.read_bytes())
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
            if rel and "/" not in rel and rel != CLAIM:
                s3.download_file(bucket, obj["Key"], str(staging / rel))
    metadata = read_metadata(staging)
    if sha256_file(staging / metadata["artifact"]) != metadata["sha256"]:
        raise ValueError(f"downloaded artifact for version {number} fails its sha256 check")
    staging.rename(dest)
    return dest


def _alias_key(prefix: str, name: str, alias: str) -> str:
    return f"{_base(prefix, name)}aliases/{alias}.json"


def read_alias(s3: Any, bucket: str, prefix: str, name: str, alias: str) -> tuple[dict | None, str]:
    """(the alias record, its ETag); (None, "") when the alias was never set."""
    try:
        obj = s3.get_object(Bucket=bucket, Key=_alias_key(prefix, name, alias))
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return None, ""
        raise
    return json.loads(obj["Body"].read()), str(obj["ETag"])


def set_alias(
    s3: Any,
    bucket: str,
    prefix: str,
    name: str,
    alias: str,
    record: dict[str, Any],
    *,
    expected_etag: str,
) -> str:
    """Point ``alias`` at ``record["version"]`` if it still is what was read (``expected_etag``;
    "" when it did not exist). :class:`AliasMovedError` otherwise."""
    if int(record["version"]) not in remote_versions(s3, bucket, prefix, name):
        raise FileNotFoundError(f"{name!r} has no complete version {record['version']}")
    condition = {"IfMatch": expected_etag} if expected_etag else {"IfNoneMatch": "*"}
    try:
        response = s3.put_object(
            Bucket=bucket,
            Key=_alias_key(prefix, name, alias),
            Body=json.dumps(record, indent=2, sort_keys=True).encode(),
            **condition,
        )
    except ClientError as exc:
        if _precondition_failed(exc):
            raise AliasMovedError(
                f"alias {alias!r} of {name!r} changed since it was read; read it again"
            ) from exc
        raise
    return str(response["ETag"])


def read_s3_uri(s3: Any, uri: str) -> bytes:
    """The object at ``s3://bucket/key``."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not bucket or not key:
        raise ValueError(f"{uri!r} is not an s3://<bucket>/<key> URI")
    return bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


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
        try:
            keys = upload_version(s3, *common, args.version)
        except VersionExistsError as exc:
            print(f"{exc}", file=sys.stderr)
            return 1
        print(json.dumps({"uploaded": keys}, indent=2))
    else:
        path = download_version(s3, *common, args.version)
        local = list_versions(settings.model_dir, MODEL_NAME)
        print(json.dumps({"downloaded": str(path), "local_versions": local}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
