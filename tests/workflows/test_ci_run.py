"""The README's two commands, the dependency groups behind them, and `.ci/run` agree."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ("pytest", "ruff", "mypy", "moto", "checkov", "trivy", "parliament", "zizmor")


def readme_commands() -> dict[str, str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## Quick start.*?```sh\n(.*?)```", text, re.S)
    assert block, "README has no quick-start block"
    found = {}
    for line in block.group(1).splitlines():
        command, _, comment = line.partition("#")
        found[comment.strip()] = command.strip()
    return found


def test_readme_has_one_main_command_and_one_test_command() -> None:
    commands = readme_commands()
    main = next(c for k, c in commands.items() if k.startswith("the main job"))
    tests = next(c for k, c in commands.items() if k.startswith("the tests"))
    assert main == "uv run mlplatform plan --stack dev"
    assert tests == "uv run --group test pytest"


def test_ci_runs_exactly_the_readme_test_command_last() -> None:
    tests = readme_commands()["the tests"]
    lines = [
        ln.strip()
        for ln in (ROOT / ".ci" / "run").read_text().splitlines()
        if ln.strip() and not ln.strip().startswith("#")
    ]
    assert lines[-1] == tests
    assert "export UV_LOCKED=1" in lines  # every uv command keeps uv.lock as committed
    assert any(ln.startswith("uv sync") and "--group test" in ln for ln in lines)


def test_the_cli_installs_without_test_and_lint_tools() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    runtime = " ".join(project["project"]["dependencies"]).lower()
    assert not [t for t in TOOLS if t in runtime]
    groups = project["dependency-groups"]
    test = " ".join(groups["test"]).lower()
    assert all(t in test for t in ("pytest", "ruff", "mypy", "moto", "trivy", "parliament"))
    # Nothing but the runtime by default: `uv run mlplatform ...` brings no group.
    assert project["tool"]["uv"]["default-groups"] == []
    assert "dev" not in groups


def test_lock_file_knows_the_groups() -> None:
    lock = (ROOT / "uv.lock").read_text()
    assert "default-groups = []" in lock
    assert re.search(r"\[package\.dev-dependencies\]\ntest = \[", lock)
