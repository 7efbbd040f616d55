"""`mlplatform` installed from its wheel, run from a platform checkout (as after
`uv tool install ./ml_platform-*.whl` or `pipx install`).

The wheel goes into a fresh virtual environment without its dependencies, which are borrowed
from this one (a `.pth` line): the package code, templates and assets then come only from the
wheel, and the test does not reinstall and recompile the AWS SDK (a real `uv tool install` of
this wheel works the same way; it takes minutes cold).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.conftest import missing_tool as missing

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _run(cmd: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    return subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    uv = shutil.which("uv")
    if uv is None:
        missing("uv is not on PATH")
    assert uv is not None
    root = tmp_path_factory.mktemp("installed")
    built = _run([uv, "build", "--wheel", "--quiet", "-o", str(root / "dist")], cwd=REPO)
    assert built.returncode == 0, built.stderr
    (wheel,) = (root / "dist").glob("ml_platform-*.whl")
    venv = root / "venv"
    made = _run([uv, "venv", "--quiet", "--python", sys.executable, str(venv)], cwd=root)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    done = _run(
        [uv, "pip", "install", "--quiet", "--no-deps", "--python", str(python), str(wheel)],
        cwd=root,
    )
    assert done.returncode == 0, done.stderr
    site = _run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], cwd=root
    )
    (Path(site.stdout.strip()) / "borrowed-deps.pth").write_text(
        sysconfig.get_path("purelib") + "\n"
    )
    return venv / "bin" / "mlplatform"


def test_version_and_plan_from_a_checkout_subfolder(installed: Path) -> None:
    version = _run([str(installed), "--version"], cwd=REPO)
    assert version.returncode == 0 and version.stdout.startswith("mlplatform 0.")
    where = _run(
        [
            str(installed.parent / "python"),
            "-P",
            "-c",
            "import mlplatform; print(mlplatform.__file__)",
        ],
        cwd=REPO,
    )
    assert "site-packages" in where.stdout, "the command runs the wheel, not this checkout"
    cost = _run([str(installed), "cost", "--stack", "dev", "--format", "json"], cwd=REPO / "docs")
    assert cost.returncode == 0, cost.stderr
    assert json.loads(cost.stdout)["monthlyIdle"] > 0


def test_outside_a_checkout_it_says_where_stacks_come_from(installed: Path, tmp_path: Path) -> None:
    result = _run([str(installed), "plan", "--stack", "dev"], cwd=tmp_path)
    assert result.returncode == 2
    assert "no platform stacks found" in result.stderr and "--stacks-dir" in result.stderr
    assert "Traceback" not in result.stderr


def test_new_project_from_the_wheel_names_the_installed_library(
    installed: Path, tmp_path: Path
) -> None:
    result = _run(
        [
            str(installed),
            "new-project",
            "--stack",
            "dev",
            "--no-input",
            "--output-dir",
            str(tmp_path),
        ],
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    answers = json.loads((tmp_path / "churn_model" / ".cruft.json").read_text())
    requirement = answers["context"]["cookiecutter"]["platform_requirement"]
    assert requirement.startswith("ml-platform @ file://") and requirement.endswith(".whl")
    assert "CI cannot install it" in result.stderr
    assert "cruft update` needs the template's git repository" in result.stderr
    assert "Traceback" not in result.stderr
