"""The generated workflows give `pulumi up`/`preview` every variable the infra program requires.

What is required comes from the program itself: its config loader, run with an empty stack config
and environment, names each missing setting with its variable (``trainingImage (or
TRAINING_IMAGE)``). Every workflow step that runs Pulumi must set each of them, from the output of
an earlier step of the same job that writes that output (or a job output it needs), and the stack
file must not set the config key (config wins over the environment).
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml

from tests.templates.helpers import bake, import_program, infra_on_path

REQUIRED = re.compile(r"(\w+) \(or ([A-Z][A-Z0-9_]+)\): not set")
STEP_OUTPUT = re.compile(r"^\$\{\{\s*steps\.([\w-]+)\.outputs\.([\w-]+)\s*\}\}$")
NEEDS_OUTPUT = re.compile(r"^\$\{\{\s*needs\.([\w-]+)\.outputs\.([\w-]+)\s*\}\}$")
ENV_REF = re.compile(r"^\$\{\{\s*env\.([A-Z0-9_]+)\s*\}\}$")
RUNS_PULUMI = re.compile(r"\bpulumi (up|preview)\b")


class _EmptyConfig:
    def get(self, _key: str) -> None:
        return None

    def require(self, key: str) -> str:
        raise AssertionError(f"{key} is read after the config is checked")

    def get_int(self, _key: str, default: int) -> int:
        return default

    def get_bool(self, _key: str, default: bool) -> bool:
        return default


def required_variables(infra: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """{config key: environment variable} the program cannot run without."""
    program = import_program(infra, f"program_{infra.parent.name}_{id(infra)}")
    for var in list(os.environ):
        if var.endswith(("_IMAGE", "_VERSION")):
            monkeypatch.delenv(var)
    monkeypatch.setattr(pulumi, "Config", lambda *_a, **_k: _EmptyConfig())
    with pytest.raises(ValueError, match="invalid config") as err:
        program.Settings.from_config()
    return dict(REQUIRED.findall(str(err.value)))


def _outputs_written(step: dict[str, Any]) -> set[str]:
    run = step.get("run", "")
    return set(re.findall(r'echo "([\w-]+)=', run)) if '"$GITHUB_OUTPUT"' in run else set()


def _source_problem(
    value: str, earlier: list[dict[str, Any]], job: dict[str, Any], jobs: dict[str, Any], env: dict
) -> str | None:
    ref = ENV_REF.match(value)
    if ref:
        value = str(env.get(ref[1], ""))
    match = STEP_OUTPUT.match(value)
    if match:
        writers = [s for s in earlier if s.get("id") == match[1]]
        if not writers:
            return f"no earlier step with id {match[1]!r}"
        if match[2] not in _outputs_written(writers[0]):
            return f"step {match[1]!r} does not write output {match[2]!r}"
        return None
    match = NEEDS_OUTPUT.match(value)
    if match:
        if match[1] not in _as_list(job.get("needs")):
            return f"job does not need {match[1]!r}"
        if match[2] not in jobs[match[1]].get("outputs", {}):
            return f"job {match[1]!r} has no output {match[2]!r}"
        return None
    return f"{value!r} is not an earlier step's or a needed job's output"


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def pulumi_env_problems(workflow: dict[str, Any], required: dict[str, str]) -> list[str]:
    """Each Pulumi step of the workflow that lacks a required variable or its source."""
    problems = []
    jobs = workflow.get("jobs", {})
    for job_id, job in jobs.items():
        steps = job.get("steps", [])
        for i, step in enumerate(steps):
            uses_action = str(step.get("uses", "")).startswith("pulumi/actions@")
            command = (step.get("with") or {}).get("command")
            if not (
                (uses_action and command in ("up", "preview"))
                or RUNS_PULUMI.search(step.get("run", ""))
            ):
                continue
            env = {**workflow.get("env", {}), **job.get("env", {}), **step.get("env", {})}
            where = f"{job_id}.steps[{i}] ({step.get('name') or step.get('uses')})"
            for var in required.values():
                if var not in env and not re.search(rf"\b{var}=", step.get("run", "")):
                    problems.append(f"{where}: {var} is not set")
                    continue
                value = str(env.get(var, ""))
                problem = _source_problem(value, steps[:i], job, jobs, env) if value else None
                if problem:
                    problems.append(f"{where}: {var}: {problem}")
    return problems


def pulumi_steps(workflow: dict[str, Any]) -> int:
    return len(
        [
            s
            for job in workflow.get("jobs", {}).values()
            for s in job.get("steps", [])
            if RUNS_PULUMI.search(s.get("run", ""))
            or (s.get("with") or {}).get("command") in ("up", "preview")
        ]
    )


@pytest.fixture(scope="module", params=["yes", "no"], ids=lambda s: f"serving-{s}")
def project(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return bake(tmp_path_factory.mktemp("wf"), framework="sklearn", serving=request.param)


def _workflows(root: Path) -> dict[str, dict[str, Any]]:
    """The project's workflows; a job that calls a local reusable workflow gets that workflow's
    declared outputs (``on.workflow_call.outputs``), as GitHub resolves ``needs.<job>.outputs``."""
    folder = root / ".github" / "workflows"
    docs = {p.stem: yaml.safe_load(p.read_text()) for p in sorted(folder.glob("*.yml"))}
    for doc in docs.values():
        for job in doc.get("jobs", {}).values():
            called = re.match(
                r"^(?:\$|\.)/\.github/workflows/([\w-]+)\.yml$", str(job.get("uses", ""))
            )
            if called:
                # PyYAML reads the key `on` as True
                trigger = docs[called[1]].get("on", docs[called[1]].get(True)) or {}
                job["outputs"] = (trigger.get("workflow_call") or {}).get("outputs") or {}
    return docs


def test_every_pulumi_step_gets_what_the_program_requires(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    required = required_variables(project / "infra", monkeypatch)
    serving = (project / "src" / project.name / "serve.py").exists()
    expected = {"trainingImage": "TRAINING_IMAGE"}
    if serving:
        expected |= {"servingImage": "SERVING_IMAGE", "modelVersion": "MODEL_VERSION"}
    assert required == expected
    workflows = _workflows(project)
    assert pulumi_steps(workflows["deploy"]) == 1
    assert pulumi_steps(workflows["infra-preview"]) == 1
    assert pulumi_steps(workflows["promote"]) == (3 if serving else 0)
    for name, workflow in workflows.items():
        assert pulumi_env_problems(workflow, required) == [], name
    stack_files = list((project / "infra").glob("Pulumi.*.yaml"))
    for path in stack_files:
        keys = {k.split(":", 1)[-1] for k in yaml.safe_load(path.read_text())["config"]}
        assert not keys & set(required), f"{path.name} sets {keys & set(required)}"


def test_deploy_passes_digests_not_tags(project: Path) -> None:
    flows = _workflows(project)
    deploy = flows["deploy"]
    assert deploy["jobs"]["deploy"]["env"]["TRAINING_IMAGE"] == (
        "${{ needs.image.outputs.training-image }}"
    )
    # the image workflow's output is the pushed digest (repo@<digest of the build or the
    # existing tag>), never a tag
    image_steps = [s for job in flows["image"]["jobs"].values() for s in job.get("steps", [])]
    (training,) = [s for s in image_steps if s.get("id") == "training"]
    assert training["run"] == 'echo "image=$REPO@$DIGEST" >> "$GITHUB_OUTPUT"'
    assert "steps.build-training.outputs.digest" in training["env"]["DIGEST"]


def test_the_check_catches_a_missing_or_unsourced_variable(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    required = required_variables(project / "infra", monkeypatch)
    deploy = _workflows(project)["deploy"]
    (step,) = [s for s in deploy["jobs"]["deploy"]["steps"] if (s.get("with") or {}).get("command")]
    where = (
        "deploy.steps[" + str(deploy["jobs"]["deploy"]["steps"].index(step)) + "] "
        "(pulumi/actions@8e5e406f4007fca908480587cb9893c07090f58d)"
    )
    missing = copy.deepcopy(deploy)
    del missing["jobs"]["deploy"]["env"]["TRAINING_IMAGE"]
    assert pulumi_env_problems(missing, required) == [f"{where}: TRAINING_IMAGE is not set"]
    unsourced = copy.deepcopy(deploy)
    unsourced["jobs"]["deploy"]["env"]["TRAINING_IMAGE"] = "${{ steps.nowhere.outputs.training }}"
    (problem,) = pulumi_env_problems(unsourced, required)
    assert "no earlier step with id 'nowhere'" in problem
    unsourced["jobs"]["deploy"]["env"]["TRAINING_IMAGE"] = "${{ needs.image.outputs.trained }}"
    (problem,) = pulumi_env_problems(unsourced, required)
    assert "job 'image' has no output 'trained'" in problem
    del unsourced["jobs"]["deploy"]["needs"]
    problems = pulumi_env_problems(unsourced, required)
    assert any("job does not need 'image'" in p for p in problems), problems


def test_the_mlflow_client_matches_the_platforms_server(project: Path) -> None:
    """The project's MLflow client is pinned to the minor version of the server the platform runs
    (a newer client calls APIs an older server answers with 404)."""
    import tomllib

    from components.model_registry import MLFLOW_IMAGE

    server = re.search(r":v(\d+)\.(\d+)\.(\d+)", MLFLOW_IMAGE)
    assert server, MLFLOW_IMAGE
    major, minor = int(server[1]), int(server[2])
    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    (client,) = [
        r for r in pyproject["project"]["optional-dependencies"]["mlflow"] if r.startswith("mlflow")
    ]
    from packaging.requirements import Requirement
    from packaging.version import Version

    spec = Requirement(client).specifier
    assert Version(f"{major}.{minor}.0") in spec
    assert Version(f"{major}.{minor + 1}.0") not in spec
    assert Version(f"{major}.{minor - 1}.99") not in spec


def _steps(job: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s.get("name") or s.get("uses", ""): s for s in job.get("steps", [])}


def test_scheduled_promotion_takes_the_pending_candidate_and_records_refusals(
    project: Path,
) -> None:
    """Continuous training's last leg: the hourly promote run (AUTO_PROMOTE) takes
    `promote pending`, and a candidate the check or the canary refuses is `promote reject`ed."""
    promote = _workflows(project)["promote"]
    trigger = promote.get("on", promote.get(True))
    assert trigger["schedule"] == [{"cron": "23 * * * *"}]
    jobs = promote["jobs"]
    assert "vars.AUTO_PROMOTE == 'true'" in jobs["evaluate"]["if"]
    check = _steps(jobs["evaluate"])["Check"]["run"]
    assert ".promote pending" in check
    assert ".promote check" in check
    assert {"refused", "reason", "candidate"} <= set(jobs["evaluate"]["outputs"])
    assert jobs["reject"]["if"] == "needs.evaluate.outputs.refused != ''"
    assert ".promote reject" in _steps(jobs["reject"])["Reject"]["run"]
    assert jobs["promote"]["if"] == "needs.evaluate.outputs.candidate != ''"
    if not (project / "src" / project.name / "serve.py").exists():
        return
    steps = _steps(jobs["promote"])
    bake_run = steps["Bake (fails when the endpoint's alerts fire)"]["run"]
    # The bake starts one run of the drift CronJob the infra program really declares.
    (cron,) = re.findall(r"--from=cronjob/(\S+)", bake_run)
    with infra_on_path(project / "infra"):
        import quality

        declared = quality.drift_cronjob(
            project=project.name.replace("_", "-"),
            package=project.name,
            namespace="ns",
            image="i",
            queue="q",
            service_account="sa",
            bucket="b",
        )["metadata"]["name"]
    assert cron == declared
    assert "promote firing" in bake_run
    rejected = steps["Reject the candidate the canary alerts condemned"]
    assert rejected["if"] == "failure() && steps.bake.outcome == 'failure'"
    assert ".promote reject" in rejected["run"]
