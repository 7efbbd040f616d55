"""The offline plan runs the real program under mocks and emits the documented JSON contract."""

from __future__ import annotations

import json
import subprocess
import sys

import pulumi
import pytest
import yaml

from mlplatform import program
from mlplatform.plan import run_program
from mlplatform.report import build_plan

RESOURCE_KEYS = {
    "urn",
    "type",
    "custom",
    "parent",
    "inputs",
    "protect",
    "retainOnDelete",
    "dependencies",
}


@pytest.fixture(scope="module", params=["dev", "prod"])
def plan(request: pytest.FixtureRequest) -> dict:
    return build_plan(request.param)


def test_top_level_contract(plan: dict) -> None:
    assert {"stack", "resources", "outputs", "manifests", "helmReleases"} <= set(plan)
    for r in plan["resources"]:
        assert set(r) >= RESOURCE_KEYS, r["urn"]
        assert r["urn"].startswith(f"urn:pulumi:{plan['stack']}::ml-platform::")
    for m in plan["manifests"]:
        assert {"apiVersion", "kind", "metadata"} <= set(m)
    for h in plan["helmReleases"]:
        assert {"name", "chart", "version", "repository", "namespace", "values"} <= set(h)
        assert h["version"], f"chart {h['chart']} is not pinned"


def test_plan_is_deterministic(plan: dict) -> None:
    again = build_plan(plan["stack"])
    assert json.dumps(again, sort_keys=True) == json.dumps(plan, sort_keys=True)


def test_integral_numbers_are_ints(plan: dict) -> None:
    def walk(v: object) -> None:
        if isinstance(v, float):
            assert not v.is_integer(), f"integral float {v}"
        elif isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    walk(plan["manifests"])


def test_bad_config_under_pulumi_up_is_a_run_error() -> None:
    raw = {
        "aws:region": "us-east-1",
        "ml-platform:environment": "nope",
        "ml-platform:owner": "x",
        "ml-platform:costCenter": "y",
    }
    with pytest.raises(pulumi.RunError, match="ml-platform:environment"):
        run_program(program.main, stack="t", config=raw)


@pytest.mark.parametrize("fmt", ["json", "table", "markdown"])
def test_cli_formats(fmt: str, tmp_path) -> None:
    out = tmp_path / "manifests"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlplatform.cli",
            "plan",
            "--stack",
            "dev",
            "--format",
            fmt,
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    if fmt == "json":
        assert json.loads(proc.stdout)["stack"] == "dev"
    elif fmt == "table":
        assert "Stack dev" in proc.stdout
    else:
        assert proc.stdout.startswith("### Offline plan")
    assert len(list(out.glob("*.yaml"))) == len(build_plan("dev")["manifests"])


def test_written_secrets_keep_a_shape_the_api_server_takes(tmp_path) -> None:
    """A plan shows a wholly secret map as "[secret]"; `--out` leaves such a field out (and says
    so in an annotation) rather than write a string where the API server wants a map."""
    from mlplatform.render import REDACTED_ANNOTATION, applicable, write_manifests

    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}}
    redacted = applicable({**secret, "stringData": "[secret]", "type": "Opaque"})
    assert "stringData" not in redacted
    assert redacted["metadata"]["annotations"] == {REDACTED_ANNOTATION: "stringData"}
    kept = {**secret, "stringData": {"user": "admin", "password": "[secret]"}}
    assert applicable(kept) == kept
    written = [yaml.safe_load(p.read_text()) for p in write_manifests(build_plan("dev"), tmp_path)]
    secrets = [m for m in written if m["kind"] == "Secret"]
    assert secrets
    for m in secrets:
        assert all(isinstance(m.get(k, {}), dict) for k in ("data", "stringData")), m
