"""The training cluster's keys and control-plane log group (builders for TrainingCluster).

Two customer-managed, rotating keys: one for Secrets envelope encryption and the control-plane
log group, one for EBS (node root volumes and persistent volumes). Both are protected and kept
on delete in prod: deleting a key makes everything it encrypted unreadable.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components.common import Environment
from components.network import logs_key_policy


@dataclass(frozen=True)
class ClusterKeys:
    key: aws.kms.Key  # Secrets and control-plane logs
    ebs_key: aws.kms.Key  # node root volumes and persistent volumes
    log_group: aws.cloudwatch.LogGroup


def keep_in_prod(environment: Environment) -> pulumi.ResourceOptions:
    prod = environment is Environment.PROD
    return pulumi.ResourceOptions(protect=prod, retain_on_delete=prod)


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


def cluster_keys(
    parent: pulumi.Resource,
    name: str,
    *,
    cluster_name: str,
    environment: Environment,
    log_retention_days: int,
    region: pulumi.Input[str],
    tags: dict[str, str],
) -> ClusterKeys:
    child = pulumi.ResourceOptions(parent=parent)
    invoke = pulumi.InvokeOutputOptions(parent=parent)
    log_group_name = f"/aws/eks/{cluster_name}/cluster"
    key = aws.kms.Key(
        f"{name}-key",
        description=f"EKS {cluster_name}: Secrets envelope encryption and control-plane logs",
        enable_key_rotation=True,
        deletion_window_in_days=30,
        policy=logs_key_policy(log_group_name),
        tags=tags,
        opts=pulumi.ResourceOptions.merge(child, keep_in_prod(environment)),
    )
    ebs_key = aws.kms.Key(
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
        opts=pulumi.ResourceOptions.merge(child, keep_in_prod(environment)),
    )
    # Created before the cluster so EKS writes into a group with retention and encryption.
    log_group = aws.cloudwatch.LogGroup(
        f"{name}-logs",
        name=log_group_name,
        retention_in_days=log_retention_days,
        kms_key_id=key.arn,
        tags=tags,
        opts=child,
    )
    return ClusterKeys(key=key, ebs_key=ebs_key, log_group=log_group)
