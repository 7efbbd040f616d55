"""TrainingCluster: an EKS control plane with a small system node group and pinned add-ons.

Secure by default: the private endpoint is always on, the public one is off or limited to listed
CIDRs, Secrets are envelope-encrypted with a rotating customer-managed key, control-plane logs
(api, audit, authenticator) are kept for a set time, access is by access entries only (no
aws-auth ConfigMap), and nodes require IMDSv2. GPU and general capacity come from Karpenter
(components/karpenter.py); the system node group only hosts Karpenter, CoreDNS and monitoring.

The parts are built by functions of their own modules, every resource a child of this
component: keys and log group (cluster_keys), access entries (cluster_access), add-ons
(cluster_addons) and the system node group (system_nodes).
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Sequence
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
from pydantic import Field

from components.cluster_access import (
    CLUSTER_ADMIN_POLICY,
    CLUSTER_READER_POLICY,
    admin_access,
    admin_principals,
    deployer_arn,
    principal_key,
    reader_access,
)
from components.cluster_addons import AddonVersions, ClusterAddons, node_monitoring_agent_values
from components.cluster_keys import cluster_keys, ebs_key_policy
from components.common import (
    ArgsModel,
    Environment,
    Issue,
    KubeTarget,
    check_cidr,
    managed_policy,
    merge_tags,
    service_trust_policy,
)
from components.network import DISCOVERY_TAG, LOG_RETENTION_DAYS, Network
from components.system_nodes import SYSTEM_LABEL, SystemNodeGroupArgs, system_node_group

# What other modules import from here, whichever part module now owns it.
__all__ = [
    "CLUSTER_ADMIN_POLICY",
    "CLUSTER_READER_POLICY",
    "CONTROL_PLANE_LOGS",
    "DEFAULT_STORAGE_CLASS",
    "DEFAULT_VERSION",
    "SUPPORTED_VERSIONS",
    "SYSTEM_LABEL",
    "AddonVersions",
    "SystemNodeGroupArgs",
    "TrainingCluster",
    "TrainingClusterArgs",
    "admin_principals",
    "default_storage_class",
    "ebs_key_policy",
    "kubeconfig_for",
    "managed_policy",
    "node_monitoring_agent_values",
    "principal_key",
]

DEFAULT_STORAGE_CLASS = "gp3-encrypted"
DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"
# EKS versions in standard support (extended support costs 6x per cluster hour).
SUPPORTED_VERSIONS = ("1.31", "1.32", "1.33", "1.34")
DEFAULT_VERSION = "1.33"
CONTROL_PLANE_LOGS = ["api", "audit", "authenticator"]
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$")


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
        region = aws.get_region_output().region

        keys = cluster_keys(
            self,
            name,
            cluster_name=cluster_name,
            environment=args.environment,
            log_retention_days=args.log_retention_days,
            region=region,
            tags=tags,
        )
        self.key, self.ebs_key, self.log_group = keys.key, keys.ebs_key, keys.log_group
        self.ebs_kms_key_arn = self.ebs_key.arn
        self.cluster = self._control_plane(name, cluster_name, network, tags)
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
            opts=pulumi.ResourceOptions(parent=self),
        )

        deployer = deployer_arn(self) if args.grant_deployer_admin else None
        self.admin_access = admin_access(
            self, name, self.cluster.name, args.admin_role_arns, deployer=deployer, tags=tags
        )
        self.reader_access = reader_access(
            self, name, self.cluster.name, args.reader_role_arns, deployer=deployer, tags=tags
        )

        addons = ClusterAddons(self, name, self.cluster, args.addons, tags)
        before_nodes = addons.before_nodes()
        self.node_group = system_node_group(
            self,
            name,
            args.system_nodes,
            cluster=self.cluster,
            cluster_label=cluster_name,
            subnet_ids=network.private_subnet_ids,
            ebs_kms_key_arn=self.ebs_kms_key_arn,
            tags=tags,
            after=before_nodes,
        )
        ebs_csi = addons.ebs_csi_driver(
            cluster_name=cluster_name, region=region, after=[self.node_group, before_nodes[2]]
        )
        self.addons = [*before_nodes, addons.coredns(self.node_group), ebs_csi]
        if args.node_monitoring_agent:
            self.addons.append(addons.node_monitoring_agent(self.node_group))

        self._kubernetes(name, cluster_name, region, [ebs_csi], storage_class_aliases)
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

    def _control_plane(
        self, name: str, cluster_name: str, network: Network, tags: dict[str, str]
    ) -> aws.eks.Cluster:
        args = self.args
        child = pulumi.ResourceOptions(parent=self)
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
        return aws.eks.Cluster(
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
                # The deployer's admin entry is declared like every other one (cluster_access).
                # An entry EKS made on its own would collide with it (ResourceInUseException).
                bootstrap_cluster_creator_admin_permissions=False,
            ),
            # Add-ons come from the managed add-ons (cluster_addons), pinned, not from EKS's
            # unmanaged copies.
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

    def _kubernetes(
        self,
        name: str,
        cluster_name: str,
        region: pulumi.Input[str],
        after: list[pulumi.Resource],
        storage_class_aliases: Sequence[pulumi.Input[str] | pulumi.Alias],
    ) -> None:
        """The kubeconfig, the provider, the default StorageClass and the KubeTarget that
        other components deploy through."""
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
        self.storage_class = self._storage_class(name, after, storage_class_aliases)
        self.target = KubeTarget(
            provider=self.provider,
            # Objects need the API (admin access), nodes to run on and the class to bind to.
            depends_on=(self.cluster, self.node_group, *self.admin_access, self.storage_class),
            cluster_name=self.cluster.name,
            on_aws=True,
            storage_class=DEFAULT_STORAGE_CLASS,
            network_policy=True,
        )

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
