"""VPC flow logs: every packet's metadata to a KMS-encrypted CloudWatch group with retention.

Also the key policy every encrypted log group of the platform uses (the cluster's too).
"""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pulumi_aws as aws

from components.common import service_trust_policy


def logs_key_policy(log_group_pattern: str, *, extra_statements: list[Any] | None = None) -> Any:
    """A KMS key policy: account administers the key, CloudWatch Logs may use it for the pattern."""
    ident = aws.get_caller_identity_output()
    region = aws.get_region_output()
    partition = aws.get_partition_output()

    def build(args: list[str]) -> str:
        account, reg, part = args
        return json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Sid": "AccountAdministersKey",
                        "Effect": "Allow",
                        "Principal": {"AWS": f"arn:{part}:iam::{account}:root"},
                        "Action": "kms:*",
                        "Resource": "*",
                    },
                    {
                        "Sid": "CloudWatchLogsUsesKey",
                        "Effect": "Allow",
                        "Principal": {"Service": f"logs.{reg}.amazonaws.com"},
                        "Action": [
                            "kms:Encrypt*",
                            "kms:Decrypt*",
                            "kms:ReEncrypt*",
                            "kms:GenerateDataKey*",
                            "kms:Describe*",
                        ],
                        "Resource": "*",
                        "Condition": {
                            "ArnLike": {
                                "kms:EncryptionContext:aws:logs:arn": (
                                    f"arn:{part}:logs:{reg}:{account}:log-group:{log_group_pattern}"
                                )
                            }
                        },
                    },
                    *(extra_statements or []),
                ],
            }
        )

    return pulumi.Output.all(ident.account_id, region.region, partition.partition).apply(build)


def add_flow_logs(
    owner: pulumi.ComponentResource,
    name: str,
    vpc: aws.ec2.Vpc,
    *,
    retention_days: int,
    protect: bool,
    tags: dict[str, str],
) -> aws.ec2.FlowLog:
    """All of the VPC's traffic to an encrypted CloudWatch group, children of ``owner``."""
    child = pulumi.ResourceOptions(parent=owner)
    group_name = f"/mlplatform/vpc/{name}/flow-logs"
    key = aws.kms.Key(
        f"{name}-flow-logs-key",
        description=f"Encrypts VPC flow logs of {name}",
        enable_key_rotation=True,
        deletion_window_in_days=30,
        policy=logs_key_policy(group_name),
        tags=tags,
        # Deleting a key makes everything it encrypted unreadable: keep it in prod.
        opts=pulumi.ResourceOptions.merge(
            child, pulumi.ResourceOptions(protect=protect, retain_on_delete=protect)
        ),
    )
    group = aws.cloudwatch.LogGroup(
        f"{name}-flow-logs",
        name=group_name,
        retention_in_days=retention_days,
        kms_key_id=key.arn,
        tags=tags,
        opts=child,
    )
    role = aws.iam.Role(
        f"{name}-flow-logs-role",
        # vpc-flow-logs sends aws:SourceAccount: only this account's flow logs may use it.
        assume_role_policy=aws.get_caller_identity_output(
            opts=pulumi.InvokeOutputOptions(parent=owner)
        ).account_id.apply(
            lambda account: json.dumps(
                service_trust_policy("vpc-flow-logs.amazonaws.com", source_account=account),
                sort_keys=True,
            )
        ),
        tags=tags,
        opts=child,
    )
    aws.iam.RolePolicy(
        f"{name}-flow-logs-write",
        role=role.id,
        policy=group.arn.apply(
            lambda arn: json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Action": [
                                "logs:CreateLogStream",
                                "logs:PutLogEvents",
                                "logs:DescribeLogStreams",
                            ],
                            "Resource": [arn, f"{arn}:*"],
                        }
                    ],
                }
            )
        ),
        opts=child,
    )
    return aws.ec2.FlowLog(
        f"{name}-flow-log",
        vpc_id=vpc.id,
        traffic_type="ALL",
        log_destination_type="cloud-watch-logs",
        log_destination=group.arn,
        iam_role_arn=role.arn,
        max_aggregation_interval=60,
        tags=tags,
        opts=child,
    )
