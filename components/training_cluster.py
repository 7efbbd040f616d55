"""TrainingCluster: an EKS control plane with a small system node group and pinned add-ons.

Secure by default: the private endpoint is always on, the public one is off or limited to listed
CIDRs, Secrets are envelope-encrypted with a rotating customer-managed key, control-plane logs
(api, audit, authenticator) are kept for a set time, access is by access entries only (no
aws-auth ConfigMap), and nodes require IMDSv2. GPU and general capacity come from Karpenter
(components/karpenter.py); the system node group only hosts Karpenter, CoreDNS and monitoring.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Sequence
from typing import Any, Literal

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
from pydantic import Field

from components.common import (
    GPU_TOLERATION,
    NODE_MANAGED_POLICIES,
    ArgsModel,
    Environment,
    Issue,
    KubeTarget,
    check_cidr,
    check_min_max,
    merge_tags,
    pod_identity_trust_json,
    service_trust_policy,
)
from components.network import DISCOVERY_TAG, LOG_RETENTION_DAYS, Network, logs_key_policy

CLUSTER_ADMIN_POLICY = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
# get/list/watch on every resource, Secrets included (EKS access policy reference): what a
# refresh and a preview read. Nothing is written: pulumi-kubernetes previews a create or update
# it may not dry-run from its inputs, and a Helm release's preview installs nothing.
CLUSTER_READER_POLICY = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSAdminViewPolicy"
DEFAULT_STORAGE_CLASS = "gp3-encrypted"
DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"
# vpc-cni add-on configuration (its schema: `aws eks describe-addon-configuration --addon-name
# vpc-cni`; the chart's values.yaml at amazon-vpc-cni-k8s v1.20-v1.23 has the same top-level
# `enableNetworkPolicy: "false"`, a string). "true" starts the node agent's policy enforcement.
VPC_CNI_CONFIGURATION = json.dumps({"enableNetworkPolicy": "true"}, sort_keys=True)
# EKS versions in standard support (extended support costs 6x per cluster hour).
SUPPORTED_VERSIONS = ("1.31", "1.32", "1.33", "1.34")
DEFAULT_VERSION = "1.33"
CONTROL_PLANE_LOGS = ["api", "audit", "authenticator"]
SYSTEM_LABEL = {"mlplatform.io/role": "system"}
EBS_CSI_SERVICE_ACCOUNT = "ebs-csi-controller-sa"
_ADDON_VERSION = re.compile(r"^v\d+\.\d+\.\d+-eksbuild\.\d+$")
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$")
_GRAVITON = re.compile(r"^[a-z]+\d+[a-z]*g[a-z]*\.")


def _keep(environment: Environment) -> pulumi.ResourceOptions:
    prod = environment is Environment.PROD
    return pulumi.ResourceOptions(protect=prod, retain_on_delete=prod)


def node_monitoring_agent_values() -> dict[str, Any]:
    """The add-on's configuration (its charts/configuration.schema.json at v1.7.0).

    The agent reads GPU health from a DCGM host engine on each GPU node, its ``dcgm-server``
    DaemonSet (``nv-hostengine``, hostPort 5555). That DaemonSet tolerates nothing by default, so
    on the platform's GPU nodes (tainted ``nvidia.com/gpu``) it would never run and the agent
    would report no GPU faults at all: it gets the GPU toleration here. It stays the only
    standalone host engine: the GPU Operator's ``dcgm`` is off (GpuSoftware), and the DCGM
    exporter runs its own embedded engine without a port.
    """
    return {"dcgmAgent": {"tolerations": [dict(GPU_TOLERATION)]}}


def managed_policy(name: str) -> str:
    return f"arn:aws:iam::aws:policy/{name}"


class AddonVersions(ArgsModel):
    """EKS managed add-on versions, pinned for 1.33 (list others with
    `aws eks describe-addon-versions --kubernetes-version 1.33 --addon-name NAME`).

    Without AWS access these were confirmed from deployed clusters' published configs: coredns
    and kube-proxy (tied to the Kubernetes minor) as running on a 1.33 cluster; the add-ons
    that span versions (vpc-cni, EBS CSI, Pod Identity agent) at the newest builds seen in
    2026-09. vpc-cni v1.23's chart values still take `enableNetworkPolicy` (see above).
    """

    vpc_cni: str = "v1.23.1-eksbuild.1"
    coredns: str = "v1.13.2-eksbuild.4"
    kube_proxy: str = "v1.33.10-eksbuild.2"
    eks_pod_identity_agent: str = "v1.4.0-eksbuild.2"
    aws_ebs_csi_driver: str = "v1.66.0-eksbuild.1"
    # The image tag the agent's own chart pins at its release v1.7.0 (aws/eks-node-monitoring-agent
    # charts/eks-node-monitoring-agent/values.yaml, nodeAgent.image.tag), the add-on's version.
    eks_node_monitoring_agent: str = "v1.7.0-eksbuild.1"

    def issues(self) -> list[Issue]:
        found = super().issues()
        for field_name, field in type(self).model_fields.items():
            value = getattr(self, field_name)
            if not _ADDON_VERSION.match(value):
                found.append(
                    Issue(
                        (field.alias or field_name,),
                        f"must look like v1.2.3-eksbuild.4, got {value!r}",
                    )
                )
        return found


class SystemNodeGroupArgs(ArgsModel):
    # t3.large (2 vCPU, 8 GiB) is the smallest size that fits Karpenter, CoreDNS and the
    # monitoring agents together; t3.medium runs out of memory once Prometheus starts.
    instance_types: list[str] = Field(default_factory=lambda: ["t3.large"], min_length=1)
    min_size: int = 1
    desired_size: int = 1
    max_size: int = 2
    root_volume_gib: int = 40
    http_put_response_hop_limit: int = 1
    # Spot halves dev's biggest line; a reclaimed node only pauses the controllers. Never in prod.
    capacity_type: Literal["on-demand", "spot"] = "on-demand"

    def issues(self) -> list[Issue]:
        found = super().issues()
        found += check_min_max("minSize", self.min_size, "desiredSize", self.desired_size)
        found += check_min_max("desiredSize", self.desired_size, "maxSize", self.max_size)
        if self.min_size < 1:
            found.append(Issue(("minSize",), "must be >= 1: Karpenter and CoreDNS run here"))
        if self.http_put_response_hop_limit not in (1, 2):
            found.append(
                Issue(
                    ("httpPutResponseHopLimit",),
                    f"must be 1 or 2 (1 keeps pods off the instance role), "
                    f"got {self.http_put_response_hop_limit}",
                )
            )
        if not 20 <= self.root_volume_gib <= 1000:
            found.append(
                Issue(("rootVolumeGib",), f"must be 20 to 1000, got {self.root_volume_gib}")
            )
        arches = {_arch(t) for t in self.instance_types}
        if len(arches) > 1:
            found.append(
                Issue(("instanceTypes",), "mixes arm64 (Graviton) and x86_64 types; pick one")
            )
        return found


def _arch(instance_type: str) -> str:
    return "arm64" if _GRAVITON.match(instance_type) else "x86_64"


class TrainingClusterArgs(ArgsModel):
    environment: Environment = Environment.DEV
    cluster_name: str | None = Field(default=None, pattern=r"^[a-zA-Z][a-zA-Z0-9-]{0,99}$")
    kubernetes_version: str = DEFAULT_VERSION
    public_endpoint: bool = False
    public_access_cidrs: list[str] = Field(default_factory=list)
    admin_role_arns: list[str] = Field(default_factory=list)
    # Read every object, write none: the role CI previews and drift checks run as.
    reader_role_arns: list[str] = Field(default_factory=list)
    # Whoever runs `pulumi up` needs cluster-admin to create the Kubernetes objects.
    grant_deployer_admin: bool = True
    log_retention_days: int = 90
    addons: AddonVersions = Field(default_factory=AddonVersions)
    # The EKS node monitoring agent: GPU (XID, NVLink, DCGM), kernel, network and storage
    # conditions on every node, which Karpenter's node repair acts on.
    node_monitoring_agent: bool = True
    system_nodes: SystemNodeGroupArgs = Field(default_factory=SystemNodeGroupArgs)
    tags: dict[str, str] = Field(default_factory=dict)

    def issues(self) -> list[Issue]:
        found = super().issues()
        if self.environment is Environment.PROD and self.system_nodes.capacity_type == "spot":
            found.append(
                Issue(
                    ("systemNodes", "capacityType"),
                    "must be on-demand in prod (allowed: on-demand)",
                )
            )
        if self.kubernetes_version not in SUPPORTED_VERSIONS:
            found.append(
                Issue(
                    ("kubernetesVersion",),
                    f"must be one of {list(SUPPORTED_VERSIONS)} (standard support), "
                    f"got {self.kubernetes_version!r}",
                )
            )
        else:
            proxy_minor = ".".join(self.addons.kube_proxy.lstrip("v").split(".")[:2])
            if proxy_minor != self.kubernetes_version:
                found.append(
                    Issue(
                        ("addons", "kubeProxy"),
                        f"must match kubernetesVersion {self.kubernetes_version}, "
                        f"got {self.addons.kube_proxy}",
                    )
                )
        for i, cidr in enumerate(self.public_access_cidrs):
            bad = check_cidr("", cidr)
            if bad:
                found += [Issue(("publicAccessCidrs", i), x.message) for x in bad]
                continue
            if self.environment is Environment.PROD and ipaddress.ip_network(cidr).prefixlen == 0:
                found.append(
                    Issue(
                        ("publicAccessCidrs", i),
                        f"{cidr} opens the API server to the internet; list your office/VPN "
                        "ranges or set publicEndpoint: false",
                    )
                )
        if self.public_endpoint and not self.public_access_cidrs:
            found.append(
                Issue(
                    ("publicAccessCidrs",),
                    "must list the CIDRs allowed to reach the public endpoint "
                    "(EKS would otherwise allow 0.0.0.0/0)",
                )
            )
        if not self.public_endpoint and self.public_access_cidrs:
            found.append(
                Issue(("publicAccessCidrs",), "has no effect while publicEndpoint is false")
            )
        for i, arn in enumerate(self.admin_role_arns):
            if not _ROLE_ARN.match(arn):
                found.append(Issue(("adminRoleArns", i), f"must be an IAM role ARN, got {arn!r}"))
        for i, arn in enumerate(self.reader_role_arns):
            if not _ROLE_ARN.match(arn):
                found.append(Issue(("readerRoleArns", i), f"must be an IAM role ARN, got {arn!r}"))
            elif arn in self.admin_role_arns:
                # One access entry per principal: a reader cannot also be an admin.
                found.append(Issue(("readerRoleArns", i), f"{arn} is also in adminRoleArns"))
        if self.log_retention_days not in LOG_RETENTION_DAYS:
            found.append(
                Issue(
                    ("logRetentionDays",),
                    f"must be one of {list(LOG_RETENTION_DAYS)}, got {self.log_retention_days}",
                )
            )
        return found


def ebs_key_policy(*, partition: str, account_id: str, region: str) -> dict[str, Any]:
    """The policy of the key for node root volumes and persistent volumes.

    Like the AWS-managed aws/ebs key: any principal of this account may use the key through EC2
    (managed node groups' Auto Scaling role, Karpenter's CreateFleet, the EBS CSI driver), so no
    role needs KMS permissions of its own, and nothing else can use it directly.
    """
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "AccountAdministersKey",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:{partition}:iam::{account_id}:root"},
                "Action": "kms:*",
                "Resource": "*",
            },
            {
                "Sid": "AccountUsesKeyThroughEbs",
                "Effect": "Allow",
                "Principal": {"AWS": "*"},
                "Action": [
                    "kms:Encrypt",
                    "kms:Decrypt",
                    "kms:ReEncrypt*",
                    "kms:GenerateDataKey*",
                    "kms:CreateGrant",
                    "kms:DescribeKey",
                ],
                "Resource": "*",
                "Condition": {
                    "StringEquals": {
                        "kms:ViaService": f"ec2.{region}.amazonaws.com",
                        "kms:CallerAccount": account_id,
                    }
                },
            },
        ],
    }


def admin_principals(
    admin_role_arns: Sequence[str], deployer: str | None
) -> list[tuple[str, int | None]]:
    """Each principal that gets cluster-admin once: (ARN, its index in adminRoleArns or None).

    The deployer is one more principal unless it is already listed (then it is that entry).
    """
    seen: dict[str, int | None] = {}
    for i, arn in enumerate(admin_role_arns):
        seen.setdefault(arn, i)
    if deployer is not None:
        seen.setdefault(deployer, None)
    return list(seen.items())


def principal_key(arn: str) -> str:
    """A resource-name part that names the principal: ``role-<path>-<name>`` (stable per ARN)."""
    resource = arn.split(":", 5)[-1]
    return re.sub(r"[^A-Za-z0-9-]+", "-", resource).strip("-")


def deployer_arn(parent: pulumi.Resource) -> str:
    """The IAM principal running this deployment: for an assumed role, the role's ARN (with its
    path), which is what an access entry names, not the session's STS ARN."""
    opts = pulumi.InvokeOptions(parent=parent)
    caller = aws.get_caller_identity(opts=opts)
    return aws.iam.get_session_context(arn=caller.arn, opts=opts).issuer_arn


def default_storage_class(
    name: str = DEFAULT_STORAGE_CLASS, kms_key_arn: Any = None
) -> dict[str, Any]:
    """Encrypted gp3 through the EBS CSI driver (with the cluster's EBS key when given), marked
    the cluster's default."""
    params: dict[str, Any] = {"type": "gp3", "encrypted": "true", "fsType": "ext4"}
    if kms_key_arn is not None:
        params["kmsKeyId"] = kms_key_arn
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": name, "annotations": {DEFAULT_CLASS_ANNOTATION: "true"}},
        "provisioner": "ebs.csi.aws.com",
        "parameters": params,
        # Delete: a destroyed stack must not leave orphaned EBS volumes behind.
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "WaitForFirstConsumer",
        "allowVolumeExpansion": True,
    }


def kubeconfig_for(
    cluster_name: Any, endpoint: Any, ca_data: Any, region: Any
) -> pulumi.Output[str]:
    """A kubeconfig that gets a fresh token from `aws eks get-token` (no stored credential)."""

    def build(args: list[str]) -> str:
        name, ep, ca, reg = args
        return json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {"name": name, "cluster": {"server": ep, "certificate-authority-data": ca}}
                ],
                "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
                "current-context": name,
                "users": [
                    {
                        "name": name,
                        "user": {
                            "exec": {
                                "apiVersion": "client.authentication.k8s.io/v1beta1",
                                "command": "aws",
                                "args": [
                                    "eks",
                                    "get-token",
                                    "--cluster-name",
                                    name,
                                    "--region",
                                    reg,
                                    "--output",
                                    "json",
                                ],
                                "interactiveMode": "Never",
                            }
                        },
                    }
                ],
            }
        )

    return pulumi.Output.all(cluster_name, endpoint, ca_data, region).apply(build)


class TrainingCluster(pulumi.ComponentResource):
    cluster_name: pulumi.Output[str]
    endpoint: pulumi.Output[str]
    kubeconfig: pulumi.Output[str]
    kms_key_arn: pulumi.Output[str]
    ebs_kms_key_arn: pulumi.Output[str]
    cluster_security_group_id: pulumi.Output[str]
    oidc_issuer: pulumi.Output[str]
    target: KubeTarget

    def __init__(
        self,
        name: str,
        args: TrainingClusterArgs,
        *,
        network: Network,
        tags: dict[str, str] | None = None,
        storage_class_aliases: Sequence[pulumi.Input[str] | pulumi.Alias] = (),
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """``storage_class_aliases``: where the default StorageClass was declared before (the
        same Kubernetes object under another parent), so moving it here does not recreate it."""
        args.raise_if_invalid("TrainingCluster")
        super().__init__("mlplatform:compute:TrainingCluster", name, None, opts)
        self.args = args
        cluster_name = args.cluster_name or name
        self.name = cluster_name
        tags = merge_tags(tags, args.tags)
        child = pulumi.ResourceOptions(parent=self)
        invoke = pulumi.InvokeOutputOptions(parent=self)
        region = aws.get_region_output().region

        log_group_name = f"/aws/eks/{cluster_name}/cluster"
        self.key = aws.kms.Key(
            f"{name}-key",
            description=f"EKS {cluster_name}: Secrets envelope encryption and control-plane logs",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            policy=logs_key_policy(log_group_name),
            tags=tags,
            # Deleting a key makes everything it encrypted unreadable: keep it in prod.
            opts=pulumi.ResourceOptions.merge(child, _keep(args.environment)),
        )
        self.ebs_key = aws.kms.Key(
            f"{name}-ebs-key",
            description=f"EKS {cluster_name}: node root volumes and persistent volumes (EBS)",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            policy=pulumi.Output.all(
                aws.get_partition_output(opts=invoke).partition,
                aws.get_caller_identity_output(opts=invoke).account_id,
                region,
            ).apply(
                lambda a: json.dumps(
                    ebs_key_policy(partition=a[0], account_id=a[1], region=a[2]), sort_keys=True
                )
            ),
            tags=tags,
            opts=pulumi.ResourceOptions.merge(child, _keep(args.environment)),
        )
        self.ebs_kms_key_arn = self.ebs_key.arn
        # Created before the cluster so EKS writes into a group with retention and encryption.
        self.log_group = aws.cloudwatch.LogGroup(
            f"{name}-logs",
            name=log_group_name,
            retention_in_days=args.log_retention_days,
            kms_key_id=self.key.arn,
            tags=tags,
            opts=child,
        )

        cluster_role = aws.iam.Role(
            f"{name}-cluster-role",
            assume_role_policy=json.dumps(
                service_trust_policy("eks.amazonaws.com", tag_session=True), sort_keys=True
            ),
            tags=tags,
            opts=child,
        )
        cluster_policy = aws.iam.RolePolicyAttachment(
            f"{name}-cluster-policy",
            role=cluster_role.name,
            policy_arn=managed_policy("AmazonEKSClusterPolicy"),
            opts=child,
        )

        self.cluster = aws.eks.Cluster(
            f"{name}-eks",
            name=cluster_name,
            version=args.kubernetes_version,
            role_arn=cluster_role.arn,
            vpc_config=aws.eks.ClusterVpcConfigArgs(
                subnet_ids=network.private_subnet_ids,
                endpoint_private_access=True,
                endpoint_public_access=args.public_endpoint,
                public_access_cidrs=args.public_access_cidrs if args.public_endpoint else None,
            ),
            encryption_config=aws.eks.ClusterEncryptionConfigArgs(
                provider=aws.eks.ClusterEncryptionConfigProviderArgs(key_arn=self.key.arn),
                resources=["secrets"],
            ),
            enabled_cluster_log_types=CONTROL_PLANE_LOGS,
            access_config=aws.eks.ClusterAccessConfigArgs(
                authentication_mode="API",
                # The deployer's admin entry is declared below like every other one. An entry
                # EKS made on its own would collide with it (ResourceInUseException).
                bootstrap_cluster_creator_admin_permissions=False,
            ),
            # Add-ons come from the managed add-ons below, pinned, not from EKS's unmanaged copies.
            bootstrap_self_managed_addons=False,
            # Refuse silent moves to extended support (billed at 6x) when a version ages out.
            upgrade_policy=aws.eks.ClusterUpgradePolicyArgs(support_type="STANDARD"),
            tags=tags,
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[self.log_group, cluster_policy, *network.teardown_anchor],
                # Create-only: a cluster made with the old bootstrap setting is kept, not
                # replaced (import its creator's entry once; see the README).
                ignore_changes=["accessConfig.bootstrapClusterCreatorAdminPermissions"],
            ),
        )
        self.cluster_name = self.cluster.name
        self.endpoint = self.cluster.endpoint
        self.cluster_security_group_id = self.cluster.vpc_config.cluster_security_group_id
        self.oidc_issuer = self.cluster.identities[0].oidcs[0].issuer
        self.kms_key_arn = self.key.arn

        # Karpenter finds the security group for its nodes by this tag.
        aws.ec2.Tag(
            f"{name}-cluster-sg-discovery",
            resource_id=self.cluster_security_group_id,
            key=DISCOVERY_TAG,
            value=cluster_name,
            opts=child,
        )

        self.admin_access = self._admin_access(name, args, tags)
        self.reader_access = self._reader_access(name, args, tags)

        # Add-ons the nodes need to become Ready go first; the rest need running nodes.
        def addon(
            key: str, version: str, deps: list[pulumi.Resource], **extra: Any
        ) -> aws.eks.Addon:
            return aws.eks.Addon(
                f"{name}-{key}",
                cluster_name=self.cluster.name,
                addon_name=key,
                addon_version=version,
                resolve_conflicts_on_create="OVERWRITE",
                resolve_conflicts_on_update="PRESERVE",
                tags=tags,
                opts=pulumi.ResourceOptions(parent=self, depends_on=deps),
                **extra,
            )

        v = args.addons
        before_nodes = [
            # NetworkPolicy is enforced only with the CNI's policy agent switched on.
            addon("vpc-cni", v.vpc_cni, [], configuration_values=VPC_CNI_CONFIGURATION),
            addon("kube-proxy", v.kube_proxy, []),
            addon("eks-pod-identity-agent", v.eks_pod_identity_agent, []),
        ]
        self.node_group = self._system_nodes(name, args, network, tags, before_nodes)

        ebs_role = aws.iam.Role(
            f"{name}-ebs-csi-role",
            assume_role_policy=pod_identity_trust_json(
                partition=aws.get_partition_output(opts=invoke).partition,
                region=region,
                account_id=aws.get_caller_identity_output(opts=invoke).account_id,
                cluster_name=cluster_name,
            ),
            tags=tags,
            opts=child,
        )
        ebs_policy = aws.iam.RolePolicyAttachment(
            f"{name}-ebs-csi-policy",
            role=ebs_role.name,
            policy_arn=managed_policy("service-role/AmazonEBSCSIDriverPolicy"),
            opts=child,
        )
        ebs_csi = addon(
            "aws-ebs-csi-driver",
            v.aws_ebs_csi_driver,
            [self.node_group, ebs_policy, before_nodes[2]],
            pod_identity_associations=[
                aws.eks.AddonPodIdentityAssociationArgs(
                    role_arn=ebs_role.arn, service_account=EBS_CSI_SERVICE_ACCOUNT
                )
            ],
        )
        self.addons = [*before_nodes, addon("coredns", v.coredns, [self.node_group]), ebs_csi]
        if args.node_monitoring_agent:
            self.addons.append(
                addon(
                    "eks-node-monitoring-agent",
                    v.eks_node_monitoring_agent,
                    [self.node_group],
                    configuration_values=json.dumps(node_monitoring_agent_values(), sort_keys=True),
                )
            )

        self.kubeconfig = pulumi.Output.secret(
            kubeconfig_for(
                self.cluster.name,
                self.cluster.endpoint,
                self.cluster.certificate_authority.data,
                region,
            )
        )
        # cluster_identifier is a plain string known at preview: the provider is replaced only
        # when the cluster itself is, not whenever the kubeconfig is unknown (pulumi#11521).
        self.provider = k8s.Provider(
            f"{name}-k8s",
            kubeconfig=self.kubeconfig,
            cluster_identifier=cluster_name,
            enable_server_side_apply=True,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.cluster]),
        )
        self.storage_class = self._storage_class(name, [ebs_csi], storage_class_aliases)
        self.target = KubeTarget(
            provider=self.provider,
            # Objects need the API (admin access), nodes to run on and the class to bind to.
            depends_on=(self.cluster, self.node_group, *self.admin_access, self.storage_class),
            cluster_name=self.cluster.name,
            on_aws=True,
            storage_class=DEFAULT_STORAGE_CLASS,
            network_policy=True,
        )
        self.register_outputs(
            {
                "clusterName": self.cluster_name,
                "endpoint": self.endpoint,
                "kubeconfig": self.kubeconfig,
                "kmsKeyArn": self.kms_key_arn,
                "ebsKmsKeyArn": self.ebs_kms_key_arn,
                "clusterSecurityGroupId": self.cluster_security_group_id,
            }
        )

    def _admin_access(
        self, name: str, args: TrainingClusterArgs, tags: dict[str, str]
    ) -> list[aws.eks.AccessPolicyAssociation]:
        # Cluster admins, the deployer included, are explicit access entries (EKS bootstraps
        # none): one per principal, so listing the deployer among the admins cannot collide.
        deployer = deployer_arn(self) if args.grant_deployer_admin else None
        admin_access: list[aws.eks.AccessPolicyAssociation] = []
        for principal, old_index in admin_principals(args.admin_role_arns, deployer):
            key = f"{name}-access-{principal_key(principal)}"
            # Before entries were keyed by principal they were numbered: keep those in place.
            old = [pulumi.Alias(name=f"{name}-admin-{old_index}")] if old_index is not None else []
            old_policy = (
                [pulumi.Alias(name=f"{name}-admin-{old_index}-policy")]
                if old_index is not None
                else []
            )
            entry = aws.eks.AccessEntry(
                key,
                cluster_name=self.cluster.name,
                principal_arn=principal,
                type="STANDARD",
                tags=tags,
                opts=pulumi.ResourceOptions(parent=self, aliases=old),
            )
            admin_access.append(
                aws.eks.AccessPolicyAssociation(
                    f"{key}-admin",
                    cluster_name=self.cluster.name,
                    principal_arn=principal,
                    policy_arn=CLUSTER_ADMIN_POLICY,
                    access_scope=aws.eks.AccessPolicyAssociationAccessScopeArgs(type="cluster"),
                    opts=pulumi.ResourceOptions(
                        parent=self, depends_on=[entry], aliases=old_policy
                    ),
                )
            )
        return admin_access

    def _reader_access(
        self, name: str, args: TrainingClusterArgs, tags: dict[str, str]
    ) -> list[aws.eks.AccessPolicyAssociation]:
        deployer = deployer_arn(self) if args.grant_deployer_admin else None
        if deployer is not None and deployer in args.reader_role_arns:
            # Its admin entry and its reader entry would be one principal's two entries.
            raise ValueError(
                f"TrainingCluster: the deployer {deployer} is in readerRoleArns; deploy with "
                "an admin role (the preview role cannot run pulumi up)"
            )
        access: list[aws.eks.AccessPolicyAssociation] = []
        for principal in dict.fromkeys(args.reader_role_arns):
            key = f"{name}-access-{principal_key(principal)}"
            entry = aws.eks.AccessEntry(
                key,
                cluster_name=self.cluster.name,
                principal_arn=principal,
                type="STANDARD",
                tags=tags,
                opts=pulumi.ResourceOptions(parent=self),
            )
            access.append(
                aws.eks.AccessPolicyAssociation(
                    f"{key}-reader",
                    cluster_name=self.cluster.name,
                    principal_arn=principal,
                    policy_arn=CLUSTER_READER_POLICY,
                    access_scope=aws.eks.AccessPolicyAssociationAccessScopeArgs(type="cluster"),
                    opts=pulumi.ResourceOptions(parent=self, depends_on=[entry]),
                )
            )
        return access

    def _storage_class(
        self,
        name: str,
        after: list[pulumi.Resource],
        aliases: Sequence[pulumi.Input[str] | pulumi.Alias],
    ) -> k8s.storage.v1.StorageClass:
        """The one default class: claims that name no class bind here too (EKS marks none
        default since 1.30)."""
        sc = default_storage_class(kms_key_arn=self.ebs_kms_key_arn)
        return k8s.storage.v1.StorageClass(
            f"{name}-storage-class",
            metadata=sc["metadata"],
            provisioner=sc["provisioner"],
            parameters=sc["parameters"],
            reclaim_policy=sc["reclaimPolicy"],
            volume_binding_mode=sc["volumeBindingMode"],
            allow_volume_expansion=sc["allowVolumeExpansion"],
            opts=pulumi.ResourceOptions(
                parent=self,
                provider=self.provider,
                depends_on=[self.cluster, *after, *self.admin_access],
                # The class used to be the monitoring stack's (same Kubernetes object).
                aliases=list(aliases),
            ),
        )

    def _system_nodes(
        self,
        name: str,
        args: TrainingClusterArgs,
        network: Network,
        tags: dict[str, str],
        after: Sequence[pulumi.Resource],
    ) -> aws.eks.NodeGroup:
        child = pulumi.ResourceOptions(parent=self)
        sysargs = args.system_nodes
        role = aws.iam.Role(
            f"{name}-system-node-role",
            assume_role_policy=json.dumps(
                service_trust_policy("ec2.amazonaws.com"), sort_keys=True
            ),
            tags=tags,
            opts=child,
        )
        attachments = [
            aws.iam.RolePolicyAttachment(
                f"{name}-system-node-{short}",
                role=role.name,
                policy_arn=managed_policy(policy),
                opts=child,
            )
            for short, policy in NODE_MANAGED_POLICIES
        ]
        node_tags = merge_tags(tags, {"Name": f"{self.name}-system"})
        template = aws.ec2.LaunchTemplate(
            f"{name}-system-lt",
            description=f"System nodes of {self.name}: IMDSv2 only, encrypted gp3 root",
            metadata_options=aws.ec2.LaunchTemplateMetadataOptionsArgs(
                http_endpoint="enabled",
                http_tokens="required",
                http_put_response_hop_limit=sysargs.http_put_response_hop_limit,
                instance_metadata_tags="disabled",
            ),
            block_device_mappings=[
                aws.ec2.LaunchTemplateBlockDeviceMappingArgs(
                    device_name="/dev/xvda",
                    ebs=aws.ec2.LaunchTemplateBlockDeviceMappingEbsArgs(
                        volume_size=sysargs.root_volume_gib,
                        volume_type="gp3",
                        encrypted="true",
                        kms_key_id=self.ebs_kms_key_arn,
                        delete_on_termination="true",
                    ),
                )
            ],
            tag_specifications=[
                aws.ec2.LaunchTemplateTagSpecificationArgs(resource_type=kind, tags=node_tags)
                for kind in ("instance", "volume", "network-interface")
            ],
            update_default_version=True,
            tags=tags,
            opts=child,
        )
        arch = _arch(sysargs.instance_types[0])
        return aws.eks.NodeGroup(
            f"{name}-system",
            cluster_name=self.cluster.name,
            node_role_arn=role.arn,
            subnet_ids=network.private_subnet_ids,
            instance_types=list(sysargs.instance_types),
            ami_type="AL2023_ARM_64_STANDARD" if arch == "arm64" else "AL2023_x86_64_STANDARD",
            capacity_type="SPOT" if sysargs.capacity_type == "spot" else "ON_DEMAND",
            scaling_config=aws.eks.NodeGroupScalingConfigArgs(
                min_size=sysargs.min_size,
                desired_size=sysargs.desired_size,
                max_size=sysargs.max_size,
            ),
            launch_template=aws.eks.NodeGroupLaunchTemplateArgs(
                id=template.id, version=template.latest_version.apply(str)
            ),
            labels=dict(SYSTEM_LABEL),
            update_config=aws.eks.NodeGroupUpdateConfigArgs(max_unavailable=1),
            node_repair_config=aws.eks.NodeGroupNodeRepairConfigArgs(enabled=True),
            tags=tags,
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[*attachments, *after],
                # The autoscaler or an operator may change the desired size; don't fight it.
                ignore_changes=["scalingConfig.desiredSize"],
            ),
        )
