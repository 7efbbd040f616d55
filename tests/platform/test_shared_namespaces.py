"""Shared namespaces are declared once, and what lives in them waits for them."""

from __future__ import annotations

from collections import Counter

import pytest

from mlplatform.graph import Graph
from mlplatform.report import run_stack

NAMESPACE = "kubernetes:core/v1:Namespace"


@pytest.fixture(scope="module", params=["dev", "local"])
def graph(request: pytest.FixtureRequest) -> Graph:
    return run_stack(request.param)[0]


def test_each_namespace_is_declared_once(graph: Graph) -> None:
    names = Counter(r.inputs["metadata"]["name"] for r in graph.by_type(NAMESPACE))
    assert names, "no namespaces"
    assert [n for n, c in names.items() if c > 1] == []


def test_project_namespaces_are_restricted_and_fenced(graph: Graph) -> None:
    ns = next(r for r in graph.by_type(NAMESPACE) if r.inputs["metadata"]["name"] == "churn")
    assert ns.inputs["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    policy = graph.by_name("namespaces-churn-default-ingress")
    ingress = policy.inputs["spec"]["ingress"]
    assert {"from": [{"podSelector": {}}]} in ingress
    assert graph.depends_on(policy, ns)


def test_training_queue_uses_the_shared_namespace(graph: Graph) -> None:
    ns = graph.by_name("namespaces-churn")
    local_queue = next(iter(graph.by_type("kubernetes:kueue.x-k8s.io/v1beta2:LocalQueue")))
    assert local_queue.inputs["metadata"]["namespace"] == "churn"
    assert graph.depends_on(local_queue, ns)


def test_team_namespaces_carry_the_team_the_cost_rules_sum_by(graph: Graph) -> None:
    # team:gpu_cost_usd_per_hour:sum joins on kube_namespace_labels{label_mlplatform_io_team}.
    ns = graph.by_name("namespaces-churn")
    assert ns.inputs["metadata"]["labels"]["mlplatform.io/team"] == "research"


def test_kueue_waits_for_the_monitoring_crds(graph: Graph) -> None:
    # Its chart ships a ServiceMonitor, which needs the Prometheus Operator's CRDs.
    kueue = graph.by_name("training-queues-kueue")
    assert graph.depends_on(kueue, graph.by_name("monitoring-prometheus-crds"))
