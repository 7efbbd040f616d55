"""The platform program wires the components the way users rely on: order, protection, outputs."""

from __future__ import annotations

import json

import pytest

from mlplatform.graph import Graph
from mlplatform.report import run_stack

OUTPUTS_AWS = {
    "environment", "platform", "region", "clusterName", "kubeconfig", "vpcId", "privateSubnetIds",
    "modelBucket", "modelBucketArn", "kmsKeyArn", "ecrRepositories", "trainingQueues",
    "mlflowTrackingUri", "budgetName", "alarmTopicArn", "gpuPools", "servingEndpoints",
    "prometheusUrl", "alertmanagerUrl", "grafanaUrl",
}  # fmt: skip
STATEFUL = (
    "aws:s3/bucket:Bucket",
    "aws:kms/key:Key",
    "aws:ecr/repository:Repository",
    "aws:rds/instance:Instance",
)


@pytest.fixture(scope="module")
def graphs() -> dict[str, Graph]:
    return {s: run_stack(s)[0] for s in ("dev", "prod", "local")}


def test_aws_stacks_export_the_documented_outputs(graphs: dict[str, Graph]) -> None:
    for stack in ("dev", "prod"):
        assert set(graphs[stack].outputs) >= OUTPUTS_AWS, stack
    assert graphs["dev"].outputs["kubeconfig"] == "[secret]"
    assert "kubeconfig" in graphs["dev"].secret_outputs


def test_every_kubernetes_object_waits_for_the_cluster_and_system_nodes(
    graphs: dict[str, Graph],
) -> None:
    g = graphs["prod"]
    cluster = g.one("aws:eks/cluster:Cluster")
    nodes = g.one("aws:eks/nodeGroup:NodeGroup")
    k8s = [
        r
        for r in g.resources
        if r.custom and r.type.startswith("kubernetes:") and "providers" not in r.type
    ]
    assert k8s
    for r in k8s:
        assert g.depends_on(r, cluster) and g.depends_on(r, nodes), r.urn


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_teardown_order(graphs: dict[str, Graph], stack: str) -> None:
    g = graphs[stack]
    karpenter = g.one("kubernetes:helm.sh/v3:Release", "karpenter-controller")
    for pool in g.by_type("kubernetes:karpenter.sh/v1:NodePool"):
        assert g.depends_on(pool, karpenter), "NodePools must be deleted before the controller"
    lbc = g.one("kubernetes:helm.sh/v3:Release", "load-balancer-controller")
    for subnet in g.by_type("aws:ec2/subnet:Subnet"):
        assert g.depends_on(lbc, subnet), "ALBs (made by the controller) must go before the subnets"
    ingresses = g.by_type("kubernetes:networking.k8s.io/v1:Ingress")
    assert ingresses or stack == "dev"  # prod's example endpoint has an ALB ingress
    for ing in ingresses:
        assert g.depends_on(ing, lbc), "Ingresses must be deleted while the controller still runs"


def test_stateful_resources_are_kept_in_prod_only_by_choice_in_dev(
    graphs: dict[str, Graph],
) -> None:
    prod = [r for t in STATEFUL for r in graphs["prod"].by_type(t)]
    assert prod
    unkept = [r.name for r in prod if not (r.protect and r.retain_on_delete)]
    assert not unkept, f"unprotected stateful resources in prod: {unkept}"
    buckets = graphs["prod"].by_type("aws:s3/bucket:Bucket")
    assert all(not b.inputs.get("forceDestroy") for b in buckets)
    dev_buckets = graphs["dev"].by_type("aws:s3/bucket:Bucket")
    assert dev_buckets and all(not b.protect for b in dev_buckets)  # dev config says protect: false


def test_default_tags_on_the_aws_provider(graphs: dict[str, Graph]) -> None:
    provider = graphs["dev"].one("pulumi:providers:aws")
    tags = json.loads(provider.inputs["defaultTags"])["tags"]
    assert tags["project"] == "ml-platform"
    assert tags["environment"] == "dev"
    assert tags["owner"] and tags["cost-center"]
    for r in graphs["dev"].resources:
        if r.custom and r.type.startswith("aws:"):
            assert r.provider.startswith(provider.urn), f"{r.urn} bypasses the tagged provider"


def test_local_stack_declares_no_aws_resources(graphs: dict[str, Graph]) -> None:
    g = graphs["local"]
    assert not [
        r.type for r in g.resources if r.type.startswith("aws:") or r.type == "pulumi:providers:aws"
    ]
    assert g.outputs["platform"] == "local"
    assert g.by_type("kubernetes:helm.sh/v3:Release")
    # the same components as on AWS
    for token in (
        "mlplatform:monitoring:MonitoringStack",
        "mlplatform:training:TrainingQueues",
        "mlplatform:registry:ModelRegistry",
    ):
        assert g.by_type(token), token


def test_serving_endpoint_gets_its_project_role(graphs: dict[str, Graph]) -> None:
    g = graphs["dev"]
    assoc = [
        r
        for r in g.by_type("aws:eks/podIdentityAssociation:PodIdentityAssociation")
        if r.inputs.get("serviceAccount") == "churn-scorer-server"
    ]
    assert len(assoc) == 1
    assert assoc[0].inputs["namespace"] == "churn-scorer"
    endpoints = g.outputs["servingEndpoints"]
    assert endpoints["churn-scorer"]["namespace"] == "churn-scorer"


def test_no_secret_value_in_any_plan(graphs: dict[str, Graph]) -> None:
    for g in graphs.values():
        text = json.dumps([r.inputs for r in g.resources]) + json.dumps(g.outputs)
        # the mocks give every generated password the prefix "mock-": none may leak in plain text
        assert "mock-" not in text
        for r in g.by_type("kubernetes:core/v1:Secret"):
            for key in ("stringData", "data"):
                value = r.inputs.get(key)
                if value is None:
                    continue
                values = value.values() if isinstance(value, dict) else [value]
                assert all(v == "[secret]" for v in values), f"{r.urn}.{key} holds a plain value"
