"""The training cluster's system node group (builder for TrainingCluster).

A small managed node group for Karpenter, CoreDNS and monitoring only: IMDSv2 required, an
encrypted gp3 root on the cluster's EBS key, node repair on. GPU and general capacity come
from Karpenter (components/karpenter.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Literal

import pulumi
import pulumi_aws as aws
from pydantic import Field

from components.common import (
    NODE_MANAGED_POLICIES,
    ArgsModel,
    Issue,
    check_min_max,
    managed_policy,
    merge_tags,
    service_trust_policy,
)

SYSTEM_LABEL = {"mlplatform.io/role": "system"}
_GRAVITON = re.compile(r"^[a-z]+\d+[a-z]*g[a-z]*\.")


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


def system_node_group(
    parent: pulumi.Resource,
    name: str,
    args: SystemNodeGroupArgs,
    *,
    cluster: aws.eks.Cluster,
    cluster_label: str,
    subnet_ids: pulumi.Input[Sequence[pulumi.Input[str]]],
    ebs_kms_key_arn: pulumi.Input[str],
    tags: dict[str, str],
    after: Sequence[pulumi.Resource],
) -> aws.eks.NodeGroup:
    """``cluster_label``: the cluster's name in the nodes' Name tag and the template's
    description; ``after``: what the nodes need to become Ready (the bootstrap add-ons)."""
    child = pulumi.ResourceOptions(parent=parent)
    role = aws.iam.Role(
        f"{name}-system-node-role",
        assume_role_policy=json.dumps(service_trust_policy("ec2.amazonaws.com"), sort_keys=True),
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
    template = _launch_template(parent, name, args, cluster_label, ebs_kms_key_arn, tags)
    arch = _arch(args.instance_types[0])
    return aws.eks.NodeGroup(
        f"{name}-system",
        cluster_name=cluster.name,
        node_role_arn=role.arn,
        subnet_ids=subnet_ids,
        instance_types=list(args.instance_types),
        ami_type="AL2023_ARM_64_STANDARD" if arch == "arm64" else "AL2023_x86_64_STANDARD",
        capacity_type="SPOT" if args.capacity_type == "spot" else "ON_DEMAND",
        scaling_config=aws.eks.NodeGroupScalingConfigArgs(
            min_size=args.min_size,
            desired_size=args.desired_size,
            max_size=args.max_size,
        ),
        launch_template=aws.eks.NodeGroupLaunchTemplateArgs(
            id=template.id, version=template.latest_version.apply(str)
        ),
        labels=dict(SYSTEM_LABEL),
        update_config=aws.eks.NodeGroupUpdateConfigArgs(max_unavailable=1),
        node_repair_config=aws.eks.NodeGroupNodeRepairConfigArgs(enabled=True),
        tags=tags,
        opts=pulumi.ResourceOptions(
            parent=parent,
            depends_on=[*attachments, *after],
            # The autoscaler or an operator may change the desired size; don't fight it.
            ignore_changes=["scalingConfig.desiredSize"],
        ),
    )


def _launch_template(
    parent: pulumi.Resource,
    name: str,
    args: SystemNodeGroupArgs,
    cluster_label: str,
    ebs_kms_key_arn: pulumi.Input[str],
    tags: dict[str, str],
) -> aws.ec2.LaunchTemplate:
    node_tags = merge_tags(tags, {"Name": f"{cluster_label}-system"})
    return aws.ec2.LaunchTemplate(
        f"{name}-system-lt",
        description=f"System nodes of {cluster_label}: IMDSv2 only, encrypted gp3 root",
        metadata_options=aws.ec2.LaunchTemplateMetadataOptionsArgs(
            http_endpoint="enabled",
            http_tokens="required",
            http_put_response_hop_limit=args.http_put_response_hop_limit,
            instance_metadata_tags="disabled",
        ),
        block_device_mappings=[
            aws.ec2.LaunchTemplateBlockDeviceMappingArgs(
                device_name="/dev/xvda",
                ebs=aws.ec2.LaunchTemplateBlockDeviceMappingEbsArgs(
                    volume_size=args.root_volume_gib,
                    volume_type="gp3",
                    encrypted="true",
                    kms_key_id=ebs_kms_key_arn,
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
        opts=pulumi.ResourceOptions(parent=parent),
    )
