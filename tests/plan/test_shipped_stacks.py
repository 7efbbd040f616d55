"""Every shipped stack: its manifests are valid Kubernetes, and it passes the policy pack."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from mlplatform.report import build_plan

ROOT = Path(__file__).resolve().parents[2]
STACKS = sorted(p.name.split(".")[1] for p in (ROOT / "stacks").glob("Pulumi.*.yaml"))
# The EKS version the stacks run, and the newest schema the validator ships.
VERSIONS = ("1.33", "1.37")


@pytest.fixture(scope="module", params=STACKS)
def plan(request: pytest.FixtureRequest) -> dict[str, Any]:
    return build_plan(request.param)


def _unredacted(m: dict[str, Any]) -> dict[str, Any]:
    """Plans print secret maps as "[secret]"; validate the shape with a stand-in value."""
    out = dict(m)
    for key in ("data", "stringData"):
        if isinstance(out.get(key), str):
            out[key] = {"redacted": "eA=="}
    return out


def _builtin(m: dict[str, Any]) -> bool:
    group = m["apiVersion"].rpartition("/")[0]
    return group in (
        "",
        "apps",
        "batch",
        "networking.k8s.io",
        "policy",
        "rbac.authorization.k8s.io",
        "storage.k8s.io",
        "autoscaling",
        "scheduling.k8s.io",
    )


def test_builtin_manifests_pass_the_official_schemas(plan: dict[str, Any]) -> None:
    builtin = [m for m in plan["manifests"] if _builtin(m)]
    assert builtin
    for m in builtin:
        for version in VERSIONS:
            kubernetes_validate.validate(_unredacted(m), version, strict=True)


def test_custom_resources_are_complete(plan: dict[str, Any]) -> None:
    for m in plan["manifests"]:
        if _builtin(m):
            continue
        assert m["metadata"].get("name"), m
        # a few CRDs keep their fields at the top level (Kueue's WorkloadPriorityClass: value)
        body = {k for k in m if k not in ("apiVersion", "kind", "metadata")}
        assert body, f"{m['kind']} {m['metadata']['name']} declares nothing"


def test_shipped_stack_passes_the_policy_pack(plan: dict[str, Any]) -> None:
    assert plan["policy"]["violations"] == []


def test_every_chart_is_pinned(plan: dict[str, Any]) -> None:
    for h in plan["helmReleases"]:
        assert h["version"] and h["version"][-1].isdigit(), h["chart"]
