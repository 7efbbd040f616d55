"""Bake every valid combination of the template's choices and check what comes out."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import missing_tool
from tests.templates.helpers import (
    CHOICES,
    GPU_POOL,
    TEMPLATE,
    bake,
    combo_id,
    expected_files,
    is_valid,
    project_files,
    valid_combinations,
)

COMBOS = list(valid_combinations())
# Jinja left behind: "{{ ..." or "{% ...". GitHub expressions (${{ }}) are not Jinja, nor are
# Prometheus alert templates ({{ $labels.x }}, {{ $value }}) in monitoring/model-alerts.yml.
UNRENDERED = re.compile(r"(?<!\$)\{\{(?!\s*\$)|\{%|%\}|cookiecutter\.")


# The workflows of a project that the stack gives a CI runner (prod registers churn with its
# repository): its runner and roles as new-project fills them from prod's real plan.
RUNNER_COMBOS = [c for c in COMBOS if c["accelerator"] == "none" and c["ci"] == "github"]


@pytest.fixture(scope="session")
def runner_values() -> dict[str, str]:
    from mlplatform.new_project import offer_from_plan
    from mlplatform.registration import ci_values
    from tests.shipped import shipped_plan

    values = ci_values(offer_from_plan(shipped_plan("prod")), "churn")
    assert values["_ci_runner"], "prod's churn names its repository: it has a runner"
    return values


@pytest.fixture(scope="session")
def baked(
    tmp_path_factory: pytest.TempPathFactory, runner_values: dict[str, str]
) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("baked")
    out = {combo_id(c): bake(root / combo_id(c), **c) for c in COMBOS}
    for c in RUNNER_COMBOS:
        key = f"{combo_id(c)}-runner"
        out[key] = bake(root / key, **c, **runner_values)
    return out


def test_combination_count_matches_the_documented_rule() -> None:
    # framework x accelerator x serving x ci, minus sklearn with a GPU accelerator.
    n_accel = len(CHOICES["accelerator"])
    total = 2 * n_accel * 2 * 2
    assert len(COMBOS) == total - (n_accel - 1) * 2 * 2
    assert not is_valid({"framework": "sklearn", "accelerator": "nvidia-t4"})


# Every bake: each combination, and the runner-wired ones.
ALL_BAKES = [(combo_id(c), c) for c in COMBOS] + [
    (f"{combo_id(c)}-runner", c) for c in RUNNER_COMBOS
]


@pytest.mark.parametrize(("key", "combo"), ALL_BAKES, ids=[k for k, _ in ALL_BAKES])
def test_exact_file_set(baked: dict[str, Path], key: str, combo: dict[str, str]) -> None:
    assert project_files(baked[key]) == expected_files(combo)


@pytest.mark.parametrize(("key", "combo"), ALL_BAKES, ids=[k for k, _ in ALL_BAKES])
def test_nothing_left_unrendered(baked: dict[str, Path], key: str, combo: dict[str, str]) -> None:
    root = baked[key]
    leftovers = []
    for rel in sorted(project_files(root)):
        for n, line in enumerate((root / rel).read_text().splitlines(), 1):
            if UNRENDERED.search(line):
                leftovers.append(f"{rel}:{n}: {line.strip()}")
    assert not leftovers, "\n".join(leftovers)


@pytest.mark.parametrize("combo", COMBOS, ids=combo_id)
def test_options_reach_the_files(baked: dict[str, Path], combo: dict[str, str]) -> None:
    root = baked[combo_id(combo)]
    pyproject = (root / "pyproject.toml").read_text()
    assert ('"torch>=' in pyproject) == (combo["framework"] == "pytorch")
    assert ('"fastapi>=' in pyproject) == (combo["serving"] == "yes")
    assert ("\nserve:" in (root / "Makefile").read_text()) == (combo["serving"] == "yes")
    pulumi_yaml = (root / "infra" / "Pulumi.yaml").read_text()
    gpus = 0 if combo["accelerator"] == "none" else 1
    assert f"default: {gpus}\n" in pulumi_yaml
    stack_file = yaml.safe_load((root / "infra" / "Pulumi.dev.yaml").read_text())["config"]
    ns = root.name.replace("_", "-")
    assert stack_file[f"{ns}:team"] == "research"
    assert stack_file[f"{ns}:platformStack"] == "org/ml-platform/dev"
    assert stack_file.get(f"{ns}:gpuPool") == (None if gpus == 0 else GPU_POOL)
    dockerfile = (root / "Dockerfile").read_text()
    assert ("EXPOSE 8080" in dockerfile) == (combo["serving"] == "yes")
    cruft = json.loads((root / ".cruft.json").read_text())
    answers = cruft["context"]["cookiecutter"]
    assert {k: answers[k] for k in combo} == combo
    assert cruft["directory"] == "templates/ml-project"


def _run(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300)


def _tool(name: str) -> str:
    path = Path(sys.executable).parent / name
    if not path.exists():
        missing_tool(f"{name} is not installed in this environment (the test group)")
    return str(path)


def test_ruff_clean_everywhere(baked: dict[str, Path]) -> None:
    """Lint and format checks, each project under its own generated pyproject settings."""
    ruff = _tool("ruff")
    dirs = [str(p) for p in baked.values()]
    check = _run([ruff, "check", "--no-cache", *dirs])
    assert check.returncode == 0, check.stdout + check.stderr
    fmt = _run([ruff, "format", "--check", "--no-cache", *dirs])
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def test_ruff_clean_with_longest_slug(tmp_path: Path) -> None:
    ruff = _tool("ruff")
    root = bake(tmp_path, project_name="x" * 40, framework="pytorch", accelerator="nvidia-h100")
    assert root.name == "x" * 40
    for cmd in (["check"], ["format", "--check"]):
        result = _run([ruff, *cmd, "--no-cache", str(root)])
        assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfiles_pass_hadolint(baked: dict[str, Path]) -> None:
    hadolint = _tool("hadolint")
    files = sorted({str(p / "Dockerfile") for p in baked.values()})
    result = _run([hadolint, "--failure-threshold", "info", *files])
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_is_pinned_non_root_with_healthcheck(baked: dict[str, Path]) -> None:
    for root in baked.values():
        text = (root / "Dockerfile").read_text()
        froms = re.findall(r"^FROM (\S+)(?: AS (\S+))?$", text, flags=re.M)
        assert len(froms) >= 4, "multi-stage: uv, base, builder, runtime"
        stages: set[str] = set()
        for image, stage in froms:
            # FROM an earlier stage is not an image to pin.
            if image not in stages:
                assert re.search(r":\d+\.\d+\.\d+(-[a-z-]+)?$|@sha256:", image), image
            stages.add(stage)
        assert froms[-1][1] == "runtime", "the default target is the runtime image"
        assert re.search(r"^USER 10001$", text, flags=re.M)
        assert "HEALTHCHECK" in text


@pytest.fixture(scope="session")
def workflow_files(baked: dict[str, Path]) -> list[str]:
    return sorted(
        str(f) for root in baked.values() for f in (root / ".github" / "workflows").glob("*.yml")
    )


def test_workflows_match_the_github_schema(workflow_files: list[str]) -> None:
    assert workflow_files
    result = _run(
        [_tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", *workflow_files]
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_workflows_pass_actionlint(workflow_files: list[str]) -> None:
    result = _run([_tool("actionlint"), "-no-color", *workflow_files])
    assert result.returncode == 0, result.stdout + result.stderr


def test_workflows_pass_zizmor(baked: dict[str, Path]) -> None:
    dirs = [str(p) for p in baked.values() if (p / ".github").is_dir()]
    result = _run([_tool("zizmor"), "--offline", "--persona", "auditor", "--no-progress", *dirs])
    assert result.returncode == 0, result.stdout + result.stderr


def test_workflow_actions_pinned_to_full_shas(workflow_files: list[str]) -> None:
    for path in workflow_files:
        for ref in re.findall(r"uses:\s*(\S+)", Path(path).read_text()):
            # `$/`: a reusable workflow of this repository, at the caller's own commit.
            if ref.startswith("$/"):
                assert (Path(path).parents[2] / ref[2:]).is_file(), f"{path}: {ref}"
                continue
            assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", ref), f"{path}: {ref}"


def test_deploy_workflow_uses_oidc_not_keys(baked: dict[str, Path]) -> None:
    root = baked[combo_id(COMBOS[0])]
    for name in ("infra-preview", "deploy"):
        text = (root / ".github" / "workflows" / f"{name}.yml").read_text()
        assert "id-token: write" in text
        assert "role-to-assume:" in text
        assert "AWS_SECRET_ACCESS_KEY" not in text
    assert "comment-on-pr: true" in (root / ".github/workflows/infra-preview.yml").read_text()


def test_hooks_logic_has_no_jinja() -> None:
    marker = "# ---- no Jinja below this line ----"
    for hook in sorted((TEMPLATE / "hooks").glob("*.py")):
        head, sep, logic = hook.read_text().partition(marker)
        assert sep, f"{hook.name} lacks the marker line"
        assert not re.search(r"\{\{|\{%", logic), f"Jinja in {hook.name}'s logic"
        # Above the marker: only `"key": {{ cookiecutter.key | tojson }},` assignments (or a
        # parenthesised expression about cookiecutter values, through tojson).
        for line in head.splitlines():
            if "{{" in line:
                assert re.fullmatch(
                    r'\s*"(\w+)": \{\{ (cookiecutter\.\1|\(.*cookiecutter\..*\)( \| string)?) '
                    r"\| tojson \}\},",
                    line,
                ), line


def test_rendered_hooks_are_ruff_clean(tmp_path: Path) -> None:
    from cookiecutter.environment import StrictEnvironment
    from cookiecutter.generate import generate_context
    from cookiecutter.prompt import prompt_for_config

    context = generate_context(str(TEMPLATE / "cookiecutter.json"))
    answers = prompt_for_config(context, no_input=True)
    env = StrictEnvironment(context=context)
    for hook in sorted((TEMPLATE / "hooks").glob("*.py")):
        rendered = env.from_string(hook.read_text()).render(cookiecutter=answers)
        (tmp_path / hook.name).write_text(rendered + "\n")
    (tmp_path / "ruff.toml").write_text(
        'target-version = "py311"\nline-length = 100\n'
        '[lint]\nselect = ["E", "F", "W", "I", "B", "UP", "SIM", "RUF", "S", "C4"]\n'
    )
    ruff = _tool("ruff")
    result = _run([ruff, "check", "--no-cache", str(tmp_path)])
    assert result.returncode == 0, result.stdout
    fmt = _run([ruff, "format", "--check", "--no-cache", str(tmp_path)])
    assert fmt.returncode == 0, fmt.stdout


# The workflows' jobs that talk to the cluster, and the GitHub environment each runs in.
CLUSTER_JOBS = {
    ("deploy", "deploy"): "deploy",
    ("infra-preview", "preview"): "preview",
    ("train", "submit"): "deploy",
    ("promote", "evaluate"): "preview",
    ("promote", "promote"): "deploy",
}


def _jobs(root: Path, workflow: str) -> dict[str, Any]:
    return yaml.safe_load((root / ".github" / "workflows" / f"{workflow}.yml").read_text())["jobs"]


def _role_of(job: dict[str, Any]) -> str:
    (step,) = [s for s in job["steps"] if "configure-aws-credentials" in s.get("uses", "")]
    return str(step["with"]["role-to-assume"])


def test_cluster_jobs_run_on_the_projects_runner_with_its_roles(
    baked: dict[str, Path], runner_values: dict[str, str]
) -> None:
    """With a runner (the stack registers the project's repository): every job that reaches the
    cluster runs on the project's CodeBuild runner, as the role its environment is trusted by."""
    label = (
        f"codebuild-{runner_values['_ci_runner']}-${{{{ github.run_id }}}}-"
        "${{ github.run_attempt }}"
    )
    from components.project_ci import PROJECT_WORKFLOWS

    for c in RUNNER_COMBOS:
        root = baked[f"{combo_id(c)}-runner"]
        for (workflow, job_id), role in CLUSTER_JOBS.items():
            job = _jobs(root, workflow)[job_id]
            assert job["runs-on"] == label, (workflow, job_id)
            assert _role_of(job) == runner_values[f"_ci_{role}_role_arn"], (workflow, job_id)
            assert job["permissions"]["id-token"] == "write"
            # The runner project's webhook starts builds for these workflows only.
            name = yaml.safe_load((root / ".github/workflows" / f"{workflow}.yml").read_text())
            assert name["name"] in PROJECT_WORKFLOWS
        # Images are built on GitHub-hosted runners (CodeBuild's runner has no Docker), with the
        # preview role for a pull request's images and the deploy role otherwise.
        build = _jobs(root, "image")["build"]
        assert build["runs-on"] == "ubuntu-24.04"
        role = _role_of(build)
        assert runner_values["_ci_preview_role_arn"] in role
        assert runner_values["_ci_deploy_role_arn"] in role
        # Offline checks stay GitHub-hosted and credential-less (forks included).
        for job in _jobs(root, "ci").values():
            assert job["runs-on"] == "ubuntu-24.04"
            assert "id-token" not in (job.get("permissions") or {})


def test_without_a_runner_cluster_jobs_keep_the_repository_variables(
    baked: dict[str, Path],
) -> None:
    root = baked[combo_id(RUNNER_COMBOS[0])]
    for (workflow, job_id), _role in CLUSTER_JOBS.items():
        job = _jobs(root, workflow)[job_id]
        assert job["runs-on"] == "ubuntu-24.04"
        assert _role_of(job) == "${{ vars.AWS_DEPLOY_ROLE_ARN }}"
