"""Each class of config error is reported with its key path, all at once, before any resource."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlplatform.config import ConfigError, load_stack, parse_config, read_stack_file
from mlplatform.mocks import SECRET_PLACEHOLDER
from mlplatform.schema import engine_required_keys, optional_keys, render

ROOT = Path(__file__).resolve().parents[2]
BASE = {
    "aws:region": "us-east-1",
    "ml-platform:environment": "dev",
    "ml-platform:owner": "team",
    "ml-platform:costCenter": "cc",
    "ml-platform:modelStore": json.dumps({"protect": False}),
}


def problems(raw: dict[str, str], secret_keys: tuple[str, ...] = ()) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        parse_config("t", raw, secret_keys)
    return dict(info.value.problems)


def test_base_config_is_valid() -> None:
    s = parse_config("t", BASE)
    assert s.region == "us-east-1"
    assert s.base_tags["cost-center"] == "cc"


def test_unknown_key_names_allowed_keys() -> None:
    got = problems({**BASE, "ml-platform:enviroment": "dev"})
    assert "ml-platform:enviroment" in got
    assert "allowed keys" in got["ml-platform:enviroment"]
    assert "did you mean 'environment'?" in got["ml-platform:enviroment"]


def test_wrong_enum_lists_allowed_values() -> None:
    got = problems({**BASE, "ml-platform:environment": "qa"})
    assert "'dev' or 'prod'" in got["ml-platform:environment"]


def test_renamed_nat_mode_is_a_clear_migration_error() -> None:
    got = problems({**BASE, "ml-platform:network": json.dumps({"nat": "per-az"})})
    assert got["ml-platform:network.nat"] == (
        "'per-az' was renamed 'gateway-per-az'; "
        "allowed: 'gateway-per-az', 'single-gateway', 'instance', 'none'"
    )


def test_nat_instance_is_refused_in_prod_before_any_resource() -> None:
    got = problems(
        {
            **BASE,
            "ml-platform:environment": "prod",
            "ml-platform:network": json.dumps({"azCount": 3, "nat": "instance"}),
        }
    )
    assert "gateway-per-az" in got["ml-platform:network.nat"]


def test_unknown_region_and_all_problems_at_once() -> None:
    got = problems(
        {**BASE, "aws:region": "mars-1", "ml-platform:owner": "", "ml-platform:bogus": "x"}
    )
    assert set(got) == {"aws:region", "ml-platform:owner", "ml-platform:bogus"}
    assert "us-east-1" in got["aws:region"]


def test_reserved_tags_are_rejected() -> None:
    got = problems({**BASE, "ml-platform:tags": json.dumps({"owner": "someone"})})
    assert "ml-platform:tags" in got


def test_model_store_protection_is_an_explicit_choice_on_aws() -> None:
    raw = {k: v for k, v in BASE.items() if k != "ml-platform:modelStore"}
    assert "required on aws" in problems(raw)["ml-platform:modelStore"]
    got = problems({**BASE, "ml-platform:modelStore": json.dumps({"forceDestroy": True})})
    assert "ml-platform:modelStore.protect" in got


def test_section_environment_follows_the_stack() -> None:
    got = problems({**BASE, "ml-platform:network": json.dumps({"environment": "prod"})})
    assert "set by ml-platform:environment" in got["ml-platform:network.environment"]


def test_nested_errors_carry_full_paths_and_ranges() -> None:
    pools = [
        {"name": "a", "accelerator": "nvidia-z9", "maxGpus": 4},
        {"name": "b", "accelerator": "nvidia-a10g", "maxGpus": 0},
    ]
    got = problems(
        {
            **BASE,
            "ml-platform:gpuPools": json.dumps(pools),
            "ml-platform:network": json.dumps({"cidr": "10.0.0.0/33"}),
        }
    )
    assert "nvidia-a10g" in got["ml-platform:gpuPools[0].accelerator"]
    assert "greater than or equal to 1" in got["ml-platform:gpuPools[1].maxGpus"]
    assert any(k.startswith("ml-platform:network") for k in got)


def test_cross_section_references_are_checked() -> None:
    endpoint = {
        "project": "ghost",
        "image": "r.example.com/x:1.0",
        "model": {"path": "m"},
        "gpuPool": "nope",
        "resources": {"gpus": 1},
        "ingress": {"enabled": False},
    }
    got = problems({**BASE, "ml-platform:servingEndpoints": json.dumps({"ep": endpoint})})
    assert "unknown project 'ghost'" in got["ml-platform:servingEndpoints.ep.project"]
    assert "ml-platform:servingEndpoints.ep.gpuPool" in got


def test_autoscalers_the_platform_does_not_install_are_refused() -> None:
    # Neither KEDA nor prometheus-adapter is installed: a ScaledObject or a custom-metric HPA
    # would be declared and never act. Both problems come at once, with their keys.
    endpoint = {
        "project": "churn",
        "image": "r.example.com/x:1.0",
        "model": {"path": "m"},
        "ingress": {"enabled": False},
        "keda": {"enabled": True, "query": "sum(http_requests_in_flight)"},
        "autoscaling": {"metric": "requests"},
    }
    got = problems(
        {
            **BASE,
            "ml-platform:projects": json.dumps({"projects": [{"name": "churn"}]}),
            "ml-platform:servingEndpoints": json.dumps({"ep": endpoint}),
        }
    )
    assert "KEDA is not installed" in got["ml-platform:servingEndpoints.ep.keda.enabled"]
    assert "prometheus-adapter" in got["ml-platform:servingEndpoints.ep.autoscaling.metric"]


def test_local_platform_needs_a_context() -> None:
    got = problems({**BASE, "ml-platform:platform": "local"})
    assert "ml-platform:kubeContext" in got


def test_secure_values_are_placeholders(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.s.yaml").write_text(
        yaml.safe_dump({"config": {**BASE, "ml-platform:tags": {"team": {"secure": "v1:abc"}}}})
    )
    raw, secret_keys = read_stack_file("s", tmp_path)
    assert secret_keys == ["ml-platform:tags"]
    assert SECRET_PLACEHOLDER in raw["ml-platform:tags"]
    assert "v1:abc" not in json.dumps(raw)


def test_shipped_stacks_are_valid() -> None:
    for path in sorted((ROOT / "stacks").glob("Pulumi.*.yaml")):
        load_stack(path.name.split(".")[1])


def test_pulumi_yaml_is_generated_from_the_model() -> None:
    assert (ROOT / "Pulumi.yaml").read_text() == render(), (
        "run: uv run python -m mlplatform.schema --write"
    )
    doc = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    assert doc["runtime"] == {"name": "python", "options": {"toolchain": "uv"}}
    assert doc["stackConfigDir"] == "stacks"
    assert all(entry.get("description") for entry in doc["config"].values())


def _stack_keys(path: Path) -> set[str]:
    return set((yaml.safe_load(path.read_text()) or {}).get("config") or {})


def _missing_for_engine(project: dict[str, Any], stack_file: Path) -> list[str]:
    keys = _stack_keys(stack_file)
    return [k for k in engine_required_keys(project) if f"{project['name']}:{k}" not in keys]


def test_every_key_the_engine_requires_is_set_by_every_shipped_stack() -> None:
    """`pulumi up` refuses a stack that lacks a declared key with no default, before the program
    runs ("Stack 'dev' is missing configuration values ..."); the offline plan never sees that."""
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    assert set(engine_required_keys(project)) == {"environment", "owner", "costCenter"}
    stacks = sorted((ROOT / "stacks").glob("Pulumi.*.yaml"))
    assert [p.name for p in stacks] == ["Pulumi.dev.yaml", "Pulumi.local.yaml", "Pulumi.prod.yaml"]
    assert {p.name: _missing_for_engine(project, p) for p in stacks} == {p.name: [] for p in stacks}


def test_optional_keys_whose_absence_matters_are_not_declared() -> None:
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    assert set(optional_keys()) == {
        "kubeContext",
        "modelStore",
        "modelRegistry",
        "localObjectStore",
    }
    assert not set(optional_keys()) & set(project["config"])


def test_a_declared_key_without_default_is_caught(tmp_path: Path) -> None:
    """What Pulumi.yaml looked like before: typed optional keys without a default."""
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    project["config"]["kubeContext"] = {"type": "string", "description": "..."}
    project["config"]["modelStore"] = {"description": "...", "default": None}
    assert _missing_for_engine(project, ROOT / "stacks" / "Pulumi.dev.yaml") == ["kubeContext"]
    assert _missing_for_engine(project, ROOT / "stacks" / "Pulumi.local.yaml") == ["modelStore"]
    # Keys of another namespace carry a value, never a requirement.
    project["config"]["aws:region"] = {"value": "us-east-1"}
    assert "aws:region" not in engine_required_keys(project)


def test_plan_cli_exits_2_without_traceback(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.bad.yaml").write_text(
        yaml.safe_dump({"config": {**BASE, "aws:region": "nowhere-1", "ml-platform:typo": 1}})
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlplatform.cli",
            "plan",
            "--stack",
            "bad",
            "--stacks-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "aws:region" in proc.stderr and "ml-platform:typo" in proc.stderr
    assert proc.stdout == ""


GPU_BLOCK = {
    "id": "cr-0aaaaaaaaaaaaaaaa",
    "instanceType": "p5.48xlarge",
    "instances": 2,
    "start": "2026-12-10T11:30:00Z",
    "end": "2026-12-14T11:30:00Z",
    "maxRunTime": "36h",
    "teams": ["research"],
}


def test_capacity_mistakes_are_reported_together_before_any_resource(tmp_path: Path) -> None:
    config = {
        **BASE,
        "ml-platform:network": json.dumps({"azCount": 2, "availabilityZones": ["us-east-1a", "us-east-1b"]}),
        "ml-platform:gpuPools": json.dumps(
            [
                {   # a reservation in another region, and one in a zone without a subnet
                    "name": "a100",
                    "accelerator": "nvidia-a100",
                    "maxGpus": 16,
                    "reservations": {
                        "select": [
                            {"arn": "arn:aws:ec2:eu-west-1:123456789012:capacity-reservation/cr-0123456789abcdef0"},
                            {"id": "cr-0fedcba9876543210", "availabilityZone": "us-east-1f"},
                        ]
                    },
                },
                {   # a capacity block on a spot pool
                    "name": "h100",
                    "accelerator": "nvidia-h100",
                    "maxGpus": 16,
                    "capacityTypes": ["spot"],
                    "reservations": {"blocks": [GPU_BLOCK]},
                },
                {   # SOCI needs a newer node image than the one pinned below
                    "name": "l4",
                    "accelerator": "nvidia-l4",
                    "maxGpus": 4,
                },
            ]
        ),
        "ml-platform:karpenter": json.dumps({"amiAlias": "al2023@v20250701"}),
        "ml-platform:trainingQueues": json.dumps(
            {"teams": [{"name": "research", "namespaces": ["churn"],
                        "quotas": [{"pool": "h100", "gpus": 8}]}]}
        ),
    }  # fmt: skip
    got = problems(config)
    pools = "ml-platform:gpuPools"
    assert "names region eu-west-1" in got[f"{pools}[0].reservations.select[0].arn"]
    assert "no subnet" in got[f"{pools}[0].reservations.select[1].availabilityZone"]
    assert "capacity block on a spot pool" in got[f"{pools}[1].reservations.blocks"]
    for i in range(3):
        assert "al2023@v20250821" in got[f"{pools}[{i}].imagePull"]
    assert "own queue" in got["ml-platform:trainingQueues.teams[0].quotas[0].pool"]

    (tmp_path / "Pulumi.bad.yaml").write_text(yaml.safe_dump({"config": config}))
    proc = subprocess.run(
        [sys.executable, "-m", "mlplatform.cli", "plan", "--stack", "bad", "--stacks-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and proc.stdout == ""
    assert "capacity block on a spot pool" in proc.stderr and "eu-west-1" in proc.stderr


def test_a_block_pool_with_its_queue_is_valid() -> None:
    settings = parse_config(
        "t",
        {
            **BASE,
            "ml-platform:gpuPools": json.dumps(
                [{"name": "h100", "accelerator": "nvidia-h100", "maxGpus": 16,
                  "reservations": {"priority": "only", "blocks": [GPU_BLOCK]}}]
            ),
            "ml-platform:trainingQueues": json.dumps(
                {"teams": [{"name": "research", "namespaces": ["churn"]}]}
            ),
        },
    )  # fmt: skip
    (pool,) = settings.config.gpu_pools
    assert pool.reserved_only and pool.reservations is not None


def test_ci_mistakes_are_reported_together() -> None:
    role = "arn:aws:iam::123456789012:role/"
    got = problems(
        {
            **BASE,
            "ml-platform:network": json.dumps({"nat": "none"}),
            "ml-platform:cluster": json.dumps({"adminRoleArns": [role + "preview"]}),
            "ml-platform:ci": json.dumps(
                {
                    "enabled": True,
                    "deployRoleArn": "arn:aws:iam::123456789012:user/deploy",
                    "previewRoleArn": role + "preview",
                }
            ),
        }
    )
    assert "must be an IAM role ARN" in got["ml-platform:ci.deployRoleArn"]
    assert "required when enabled" in got["ml-platform:ci.repository"]
    assert "required when enabled" in got["ml-platform:ci.connectionArn"]
    assert "previews must not run as cluster admin" in got["ml-platform:ci.previewRoleArn"]
    size = problems({**BASE, "ml-platform:ci": json.dumps({"computeSize": "huge"})})
    assert "'small'" in size["ml-platform:ci.computeSize"]


def test_ci_runners_need_a_route_out_and_aws() -> None:
    role = "arn:aws:iam::123456789012:role/"
    ci = {
        "enabled": True,
        "repository": "o/r",
        "connectionArn": "arn:aws:codeconnections:us-east-1:123456789012:connection/"
        "4f1c2a9e-7b3d-4e8f-9a21-5c6d7e8f9a0b",
        "deployRoleArn": role + "deploy",
        "previewRoleArn": role + "preview",
    }
    got = problems(
        {
            **BASE,
            "ml-platform:network": json.dumps({"nat": "none"}),
            "ml-platform:ci": json.dumps(ci),
        }
    )
    assert "'instance'" in got["ml-platform:ci.enabled"]
    local = problems(
        {
            **BASE,
            "ml-platform:platform": "local",
            "ml-platform:kubeContext": "kind",
            "ml-platform:ci": json.dumps(ci),
        }
    )
    assert "only valid on aws" in local["ml-platform:ci"]
    parse_config("t", {**BASE, "ml-platform:ci": json.dumps(ci)})  # the same, valid on aws
