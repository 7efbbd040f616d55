"""Which jobs run where and as whom: the jobs that talk to a cluster run on the CodeBuild runner
inside that stack's VPC (the label the stack exports), assume their role through OIDC, and the
credential-less jobs stay on GitHub-hosted runners (docs/ci.md)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.ci_runners import workflow_filter
from tests.shipped import shipped_plan
from tests.workflows.test_workflows import ROOT, WORKFLOWS, load, steps, tool

STACKS = ("dev", "prod")
HOSTED = re.compile(r"^ubuntu-\d+\.\d+$")
# job -> (role variable it assumes, GitHub environment whose OIDC `sub` the role trusts)
ROLES = {
    ("deploy.yml", "up-dev"): ("AWS_DEPLOY_ROLE_ARN", "dev"),
    ("deploy.yml", "up-prod"): ("AWS_DEPLOY_ROLE_ARN", "prod"),
    ("preview.yml", "pulumi-preview"): ("AWS_PREVIEW_ROLE_ARN", "preview"),
    ("drift.yml", "drift"): ("AWS_PREVIEW_ROLE_ARN", "preview"),
}


@pytest.fixture(scope="module")
def runner_outputs() -> dict[str, dict[str, Any]]:
    return {s: shipped_plan(s)["outputs"]["ciRunner"] for s in STACKS}


def _jobs() -> list[tuple[str, str, dict[str, Any], dict[str, Any]]]:
    return [(p.name, j, body, load(p)) for p in WORKFLOWS for j, body in load(p)["jobs"].items()]


def _talks_to_aws(doc: dict[str, Any], job: str) -> bool:
    return any(j == job and "configure-aws-credentials" in s.get("uses", "") for j, s in steps(doc))


def _stacks_of(body: dict[str, Any]) -> list[str]:
    matrix = body.get("strategy", {}).get("matrix", {}).get("stack")
    return list(matrix) if matrix else [body["environment"]]


def test_every_cloud_job_runs_on_its_stacks_runner(runner_outputs: dict[str, Any]) -> None:
    cloud = {(f, j) for f, j, _, doc in _jobs() if _talks_to_aws(doc, j)}
    assert cloud == set(ROLES), "a job assumes an AWS role without a decision on where it runs"
    for f, j, body, _ in _jobs():
        if (f, j) not in ROLES:
            continue
        for stack in _stacks_of(body):
            label = body["runs-on"].replace("${{ matrix.stack }}", stack)
            assert label == runner_outputs[stack]["label"], (f, j, stack)


def test_each_cloud_job_assumes_its_role_by_oidc_in_its_environment() -> None:
    for f, j, body, doc in _jobs():
        if (f, j) not in ROLES:
            continue
        variable, environment = ROLES[(f, j)]
        assert body["environment"] == environment, (f, j)
        assert body["permissions"]["id-token"] == "write", (f, j)
        [creds] = [
            s for k, s in steps(doc) if k == j and "configure-aws-credentials" in s.get("uses", "")
        ]
        assert creds["with"]["role-to-assume"] == f"${{{{ vars.{variable} }}}}", (f, j)
        assert not {"aws-access-key-id", "aws-secret-access-key"} & set(creds["with"])
        # every Pulumi step in these jobs runs after the role is assumed
        names = [s.get("uses", "") for k, s in steps(doc) if k == j]
        first_pulumi = next(i for i, u in enumerate(names) if u.startswith("pulumi/actions@"))
        assert names.index(creds["uses"]) < first_pulumi


def test_jobs_without_cloud_credentials_stay_on_github_hosted_runners() -> None:
    for f, j, body, _ in _jobs():
        if (f, j) in ROLES or "uses" in body:
            continue
        assert HOSTED.match(body["runs-on"]), (f, j, body["runs-on"])
        assert body["permissions"].get("id-token") is None, (f, j)


def test_forks_never_reach_a_runner_in_the_vpc() -> None:
    """A fork's pull request gets the offline plan diff on a GitHub-hosted runner only."""
    doc = load(ROOT / ".github/workflows/preview.yml")
    job = doc["jobs"]["pulumi-preview"]
    assert job["if"] == "github.event.pull_request.head.repo.full_name == github.repository"
    assert HOSTED.match(doc["jobs"]["plan-diff"]["runs-on"])
    assert list(doc["on"]) == ["pull_request"]  # never pull_request_target


def test_webhook_starts_runners_for_exactly_these_workflows(
    runner_outputs: dict[str, Any],
) -> None:
    from components.ci_runners import DEFAULT_WORKFLOWS

    files = {f for f, _ in ROLES}
    on_runners = {load(p)["name"] for p in WORKFLOWS if p.name in files}
    assert on_runners == set(DEFAULT_WORKFLOWS)
    pattern = re.compile(workflow_filter(DEFAULT_WORKFLOWS))
    assert all(pattern.match(n) for n in on_runners)
    assert not pattern.match("ci")  # the test suite never lands in the VPC


def test_actionlint_accepts_the_runner_labels_only_through_its_config(tmp_path: Path) -> None:
    wf = tmp_path / ".github" / "workflows" / "w.yml"
    wf.parent.mkdir(parents=True)
    wf.write_text(
        yaml.safe_dump(
            {
                "name": "w",
                "on": "push",
                "permissions": {},
                "jobs": {"j": {"runs-on": "codebuild-mlp-dev-ci", "steps": [{"run": "true"}]}},
            }
        )
    )
    bare = subprocess.run(
        [tool("actionlint"), str(wf)], capture_output=True, text=True, cwd=tmp_path
    )
    assert bare.returncode != 0 and "codebuild-mlp-dev-ci" in bare.stdout
    config = ROOT / ".github" / "actionlint.yaml"
    ok = subprocess.run(
        [tool("actionlint"), "-config-file", str(config), str(wf)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
