"""The model store's two buckets and their settings (builders for ModelStore).

The model bucket: SSE-KMS with the store's key (Bucket Key on), public access blocked,
``BucketOwnerEnforced``, versioned, TLS only, lifecycle rules, optional object lock, server
access logs. The log bucket is hardened the same way except that it uses SSE-S3: S3 server
access logging cannot deliver to a bucket whose default encryption is SSE-KMS.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components.model_store_args import LifecycleArgs, ModelStoreArgs, log_bucket_name
from components.model_store_policies import (
    ACCESS_LOG_PREFIX,
    bucket_policy,
    inference_log_rules,
    log_bucket_policy,
)


@dataclass(frozen=True)
class StoreBuckets:
    bucket: aws.s3.Bucket
    log_bucket: aws.s3.Bucket
    # What must exist before the bucket holds data: hardening and default encryption.
    ready: list[Any]


def store_buckets(
    name: str,
    args: ModelStoreArgs,
    *,
    key: aws.kms.Key,
    account: pulumi.Input[str],
    projects: Sequence[str],
    keep: pulumi.ResourceOptions,
    tags: dict[str, str],
) -> StoreBuckets:
    """``keep``: the store's options for stateful resources (its parent, protect, retain)."""
    bucket = _bucket(
        name,
        args,
        explicit_name=args.bucket_name,
        object_lock=args.object_lock.enabled,
        keep=keep,
        tags=tags,
    )
    log_bucket = _bucket(
        f"{name}-logs",
        args,
        explicit_name=log_bucket_name(args.bucket_name) if args.bucket_name else None,
        object_lock=False,
        keep=keep,
        tags=tags,
    )
    log_ready = _log_bucket_settings(name, args, log_bucket, bucket, account, keep)
    ready = _model_bucket_settings(name, args, bucket, key, projects, keep)
    aws.s3.BucketLogging(
        f"{name}-access-logs",
        bucket=bucket.id,
        target_bucket=log_bucket.id,
        target_prefix=ACCESS_LOG_PREFIX,
        target_object_key_format={"partitioned_prefix": {"partition_date_source": "EventTime"}},
        opts=pulumi.ResourceOptions(parent=bucket, depends_on=log_ready),
    )
    return StoreBuckets(bucket=bucket, log_bucket=log_bucket, ready=ready)


def model_bucket_rules(lc: LifecycleArgs, projects: Sequence[str], *, versioned: bool) -> list[Any]:
    """Abort stale multipart uploads, age out noncurrent versions, expire raw inference logs."""
    rules: list[Any] = [
        {
            "id": "abort-incomplete-multipart",
            "status": "Enabled",
            "filter": {},
            "abort_incomplete_multipart_upload": {
                "days_after_initiation": lc.abort_incomplete_multipart_days
            },
        }
    ]
    if versioned:
        rules.append(
            {
                "id": "noncurrent-versions",
                "status": "Enabled",
                "filter": {},
                "noncurrent_version_transitions": [
                    {
                        "noncurrent_days": lc.noncurrent_transition_days,
                        "storage_class": lc.noncurrent_storage_class.value,
                    }
                ],
                "noncurrent_version_expiration": {"noncurrent_days": lc.noncurrent_expiration_days},
            }
        )
    return rules + inference_log_rules(projects, lc.inference_log_days, versioned=versioned)


def _bucket(
    name: str,
    args: ModelStoreArgs,
    *,
    explicit_name: str | None,
    object_lock: bool,
    keep: pulumi.ResourceOptions,
    tags: dict[str, str],
) -> aws.s3.Bucket:
    return aws.s3.Bucket(
        name,
        bucket=explicit_name,
        force_destroy=args.force_destroy,
        object_lock_enabled=object_lock or None,
        tags=tags,
        opts=keep,
    )


def _harden(
    name: str, bucket: aws.s3.Bucket, args: ModelStoreArgs, keep: pulumi.ResourceOptions
) -> list[Any]:
    """Public access block, owner-enforced ownership and versioning: same on both buckets."""
    opts = pulumi.ResourceOptions.merge(keep, pulumi.ResourceOptions(parent=bucket))
    pab = aws.s3.BucketPublicAccessBlock(
        f"{name}-public-access-block",
        bucket=bucket.id,
        block_public_acls=True,
        block_public_policy=True,
        ignore_public_acls=True,
        restrict_public_buckets=True,
        opts=opts,
    )
    ownership = aws.s3.BucketOwnershipControls(
        f"{name}-ownership",
        bucket=bucket.id,
        rule={"object_ownership": "BucketOwnerEnforced"},
        opts=opts,
    )
    versioning = aws.s3.BucketVersioning(
        f"{name}-versioning",
        bucket=bucket.id,
        versioning_configuration={"status": "Enabled" if args.versioning else "Suspended"},
        opts=opts,
    )
    return [pab, ownership, versioning]


def _log_bucket_settings(
    name: str,
    args: ModelStoreArgs,
    log_bucket: aws.s3.Bucket,
    bucket: aws.s3.Bucket,
    account: pulumi.Input[str],
    keep: pulumi.ResourceOptions,
) -> list[Any]:
    """SSE-S3, hardening, a policy that lets S3 logging write only the model bucket's logs, and
    expiry. Returns what access logging needs first (the policy and the encryption)."""
    log_sse = aws.s3.BucketServerSideEncryptionConfiguration(
        f"{name}-logs-sse",
        bucket=log_bucket.id,
        rules=[{"apply_server_side_encryption_by_default": {"sse_algorithm": "AES256"}}],
        opts=pulumi.ResourceOptions.merge(keep, pulumi.ResourceOptions(parent=log_bucket)),
    )
    log_hardening = _harden(f"{name}-logs", log_bucket, args, keep)
    log_policy = aws.s3.BucketPolicy(
        f"{name}-logs-policy",
        bucket=log_bucket.id,
        policy=pulumi.Output.all(log_bucket.arn, bucket.arn, account).apply(
            lambda a: json.dumps(
                log_bucket_policy(log_bucket_arn=a[0], source_bucket_arn=a[1], account_id=a[2]),
                sort_keys=True,
            )
        ),
        opts=pulumi.ResourceOptions(parent=log_bucket, depends_on=log_hardening),
    )
    aws.s3.BucketLifecycleConfiguration(
        f"{name}-logs-lifecycle",
        bucket=log_bucket.id,
        rules=[
            {
                "id": "expire-access-logs",
                "status": "Enabled",
                "filter": {},
                "expiration": {"days": args.lifecycle.log_retention_days},
                "noncurrent_version_expiration": {"noncurrent_days": 30},
                "abort_incomplete_multipart_upload": {
                    "days_after_initiation": args.lifecycle.abort_incomplete_multipart_days
                },
            }
        ],
        opts=pulumi.ResourceOptions(parent=log_bucket, depends_on=log_hardening),
    )
    return [log_policy, log_sse]


def _model_bucket_settings(
    name: str,
    args: ModelStoreArgs,
    bucket: aws.s3.Bucket,
    key: aws.kms.Key,
    projects: Sequence[str],
    keep: pulumi.ResourceOptions,
) -> list[Any]:
    """SSE-KMS, hardening, the TLS/encryption policy, lifecycle and object lock. Returns the
    hardening and the encryption (what data written to the bucket needs first)."""
    sse = aws.s3.BucketServerSideEncryptionConfiguration(
        f"{name}-sse",
        bucket=bucket.id,
        rules=[
            {
                "apply_server_side_encryption_by_default": {
                    "sse_algorithm": "aws:kms",
                    "kms_master_key_id": key.arn,
                },
                # One data key per bucket instead of per object: far fewer KMS calls.
                "bucket_key_enabled": True,
            }
        ],
        opts=pulumi.ResourceOptions.merge(keep, pulumi.ResourceOptions(parent=bucket)),
    )
    hardening = _harden(name, bucket, args, keep)
    aws.s3.BucketPolicy(
        f"{name}-policy",
        bucket=bucket.id,
        policy=pulumi.Output.all(bucket.arn, key.arn).apply(
            lambda a: json.dumps(bucket_policy(bucket_arn=a[0], kms_key_arn=a[1]), sort_keys=True)
        ),
        opts=pulumi.ResourceOptions(parent=bucket, depends_on=hardening),
    )
    aws.s3.BucketLifecycleConfiguration(
        f"{name}-lifecycle",
        bucket=bucket.id,
        rules=model_bucket_rules(args.lifecycle, projects, versioned=args.versioning),
        opts=pulumi.ResourceOptions(parent=bucket, depends_on=hardening),
    )
    if args.object_lock.enabled:
        aws.s3.BucketObjectLockConfiguration(
            f"{name}-object-lock",
            bucket=bucket.id,
            object_lock_enabled="Enabled",
            rule={
                "default_retention": {
                    "mode": args.object_lock.mode,
                    "days": args.object_lock.retention_days,
                }
            },
            opts=pulumi.ResourceOptions.merge(
                keep, pulumi.ResourceOptions(parent=bucket, depends_on=hardening)
            ),
        )
    return [*hardening, sse]
