"""Model store: the encrypted, versioned S3 bucket, its access-log bucket, KMS key and ECR repos.

Nothing here may be public, unencrypted, unversioned or deletable by accident:

* the bucket is versioned, SSE-KMS with a customer-managed, rotating key (Bucket Key on), blocks
  all public access, enforces ``BucketOwnerEnforced`` and denies plain HTTP;
* lifecycle rules move noncurrent versions to a cheaper class, expire them later and abort
  incomplete multipart uploads;
* server access logs go to a log bucket hardened the same way, except that it uses SSE-S3: S3
  server access logging cannot deliver to a bucket whose default encryption is SSE-KMS;
* with ``protect: true`` the stateful resources are protected and retained on delete, and
  ``forceDestroy`` is refused. ``protect`` has no default, so every stack states its choice.

Optional: object lock (governance mode), the Mountpoint for S3 CSI driver add-on (read-only by
default) and FSx for Lustre linked to the bucket.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

import pulumi
import pulumi_aws as aws
from pydantic import Field

from components.common import ArgsModel, InvalidArgsError, Issue, StorageBackend, merge_tags
from components.project_access import (
    AccessLevel,
    StoreRefs,
    pod_identity_role,
    s3_prefix_policy,
)

BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
ECR_NAME = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$")
ADDON_VERSION = re.compile(r"^v(\d+)\.(\d+)\.(\d+)-eksbuild\.\d+$")
ACCESS_LOG_PREFIX = "access-logs/"
INFERENCE_LOG_DIR = "inference-logs/"
MOUNTPOINT_ADDON = "aws-mountpoint-s3-csi-driver"
MOUNTPOINT_SERVICE_ACCOUNT = "s3-csi-driver-sa"
FSX_S3_ROLE_PATH = "aws-service-role/s3.data-source.lustre.fsx.amazonaws.com"
# Lustre LNET ports (988) and the extra range used by the client (1018-1023).
LUSTRE_PORTS = ((988, 988), (1018, 1023))


class NoncurrentStorageClass(StrEnum):
    STANDARD_IA = "STANDARD_IA"
    ONEZONE_IA = "ONEZONE_IA"
    INTELLIGENT_TIERING = "INTELLIGENT_TIERING"
    GLACIER_IR = "GLACIER_IR"
    GLACIER = "GLACIER"
    DEEP_ARCHIVE = "DEEP_ARCHIVE"


# S3 refuses noncurrent transitions to the IA classes before 30 days.
MIN_TRANSITION_DAYS = {
    NoncurrentStorageClass.STANDARD_IA: 30,
    NoncurrentStorageClass.ONEZONE_IA: 30,
}


def bucket_name_issues(key: str, value: str) -> list[Issue]:
    """S3 naming rules, plus no dots (they break TLS on virtual-hosted-style URLs)."""
    problems: list[str] = []
    if not 3 <= len(value) <= 63:
        problems.append(f"must be 3-63 characters long (got {len(value)})")
    if not BUCKET_NAME.match(value):
        problems.append(
            "may contain only lowercase letters, digits and '-', and must start and end with a "
            "letter or digit (dots are refused: they break TLS on virtual-hosted URLs)"
        )
    for prefix in ("xn--", "sthree-", "amzn-s3-demo-"):
        if value.startswith(prefix):
            problems.append(f"must not start with '{prefix}'")
    for suffix in ("-s3alias", "--ol-s3", "--x-s3", "--table-s3", ".mrap"):
        if value.endswith(suffix):
            problems.append(f"must not end with '{suffix}'")
    try:
        ipaddress.ip_address(value)
        problems.append("must not be formatted as an IP address")
    except ValueError:
        pass
    return [Issue((key,), f"invalid bucket name {value!r}: {p}") for p in problems]


class LifecycleArgs(ArgsModel):
    noncurrent_transition_days: int = Field(30, ge=1)
    noncurrent_storage_class: NoncurrentStorageClass = NoncurrentStorageClass.STANDARD_IA
    noncurrent_expiration_days: int = Field(365, ge=1)
    abort_incomplete_multipart_days: int = Field(7, ge=1)
    log_retention_days: int = Field(365, ge=1)
    # Raw, sampled inference logs (projects/<p>/inference-logs/) hold request data: keep them
    # briefly (two weeks cover the drift job's window). Noncurrent copies go a day later; object
    # lock, when enabled, holds every version for its retention.
    inference_log_days: int = Field(14, ge=1)

    def issues(self) -> list[Issue]:
        found = super().issues()
        if self.noncurrent_transition_days >= self.noncurrent_expiration_days:
            found.append(
                Issue(
                    ("noncurrentTransitionDays",),
                    f"must be < noncurrentExpirationDays ({self.noncurrent_expiration_days}), "
                    f"got {self.noncurrent_transition_days}",
                )
            )
        minimum = MIN_TRANSITION_DAYS.get(self.noncurrent_storage_class)
        if minimum and self.noncurrent_transition_days < minimum:
            found.append(
                Issue(
                    ("noncurrentTransitionDays",),
                    f"S3 needs >= {minimum} days before a transition to "
                    f"{self.noncurrent_storage_class.value}, got {self.noncurrent_transition_days}",
                )
            )
        return found


class ObjectLockArgs(ArgsModel):
    """Default retention in governance mode: only principals with s3:BypassGovernanceRetention
    can shorten it, so an operator can still recover from a mistake while nobody deletes by
    accident. Enabling it on an existing bucket replaces the bucket."""

    enabled: bool = False
    mode: Literal["GOVERNANCE"] = "GOVERNANCE"
    retention_days: int = Field(30, ge=1, le=36500)


class EcrArgs(ArgsModel):
    repositories: list[str] = Field(default_factory=lambda: ["training", "serving"])
    # Repository names become "<prefix>/<key>"; default "<project>/<stack>".
    prefix: str | None = None
    untagged_expire_days: int = Field(7, ge=1)
    max_tagged_images: int | None = Field(None, ge=1)

    def issues(self) -> list[Issue]:
        found = super().issues()
        if len(set(self.repositories)) != len(self.repositories):
            found.append(Issue(("repositories",), "repository names must be unique"))
        for i, repo in enumerate(self.repositories):
            if not ECR_NAME.match(repo):
                found.append(
                    Issue(
                        ("repositories", i),
                        f"invalid ECR repository name {repo!r}: lowercase letters, digits, "
                        "'.', '_', '-' and '/' separators",
                    )
                )
        if self.prefix is not None and not ECR_NAME.match(self.prefix):
            found.append(Issue(("prefix",), f"invalid ECR repository prefix {self.prefix!r}"))
        return found


class MountpointArgs(ArgsModel):
    """Mountpoint for Amazon S3 CSI driver add-on: mount models read-only for fast cold start."""

    enabled: bool = False
    # Pinned; v2+ is needed for EKS Pod Identity.
    addon_version: str = "v2.0.0-eksbuild.1"
    # Driver-level credentials are shared by every pod that mounts the bucket: keep read-only.
    read_only: bool = True

    def issues(self) -> list[Issue]:
        found = super().issues()
        m = ADDON_VERSION.match(self.addon_version)
        if not m:
            found.append(
                Issue(
                    ("addonVersion",),
                    f"must look like v2.0.0-eksbuild.1, got {self.addon_version!r}",
                )
            )
        elif int(m.group(1)) < 2:
            found.append(
                Issue(("addonVersion",), "must be v2 or later (v1 has no EKS Pod Identity support)")
            )
        return found


class FsxArgs(ArgsModel):
    """FSx for Lustre linked to the bucket through a data repository association."""

    enabled: bool = False
    deployment_type: Literal["PERSISTENT_2", "SCRATCH_2"] = "PERSISTENT_2"
    storage_capacity_gib: int = 1200
    per_unit_storage_throughput: Literal[125, 250, 500, 1000] = 250
    file_system_path: str = "/data"
    # Bucket prefix linked into the file system ("" = whole bucket).
    bucket_prefix: str = "projects/"
    automatic_backup_retention_days: int = Field(7, ge=0, le=90)

    def issues(self) -> list[Issue]:
        found = super().issues()
        cap = self.storage_capacity_gib
        if cap != 1200 and (cap < 2400 or cap % 2400):
            found.append(
                Issue(("storageCapacityGib",), f"must be 1200 or a multiple of 2400, got {cap}")
            )
        if not self.file_system_path.startswith("/") or self.file_system_path == "/":
            found.append(
                Issue(("fileSystemPath",), "must be an absolute path below '/', e.g. /data")
            )
        if self.bucket_prefix and not self.bucket_prefix.endswith("/"):
            found.append(Issue(("bucketPrefix",), "must end with '/' (or be empty)"))
        return found


class ModelStoreArgs(ArgsModel):
    # Explicit in every stack: protect + retain the stateful resources (no default on purpose).
    protect: bool
    # Only for throwaway stacks: lets `pulumi destroy` empty the buckets and repositories.
    force_destroy: bool = False
    bucket_name: str | None = None  # default: Pulumi auto-name
    versioning: bool = True
    kms_deletion_window_days: int = Field(30, ge=7, le=30)
    lifecycle: LifecycleArgs = Field(default_factory=LifecycleArgs)
    object_lock: ObjectLockArgs = Field(default_factory=ObjectLockArgs)
    ecr: EcrArgs = Field(default_factory=EcrArgs)
    mountpoint: MountpointArgs = Field(default_factory=MountpointArgs)
    fsx: FsxArgs = Field(default_factory=FsxArgs)

    def issues(self) -> list[Issue]:
        found = super().issues()
        if self.bucket_name is not None:
            found += bucket_name_issues("bucketName", self.bucket_name)
            log = log_bucket_name(self.bucket_name)
            if len(log) > 63:
                found.append(
                    Issue(
                        ("bucketName",),
                        f"must be at most {63 - len(LOG_SUFFIX)} characters so the log bucket "
                        f"{log!r} fits in 63",
                    )
                )
        if self.object_lock.enabled and not self.versioning:
            found.append(Issue(("objectLock", "enabled"), "object lock requires versioning: true"))
        if self.protect and self.force_destroy:
            found.append(
                Issue(("forceDestroy",), "cannot be true while protect is true; choose one")
            )
        if self.protect and not self.versioning:
            found.append(Issue(("versioning",), "a protected store must be versioned"))
        return found


LOG_SUFFIX = "-logs"


def log_bucket_name(bucket_name: str) -> str:
    return bucket_name + LOG_SUFFIX


# --- Policy documents (pure, so tests can check them with parliament) -----------------------


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


# --- Runtime inputs ----------------------------------------------------------------------------


@dataclass(frozen=True)
class StoreNetwork:
    """Where FSx for Lustre goes (only needed with ``fsx.enabled``)."""

    vpc_id: Any  # pulumi.Input[str]
    subnet_id: Any  # one private subnet (Lustre file systems live in one AZ)
    client_security_group_ids: Sequence[Any] = ()  # e.g. the EKS cluster/node security groups


# --- Component ---------------------------------------------------------------------------------


class ModelStore(pulumi.ComponentResource):
    bucket_name: pulumi.Output[str]
    bucket_arn: pulumi.Output[str]
    log_bucket_name: pulumi.Output[str]
    kms_key_arn: pulumi.Output[str]
    kms_key_id: pulumi.Output[str]
    ecr_repository_urls: pulumi.Output[dict[str, str]]
    ecr_repository_arns: dict[str, pulumi.Output[str]]
    mountpoint_role_arn: pulumi.Output[str] | None
    fsx_file_system_id: pulumi.Output[str] | None
    fsx_dns_name: pulumi.Output[str] | None
    fsx_mount_name: pulumi.Output[str] | None

    def __init__(
        self,
        name: str,
        args: ModelStoreArgs,
        *,
        cluster_name: pulumi.Input[str] | None = None,
        network: StoreNetwork | None = None,
        projects: Sequence[str] = (),
        tags: Mapping[str, str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ):
        """``projects``: whose ``projects/<p>/inference-logs/`` the lifecycle expires."""
        args.raise_if_invalid("ModelStore")
        missing: list[Issue] = []
        if args.mountpoint.enabled and cluster_name is None:
            missing.append(
                Issue(("mountpoint", "enabled"), "needs the EKS cluster (cluster_name input)")
            )
        if args.fsx.enabled and network is None:
            missing.append(Issue(("fsx", "enabled"), "needs the VPC (network input)"))
        if missing:
            raise InvalidArgsError("ModelStore", missing)
        super().__init__("mlplatform:storage:ModelStore", name, None, opts)
        self._tags = merge_tags(tags, {"mlplatform.io/component": "model-store"})
        protect = args.protect
        self._keep = pulumi.ResourceOptions(parent=self, protect=protect, retain_on_delete=protect)

        inv = pulumi.InvokeOutputOptions(parent=self)
        account = aws.get_caller_identity_output(opts=inv).account_id
        partition = aws.get_partition_output(opts=inv).partition
        region = aws.get_region_output(opts=inv).region

        # KMS ------------------------------------------------------------------------------
        key = aws.kms.Key(
            f"{name}-key",
            description=f"{name}: models, checkpoints, datasets and images",
            enable_key_rotation=True,
            deletion_window_in_days=args.kms_deletion_window_days,
            policy=pulumi.Output.all(partition, account, region).apply(
                lambda a: json.dumps(
                    kms_key_policy(
                        partition=a[0], account_id=a[1], region=a[2], fsx_linked=args.fsx.enabled
                    ),
                    sort_keys=True,
                )
            ),
            tags=self._tags,
            opts=self._keep,
        )
        aws.kms.Alias(
            f"{name}-key-alias",
            name=f"alias/{pulumi.get_project()}-{pulumi.get_stack()}-{name}",
            target_key_id=key.key_id,
            opts=pulumi.ResourceOptions(parent=key),
        )

        # Model bucket ------------------------------------------------------------------------
        bucket = self._bucket(
            name, args, explicit_name=args.bucket_name, object_lock=args.object_lock.enabled
        )
        # Log bucket (SSE-S3: server access logging cannot write to SSE-KMS targets) -------------
        log_bucket = self._bucket(
            f"{name}-logs",
            args,
            explicit_name=log_bucket_name(args.bucket_name) if args.bucket_name else None,
            object_lock=False,
        )
        log_sse = aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-logs-sse",
            bucket=log_bucket.id,
            rules=[{"apply_server_side_encryption_by_default": {"sse_algorithm": "AES256"}}],
            opts=pulumi.ResourceOptions.merge(
                self._keep, pulumi.ResourceOptions(parent=log_bucket)
            ),
        )
        log_hardening = self._harden(f"{name}-logs", log_bucket, args)
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
        log_rules: list[Any] = [
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
        ]
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-logs-lifecycle",
            bucket=log_bucket.id,
            rules=log_rules,
            opts=pulumi.ResourceOptions(parent=log_bucket, depends_on=log_hardening),
        )

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
            opts=pulumi.ResourceOptions.merge(self._keep, pulumi.ResourceOptions(parent=bucket)),
        )
        hardening = self._harden(name, bucket, args)
        aws.s3.BucketPolicy(
            f"{name}-policy",
            bucket=bucket.id,
            policy=pulumi.Output.all(bucket.arn, key.arn).apply(
                lambda a: json.dumps(
                    bucket_policy(bucket_arn=a[0], kms_key_arn=a[1]), sort_keys=True
                )
            ),
            opts=pulumi.ResourceOptions(parent=bucket, depends_on=hardening),
        )
        lc = args.lifecycle
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
        if args.versioning:
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
                    "noncurrent_version_expiration": {
                        "noncurrent_days": lc.noncurrent_expiration_days
                    },
                }
            )
        rules += inference_log_rules(projects, lc.inference_log_days, versioned=args.versioning)
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-lifecycle",
            bucket=bucket.id,
            rules=rules,
            opts=pulumi.ResourceOptions(parent=bucket, depends_on=hardening),
        )
        aws.s3.BucketLogging(
            f"{name}-access-logs",
            bucket=bucket.id,
            target_bucket=log_bucket.id,
            target_prefix=ACCESS_LOG_PREFIX,
            target_object_key_format={"partitioned_prefix": {"partition_date_source": "EventTime"}},
            opts=pulumi.ResourceOptions(parent=bucket, depends_on=[log_policy, log_sse]),
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
                    self._keep, pulumi.ResourceOptions(parent=bucket, depends_on=hardening)
                ),
            )

        # ECR ---------------------------------------------------------------------------------
        prefix = args.ecr.prefix or f"{pulumi.get_project()}/{pulumi.get_stack()}".lower()
        urls: dict[str, pulumi.Output[str]] = {}
        self.ecr_repository_arns = {}
        for repo_key in args.ecr.repositories:
            repo = aws.ecr.Repository(
                f"{name}-ecr-{repo_key.replace('/', '-')}",
                name=f"{prefix}/{repo_key}",
                image_tag_mutability="IMMUTABLE",
                image_scanning_configuration={"scan_on_push": True},
                encryption_configurations=[{"encryption_type": "KMS", "kms_key": key.arn}],
                force_delete=args.force_destroy,
                tags=self._tags,
                opts=self._keep,
            )
            aws.ecr.LifecyclePolicy(
                f"{name}-ecr-{repo_key.replace('/', '-')}-lifecycle",
                repository=repo.name,
                policy=json.dumps(
                    ecr_lifecycle_policy(args.ecr.untagged_expire_days, args.ecr.max_tagged_images)
                ),
                opts=pulumi.ResourceOptions(parent=repo),
            )
            urls[repo_key] = repo.repository_url
            self.ecr_repository_arns[repo_key] = repo.arn

        # Mountpoint for S3 CSI driver ------------------------------------------------------------
        self.mountpoint_role_arn = None
        if args.mountpoint.enabled:
            access = AccessLevel.READ if args.mountpoint.read_only else AccessLevel.READ_WRITE

            def mountpoint_policy(r: pulumi.Output[str]) -> pulumi.Output[dict[str, Any]]:
                return pulumi.Output.all(r, bucket.arn, key.arn).apply(
                    lambda a: s3_prefix_policy(
                        bucket_arn=a[1], prefix="", access=access, kms_key_arn=a[2], region=a[0]
                    )
                )

            role, role_policy = pod_identity_role(
                self,
                f"{name}-mountpoint",
                cluster_name=cluster_name,  # type: ignore[arg-type]
                policy_for=mountpoint_policy,
                description=f"Mountpoint for S3 CSI driver ({access.value}) on {name}",
                tags=self._tags,
            )
            aws.eks.Addon(
                f"{name}-mountpoint-s3-csi",
                cluster_name=cluster_name,
                addon_name=MOUNTPOINT_ADDON,
                addon_version=args.mountpoint.addon_version,
                pod_identity_associations=[
                    {"role_arn": role.arn, "service_account": MOUNTPOINT_SERVICE_ACCOUNT}
                ],
                resolve_conflicts_on_create="OVERWRITE",
                resolve_conflicts_on_update="PRESERVE",
                tags=self._tags,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[role_policy]),
            )
            self.mountpoint_role_arn = role.arn

        # FSx for Lustre ------------------------------------------------------------------------
        self.fsx_file_system_id = self.fsx_dns_name = self.fsx_mount_name = None
        if args.fsx.enabled and network is not None:
            fs = self._fsx(name, args.fsx, network, key, bucket, [*hardening, sse])
            self.fsx_file_system_id = fs.id
            self.fsx_dns_name = fs.dns_name
            self.fsx_mount_name = fs.mount_name

        self.bucket_name = bucket.bucket
        self.bucket_arn = bucket.arn
        self.log_bucket_name = log_bucket.bucket
        self.kms_key_arn = key.arn
        self.kms_key_id = key.key_id
        self.ecr_repository_urls = (
            pulumi.Output.all(**urls) if urls else pulumi.Output.from_input({})
        )
        self._region = region
        self.register_outputs(
            {
                "bucket_name": self.bucket_name,
                "bucket_arn": self.bucket_arn,
                "log_bucket_name": self.log_bucket_name,
                "kms_key_arn": self.kms_key_arn,
                "ecr_repository_urls": self.ecr_repository_urls,
                "mountpoint_role_arn": self.mountpoint_role_arn,
                "fsx_file_system_id": self.fsx_file_system_id,
            }
        )

    # --- helpers ---------------------------------------------------------------------------

    def _bucket(
        self, name: str, args: ModelStoreArgs, *, explicit_name: str | None, object_lock: bool
    ) -> aws.s3.Bucket:
        return aws.s3.Bucket(
            name,
            bucket=explicit_name,
            force_destroy=args.force_destroy,
            object_lock_enabled=object_lock or None,
            tags=self._tags,
            opts=self._keep,
        )

    def _harden(self, name: str, bucket: aws.s3.Bucket, args: ModelStoreArgs) -> list[Any]:
        """Public access block, owner-enforced ownership and versioning: same on both buckets."""
        keep = pulumi.ResourceOptions.merge(self._keep, pulumi.ResourceOptions(parent=bucket))
        pab = aws.s3.BucketPublicAccessBlock(
            f"{name}-public-access-block",
            bucket=bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=keep,
        )
        ownership = aws.s3.BucketOwnershipControls(
            f"{name}-ownership",
            bucket=bucket.id,
            rule={"object_ownership": "BucketOwnerEnforced"},
            opts=keep,
        )
        versioning = aws.s3.BucketVersioning(
            f"{name}-versioning",
            bucket=bucket.id,
            versioning_configuration={"status": "Enabled" if args.versioning else "Suspended"},
            opts=keep,
        )
        return [pab, ownership, versioning]

    def _fsx(
        self,
        name: str,
        fsx: FsxArgs,
        network: StoreNetwork,
        key: aws.kms.Key,
        bucket: aws.s3.Bucket,
        bucket_ready: list[Any],
    ) -> aws.fsx.LustreFileSystem:
        sg = aws.ec2.SecurityGroup(
            f"{name}-fsx-sg",
            vpc_id=network.vpc_id,
            description="FSx for Lustre: Lustre traffic from itself and the cluster only",
            tags=self._tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        sg_opts = pulumi.ResourceOptions(parent=sg)
        sources: list[tuple[str, Any]] = [("self", sg.id)] + [
            (f"client{i}", sg_id) for i, sg_id in enumerate(network.client_security_group_ids)
        ]
        for label, source in sources:
            for low, high in LUSTRE_PORTS:
                aws.vpc.SecurityGroupIngressRule(
                    f"{name}-fsx-{label}-{low}",
                    security_group_id=sg.id,
                    referenced_security_group_id=source,
                    ip_protocol="tcp",
                    from_port=low,
                    to_port=high,
                    description=f"Lustre {low}-{high} from {label}",
                    opts=sg_opts,
                )
        # Lustre servers talk to each other within the group.
        for low, high in LUSTRE_PORTS:
            aws.vpc.SecurityGroupEgressRule(
                f"{name}-fsx-egress-{low}",
                security_group_id=sg.id,
                referenced_security_group_id=sg.id,
                ip_protocol="tcp",
                from_port=low,
                to_port=high,
                description=f"Lustre {low}-{high} within the file system",
                opts=sg_opts,
            )
        persistent = fsx.deployment_type == "PERSISTENT_2"
        fs = aws.fsx.LustreFileSystem(
            f"{name}-fsx",
            deployment_type=fsx.deployment_type,
            storage_capacity=fsx.storage_capacity_gib,
            storage_type="SSD",
            per_unit_storage_throughput=fsx.per_unit_storage_throughput if persistent else None,
            subnet_ids=network.subnet_id,
            security_group_ids=[sg.id],
            kms_key_id=key.arn if persistent else None,
            data_compression_type="LZ4",
            file_system_type_version="2.15",
            automatic_backup_retention_days=fsx.automatic_backup_retention_days
            if persistent
            else None,
            copy_tags_to_backups=True if persistent else None,
            skip_final_backup=not self._keep.protect if persistent else None,
            tags=self._tags,
            opts=pulumi.ResourceOptions.merge(self._keep, pulumi.ResourceOptions(depends_on=[sg])),
        )
        aws.fsx.DataRepositoryAssociation(
            f"{name}-fsx-link",
            file_system_id=fs.id,
            file_system_path=fsx.file_system_path,
            data_repository_path=pulumi.Output.concat(
                "s3://", bucket.bucket, "/", fsx.bucket_prefix
            ),
            batch_import_meta_data_on_create=True,
            # Never delete bucket data when the link goes away.
            delete_data_in_filesystem=False,
            s3={
                "auto_import_policy": {"events": ["NEW", "CHANGED", "DELETED"]},
                "auto_export_policy": {"events": ["NEW", "CHANGED", "DELETED"]},
            },
            tags=self._tags,
            opts=pulumi.ResourceOptions(parent=fs, depends_on=bucket_ready),
        )
        return fs

    # --- views for other components ----------------------------------------------------------

    def refs(self) -> StoreRefs:
        return StoreRefs(
            bucket_arn=self.bucket_arn,
            kms_key_arn=self.kms_key_arn,
            ecr_repository_arns=dict(self.ecr_repository_arns),
        )

    def backend(self, region: str) -> StorageBackend:
        return StorageBackend(kind="s3", bucket=self.bucket_name, region=region)
