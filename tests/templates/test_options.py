"""Bad options are refused with a clean message naming the option; new_project wires the stack."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from cookiecutter.exceptions import FailedHookException
from cookiecutter.main import cookiecutter

from mlplatform.new_project import NewProjectError, PlatformOffer, new_project, offer_from_plan
from tests.shipped import shipped_plan
from tests.templates.helpers import PLATFORM_REQUIREMENT, REPO, TEMPLATE, bake


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


@pytest.fixture(scope="module")
def dev() -> PlatformOffer:
    return offer_from_plan(shipped_plan("dev"))


@pytest.fixture(scope="module")
def prod() -> PlatformOffer:
    return offer_from_plan(shipped_plan("prod"))


def _quiet(_message: str) -> None:
    pass


def test_new_project_takes_region_stack_team_and_pool_from_the_stack(
    tmp_path: Path, prod: PlatformOffer
) -> None:
    root = new_project(
        prod,
        tmp_path,
        {"project_name": "Fraud Scorer", "framework": "pytorch", "accelerator": "nvidia-l4"},
        warn=_quiet,
    )
    assert root == tmp_path / "fraud_scorer"
    answers = json.loads((root / ".cruft.json").read_text())["context"]["cookiecutter"]
    assert answers["aws_region"] == "us-east-1"
    assert answers["platform_stack"] == "organization/ml-platform/prod"
    assert (answers["team"], answers["gpu_pool"]) == ("research", "l4-spot")
    assert answers["platform_requirement"].startswith("ml-platform @ ")
    config = yaml.safe_load((root / "infra" / "Pulumi.prod.yaml").read_text())["config"]
    assert config["fraud-scorer:gpuPool"] == "l4-spot"  # a pool of the stack, not "nvidia-l4"
    assert config["fraud-scorer:team"] == "research"
    assert config["fraud-scorer:platformStack"] == "organization/ml-platform/prod"
    assert config["aws:region"] == "us-east-1"
    # prod endpoints keep two replicas through a node drain
    assert (config["fraud-scorer:minReplicas"], config["fraud-scorer:maxReplicas"]) == ("2", "3")
    assert not (root / "infra" / "Pulumi.dev.yaml").exists()
    deploy = (root / ".github/workflows/deploy.yml").read_text()
    assert "stack-name: prod" in deploy and "aws-region: us-east-1" in deploy


def test_a_gpu_pool_alone_gives_its_accelerator(tmp_path: Path, prod: PlatformOffer) -> None:
    root = new_project(
        prod, tmp_path, {"framework": "pytorch", "gpu_pool": "a100-ondemand"}, warn=_quiet
    )
    answers = json.loads((root / ".cruft.json").read_text())["context"]["cookiecutter"]
    assert (answers["accelerator"], answers["gpu_pool"]) == ("nvidia-a100", "a100-ondemand")


def test_defaults_are_values_of_the_stack(tmp_path: Path, dev: PlatformOffer) -> None:
    root = new_project(dev, tmp_path, {}, warn=_quiet)
    answers = json.loads((root / ".cruft.json").read_text())["context"]["cookiecutter"]
    assert answers["team"] == next(iter(dev.outputs.trainingQueues)) == "research"
    assert (answers["accelerator"], answers["gpu_pool"]) == ("none", "")
    assert answers["platform_stack"] == "organization/ml-platform/dev"


@pytest.mark.parametrize(
    ("stack", "extra", "message"),
    [
        (
            "prod",
            {"team": "ops"},
            "team: 'ops' has no training queue on prod; teams: research, applied",
        ),
        (
            "prod",
            {"framework": "pytorch", "accelerator": "nvidia-h100"},
            "accelerator: team 'research' of stack 'prod' has no GPU pool with 'nvidia-h100'; it "
            "can use: a100-ondemand (nvidia-a100), l4-spot (nvidia-l4)",
        ),
        (
            "dev",
            {"framework": "pytorch", "gpu_pool": "l4-spot"},
            "gpu_pool: 'l4-spot' is not a GPU pool of dev",
        ),
        (
            "prod",
            {"framework": "pytorch", "gpu_pool": "l4-spot", "accelerator": "nvidia-a100"},
            "accelerator: 'nvidia-a100' does not match gpu_pool 'l4-spot'",
        ),
        (
            "dev",
            {"project_name": "monitoring"},
            "project_name: 'monitoring' belongs to the platform stack dev",
        ),
        (
            "prod",
            {"project_name": "churn", "team": "applied"},
            "team: prod registers 'churn' with team 'research', not 'applied'",
        ),
        ("dev", {"project_slug": "mlflow"}, "project_slug: 'mlflow'"),
        ("dev", {"aws_region": "eu-west-1"}, "aws_region: stack 'dev' runs in us-east-1"),
        ("dev", {"platform_requirement": "ml-platform==0.1.0"}, "must be a direct reference"),
        ("dev", {"project_slug": "my project"}, "project_slug: 'my project' must start"),
        ("dev", {"accelerator": "nvidia-v100"}, "accelerator: 'nvidia-v100' is not one of none"),
        (
            "dev",
            {"serving": "no", "serving_min_replicas": "2"},
            "serving_min_replicas: only applies",
        ),
        ("dev", {"colour": "red"}, "colour: unknown option; options are: project_name"),
    ],
)
def test_new_project_refuses_what_the_stack_or_template_cannot_do(
    tmp_path: Path,
    dev: PlatformOffer,
    prod: PlatformOffer,
    stack: str,
    extra: dict[str, str],
    message: str,
) -> None:
    offer = {"dev": dev, "prod": prod}[stack]
    with pytest.raises(NewProjectError) as info:
        new_project(offer, tmp_path, extra, warn=_quiet)
    assert message in str(info.value)
    assert "Traceback" not in str(info.value)
    assert not list(tmp_path.iterdir()), "nothing is generated when an option is bad"


def test_new_project_reports_every_problem_at_once(tmp_path: Path, prod: PlatformOffer) -> None:
    with pytest.raises(NewProjectError) as info:
        new_project(
            prod,
            tmp_path,
            {"project_slug": "bad slug", "accelerator": "nvidia-v100", "team": "ops"},
            warn=_quiet,
        )
    text = str(info.value)
    for key in (
        "accelerator: 'nvidia-v100' is not one of",
        "project_slug: 'bad slug'",
        "team: 'ops'",
    ):
        assert key in text


def test_a_local_stack_is_refused(tmp_path: Path) -> None:
    from mlplatform.new_project import platform_offer

    with pytest.raises(NewProjectError, match=r"supports AWS stacks only: stack 'local'"):
        platform_offer("local", REPO / "stacks")
    local = shipped_plan("local")
    with pytest.raises(NewProjectError, match=r"AWS stacks only"):
        offer_from_plan(local)


def test_outputs_that_break_the_contract_are_named(dev: PlatformOffer) -> None:
    plan = shipped_plan("dev")
    plan["outputs"]["trainingQueues"] = {"research": "research"}
    with pytest.raises(
        NewProjectError, match=r"(?s)stack .dev.: platform outputs break .*research"
    ):
        offer_from_plan(plan)
