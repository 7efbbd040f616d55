"""Bake every valid combination of the template's choices and check what comes out."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

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


@pytest.fixture(scope="session")
def baked(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("baked")
    return {combo_id(c): bake(root / combo_id(c), **c) for c in COMBOS}


def test_combination_count_matches_the_documented_rule() -> None:
    # framework x accelerator x serving x ci, minus sklearn with a GPU accelerator.
    n_accel = len(CHOICES["accelerator"])
    total = 2 * n_accel * 2 * 2
    assert len(COMBOS) == total - (n_accel - 1) * 2 * 2
    assert not is_valid({"framework": "sklearn", "accelerator": "nvidia-t4"})


@pytest.mark.parametrize("combo", COMBOS, ids=combo_id)
def test_exact_file_set(baked: dict[str, Path], combo: dict[str, str]) -> None:
    assert project_files(baked[combo_id(combo)]) == expected_files(combo)


@pytest.mark.parametrize("combo", COMBOS, ids=combo_id)
def test_nothing_left_unrendered(baked: dict[str, Path], combo: dict[str, str]) -> None:
    root = baked[combo_id(combo)]
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
