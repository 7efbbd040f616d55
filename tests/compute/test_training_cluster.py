"""TrainingCluster: endpoint access, encryption, logs, access entries, add-ons, system nodes."""

from __future__ import annotations

import json

import pulumi
import pytest

from components.common import NODE_MANAGED_POLICIES, KubeTarget
from components.training_cluster import CONTROL_PLANE_LOGS, TrainingClusterArgs, managed_policy
from mlplatform.plan import run_program
from tests.compute.stacks import DEV, program

CLUSTER = "aws:eks/cluster:Cluster"
ADDON = "aws:eks/addon:Addon"


def test_version_comes_from_args_with_a_supported_default(dev):
    assert TrainingClusterArgs().kubernetes_version == "1.33"
    cfg = json.loads(json.dumps(DEV))
    cfg["cluster"]["kubernetesVersion"] = "1.32"
    cfg["cluster"]["addons"] = {"kubeProxy": "v1.32.6-eksbuild.8"}
    graph = run_program(program(cfg))
    assert graph.one(CLUSTER).inputs["version"] == "1.32"
    assert dev.one(CLUSTER).inputs["version"] == "1.33"
    # extended support is refused, not silently billed
    assert dev.one(CLUSTER).inputs["upgradePolicy"] == {"supportType": "STANDARD"}


def test_private_endpoint_always_on_public_limited_in_dev(dev):
    vpc = dev.one(CLUSTER).inputs["vpcConfig"]
    assert vpc["endpointPrivateAccess"] is True
    assert vpc["endpointPublicAccess"] is True
    assert vpc["publicAccessCidrs"] == ["198.51.100.0/24"]


def test_prod_is_private_only(prod):
    vpc = prod.one(CLUSTER).inputs["vpcConfig"]
    assert vpc["endpointPrivateAccess"] is True
    assert vpc["endpointPublicAccess"] is False
    assert "publicAccessCidrs" not in vpc


def test_cluster_nodes_and_endpoint_live_in_private_subnets(prod):
    private = {r.urn for r in prod.by_type("aws:ec2/subnet:Subnet") if "private" in r.name}
    ids = prod.one(CLUSTER).inputs["vpcConfig"]["subnetIds"]
    assert len(ids) == 3 and all(i.startswith("subnet-") for i in ids)
    assert all(prod.depends_on(prod.one(CLUSTER), urn) for urn in private)


def test_secrets_envelope_encrypted_with_rotating_key(dev):
    enc = dev.one(CLUSTER).inputs["encryptionConfig"]
    assert enc["resources"] == ["secrets"]
    key = next(r for r in dev.by_type("aws:kms/key:Key") if r.name == "mlp-key")
    assert key.inputs["enableKeyRotation"] is True
    assert enc["provider"]["keyArn"].startswith("arn:aws:kms:")
    assert dev.depends_on(dev.one(CLUSTER), key)


def test_control_plane_logs_with_retention(dev, prod):
    assert dev.one(CLUSTER).inputs["enabledClusterLogTypes"] == CONTROL_PLANE_LOGS
    assert {"api", "audit", "authenticator"} <= set(CONTROL_PLANE_LOGS)
    for graph, days in ((dev, 90), (prod, 365)):
        group = graph.one("aws:cloudwatch/logGroup:LogGroup", "mlp-logs")
        assert group.inputs["name"] == f"/aws/eks/{graph.one(CLUSTER).inputs['name']}/cluster"
        assert group.inputs["retentionInDays"] == days
        assert group.inputs["kmsKeyId"].startswith("arn:aws:kms:")
        # the group exists before EKS starts writing to it
        assert graph.depends_on(graph.one(CLUSTER), group)


def test_access_entries_for_admin_roles(prod):
    access = prod.one(CLUSTER).inputs["accessConfig"]
    assert access["authenticationMode"] == "API"
    entries = [r for r in prod.by_type("aws:eks/accessEntry:AccessEntry") if "admin" in r.name]
    principals = sorted(e.inputs["principalArn"] for e in entries)
    assert principals == sorted(
        [
            "arn:aws:iam::123456789012:role/platform-admin",
            "arn:aws:iam::123456789012:role/break-glass",
        ]
    )
    policies = prod.by_type("aws:eks/accessPolicyAssociation:AccessPolicyAssociation")
    assert len(policies) == 2
    for p in policies:
        assert p.inputs["policyArn"].endswith("AmazonEKSClusterAdminPolicy")
        assert p.inputs["accessScope"] == {"type": "cluster"}


def test_managed_addons_pinned(dev):
    addons = {a.inputs["addonName"]: a for a in dev.by_type(ADDON)}
    assert set(addons) == {
        "vpc-cni",
        "coredns",
        "kube-proxy",
        "eks-pod-identity-agent",
        "aws-ebs-csi-driver",
        "eks-node-monitoring-agent",
    }
    for a in addons.values():
        assert a.inputs["addonVersion"].startswith("v") and "eksbuild" in a.inputs["addonVersion"]
    assert dev.one(CLUSTER).inputs["bootstrapSelfManagedAddons"] is False
    assert addons["kube-proxy"].inputs["addonVersion"].startswith("v1.33.")


def test_ebs_csi_uses_pod_identity(dev):
    ebs = next(a for a in dev.by_type(ADDON) if a.inputs["addonName"] == "aws-ebs-csi-driver")
    (assoc,) = ebs.inputs["podIdentityAssociations"]
    assert assoc["serviceAccount"] == "ebs-csi-controller-sa"
    role = dev.one("aws:iam/role:Role", "ebs-csi-role")
    assert ":role/mlp-ebs-csi-role" in assoc["roleArn"]
    (trust,) = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
    assert trust["Principal"] == {"Service": "pods.eks.amazonaws.com"}
    assert set(trust["Action"]) == {"sts:AssumeRole", "sts:TagSession"}
    assert trust["Condition"] == {
        "StringEquals": {"aws:SourceAccount": "123456789012"},
        "ArnEquals": {"aws:SourceArn": "arn:aws:eks:us-east-1:123456789012:cluster/mlp-dev"},
    }
    attach = dev.one("aws:iam/rolePolicyAttachment:RolePolicyAttachment", "ebs-csi-policy")
    assert attach.inputs["policyArn"].endswith("AmazonEBSCSIDriverPolicy")


def test_addons_nodes_need_come_before_nodes_and_coredns_after(dev):
    nodes = dev.one("aws:eks/nodeGroup:NodeGroup")
    addons = {a.inputs["addonName"]: a for a in dev.by_type(ADDON)}
    for before in ("vpc-cni", "kube-proxy", "eks-pod-identity-agent"):
        assert dev.depends_on(nodes, addons[before])
    for after in ("coredns", "aws-ebs-csi-driver"):
        assert dev.depends_on(addons[after], nodes)


def test_system_node_group_imdsv2_encrypted_gp3(dev):
    lt = dev.one("aws:ec2/launchTemplate:LaunchTemplate")
    meta = lt.inputs["metadataOptions"]
    assert meta["httpTokens"] == "required"
    assert meta["httpPutResponseHopLimit"] in (1, 2)
    (bdm,) = lt.inputs["blockDeviceMappings"]
    assert bdm["ebs"]["volumeType"] == "gp3"
    assert bdm["ebs"]["encrypted"] == "true"
    nodes = dev.one("aws:eks/nodeGroup:NodeGroup")
    assert nodes.inputs["launchTemplate"]["id"].startswith("lt-")
    assert nodes.inputs["amiType"].startswith("AL2023_")
    assert nodes.inputs["scalingConfig"] == {"minSize": 1, "desiredSize": 1, "maxSize": 2}
    assert nodes.inputs["instanceTypes"] == ["t3.large"]
    assert nodes.inputs["capacityType"] == "ON_DEMAND"


def test_cluster_and_system_node_roles_trust_their_service(dev):
    def statement(role_name: str) -> dict:
        role = dev.one("aws:iam/role:Role", role_name)
        (s,) = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
        return s

    # eks and ec2 send no aws:SourceAccount: a condition on it would lock the service out.
    assert statement("cluster-role") == {
        "Effect": "Allow",
        "Principal": {"Service": "eks.amazonaws.com"},
        "Action": ["sts:AssumeRole", "sts:TagSession"],
    }
    assert statement("system-node-role") == {
        "Effect": "Allow",
        "Principal": {"Service": "ec2.amazonaws.com"},
        "Action": "sts:AssumeRole",
    }


def test_system_and_karpenter_node_roles_share_the_node_policies(dev):
    def attached(prefix: str) -> set[str]:
        return {
            a.inputs["policyArn"]
            for a in dev.by_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
            if a.name.startswith(prefix)
        }

    node_policies = {managed_policy(p) for _, p in NODE_MANAGED_POLICIES}
    assert attached("mlp-system-node-") == node_policies
    # Karpenter's nodes add SSM on top; the shared set is the same.
    assert attached("karpenter-node-") == node_policies | {
        managed_policy("AmazonSSMManagedInstanceCore")
    }


def test_graviton_system_nodes_get_the_arm_ami():
    cfg = json.loads(json.dumps(DEV))
    cfg["cluster"]["systemNodes"]["instanceTypes"] = ["t4g.large"]
    graph = run_program(program(cfg))
    assert graph.one("aws:eks/nodeGroup:NodeGroup").inputs["amiType"] == "AL2023_ARM_64_STANDARD"


def test_kubernetes_provider_is_stable_across_previews(dev):
    provider = dev.one("pulumi:providers:kubernetes")
    # a plain, preview-known identifier: only a new cluster replaces the provider (pulumi#11521)
    assert provider.inputs["clusterIdentifier"] == "mlp-dev"
    assert provider.inputs["kubeconfig"] == "[secret]"


def test_kubeconfig_uses_exec_auth_without_stored_credentials():
    out = {}
    seen = {}

    def fn():
        program(DEV, out)()
        out["cluster"].kubeconfig.apply(lambda k: seen.update(k=k))
        pulumi.export("kubeconfig", out["cluster"].kubeconfig)

    graph = run_program(fn)
    assert graph.outputs["kubeconfig"] == "[secret]"
    cfg = json.loads(seen["k"])
    user = cfg["users"][0]["user"]
    assert "token" not in user and "client-key-data" not in user
    assert user["exec"]["command"] == "aws"
    assert user["exec"]["args"][:4] == ["eks", "get-token", "--cluster-name", "mlp-dev"]
    assert cfg["clusters"][0]["cluster"]["server"].startswith("https://")


def test_kube_target_waits_for_cluster_and_system_nodes():
    out = {}
    run_program(program(DEV, out))
    target = out["cluster"].target
    assert isinstance(target, KubeTarget) and target.on_aws
    assert target.depends_on == (out["cluster"].cluster, out["cluster"].node_group)
    assert target.provider is out["cluster"].provider


def test_cluster_security_group_tagged_for_karpenter(dev):
    tag = dev.one("aws:ec2/tag:Tag", "cluster-sg-discovery")
    assert tag.inputs["key"] == "karpenter.sh/discovery"
    assert tag.inputs["value"] == "mlp-dev"
    assert tag.inputs["resourceId"].startswith("sg-")


@pytest.mark.parametrize("hop", [1, 2])
def test_hop_limit_configurable(hop):
    cfg = json.loads(json.dumps(DEV))
    cfg["cluster"]["systemNodes"]["httpPutResponseHopLimit"] = hop
    graph = run_program(program(cfg))
    lt = graph.one("aws:ec2/launchTemplate:LaunchTemplate")
    assert lt.inputs["metadataOptions"]["httpPutResponseHopLimit"] == hop
