"""Always-on pods: which fit the system nodes, which need a Karpenter node, and what that costs."""

from __future__ import annotations

from typing import Any

import pytest

from mlplatform.cost import estimate_cost
from tests.cost.helpers import HOURS, NO_LOGS, PRICES, deployment, dev_plan, ec2, line, p

SYSTEM_TAINT = {"key": "mlplatform.io/system", "value": "true", "effect": "NO_SCHEDULE"}
TOLERATE_SYSTEM = [
    {"key": "mlplatform.io/system", "operator": "Equal", "value": "true", "effect": "NoSchedule"}
]


def general_pool(**spec: Any) -> list[dict[str, Any]]:
    """The platform's general CPU pool and its node class, as components/karpenter.py renders them."""
    return [
        {
            "apiVersion": "karpenter.k8s.aws/v1",
            "kind": "EC2NodeClass",
            "metadata": {"name": "default"},
            "spec": {
                "blockDeviceMappings": [
                    {"deviceName": "/dev/xvda", "ebs": {"volumeSize": "100Gi", "volumeType": "gp3"}}
                ],
                **spec,
            },
        },
        {
            "apiVersion": "karpenter.sh/v1",
            "kind": "NodePool",
            "metadata": {"name": "general"},
            "spec": {
                "template": {
                    "metadata": {"labels": {"mlplatform.io/pool": "general"}},
                    "spec": {
                        "nodeClassRef": {"name": "default"},
                        "requirements": [
                            {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]},
                            {
                                "key": "karpenter.sh/capacity-type",
                                "operator": "In",
                                "values": ["spot", "on-demand"],
                            },
                            {
                                "key": "karpenter.k8s.aws/instance-category",
                                "operator": "In",
                                "values": ["c", "m", "r"],
                            },
                            {
                                "key": "karpenter.k8s.aws/instance-generation",
                                "operator": "Gt",
                                "values": ["5"],
                            },
                            {
                                "key": "karpenter.k8s.aws/instance-gpu-count",
                                "operator": "DoesNotExist",
                            },
                        ],
                    },
                }
            },
        },
    ]


def tainted(plan: dict[str, Any]) -> dict[str, Any]:
    for r in plan["resources"]:
        if r["type"] == "aws:eks/nodeGroup:NodeGroup":
            r["inputs"]["taints"] = [SYSTEM_TAINT]
            r["inputs"]["labels"] = {"mlplatform.io/role": "system"}
    return plan


def cheapest_general() -> tuple[str, float]:
    """The cheapest spot type the general pool allows, from the price table itself."""
    allowed = [
        t
        for t, s in PRICES["ec2"].items()
        if not s.get("gpus")
        and s["arch"] == "x86_64"
        and t[0] in "cmr"
        and int("".join(ch for ch in t.split(".")[0] if ch.isdigit())) > 5
    ]
    best = min(allowed, key=lambda t: ec2(t))
    frac = PRICES["spotFraction"].get(best.split(".")[0], PRICES["spotFraction"]["default"])
    return best, ec2(best) * float(frac["fraction"])


def test_pods_that_do_not_tolerate_tainted_system_nodes_get_a_karpenter_node() -> None:
    server = deployment("churn-scorer", "250m", "512Mi")
    plan = tainted(dev_plan(manifests=[*general_pool(), server]))
    cost = estimate_cost(plan, assumptions=NO_LOGS)
    itype, hourly = cheapest_general()
    node = line(cost, "Always-on pods on Karpenter pool general")
    assert node["quantity"] == 1
    assert node["unit"] == f"{itype} spot node"
    assert node["unitMonthly"] == pytest.approx(HOURS * hourly, abs=0.01)
    assert node["resources"] == ["Deployment/x/churn-scorer"]
    disk = line(cost, "Karpenter node root volumes (gp3)")
    assert disk["quantity"] == 100 and disk["monthly"] == pytest.approx(100 * p("ebsGp3"), abs=0.01)
    assert cost["capacity"]["karpenter"] == [
        {
            "pool": "general",
            "instanceType": itype,
            "capacityType": "spot",
            "nodes": 1,
            "pods": ["Deployment/x/churn-scorer"],
        }
    ]
    # The same pod, tolerating the taint, stays on the system nodes: no Karpenter node.
    tolerant = deployment("churn-scorer", "250m", "512Mi", tolerations=TOLERATE_SYSTEM)
    calm = estimate_cost(
        tainted(dev_plan(manifests=[*general_pool(), tolerant])), assumptions=NO_LOGS
    )
    assert calm["capacity"]["karpenter"] == []
    assert calm["monthlyIdle"] == pytest.approx(
        cost["monthlyIdle"] - node["monthly"] - disk["monthly"]
    )


def test_pods_are_packed_onto_as_few_karpenter_nodes_as_their_requests_need() -> None:
    pods = [deployment(f"svc-{i}", "1", "2Gi") for i in range(3)]
    cost = estimate_cost(tainted(dev_plan(manifests=[*general_pool(), *pods])), assumptions=NO_LOGS)
    (placed,) = cost["capacity"]["karpenter"]
    spec = PRICES["ec2"][placed["instanceType"]]
    # three 1-vCPU pods never fit a 2-vCPU node's allocatable twice over
    assert placed["nodes"] * spec["vcpu"] >= 3
    assert line(cost, "Always-on pods on Karpenter pool general")["quantity"] == placed["nodes"]


def test_pods_pinned_to_system_nodes_are_placed_before_ones_karpenter_could_take() -> None:
    # The system node (t4g.medium, ~1.9 vCPU allocatable) holds one of these two, not both.
    pinned = deployment(
        "karpenter",
        "1",
        "1Gi",
        nodeSelector={"mlplatform.io/role": "system"},
        tolerations=TOLERATE_SYSTEM,
    )
    flexible = deployment("grafana", "1.5", "1Gi", tolerations=TOLERATE_SYSTEM)
    cost = estimate_cost(
        tainted(dev_plan(manifests=[*general_pool(), pinned, flexible])), assumptions=NO_LOGS
    )
    assert cost["capacity"]["extraNodes"] == 0
    assert cost["capacity"]["karpenter"][0]["pods"] == ["Deployment/x/grafana"]


def test_pods_nothing_can_run_are_listed_unpriced() -> None:
    arm_only = deployment("arm-job", "100m", "128Mi", nodeSelector={"kubernetes.io/arch": "arm64"})
    cost = estimate_cost(
        tainted(dev_plan(manifests=[*general_pool(), arm_only])), assumptions=NO_LOGS
    )
    assert cost["capacity"]["unschedulable"] == ["Deployment/x/arm-job"]
    assert [u["urn"] for u in cost["unpriced"]] == ["Deployment/x/arm-job"]
    assert not [ln for ln in cost["lines"] if ln["category"] == "pods"]


def test_karpenter_nodes_with_public_addresses_pay_for_them() -> None:
    server = deployment("churn-scorer", "250m", "512Mi")
    plan = tainted(dev_plan(manifests=[*general_pool(associatePublicIPAddress=True), server]))
    ips = line(
        estimate_cost(plan, assumptions=NO_LOGS), "Public IPv4 addresses (Karpenter pool general)"
    )
    assert ips["quantity"] == 1


def test_daemonsets_reserve_room_only_on_nodes_they_can_run_on() -> None:
    agent = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "agent", "namespace": "x"},
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {"name": "a", "resources": {"requests": {"cpu": "1500m", "memory": "1Gi"}}}
                    ]
                }
            }
        },
    }
    server = deployment("svc", "500m", "512Mi")
    # Untainted system node: the agent runs there and leaves no room for the server.
    untainted = estimate_cost(
        dev_plan(manifests=[*general_pool(), agent, server]), assumptions=NO_LOGS
    )
    assert untainted["capacity"]["karpenter"][0]["pods"] == ["Deployment/x/svc"]
    # The same agent tolerating nothing skips tainted system nodes; the server tolerates them.
    tolerant = deployment("svc", "500m", "512Mi", tolerations=TOLERATE_SYSTEM)
    quiet = estimate_cost(
        tainted(dev_plan(manifests=[*general_pool(), agent, tolerant])), assumptions=NO_LOGS
    )
    assert quiet["capacity"]["karpenter"] == []
