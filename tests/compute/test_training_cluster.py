"""TrainingCluster: endpoint access, encryption, logs, access entries, add-ons, system nodes."""

from __future__ import annotations

import json

import pulumi
import pytest

from components.common import NODE_MANAGED_POLICIES, KubeTarget
from components.training_cluster import (
    CONTROL_PLANE_LOGS,
    TrainingClusterArgs,
    admin_principals,
    managed_policy,
    principal_key,
)
from mlplatform.mocks import DEPLOYER_ROLE_ARN
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


ENTRY = "aws:eks/accessEntry:AccessEntry"
POLICY = "aws:eks/accessPolicyAssociation:AccessPolicyAssociation"


def _admin_entries(graph):
    return [r for r in graph.by_type(ENTRY) if r.inputs["type"] == "STANDARD"]


def test_access_entries_for_admin_roles_and_the_deployer(prod):
    access = prod.one(CLUSTER).inputs["accessConfig"]
    assert access["authenticationMode"] == "API"
    # EKS makes no entry of its own: every admin, the deployer too, is declared once.
    assert access["bootstrapClusterCreatorAdminPermissions"] is False
    principals = sorted(e.inputs["principalArn"] for e in _admin_entries(prod))
    assert principals == sorted(
        [
            "arn:aws:iam::123456789012:role/platform-admin",
            "arn:aws:iam::123456789012:role/break-glass",
            DEPLOYER_ROLE_ARN,  # the role, not the assumed-role session ARN
        ]
    )
    policies = prod.by_type(POLICY)
    assert sorted(p.inputs["principalArn"] for p in policies) == principals
    for p in policies:
        assert p.inputs["policyArn"].endswith("AmazonEKSClusterAdminPolicy")
        assert p.inputs["accessScope"] == {"type": "cluster"}
        entry = next(
            e for e in _admin_entries(prod) if e.inputs["principalArn"] == p.inputs["principalArn"]
        )
        assert prod.depends_on(p, entry)


def test_deployer_listed_as_admin_gets_one_entry():
    """The collision of issue 16 (ResourceInUseException): the deployer is also an admin."""
    cfg = json.loads(json.dumps(DEV))
    cfg["cluster"]["adminRoleArns"] = [DEPLOYER_ROLE_ARN, "arn:aws:iam::123456789012:role/ops"]
    graph = run_program(program(cfg))
    principals = [e.inputs["principalArn"] for e in _admin_entries(graph)]
    assert sorted(principals) == sorted([DEPLOYER_ROLE_ARN, "arn:aws:iam::123456789012:role/ops"])
    assert len(graph.by_type(POLICY)) == 2
    # keyed by principal, so the entry stays the same resource when the deployer's role moves
    # in or out of adminRoleArns
    names = {e.name for e in _admin_entries(graph)}
    assert "mlp-access-role-platform-deployer" in names


def test_admin_principals_dedupes_and_keeps_old_indexes():
    admins = ["arn:aws:iam::1:role/a", "arn:aws:iam::1:role/b", "arn:aws:iam::1:role/a"]
    assert admin_principals(admins, "arn:aws:iam::1:role/b") == [
        ("arn:aws:iam::1:role/a", 0),
        ("arn:aws:iam::1:role/b", 1),
    ]
    assert admin_principals(admins[:1], "arn:aws:iam::1:role/ci") == [
        ("arn:aws:iam::1:role/a", 0),
        ("arn:aws:iam::1:role/ci", None),
    ]
    assert admin_principals([], None) == []
    assert principal_key("arn:aws:iam::1:role/teams/ml/admin") == "role-teams-ml-admin"


def test_no_deployer_entry_when_not_granted():
    cfg = json.loads(json.dumps(DEV))
    cfg["cluster"]["grantDeployerAdmin"] = False
    graph = run_program(program(cfg))
    principals = [e.inputs["principalArn"] for e in _admin_entries(graph)]
    assert principals == ["arn:aws:iam::123456789012:role/platform-admin"]


def test_renamed_entries_keep_their_old_urns(prod):
    entry = prod.by_name("mlp-access-role-platform-admin")
    assert [a.rsplit("::", 1)[-1] for a in entry.aliases] == ["mlp-admin-0"]
    policy = prod.by_name("mlp-access-role-platform-admin-admin")
    assert [a.rsplit("::", 1)[-1] for a in policy.aliases] == ["mlp-admin-0-policy"]
    # the cluster keeps a bootstrap setting it was created with rather than being replaced
    assert (
        "accessConfig.bootstrapClusterCreatorAdminPermissions" in prod.one(CLUSTER).ignore_changes
    )


def test_kubernetes_objects_wait_for_admin_access(dev):
    """Without a bootstrap entry, the deployer can create objects only once its entry exists."""
    policies = dev.by_type(POLICY)
    assert policies
    for kind in ("kubernetes:helm.sh/v3:Release", "kubernetes:core/v1:Namespace"):
        for r in dev.by_type(kind):
            assert all(dev.depends_on(r, p) for p in policies), r.name


def test_vpc_cni_enforces_network_policy(dev):
    cni = next(a for a in dev.by_type(ADDON) if a.inputs["addonName"] == "vpc-cni")
    assert json.loads(cni.inputs["configurationValues"]) == {"enableNetworkPolicy": "true"}


def test_default_storage_class_is_encrypted_gp3(dev):
    sc = dev.one("kubernetes:storage.k8s.io/v1:StorageClass")
    assert sc.inputs["metadata"]["name"] == "gp3-encrypted"
    assert sc.inputs["metadata"]["annotations"] == {
        "storageclass.kubernetes.io/is-default-class": "true"
    }
    assert sc.inputs["provisioner"] == "ebs.csi.aws.com"
    assert sc.inputs["parameters"]["type"] == "gp3"
    assert sc.inputs["parameters"]["encrypted"] == "true"
    assert sc.inputs["reclaimPolicy"] == "Delete"
    assert sc.inputs["volumeBindingMode"] == "WaitForFirstConsumer"
    ebs = next(a for a in dev.by_type(ADDON) if a.inputs["addonName"] == "aws-ebs-csi-driver")
    assert dev.depends_on(sc, ebs)
    # every Kubernetes object of the cluster's users waits for it
    for r in dev.by_type("kubernetes:helm.sh/v3:Release"):
        assert dev.depends_on(r, sc), r.name


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


def test_kube_target_waits_for_cluster_nodes_access_and_storage_class():
    out = {}
    run_program(program(DEV, out))
    c = out["cluster"]
    target = c.target
    assert isinstance(target, KubeTarget) and target.on_aws
    assert target.depends_on == (c.cluster, c.node_group, *c.admin_access, c.storage_class)
    assert len(c.admin_access) == 2  # platform-admin and the deployer
    assert target.provider is c.provider
    # claims name the cluster's class; policies are declared because vpc-cni enforces them
    assert target.storage_class == "gp3-encrypted"
    assert target.network_policy is True


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
