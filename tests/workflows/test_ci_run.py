"""The README's two commands, the dependency groups behind them, and `.ci/run` agree."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
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


def _runtime_closure() -> set[str]:
    """Every package `uv run mlplatform ...` installs, from uv.lock: the project's dependencies
    and theirs, without any dependency group."""
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    by_name = {p["name"]: p for p in lock["package"]}
    todo = [d["name"] for d in by_name["ml-platform"]["dependencies"]]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo += [d["name"] for d in by_name[name].get("dependencies", [])]
    return seen


def _imported_top_levels() -> set[str]:
    found: set[str] = set()
    for folder in ("mlplatform", "components", "policies"):
        for path in (ROOT / folder).rglob("*.py"):
            if "assets" in path.relative_to(ROOT).parts:
                continue  # scripts that run inside the platform's images, not in the CLI
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    found |= {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    found.add(node.module.split(".")[0])
    return found


def test_the_cli_code_imports_only_what_the_runtime_install_brings() -> None:
    """A module the CLI imports from the test group would work in the tests and fail (or, behind
    an ImportError guard, silently do less) for a user who ran only `uv run mlplatform`."""
    dists = importlib.metadata.packages_distributions()
    # the pack runs with its folder on sys.path: its sibling modules import by their stem
    siblings = {p.stem for p in (ROOT / "policies").glob("*.py")}
    ours = {"mlplatform", "components", "policies", "rules", *siblings}
    runtime = _runtime_closure()
    missing = {}
    for module in sorted(_imported_top_levels() - ours - set(sys.stdlib_module_names)):
        names = {re.sub(r"[-_.]+", "-", d).lower() for d in dists.get(module, [])}
        if not names & runtime:
            missing[module] = sorted(names)
    assert missing == {}


def test_the_closure_check_sees_a_test_only_package() -> None:
    assert "pulumi-policy" in _runtime_closure()
    assert "moto" not in _runtime_closure() and "pytest" not in _runtime_closure()
