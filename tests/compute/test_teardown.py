"""Teardown order, asserted through recorded dependencies (Pulumi deletes dependents first)."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from mlplatform.plan import run_program
from tests.compute.stacks import DEV, PROD, program

CLUSTER = "aws:eks/cluster:Cluster"
NODES = "aws:eks/nodeGroup:NodeGroup"
RELEASE = "kubernetes:helm.sh/v3:Release"


def _k8s(graph):
    return [r for r in graph.resources if r.custom and r.type.startswith("kubernetes:")]


def test_every_kubernetes_resource_waits_for_cluster_and_system_nodes(dev, prod):
    for graph in (dev, prod):
        cluster, nodes = graph.one(CLUSTER), graph.one(NODES)
        objects = _k8s(graph)
        assert len(objects) >= 6
        for r in objects:
            assert graph.depends_on(r, cluster), r.name
            assert graph.depends_on(r, nodes), r.name
            assert "pulumi:providers:kubernetes::mlp-k8s" in r.provider


def test_node_pools_and_classes_deleted_before_karpenter(dev, prod):
    for graph in (dev, prod):
        controller = graph.one(RELEASE, "karpenter-controller")
        crs = graph.by_type("kubernetes:karpenter.sh/v1:NodePool") + graph.by_type(
            "kubernetes:karpenter.k8s.aws/v1:EC2NodeClass"
        )
        assert len(crs) >= 4
        for cr in crs:
            assert graph.depends_on(cr, controller), cr.name
        # a NodePool goes before its EC2NodeClass (whose finalizer waits for the nodes)
        for pool in graph.by_type("kubernetes:karpenter.sh/v1:NodePool"):
            ref = pool.inputs["spec"]["template"]["spec"]["nodeClassRef"]["name"]
            (nc,) = [
                c
                for c in graph.by_type("kubernetes:karpenter.k8s.aws/v1:EC2NodeClass")
                if c.inputs["metadata"]["name"] == ref
            ]
            assert graph.depends_on(pool, nc)


def test_karpenter_controller_outlives_its_aws_permissions_not(dev):
    controller = dev.one(RELEASE, "karpenter-controller")
    for dep in (
        dev.one("aws:eks/podIdentityAssociation:PodIdentityAssociation"),
        dev.one("aws:iam/rolePolicy:RolePolicy", "karpenter-controller-policy"),
        dev.one("aws:eks/accessEntry:AccessEntry", "karpenter-node-access"),
    ):
        # removed only after the controller has drained its nodes
        assert dev.depends_on(controller, dep)


def test_cluster_deleted_before_subnets_and_gateways(prod):
    cluster = prod.one(CLUSTER)
    for r in prod.resources:
        if r.type in (
            "aws:ec2/subnet:Subnet",
            "aws:ec2/natGateway:NatGateway",
            "aws:ec2/internetGateway:InternetGateway",
            "aws:ec2/routeTableAssociation:RouteTableAssociation",
        ):
            assert prod.depends_on(cluster, r), r.name


def test_load_balancer_creators_can_anchor_on_the_network():
    """What a serving component does with network.teardown_anchor: its Service goes first."""
    out = {}

    def fn():
        program(DEV, out)()
        target = out["cluster"].target
        k8s.core.v1.Service(
            "lb",
            metadata={"name": "lb", "namespace": "default"},
            spec={"type": "LoadBalancer", "ports": [{"port": 80}], "selector": {"app": "x"}},
            opts=pulumi.ResourceOptions(
                provider=target.provider,
                depends_on=[*target.depends_on, *out["network"].teardown_anchor],
            ),
        )

    graph = run_program(fn)
    svc = graph.one("kubernetes:core/v1:Service")
    for r in graph.resources:
        if r.type in (
            "aws:ec2/subnet:Subnet",
            "aws:ec2/natGateway:NatGateway",
            "aws:ec2/internetGateway:InternetGateway",
            "aws:ec2/route:Route",
            "aws:ec2/routeTableAssociation:RouteTableAssociation",
            "aws:ec2/eip:Eip",
        ):
            assert graph.depends_on(svc, r), r.name


def test_prod_anchor_covers_every_az():
    out = {}
    run_program(program(PROD, out))
    anchor = out["network"].teardown_anchor
    kinds = [type(r).__name__ for r in anchor]
    assert kinds.count("Subnet") == 6 and kinds.count("NatGateway") == 3
    assert "InternetGateway" in kinds
