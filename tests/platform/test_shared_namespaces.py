"""Shared namespaces are declared once, and what lives in them waits for them."""

from __future__ import annotations

from collections import Counter

import pytest

from components.common import InvalidArgsError, KubeTarget
from components.local_object_store import LocalObjectStore, LocalObjectStoreArgs
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


def test_local_object_store_credentials_wait_for_their_namespace() -> None:
    graph = run_stack("local")[0]
    for ns in ("churn", "mlflow"):
        secret = graph.by_name(f"model-store-credentials-{ns}")
        assert secret.inputs["metadata"]["namespace"] == ns
        assert secret.inputs["stringData"] == "[secret]"
        assert graph.depends_on(secret, graph.by_name(f"namespaces-{ns}"))
        assert graph.depends_on(secret, graph.by_name("model-store-minio"))
    release = graph.by_name("model-store-minio")
    assert release.inputs["version"] == "5.4.0"
    assert release.inputs["values"]["buckets"][0]["versioning"] is True
    assert release.inputs["values"]["containerSecurityContext"]["runAsNonRoot"] is True
    mlflow = graph.one("kubernetes:apps/v1:Deployment", "model-registry")
    assert graph.depends_on(mlflow, graph.by_name("namespaces-mlflow"))


def test_local_object_store_rejects_bad_args(run) -> None:
    args = LocalObjectStoreArgs(bucket="Bad_Bucket", volumeSize="lots", chartVersion="5.x")
    paths = {i.path for i in args.issues()}
    assert paths == {("bucket",), ("volumeSize",), ("chartVersion",)}

    def program() -> None:
        LocalObjectStore("s", args, target=KubeTarget(provider=None, on_aws=False))

    with pytest.raises(InvalidArgsError):
        run(program)
