"""Versioned model storage on the local filesystem.

Layout: ``<root>/<name>/<version>/`` holding the model artifact and ``metadata.json``. Versions are
increasing integers: the next free one locally, or the number a run claimed in the model bucket
(:func:`storage.claim_version`), which is what keeps two runs on two pods apart. A version is written to a temporary directory and renamed into place, so a
crash never leaves a half-written version that ``latest`` would pick up. The artifact's sha256 is
recorded and checked on load, so a corrupted or swapped file is refused before it is unpickled.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import model as model_lib
from .data import FEATURES

METADATA = "metadata.json"


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: int
    path: Path
    metadata: dict[str, Any]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def list_versions(root: Path, name: str) -> list[int]:
    base = Path(root) / name
    if not base.is_dir():
        return []
    return sorted(
        int(p.name) for p in base.iterdir() if p.name.isdigit() and (p / METADATA).is_file()
    )


def resolve_version(root: Path, name: str, version: int | str = "latest") -> int:
    versions = list_versions(root, name)
    if not versions:
        raise FileNotFoundError(f"no saved versions of model {name!r} under {root}")
    if str(version) == "latest":
        return versions[-1]
    wanted = int(version)
    if wanted not in versions:
        raise FileNotFoundError(f"model {name!r} has no version {wanted} (have {versions})")
    return wanted


def save_version(
    model: Any,
    root: Path,
    name: str,
    *,
    metrics: dict[str, float],
    params: dict[str, Any],
    data_sha256: str,
    run_id: str | None = None,
    version: int | None = None,
    split: dict[str, Any] | None = None,
) -> ModelVersion:
    """Save a new version: ``version`` when given (claimed elsewhere; refused if taken here),
    otherwise the next free number. ``split``: how the held-out rows were chosen (seed and
    fraction), so ``evaluate`` can score on them alone."""
    base = Path(root) / name
    base.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".incoming-", dir=base))
    try:
        artifact = model_lib.save(model, tmp)
        # Claim the next number atomically: rename fails if another writer took it first.
        wanted = version
        while True:
            version = wanted or (list_versions(root, name) or [0])[-1] + 1
            metadata = {
                "name": name,
                "version": version,
                "framework": model_lib.FRAMEWORK,
                "artifact": artifact.name,
                "sha256": sha256_file(artifact),
                "features": list(FEATURES),
                "metrics": metrics,
                "params": params,
                "data_sha256": data_sha256,
                "run_id": run_id,
                "split": split,
                "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "python": platform.python_version(),
            }
            (tmp / METADATA).write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")
            try:
                os.rename(tmp, base / str(version))
                break
            except OSError as exc:
                if not (base / str(version)).exists():
                    raise
                if wanted is not None:
                    raise FileExistsError(
                        f"{base / str(version)} exists: versions are immutable"
                    ) from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ModelVersion(name, version, base / str(version), metadata)


def read_metadata(path: Path) -> dict[str, Any]:
    return json.loads((Path(path) / METADATA).read_text())


def load_version(root: Path, name: str, version: int | str = "latest") -> tuple[Any, ModelVersion]:
    number = resolve_version(root, name, version)
    path = Path(root) / name / str(number)
    metadata = read_metadata(path)
    if metadata.get("framework") != model_lib.FRAMEWORK:
        raise ValueError(
            f"{path} holds a {metadata.get('framework')} model, this project uses "
            f"{model_lib.FRAMEWORK}"
        )
    artifact = path / metadata["artifact"]
    actual = sha256_file(artifact)
    if actual != metadata["sha256"]:
        raise ValueError(f"{artifact} does not match its recorded sha256; refusing to load it")
    return model_lib.load(path, metadata.get("params")), ModelVersion(name, number, path, metadata)
