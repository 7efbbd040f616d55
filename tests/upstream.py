"""Upstream artifacts at the versions the platform pins, read from the Go module proxy.

Charts, CRDs and values files of Go projects (Karpenter) are in their module zips; ``go mod
download`` fetches a module once into the shared module cache. Without ``go`` (or offline with an
empty cache) the tests that need them skip on a developer's machine and fail in CI (``CI=true``).

Custom resources are validated through ``tests.kube_validate`` (kubectl-validate); this module
is for the other files of a release: chart values and templates, and source.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml


def unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (required in CI)")
    pytest.skip(reason)


@functools.cache
def _download(module: str, version: str) -> str | None:
    go = shutil.which("go")
    if go is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run(
            [go, "mod", "download", "-json", f"{module}@{version}"],
            capture_output=True,
            text=True,
            cwd=tmp,
            env={**os.environ, "GOFLAGS": "-mod=mod"},
            check=False,
        )
    try:
        info = json.loads(proc.stdout)
    except ValueError:
        return None
    if info.get("Dir"):
        return str(info["Dir"])
    # A module whose go.mod needs a newer Go than the local one is still downloaded and unpacked
    # ("requires go >= ..."): its files are what the tests read, no build involved.
    cache = subprocess.run(
        [go, "env", "GOMODCACHE"], capture_output=True, text=True, check=False
    ).stdout.strip()
    escaped = "".join(f"!{c.lower()}" if c.isupper() else c for c in module)
    unpacked = Path(cache) / f"{escaped}@{version}"
    return str(unpacked) if cache and unpacked.is_dir() else None


def go_module(module: str, version: str) -> Path:
    """The unpacked module (read-only), or skip/fail when it cannot be had."""
    found = _download(module, version)
    if found is None:
        unavailable(f"{module}@{version} is not in the Go module cache and go could not fetch it")
    return Path(str(found))


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())
