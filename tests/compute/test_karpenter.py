"""Karpenter: Helm release, Pod Identity, interruption queue, node role, node classes, CPU pool."""

from __future__ import annotations

import json

import pytest

from components.karpenter import (
    CHART,
    CRD_CHART,
    KARPENTER_VERSION,
    KarpenterArgs,
    QueueEncryption,
    controller_policy,
)
from tests.compute.helpers import crs, node_class, node_pool

RELEASE = "kubernetes:helm.sh/v3:Release"


def _karpenter_release(graph):
    return next(h for h in graph.helm_releases() if h["name"] == "karpenter")


def test_chart_pinned_v1_from_oci(dev):
    rel = _karpenter_release(dev)
    assert rel["chart"] == CHART == "oci://public.ecr.aws/karpenter/karpenter"
    major, minor, patch = rel["version"].split(".")
    assert major == "1" and minor.isdigit() and patch.isdigit()


def test_values_known_at_preview_and_controller_on_system_nodes(dev, prod):
    values = _karpenter_release(dev)["values"]
    assert values["settings"]["clusterName"] == "mlp-dev"
    assert values["settings"]["interruptionQueue"] == "mlp-dev"
    assert "clusterEndpoint" not in values["settings"]
    assert values["nodeSelector"] == {"mlplatform.io/role": "system"}
    assert {"name": "AWS_REGION", "value": "us-east-1"} in values["controller"]["env"]
    res = values["controller"]["resources"]
    assert res["requests"] and res["limits"]
    assert values["replicas"] == 1
    assert _karpenter_release(prod)["values"]["replicas"] == 2


def test_crds_come_from_the_crd_chart_which_upgrades_them(dev):
    # The controller chart's crds/ folder is installed once and never upgraded.
    crds = next(h for h in dev.helm_releases() if h["name"] == "karpenter-crd")
    assert crds["chart"] == CRD_CHART == "oci://public.ecr.aws/karpenter/karpenter-crd"
    assert crds["version"] == _karpenter_release(dev)["version"] == KARPENTER_VERSION
    controller = dev.one(RELEASE, "karpenter-controller")
    assert controller.inputs["skipCrds"] is True
    assert dev.depends_on(controller, dev.one(RELEASE, "karpenter-crds"))
    for pool in dev.by_type("kubernetes:karpenter.sh/v1:NodePool"):
        assert dev.depends_on(pool, dev.one(RELEASE, "karpenter-crds"))


def test_controller_role_through_pod_identity(dev):
    assoc = dev.one("aws:eks/podIdentityAssociation:PodIdentityAssociation", "karpenter")
    assert assoc.inputs["serviceAccount"] == "karpenter"
    assert assoc.inputs["namespace"] == "kube-system"
    role = dev.one("aws:iam/role:Role", "karpenter-controller-role")
    trust = json.loads(role.inputs["assumeRolePolicy"])["Statement"][0]
    assert trust["Principal"] == {"Service": "pods.eks.amazonaws.com"}
    assert set(trust["Action"]) == {"sts:AssumeRole", "sts:TagSession"}
    # Confused-deputy guard: only this account's mlp-dev cluster may hand the role out.
    assert trust["Condition"] == {
        "StringEquals": {"aws:SourceAccount": "123456789012"},
        "ArnEquals": {"aws:SourceArn": "arn:aws:eks:us-east-1:123456789012:cluster/mlp-dev"},
    }
    release = dev.one(RELEASE, "karpenter-controller")
    assert dev.depends_on(release, assoc)
    # no IRSA annotation: Pod Identity is the only credential path
    assert "annotations" not in (_karpenter_release(dev)["values"]["serviceAccount"])


def test_interruption_queue_encrypted_and_fed_by_eventbridge(dev):
    queue = dev.one("aws:sqs/queue:Queue")
    # dev: SSE-SQS, no key to pay for (the queue holds only EC2's notices)
    assert queue.inputs["sqsManagedSseEnabled"] is True
    assert "kmsMasterKeyId" not in queue.inputs
    assert not [k for k in dev.by_type("aws:kms/key:Key") if "interruptions" in k.name]
    assert queue.inputs["messageRetentionSeconds"] == 300
    rules = dev.by_type("aws:cloudwatch/eventRule:EventRule")
    types = sorted(json.loads(r.inputs["eventPattern"])["detail-type"][0] for r in rules)
    assert types == [
        "AWS Health Event",
        "EC2 Capacity Reservation Instance Interruption Warning",
        "EC2 Instance Rebalance Recommendation",
        "EC2 Instance State-change Notification",
        "EC2 Spot Instance Interruption Warning",
    ]
    targets = dev.by_type("aws:cloudwatch/eventTarget:EventTarget")
    assert len(targets) == 5
    assert all(t.inputs["arn"].endswith(":mlp-dev") for t in targets)
    policy = json.loads(dev.one("aws:sqs/queuePolicy:QueuePolicy").inputs["policy"])
    deny = [s for s in policy["Statement"] if s["Effect"] == "Deny"]
    assert deny and deny[0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_node_role_joins_through_access_entry(dev):
    entry = dev.one("aws:eks/accessEntry:AccessEntry", "karpenter-node-access")
    assert entry.inputs["type"] == "EC2_LINUX"
    role = dev.one("aws:iam/role:Role", "karpenter-node-role")
    assert entry.inputs["principalArn"].endswith(":role/" + role.inputs["name"])
    # EC2 sends no aws:SourceAccount when it assumes an instance role: no condition here.
    assert json.loads(role.inputs["assumeRolePolicy"])["Statement"] == [
        {
            "Effect": "Allow",
            "Principal": {"Service": "ec2.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ]
    policies = {
        a.inputs["policyArn"].rsplit("/", 1)[-1]
        for a in dev.by_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
        if a.name.startswith("karpenter-node-")
    }
    assert policies == {
        "AmazonEKSWorkerNodePolicy",
        "AmazonEKS_CNI_Policy",
        "AmazonEC2ContainerRegistryPullOnly",
        "AmazonSSMManagedInstanceCore",
    }


def test_controller_policy_is_scoped():
    doc = controller_policy(
        cluster_name="c",
        partition="aws",
        region="us-east-1",
        account="123456789012",
        queue_arn="arn:aws:sqs:us-east-1:123456789012:c",
        node_role_arn="arn:aws:iam::123456789012:role/c-karpenter-node",
    )
    sids = [s["Sid"] for s in doc["Statement"]]
    assert len(sids) == len(set(sids))
    for st in doc["Statement"]:
        actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        assert all(":" in a and "*" not in a for a in actions), st["Sid"]
        mutating = [
            a for a in actions if not a.split(":")[1].startswith(("Describe", "Get", "List"))
        ]
        if st["Resource"] == "*" and mutating:
            pytest.fail(f"{st['Sid']} allows {mutating} on every resource")
    by_sid = {s["Sid"]: s for s in doc["Statement"]}
    assert by_sid["AllowPassingInstanceRole"]["Resource"].endswith("role/c-karpenter-node")
    assert "kubernetes.io/cluster/c" in json.dumps(by_sid["AllowScopedDeletion"]["Condition"])


# Every AWS API the controller calls at the pinned release: the request types used in pkg/ of
# github.com/aws/karpenter-provider-aws v1.15.2 (Go module proxy), less the interruption queue's
# test helpers (sqs Create/Delete/SendMessage) and ec2:RebootInstances (node repair, left off).
KARPENTER_API_CALLS = {
    "arc-zonal-shift:GetManagedResource", "ec2:CreateFleet", "ec2:CreateLaunchTemplate",
    "ec2:CreateTags", "ec2:DeleteLaunchTemplate", "ec2:DescribeCapacityReservations",
    "ec2:DescribeImages", "ec2:DescribeInstanceStatus", "ec2:DescribeInstanceTypeOfferings",
    "ec2:DescribeInstanceTypes", "ec2:DescribeInstances", "ec2:DescribeLaunchTemplates",
    "ec2:DescribePlacementGroups", "ec2:DescribeSecurityGroups", "ec2:DescribeSpotPriceHistory",
    "ec2:DescribeSubnets", "ec2:RunInstances", "ec2:TerminateInstances", "eks:DescribeCluster",
    "iam:AddRoleToInstanceProfile", "iam:CreateInstanceProfile", "iam:DeleteInstanceProfile",
    "iam:GetInstanceProfile", "iam:ListInstanceProfiles", "iam:RemoveRoleFromInstanceProfile",
    "iam:TagInstanceProfile", "pricing:GetProducts", "sqs:DeleteMessage", "sqs:GetQueueUrl",
    "sqs:ReceiveMessage", "ssm:GetParameter",
}  # fmt: skip


def test_controller_policy_allows_exactly_what_the_release_calls():
    doc = controller_policy(
        cluster_name="c",
        partition="aws",
        region="us-east-1",
        account="123456789012",
        queue_arn="arn:aws:sqs:us-east-1:123456789012:c",
        node_role_arn="arn:aws:iam::123456789012:role/c-karpenter-node",
    )
    allowed = set()
    for st in doc["Statement"]:
        allowed |= set(st["Action"] if isinstance(st["Action"], list) else [st["Action"]])
    # iam:PassRole is not an API call of its own: RunInstances/CreateFleet pass the node role.
    assert allowed - {"iam:PassRole"} == KARPENTER_API_CALLS


def test_node_classes_imdsv2_encrypted_gp3_discovery_selectors(dev):
    for nc in crs(dev, "EC2NodeClass"):
        spec = nc["spec"]
        assert spec["metadataOptions"]["httpTokens"] == "required"
        assert spec["metadataOptions"]["httpPutResponseHopLimit"] == 1
        (bdm,) = spec["blockDeviceMappings"]
        assert bdm["ebs"]["encrypted"] is True and bdm["ebs"]["volumeType"] == "gp3"
        selector = [{"tags": {"karpenter.sh/discovery": "mlp-dev"}}]
        assert spec["subnetSelectorTerms"] == selector
        assert spec["securityGroupSelectorTerms"] == selector
        (ami,) = spec["amiSelectorTerms"]
        assert ami["alias"].startswith("al2023@v") and "latest" not in ami["alias"]
        assert spec["role"] == "mlp-dev-karpenter-node"


def test_default_cpu_pool(dev):
    pool = node_pool(dev, "general")["spec"]
    assert pool["template"]["spec"]["nodeClassRef"] == {
        "group": "karpenter.k8s.aws",
        "kind": "EC2NodeClass",
        "name": "default",
    }
    reqs = {r["key"]: r for r in pool["template"]["spec"]["requirements"]}
    assert reqs["karpenter.k8s.aws/instance-gpu-count"]["operator"] == "DoesNotExist"
    assert set(reqs["karpenter.sh/capacity-type"]["values"]) == {"spot", "on-demand"}
    assert pool["limits"] == {"cpu": "64", "memory": "256Gi"}
    assert pool["disruption"]["consolidationPolicy"] == "WhenEmptyOrUnderutilized"
    assert (
        node_class(dev, "default")["spec"]["blockDeviceMappings"][0]["ebs"]["volumeSize"] == "100Gi"
    )


def test_interruption_queue_takes_a_customer_managed_key_when_asked(prod):
    # prod by default (the compliance profiles refuse SQS-managed SSE); dev with
    # karpenter.queueEncryption: kms
    queue = prod.one("aws:sqs/queue:Queue")
    key = prod.one("aws:kms/key:Key", "karpenter-interruptions-key")
    assert key.urn in queue.property_dependencies["kmsMasterKeyId"]
    assert "sqsManagedSseEnabled" not in queue.inputs
    asked = KarpenterArgs.model_validate({"queueEncryption": "kms"})
    assert asked.effective_queue_encryption is QueueEncryption.KMS
    assert KarpenterArgs().effective_queue_encryption is QueueEncryption.SQS_MANAGED
