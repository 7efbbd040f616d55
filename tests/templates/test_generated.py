"""Run generated projects' own test suites, as their CI would.

sklearn x serving (yes/no), and PyTorch with its `cpu` extra: `uv sync` + `uv run pytest` in the
generated project (uv's shared cache keeps this to seconds after the first run). Each variant's
infra tests run with this interpreter, which has the platform library.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import missing_tool
from tests.templates.helpers import REPO, bake, uv_env

pytestmark = pytest.mark.slow
SUITE_TIMEOUT_S = 900  # the suites start a real MLflow server (about a minute under load)
# The PyTorch suite runs torchrun, a killed-and-resumed run and DDP on CPU: about 4 minutes on an
# idle 2-core machine, several times that on a loaded one. A bound, not a timing assertion.
TORCH_SUITE_TIMEOUT_S = 1800


def _uv() -> str:
    uv = shutil.which("uv")
    if uv is None:
        missing_tool("uv is not on PATH")
    assert uv is not None
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
        "test_promote",
        "test_drift",
        "test_quality",
        "test_registry",
        "test_settings",
        "test_storage",
        "test_tracking",
        "test_train",
        "test_retrain",
    }
    # Serving's live-HTTP tests run with serving=yes; with serving=no they are gone, not skipped.
    assert ran == expected | ({"test_serve", "test_alerts"} if serving == "yes" else set())
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


def test_pytorch_project_suite_passes(tmp_path: Path) -> None:
    """As the project's CI runs it: `uv sync --locked --extra cpu --extra mlflow`, then pytest.

    The `cpu` extra takes torch from PyTorch's CPU index. Where that index is unreachable the
    test skips on a developer's machine and fails in CI; uv's own `UV_INDEX=pytorch-cpu=<url>`
    points it at a mirror (even `https://pypi.org/simple`: PyPI's Linux wheel is the multi-GB
    CUDA build, which runs this suite on CPU too).
    """
    uv = _uv()
    root = bake(tmp_path, framework="pytorch", accelerator="nvidia-l4", serving="yes")
    env = uv_env()

    def uv_run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [uv, *args], cwd=root, env=env, capture_output=True, text=True,
            timeout=TORCH_SUITE_TIMEOUT_S, check=False,
        )  # fmt: skip

    lock = uv_run("lock")
    if lock.returncode != 0 and "download.pytorch.org" in lock.stderr:
        missing_tool(
            "PyTorch's CPU index (download.pytorch.org) is unreachable: set "
            "UV_INDEX=pytorch-cpu=<mirror> to run the PyTorch variant's suite"
        )
    assert lock.returncode == 0, lock.stderr
    sync = uv_run("sync", "--locked", "--extra", "cpu", "--extra", "mlflow")
    assert sync.returncode == 0, sync.stderr
    result = uv_run("run", "--no-sync", "pytest", "-v", "-p", "no:cacheprovider")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    ran = {
        m.group(1) for m in re.finditer(r"^tests/(test_\w+)\.py::\S+ PASSED", result.stdout, re.M)
    }
    assert {"test_distributed", "test_train", "test_serve", "test_tracking"} <= ran
    # Only the GPU test may skip, and only without a GPU.
    skipped = re.findall(r"^(tests/\S+) SKIPPED", result.stdout, re.M)
    assert {s.split("::")[0] for s in skipped} <= {"tests/test_cuda.py"}, skipped


def _plain(tmp_path: Path) -> Path:
    """A plain-cookiecutter project left with the default (empty) platform requirement."""
    return bake(tmp_path, platform_requirement="")


def test_make_infra_test_fails_loudly_without_the_platform_requirement(tmp_path: Path) -> None:
    make = shutil.which("make")
    if make is None:
        missing_tool("make is not on PATH")
    assert make is not None
    root = _plain(tmp_path)
    result = subprocess.run(
        [make, "infra_test"], cwd=root, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode != 0
    assert "does not install the platform library" in result.stderr
    assert "ml-platform @ git+https://" in result.stderr
    assert "platform_requirement" in result.stderr


def test_infra_tests_fail_in_ci_and_skip_locally_without_the_platform(tmp_path: Path) -> None:
    uv = _uv()
    infra = _plain(tmp_path) / "infra"
    env = uv_env()
    sync = subprocess.run(
        [uv, "sync", "--quiet"], cwd=infra, env=env, capture_output=True, text=True,
        timeout=SUITE_TIMEOUT_S, check=False,
    )  # fmt: skip
    assert sync.returncode == 0, sync.stderr

    def pytest_in(ci: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [uv, "run", "--no-sync", "pytest", "-p", "no:cacheprovider", "-rs"],
            cwd=infra, env={**env, "CI": ci}, capture_output=True, text=True,
            timeout=SUITE_TIMEOUT_S, check=False,
        )  # fmt: skip

    in_ci = pytest_in("true")
    assert in_ci.returncode != 0, in_ci.stdout
    assert "platform library is not installed" in in_ci.stdout + in_ci.stderr
    assert "platform_requirement" in in_ci.stdout + in_ci.stderr
    local = pytest_in("")
    assert local.returncode == 0, local.stdout + local.stderr
    assert "skipped" in local.stdout and "platform library is not installed" in local.stdout
    assert " passed" not in local.stdout


@pytest.fixture
def git_server(tmp_path: Path):
    """This repository's committed history, served over HTTP on 127.0.0.1 (git's dumb protocol)."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    if shutil.which("git") is None:
        missing_tool("git is not on PATH")
    served = tmp_path / "srv"
    bare = served / "ml-platform.git"
    for cmd in (
        ["clone", "-q", "--bare", str(REPO), str(bare)],
        ["-C", str(bare), "update-server-info"],
    ):
        done = subprocess.run(
            ["git", *cmd], capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == 0, done.stderr

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(served)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/ml-platform.git"
    finally:
        server.shutdown()
        server.server_close()


def test_infra_lock_with_a_git_url_holds_no_local_path(tmp_path: Path, git_server: str) -> None:
    uv = _uv()
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    root = bake(tmp_path / "p", platform_requirement=f"ml-platform @ git+{git_server}@{commit}")
    lock = subprocess.run(
        [uv, "lock", "--quiet"], cwd=root / "infra", env=uv_env(), capture_output=True,
        text=True, timeout=SUITE_TIMEOUT_S, check=False,
    )  # fmt: skip
    assert lock.returncode == 0, lock.stderr
    text = (root / "infra" / "uv.lock").read_text()
    assert f'git = "{git_server}' in text and commit in text
    for local in (str(tmp_path), str(REPO), str(Path.home()), "file://"):
        assert local not in text, local
