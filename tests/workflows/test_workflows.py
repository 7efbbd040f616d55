"""The platform repo's own workflows: schema, actionlint, zizmor, and the properties we rely on."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import missing_tool

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
NAMES = [p.name for p in WORKFLOWS]
PINNED = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@[0-9a-f]{40}$")


def load(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text())
    # YAML 1.1 reads the bare key `on` as True.
    if True in doc:
        doc["on"] = doc.pop(True)
    return doc


def tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        missing_tool(f"{name} is not installed (uv sync --group test installs it)")
    return found


def steps(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(job, s) for job, body in doc["jobs"].items() for s in body.get("steps", [])]


def test_the_workflows_exist() -> None:
    assert {"ci.yml", "preview.yml", "deploy.yml", "drift.yml"} <= set(NAMES)


def test_schema() -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.github-workflows",
            *map(str, WORKFLOWS),
        ],
        check=True,
    )


def test_actionlint() -> None:
    result = subprocess.run(
        [tool("actionlint"), *map(str, WORKFLOWS)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_zizmor_offline_finds_nothing_even_as_auditor() -> None:
    result = subprocess.run(
        [tool("zizmor"), "--offline", "--persona", "auditor", str(ROOT / ".github" / "workflows")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", WORKFLOWS, ids=NAMES)
def test_least_privilege_and_pinning(path: Path) -> None:
    doc = load(path)
    assert doc["permissions"] == {}, "top-level permissions must be empty; jobs opt in"
    for job, body in doc["jobs"].items():
        assert "permissions" in body, f"{job} declares no permissions"
        for scope, level in body["permissions"].items():
            assert level in ("read", "write"), (job, scope)
        if "uses" in body:  # a reusable workflow: only this repository's own
            assert body["uses"].startswith("./.github/workflows/"), (job, body["uses"])
    for job, step in steps(doc):
        uses = step.get("uses")
        if uses:
            assert PINNED.match(uses), f"{job}: {uses} is not pinned to a full commit SHA"
        if uses and uses.startswith("actions/checkout@"):
            assert step.get("with", {}).get("persist-credentials") is False, job


@pytest.mark.parametrize("path", WORKFLOWS, ids=NAMES)
def test_no_expressions_in_shell_and_no_plaintext_secrets(path: Path) -> None:
    doc = load(path)
    for job, step in steps(doc):
        assert "${{" not in step.get("run", ""), f"{job}: pass expressions through env, not run:"
        script = step.get("with", {}).get("script", "")
        assert "${{" not in script, f"{job}: pass expressions through env, not script:"
    text = path.read_text()
    assert not re.search(r"AKIA[0-9A-Z]{16}", text)
    assert not re.search(r"(?i)(secret|token|passphrase)\s*:\s*['\"]?[A-Za-z0-9/+]{20,}", text)
    for ref in re.findall(r"\$\{\{\s*secrets\.(\w+)", text):
        assert ref in {"PULUMI_ACCESS_TOKEN", "PULUMI_CONFIG_PASSPHRASE"}, ref


def _pulumi_steps(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(j, s) for j, s in steps(doc) if str(s.get("uses", "")).startswith("pulumi/actions@")]


def test_ci_runs_exactly_ci_run_with_the_builds_cached() -> None:
    """The suite CI runs is .ci/run's, not a subset that would skip promtool, amtool, checkov,
    the engine or the control plane; .ci/run sets CI=true, so missing tools fail."""
    doc = load(ROOT / ".github/workflows/ci.yml")
    assert doc["on"]["push"]["branches"] == ["main"]
    assert "workflow_call" in doc["on"]
    ((_, body),) = doc["jobs"].items()
    runs = [s["run"] for _, s in steps(doc) if "run" in s]
    assert runs == [".ci/run"]
    assert body["timeout-minutes"] <= 90
    ((_, cache),) = [(j, s) for j, s in steps(doc) if "actions/cache@" in s.get("uses", "")]
    paths = cache["with"]["path"].split()
    for folder in ("ml-platform-engine", "ml-platform-control-plane", "ml-platform-validators"):
        assert f"~/.cache/{folder}" in paths
    for script in ("build-engine.sh", "build-control-plane.sh", "build-validators.sh"):
        assert script in cache["with"]["key"]
    assert "crd-sources.txt" in cache["with"]["key"]
    ci_run = (ROOT / ".ci/run").read_text()
    assert "export CI=true" in ci_run
    for script in ("build-engine.sh", "build-control-plane.sh", "build-validators.sh"):
        assert f"scripts/{script}" in ci_run
    assert ci_run.rstrip().endswith("uv run --group test pytest")


def test_preview_runs_tests_offline_diff_and_policy_previews_with_oidc() -> None:
    doc = load(ROOT / ".github/workflows/preview.yml")
    assert "pull_request" in doc["on"]
    assert doc["jobs"]["test"]["uses"] == "./.github/workflows/ci.yml"
    runs = "\n".join(s.get("run", "") for _, s in steps(doc))
    assert "mlplatform plan --stack" in runs and "mlplatform.diff" in runs
    previews = _pulumi_steps(doc)
    assert previews
    for job, step in previews:
        w = step["with"]
        assert w["command"] == "preview"
        assert w["policyPacks"] == "policies"
        assert w["comment-on-pr"] is True
        assert doc["jobs"][job]["permissions"]["id-token"] == "write"
        assert doc["jobs"][job]["strategy"]["matrix"]["stack"] == ["dev", "prod"]
        assert doc["jobs"][job]["needs"] == "test"
        creds = [
            s
            for j, s in steps(doc)
            if j == job and "configure-aws-credentials" in s.get("uses", "")
        ]
        assert creds and "role-to-assume" in creds[0]["with"]
        assert "aws-access-key-id" not in creds[0]["with"]


def test_deploy_goes_dev_then_prod_behind_an_environment() -> None:
    doc = load(ROOT / ".github/workflows/deploy.yml")
    assert doc["on"]["push"]["branches"] == ["main"]
    jobs = doc["jobs"]
    assert jobs["up-prod"]["needs"] == "up-dev"
    assert jobs["up-prod"]["environment"] == "prod"
    assert jobs["up-dev"]["environment"] == "dev"
    ups = {j: s["with"] for j, s in _pulumi_steps(doc)}
    assert ups["up-dev"]["command"] == ups["up-prod"]["command"] == "up"
    assert (ups["up-dev"]["stack-name"], ups["up-prod"]["stack-name"]) == ("dev", "prod")
    assert doc["concurrency"]["cancel-in-progress"] is False


def test_drift_is_scheduled_expects_no_changes_and_opens_an_issue() -> None:
    doc = load(ROOT / ".github/workflows/drift.yml")
    assert doc["on"]["schedule"]
    ((job, step),) = _pulumi_steps(doc)
    assert step["with"]["expect-no-changes"] is True
    assert step["with"]["refresh"] is True
    assert doc["jobs"][job]["permissions"]["issues"] == "write"
    scripts = [s["with"]["script"] for _, s in steps(doc) if "github-script" in s.get("uses", "")]
    assert scripts and "issues.create" in scripts[0]
