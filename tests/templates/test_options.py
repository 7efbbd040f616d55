"""Bad options are refused with a clean message naming the option; new_project wires the stack."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cookiecutter.exceptions import FailedHookException
from cookiecutter.main import cookiecutter

from mlplatform.new_project import NewProjectError, new_project, stack_values
from tests.templates.helpers import PLATFORM_REQUIREMENT, TEMPLATE, bake

STACK = {"stack": "dev", "region": "eu-west-1", "accelerators": ["nvidia-l4", "nvidia-a10g"]}


def _cli(tmp_path: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """The plain cookiecutter CLI, as a user would run it."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "cookiecutter",
            "--no-input",
            "-o",
            str(tmp_path),
            str(TEMPLATE),
            f"platform_requirement={PLATFORM_REQUIREMENT}",
            *options,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("options", "named"),
    [
        (["project_slug=my project"], "project_slug: 'my project' must start with a lowercase"),
        (["project_slug=My-Project"], "no spaces or dashes"),
        (["project_slug=import"], "would shadow a Python module"),
        (["serving=no", "serving_min_replicas=2"], "serving_min_replicas: only applies when"),
        (["serving_min_replicas=5", "serving_max_replicas=2"], "serving_min_replicas: must be <="),
        (["framework=sklearn", "accelerator=nvidia-t4"], "accelerator: 'nvidia-t4' needs"),
        (["aws_region=mars-1"], "aws_region: 'mars-1' is not an AWS region"),
        (["platform_stack=dev"], "platform_stack: 'dev' must look like org/project/stack"),
        (["python_version=2.7"], "python_version: '2.7' is not one of"),
    ],
)
def test_cli_rejects_bad_option_cleanly(tmp_path: Path, options: list[str], named: str) -> None:
    result = _cli(tmp_path, *options)
    assert result.returncode == 1
    assert named in result.stderr
    assert "Traceback" not in result.stderr.split("Stopping generation")[0]
    assert not list(tmp_path.iterdir()), "nothing is written when the options are refused"


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    result = _cli(
        tmp_path, "project_slug=bad slug", "aws_region=x", "serving=no", "serving_max_replicas=4"
    )
    assert result.returncode == 1
    for key in ("project_slug:", "aws_region:", "serving_max_replicas:"):
        assert key in result.stderr


def test_unknown_accelerator_is_named_by_the_api(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"nvidia-v100 provided for choice variable accelerator"):
        bake(tmp_path, accelerator="nvidia-v100")


def test_unknown_accelerator_in_a_replay_file_is_caught_by_the_hook(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    # Replays skip cookiecutter's choice check, so the pre-generation hook must catch it.
    good = bake(tmp_path / "good")
    context = json.loads((good / ".cruft.json").read_text())["context"]
    context["cookiecutter"]["accelerator"] = "nvidia-v100"
    replay = tmp_path / "replay.json"
    replay.write_text(json.dumps(context))
    with pytest.raises(FailedHookException):
        cookiecutter(str(TEMPLATE), replay=str(replay), output_dir=str(tmp_path / "out"))
    assert "accelerator: 'nvidia-v100' is not one of none, nvidia-t4" in capfd.readouterr().err


def test_replay_from_cruft_metadata_regenerates_the_same_project(tmp_path: Path) -> None:
    first = bake(
        tmp_path / "a",
        project_name="Demand Forecast",
        framework="pytorch",
        accelerator="nvidia-a100",
        serving="no",
    )
    replay = tmp_path / "replay.json"
    replay.write_text(json.dumps(json.loads((first / ".cruft.json").read_text())["context"]))
    second = Path(cookiecutter(str(TEMPLATE), replay=str(replay), output_dir=str(tmp_path / "b")))
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    for rel in files:
        assert (first / rel).read_bytes() == (second / rel).read_bytes(), rel


def test_quotes_in_free_text_cannot_break_generated_files(tmp_path: Path) -> None:
    import tomllib

    root = bake(tmp_path, description="Says \"hi\" \\ and 'bye'", author='O"Brien')
    meta = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    assert meta["description"] == "Says \"hi\" \\ and 'bye'"
    assert meta["authors"] == [{"name": 'O"Brien'}]
    assert json.loads((root / ".cruft.json").read_text())["context"]["cookiecutter"]["author"] == (
        'O"Brien'
    )


# --- new_project ------------------------------------------------------------------------------


def test_new_project_takes_region_stack_and_presets_from_the_stack(tmp_path: Path) -> None:
    root = new_project(
        STACK,
        tmp_path,
        {"project_name": "Fraud Scorer", "framework": "pytorch", "accelerator": "nvidia-l4"},
    )
    assert root == tmp_path / "fraud_scorer"
    answers = json.loads((root / ".cruft.json").read_text())["context"]["cookiecutter"]
    assert answers["aws_region"] == "eu-west-1"
    assert answers["platform_stack"] == "organization/ml-platform/dev"
    assert answers["platform_requirement"].startswith("ml-platform @ file://")
    assert "organization/ml-platform/dev" in (root / "infra" / "Pulumi.dev.yaml").read_text()
    assert "aws:region: eu-west-1" in (root / "infra" / "Pulumi.dev.yaml").read_text()
    assert "organization/ml-platform/prod" in (root / "infra" / "Pulumi.prod.yaml").read_text()
    assert "aws-region: eu-west-1" in (root / ".github/workflows/deploy.yml").read_text()
    assert 'default: "nvidia-l4"' in (root / "infra" / "Pulumi.yaml").read_text()
    cruft = json.loads((root / ".cruft.json").read_text())
    assert cruft["template"].endswith("templates/ml-project")


def test_new_project_refuses_a_preset_the_stack_lacks(tmp_path: Path) -> None:
    with pytest.raises(
        NewProjectError,
        match=r"accelerator: 'nvidia-h100' is not offered by "
        r"stack 'dev'; it offers: nvidia-a10g, nvidia-l4",
    ):
        new_project(STACK, tmp_path, {"framework": "pytorch", "accelerator": "nvidia-h100"})
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"project_slug": "my project"}, "project_slug: 'my project' must start"),
        ({"accelerator": "nvidia-v100"}, "accelerator: 'nvidia-v100' is not one of none"),
        ({"serving": "no", "serving_min_replicas": "2"}, "serving_min_replicas: only applies"),
        ({"colour": "red"}, "colour: unknown option; options are: project_name"),
    ],
)
def test_new_project_errors_name_the_option_without_traceback(
    tmp_path: Path, extra: dict[str, str], message: str
) -> None:
    with pytest.raises(NewProjectError) as info:
        new_project(STACK, tmp_path, extra)
    assert message in str(info.value)
    assert "Traceback" not in str(info.value)


def test_stack_values_from_a_settings_object() -> None:
    class Pool:
        def model_dump(self, mode: str) -> dict[str, Any]:
            return {"gpuPools": [{"name": "big", "accelerator": "nvidia-h100"}], "x": "nvidia-t4"}

    class Settings:
        stack = "prod"
        region = "us-west-2"
        config = Pool()

    values = stack_values(Settings())
    assert values == {
        "stack": "prod",
        "region": "us-west-2",
        "accelerators": ["nvidia-h100", "nvidia-t4"],
        "platform_stack": "organization/ml-platform/prod",
    }


def test_stack_values_explain_whats_missing() -> None:
    with pytest.raises(NewProjectError, match=r"(?s)stack: .*required.*region: "):
        stack_values({})


def test_new_project_reports_choice_and_hook_problems_together(tmp_path: Path) -> None:
    with pytest.raises(NewProjectError) as info:
        new_project(STACK, tmp_path, {"project_slug": "bad slug", "accelerator": "nvidia-v100"})
    text = str(info.value)
    assert "accelerator: 'nvidia-v100' is not one of" in text
    assert "project_slug: 'bad slug'" in text
    assert not list(tmp_path.iterdir()), "nothing is generated when an option is bad"
