"""Issue 16's invariants over every shipped stack's plan, and a mutated plan for each that
shows the check can fail (each mutation is one of the breaks the issue found)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable

import pytest

from mlplatform.graph import Graph
from mlplatform.mocks import RecordedResource
from mlplatform.report import run_stack
from tests.platform.invariants import (
    CHECKS,
    network_policy_problems,
    ordering_problems,
    queue_problems,
    scheduling_problems,
    storage_problems,
)

STACKS = ("dev", "prod", "local")


@pytest.fixture(scope="module")
def plans() -> dict[str, Graph]:
    return {stack: run_stack(stack)[0] for stack in STACKS}


@pytest.mark.parametrize("check", sorted(CHECKS))
@pytest.mark.parametrize("stack", STACKS)
def test_every_shipped_stack_holds_every_invariant(
    plans: dict[str, Graph], stack: str, check: str
) -> None:
    assert CHECKS[check](plans[stack]) == []


def mutated(graph: Graph, change: Callable[[Graph], None]) -> Graph:
    copy_ = Graph(
        stack=graph.stack,
        resources=copy.deepcopy(graph.resources),
        outputs=dict(graph.outputs),
        secret_outputs=set(graph.secret_outputs),
    )
    change(copy_)
    return Graph(copy_.stack, copy_.resources, copy_.outputs, copy_.secret_outputs)


def _manifest_resource(graph: Graph, kind: str, name: str) -> RecordedResource:
    (r,) = [
        r
        for r in graph.resources
        if r.type.endswith(f":{kind}") and (r.inputs.get("metadata") or {}).get("name") == name
    ]
    return r


# --- storage ----------------------------------------------------------------------------------


def test_storage_catches_a_claim_on_a_class_nobody_creates(plans: dict[str, Graph]) -> None:
    def change(g: Graph) -> None:
        pg = _manifest_resource(g, "StatefulSet", "mlflow-postgres")
        pg.inputs["spec"]["volumeClaimTemplates"][0]["spec"]["storageClassName"] = "gp2"

    problems = storage_problems(mutated(plans["dev"], change))
    assert problems == [
        "StatefulSet mlflow/mlflow-postgres claim data names StorageClass 'gp2', "
        "which the plan does not create"
    ]


def test_storage_catches_the_dev_postgres_break(plans: dict[str, Graph]) -> None:
    """Issue 16 item 1: no storageClassName, and no class marked default (EKS >= 1.30)."""

    def change(g: Graph) -> None:
        pg = _manifest_resource(g, "StatefulSet", "mlflow-postgres")
        del pg.inputs["spec"]["volumeClaimTemplates"][0]["spec"]["storageClassName"]
        sc = _manifest_resource(g, "StorageClass", "gp3-encrypted")
        sc.inputs["metadata"]["annotations"] = {}

    problems = storage_problems(mutated(plans["dev"], change))
    assert problems == [
        "StatefulSet mlflow/mlflow-postgres claim data names no StorageClass and the plan makes "
        "none default"
    ]


def test_storage_catches_a_chart_value_naming_a_missing_class(plans: dict[str, Graph]) -> None:
    def change(g: Graph) -> None:
        kps = next(
            r for r in g.by_type("kubernetes:helm.sh/v3:Release") if r.inputs["name"] == "kps"
        )
        kps.inputs["values"]["grafana"]["persistence"]["storageClassName"] = "standard"

    (problem,) = storage_problems(mutated(plans["prod"], change))
    assert problem.startswith("helm kps grafana.persistence.storageClassName names StorageClass")


# --- network policy -------------------------------------------------------------------------


def test_network_policy_catches_vpc_cni_without_enforcement(plans: dict[str, Graph]) -> None:
    """Issue 16 item 13: every NetworkPolicy was a no-op without the CNI's policy agent."""

    def change(g: Graph) -> None:
        cni = next(
            a for a in g.by_type("aws:eks/addon:Addon") if a.inputs["addonName"] == "vpc-cni"
        )
        del cni.inputs["configurationValues"]

    (problem,) = network_policy_problems(mutated(plans["dev"], change))
    assert "vpc-cni has no enableNetworkPolicy" in problem


def test_network_policy_catches_a_local_cluster_that_ignores_them(plans: dict[str, Graph]) -> None:
    def change(g: Graph) -> None:
        g.outputs.pop("networkPolicyEnforcement")

    (problem,) = network_policy_problems(mutated(plans["local"], change))
    assert "kubeNetworkPolicies" in problem


# --- scheduling -----------------------------------------------------------------------------


def test_scheduling_catches_amd64_images_on_untainted_arm64_nodes(plans: dict[str, Graph]) -> None:
    """Issue 16 item 2: t4g system nodes, and an endpoint with no architecture constraint."""

    def change(g: Graph) -> None:
        g.one("aws:eks/nodeGroup:NodeGroup").inputs["amiType"] = "AL2023_ARM_64_STANDARD"
        deploy = _manifest_resource(g, "Deployment", "churn-scorer")
        del deploy.inputs["spec"]["template"]["spec"]["nodeSelector"]

    problems = scheduling_problems(mutated(plans["dev"], change))
    assert problems == [
        "Deployment churn-scorer/churn-scorer: images for ['amd64'] could land on other "
        "architectures in ['cluster-system'] (exec format error)"
    ]


def test_scheduling_catches_a_taint_nobody_tolerates(plans: dict[str, Graph]) -> None:
    def change(g: Graph) -> None:
        g.one("aws:eks/nodeGroup:NodeGroup").inputs["taints"] = [
            {"key": "CriticalAddonsOnly", "value": "true", "effect": "NO_SCHEDULE"}
        ]

    problems = scheduling_problems(mutated(plans["dev"], change))
    # Karpenter must run on the system nodes (never on nodes it manages): now it fits nowhere.
    assert "helm karpenter: controller: fits no node group or NodePool of the plan" in problems


def test_scheduling_catches_an_image_of_unknown_platforms(plans: dict[str, Graph]) -> None:
    def change(g: Graph) -> None:
        deploy = _manifest_resource(g, "Deployment", "mlflow")
        deploy.inputs["spec"]["template"]["spec"]["containers"][0]["image"] = "example.com/x:1"

    (problem,) = scheduling_problems(mutated(plans["prod"], change))
    assert problem.startswith("Deployment mlflow/mlflow: images of unknown platforms")


# --- queues ---------------------------------------------------------------------------------


def test_queues_catch_a_local_queue_without_its_cluster_queue(plans: dict[str, Graph]) -> None:
    def change(g: Graph) -> None:
        _manifest_resource(g, "LocalQueue", "research").inputs["spec"]["clusterQueue"] = "gone"

    assert queue_problems(mutated(plans["local"], change)) == [
        "LocalQueue churn/research points at ClusterQueue 'gone', which the plan does not create"
    ]


def test_queues_catch_a_flavor_no_pool_matches(plans: dict[str, Graph]) -> None:
    def change(g: Graph) -> None:
        flavor = _manifest_resource(g, "ResourceFlavor", "l4-spot")
        flavor.inputs["spec"]["nodeTaints"] = []  # the pool's nodes carry the GPU taint

    assert queue_problems(mutated(plans["prod"], change)) == [
        "ResourceFlavor l4-spot: no node group or NodePool has its labels and taints"
    ]


# --- ordering -------------------------------------------------------------------------------


def test_ordering_catches_a_budget_racing_its_topic_policy(plans: dict[str, Graph]) -> None:
    """Issue 16 item 6: Budgets validates its subscriber against the topic policy."""

    def change(g: Graph) -> None:
        budget = g.one("aws:budgets/budget:Budget")
        policy = g.one("aws:sns/topicPolicy:TopicPolicy")
        budget.dependencies = [d for d in budget.dependencies if d != policy.urn]

    (problem,) = ordering_problems(mutated(plans["dev"], change))
    assert problem.endswith(
        "does not wait for " + plans["dev"].one("aws:sns/topicPolicy:TopicPolicy").name
    )


def test_ordering_catches_an_association_before_its_role_policy(plans: dict[str, Graph]) -> None:
    def change(g: Graph) -> None:
        assoc = g.by_name("model-registry-pod-identity")
        assoc.dependencies = [d for d in assoc.dependencies if "RolePolicy" not in d]

    (problem,) = ordering_problems(mutated(plans["prod"], change))
    assert problem.startswith("model-registry-pod-identity does not wait for")


def test_invariants_are_listed_with_their_checks() -> None:
    assert sorted(CHECKS) == ["network-policy", "ordering", "queues", "scheduling", "storage"]
    assert json.dumps(sorted(CHECKS))  # the names are plain strings


def test_the_plan_says_where_each_workload_can_run() -> None:
    from mlplatform.render import render_table
    from mlplatform.report import build_plan

    plan = build_plan("dev")
    by_name = {p["workload"]: p for p in plan["placement"]}
    endpoint = by_name["Deployment churn-scorer/churn-scorer"]
    assert endpoint == {
        "workload": "Deployment churn-scorer/churn-scorer",
        "architectures": ["amd64"],
        "nodes": ["cluster-system", "general"],
    }
    assert by_name["helm karpenter: controller"]["nodes"] == ["cluster-system"]
    assert by_name["helm dcgm-exporter: exporter"]["nodes"] == ["a10g-spot"]
    assert not [p for p in plan["placement"] if p.get("unsafe") or not p["nodes"]]
    assert "Deployment churn-scorer/churn-scorer (amd64) -> cluster-system, general" in (
        render_table(plan)
    )
