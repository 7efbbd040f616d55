"""The training cluster's EKS managed add-ons, pinned (builders for TrainingCluster).

Add-ons the nodes need to become Ready (vpc-cni, kube-proxy, the Pod Identity agent) go before
the system node group; the rest (CoreDNS, the EBS CSI driver, the node monitoring agent) need
running nodes and go after it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components.common import (
    GPU_TOLERATION,
    ArgsModel,
    Issue,
    managed_policy,
    pod_identity_trust_json,
)

# vpc-cni add-on configuration (its schema: `aws eks describe-addon-configuration --addon-name
# vpc-cni`; the chart's values.yaml at amazon-vpc-cni-k8s v1.20-v1.23 has the same top-level
# `enableNetworkPolicy: "false"`, a string). "true" starts the node agent's policy enforcement.
VPC_CNI_CONFIGURATION = json.dumps({"enableNetworkPolicy": "true"}, sort_keys=True)
EBS_CSI_SERVICE_ACCOUNT = "ebs-csi-controller-sa"
_ADDON_VERSION = re.compile(r"^v\d+\.\d+\.\d+-eksbuild\.\d+$")


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


@dataclass(frozen=True)
class ClusterAddons:
    """Declares the add-ons of one cluster, children of ``parent``, named ``<name>-<add-on>``."""

    parent: pulumi.Resource
    name: str
    cluster: aws.eks.Cluster
    versions: AddonVersions
    tags: dict[str, str]

    def addon(
        self, key: str, version: str, deps: Sequence[pulumi.Resource], **extra: Any
    ) -> aws.eks.Addon:
        return aws.eks.Addon(
            f"{self.name}-{key}",
            cluster_name=self.cluster.name,
            addon_name=key,
            addon_version=version,
            resolve_conflicts_on_create="OVERWRITE",
            resolve_conflicts_on_update="PRESERVE",
            tags=self.tags,
            opts=pulumi.ResourceOptions(parent=self.parent, depends_on=list(deps)),
            **extra,
        )

    def before_nodes(self) -> list[aws.eks.Addon]:
        """vpc-cni, kube-proxy and the Pod Identity agent (in that order)."""
        v = self.versions
        return [
            # NetworkPolicy is enforced only with the CNI's policy agent switched on.
            self.addon("vpc-cni", v.vpc_cni, [], configuration_values=VPC_CNI_CONFIGURATION),
            self.addon("kube-proxy", v.kube_proxy, []),
            self.addon("eks-pod-identity-agent", v.eks_pod_identity_agent, []),
        ]

    def ebs_csi_driver(
        self,
        *,
        cluster_name: str,
        region: pulumi.Input[str],
        after: Sequence[pulumi.Resource],
    ) -> aws.eks.Addon:
        """The EBS CSI driver with its own Pod Identity role; ``after``: the nodes and the Pod
        Identity agent it needs."""
        child = pulumi.ResourceOptions(parent=self.parent)
        invoke = pulumi.InvokeOutputOptions(parent=self.parent)
        role = aws.iam.Role(
            f"{self.name}-ebs-csi-role",
            assume_role_policy=pod_identity_trust_json(
                partition=aws.get_partition_output(opts=invoke).partition,
                region=region,
                account_id=aws.get_caller_identity_output(opts=invoke).account_id,
                cluster_name=cluster_name,
            ),
            tags=self.tags,
            opts=child,
        )
        policy = aws.iam.RolePolicyAttachment(
            f"{self.name}-ebs-csi-policy",
            role=role.name,
            policy_arn=managed_policy("service-role/AmazonEBSCSIDriverPolicy"),
            opts=child,
        )
        return self.addon(
            "aws-ebs-csi-driver",
            self.versions.aws_ebs_csi_driver,
            [*after, policy],
            pod_identity_associations=[
                aws.eks.AddonPodIdentityAssociationArgs(
                    role_arn=role.arn, service_account=EBS_CSI_SERVICE_ACCOUNT
                )
            ],
        )

    def coredns(self, node_group: pulumi.Resource) -> aws.eks.Addon:
        return self.addon("coredns", self.versions.coredns, [node_group])

    def node_monitoring_agent(self, node_group: pulumi.Resource) -> aws.eks.Addon:
        return self.addon(
            "eks-node-monitoring-agent",
            self.versions.eks_node_monitoring_agent,
            [node_group],
            configuration_values=json.dumps(node_monitoring_agent_values(), sort_keys=True),
        )
