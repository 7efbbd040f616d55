"""Run generated projects' own test suites, as their CI would.

sklearn x serving (yes/no): `uv sync` + `uv run pytest` in the generated project (uv's shared cache
keeps this to seconds after the first run). Each variant's infra tests run with this interpreter,
which has the platform library. The PyTorch variant's suite runs only where torch is importable:
its default Linux wheel is the multi-GB CUDA build.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import missing_tool
from tests.templates.helpers import bake, uv_env

pytestmark = pytest.mark.slow
SUITE_TIMEOUT_S = 600


def _uv() -> str:
    uv = shutil.which("uv")
    if uv is None:
        missing_tool("uv is not on PATH")
    return uv


@pytest.mark.parametrize("serving", ["yes", "no"])
def test_sklearn_project_suite_passes(tmp_path: Path, serving: str) -> None:
    uv = _uv()
    root = bake(tmp_path, framework="sklearn", serving=serving)
    env = uv_env()
    sync = subprocess.run(
        [uv, "sync", "--quiet"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=SUITE_TIMEOUT_S,
    )
    assert sync.returncode == 0, sync.stderr
    assert (root / "uv.lock").is_file(), "the first uv sync creates the lock file"
    result = subprocess.run(
        [uv, "run", "--no-sync", "pytest", "-v", "-p", "no:cacheprovider"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=SUITE_TIMEOUT_S,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    ran = {
        m.group(1) for m in re.finditer(r"^tests/(test_\w+)\.py::\S+ PASSED", result.stdout, re.M)
    }
    expected = {
        "test_data",
        "test_registry",
        "test_settings",
        "test_storage",
        "test_tracking",
        "test_train",
    }
    # Serving's live-HTTP tests run with serving=yes; with serving=no they are gone, not skipped.
    assert ran == expected | ({"test_serve"} if serving == "yes" else set())
    assert " SKIPPED" not in result.stdout
    lint = subprocess.run(
        [uv, "run", "--no-sync", "ruff", "check", "--no-cache", "."],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert lint.returncode == 0, lint.stdout


@pytest.mark.parametrize(
    ("framework", "accelerator", "serving"),
    [("sklearn", "none", "yes"), ("sklearn", "none", "no"), ("pytorch", "nvidia-a100", "yes")],
)
def test_infra_program_tests_pass(
    tmp_path: Path, framework: str, accelerator: str, serving: str
) -> None:
    root = bake(tmp_path, framework=framework, accelerator=accelerator, serving=serving)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n0"],
        cwd=root / "infra",
        capture_output=True,
        text=True,
        timeout=SUITE_TIMEOUT_S,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "skipped" not in result.stdout, "the platform library is importable here"
    assert re.search(r"^\d+ passed", result.stdout.splitlines()[-1])


def test_pytorch_project_suite_passes_where_torch_is_available(tmp_path: Path) -> None:
    if importlib.util.find_spec("torch") is None:
        pytest.skip(
            "torch is not installed here: its default Linux wheel is the multi-GB CUDA build; "
            "install torch into this environment to run the PyTorch variant's suite"
        )
    needed = ["sklearn", "fastapi", "uvicorn", "httpx", "moto", "prometheus_client", "joblib"]
    missing = [m for m in needed if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"the PyTorch variant's suite also needs: {', '.join(missing)}")
    root = bake(tmp_path, framework="pytorch", accelerator="nvidia-l4", serving="yes")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n0", "tests"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=SUITE_TIMEOUT_S,
        env={**os.environ, "PYTHONPATH": str(root / "src")},
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
