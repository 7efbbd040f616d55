"""The model store's policy documents and lifecycle rules: pure, so tests can check them with
parliament and read them without running a program."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from components.project_access import INFERENCE_LOG_DIR as INFERENCE_LOG_DIR

ACCESS_LOG_PREFIX = "access-logs/"
FSX_S3_ROLE_PATH = "aws-service-role/s3.data-source.lustre.fsx.amazonaws.com"


def _deny_insecure(bucket_arn: str) -> list[dict[str, Any]]:
    # No s3:TlsVersion rule: every AWS API endpoint already refuses TLS < 1.2.
    resources = [bucket_arn, f"{bucket_arn}/*"]
    return [
        {
            "Sid": "DenyInsecureTransport",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": resources,
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        },
    ]


def bucket_policy(*, bucket_arn: str, kms_key_arn: str) -> dict[str, Any]:
    """TLS only; uploads that ask for another encryption or another key are refused."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            *_deny_insecure(bucket_arn),
            {
                "Sid": "DenyOtherEncryption",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:PutObject",
                "Resource": f"{bucket_arn}/*",
                "Condition": {
                    "StringNotEqualsIfExists": {"s3:x-amz-server-side-encryption": "aws:kms"}
                },
            },
            {
                "Sid": "DenyOtherKmsKey",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:PutObject",
                "Resource": f"{bucket_arn}/*",
                "Condition": {
                    "StringNotEqualsIfExists": {
                        "s3:x-amz-server-side-encryption-aws-kms-key-id": kms_key_arn
                    }
                },
            },
        ],
    }


def log_bucket_policy(*, log_bucket_arn: str, source_bucket_arn: str, account_id: str) -> dict:
    """TLS only, and the S3 logging service may write only this bucket's logs, for us."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            *_deny_insecure(log_bucket_arn),
            {
                "Sid": "AllowS3ServerAccessLogs",
                "Effect": "Allow",
                "Principal": {"Service": "logging.s3.amazonaws.com"},
                "Action": "s3:PutObject",
                "Resource": f"{log_bucket_arn}/{ACCESS_LOG_PREFIX}*",
                "Condition": {
                    "ArnLike": {"aws:SourceArn": source_bucket_arn},
                    "StringEquals": {"aws:SourceAccount": account_id},
                },
            },
        ],
    }


def kms_key_policy(
    *, partition: str, account_id: str, region: str, fsx_linked: bool
) -> dict[str, Any]:
    """Key admin stays with the account (IAM policies decide), plus the FSx S3 link if used."""
    statements: list[dict[str, Any]] = [
        {
            "Sid": "AccountAdministersKeyThroughIam",
            "Effect": "Allow",
            "Principal": {"AWS": f"arn:{partition}:iam::{account_id}:root"},
            "Action": "kms:*",
            "Resource": "*",
        }
    ]
    if fsx_linked:
        # FSx exports/imports through a per-filesystem service-linked role whose name carries the
        # filesystem id; matching by path avoids a key -> filesystem -> key cycle.
        statements.append(
            {
                "Sid": "FsxLustreS3LinkThroughS3",
                "Effect": "Allow",
                "Principal": {"AWS": "*"},
                "Action": [
                    "kms:Decrypt",
                    "kms:DescribeKey",
                    "kms:Encrypt",
                    "kms:GenerateDataKey",
                    "kms:ReEncryptFrom",
                    "kms:ReEncryptTo",
                ],
                "Resource": "*",
                "Condition": {
                    "StringEquals": {
                        "kms:CallerAccount": account_id,
                        "kms:ViaService": f"s3.{region}.amazonaws.com",
                    },
                    "ArnLike": {
                        "aws:PrincipalArn": f"arn:{partition}:iam::{account_id}:role/"
                        f"{FSX_S3_ROLE_PATH}/AWSServiceRoleForFSxS3Access_*"
                    },
                },
            }
        )
    return {"Version": "2012-10-17", "Statement": statements}


def inference_log_rules(
    projects: Sequence[str], days: int, *, versioned: bool
) -> list[dict[str, Any]]:
    """One lifecycle rule per project expiring its raw inference log (S3 filters take a literal
    prefix, not a pattern). In a versioned bucket expiry only hides the current version, so the
    noncurrent copy is removed a day later."""
    rules: list[dict[str, Any]] = []
    for project in sorted(set(projects)):
        rule: dict[str, Any] = {
            "id": f"inference-logs-{project}",
            "status": "Enabled",
            "filter": {"prefix": f"projects/{project}/{INFERENCE_LOG_DIR}"},
            "expiration": {"days": days},
        }
        if versioned:
            rule["noncurrent_version_expiration"] = {"noncurrent_days": 1}
        rules.append(rule)
    return rules


def ecr_lifecycle_policy(untagged_expire_days: int, max_tagged_images: int | None) -> dict:
    rules: list[dict[str, Any]] = [
        {
            "rulePriority": 1,
            "description": f"Expire untagged images after {untagged_expire_days} days",
            "selection": {
                "tagStatus": "untagged",
                "countType": "sinceImagePushed",
                "countUnit": "days",
                "countNumber": untagged_expire_days,
            },
            "action": {"type": "expire"},
        }
    ]
    if max_tagged_images:
        rules.append(
            {
                "rulePriority": 2,
                "description": f"Keep the newest {max_tagged_images} images",
                "selection": {
                    "tagStatus": "any",
                    "countType": "imageCountMoreThan",
                    "countNumber": max_tagged_images,
                },
                "action": {"type": "expire"},
            }
        )
    return {"rules": rules}
