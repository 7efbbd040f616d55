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

The parts are built by functions of their own modules, every resource where it was: arguments
(model_store_args), policy documents (model_store_policies), buckets (model_store_buckets),
Mountpoint and FSx (model_store_mounts).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import pulumi
import pulumi_aws as aws

from components.common import InvalidArgsError, Issue, StorageBackend, merge_tags
from components.model_store_args import EcrArgs, ModelStoreArgs, bucket_name_issues
from components.model_store_buckets import store_buckets
from components.model_store_mounts import StoreNetwork, lustre_file_system, mountpoint_driver
from components.model_store_policies import (
    bucket_policy,
    ecr_lifecycle_policy,
    inference_log_rules,
    kms_key_policy,
)
from components.project_access import StoreRefs

# What other modules import from here, whichever part module now owns it.
__all__ = [
    "ModelStore",
    "ModelStoreArgs",
    "StoreNetwork",
    "bucket_name_issues",
    "bucket_policy",
    "inference_log_rules",
]


def missing_inputs(
    args: ModelStoreArgs, *, cluster_name: object, network: StoreNetwork | None
) -> list[Issue]:
    """What the enabled options need from the rest of the platform, and is not given."""
    missing: list[Issue] = []
    if args.mountpoint.enabled and cluster_name is None:
        missing.append(
            Issue(("mountpoint", "enabled"), "needs the EKS cluster (cluster_name input)")
        )
    if args.fsx.enabled and network is None:
        missing.append(Issue(("fsx", "enabled"), "needs the VPC (network input)"))
    return missing


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
        missing = missing_inputs(args, cluster_name=cluster_name, network=network)
        if missing:
            raise InvalidArgsError("ModelStore", missing)
        super().__init__("mlplatform:storage:ModelStore", name, None, opts)
        self._tags = merge_tags(tags, {"mlplatform.io/component": "model-store"})
        protect = args.protect
        self._keep = pulumi.ResourceOptions(parent=self, protect=protect, retain_on_delete=protect)

        inv = pulumi.InvokeOutputOptions(parent=self)
        account = aws.get_caller_identity_output(opts=inv).account_id
        key = self._key(name, args, inv, account)
        buckets = store_buckets(
            name,
            args,
            key=key,
            account=account,
            projects=projects,
            keep=self._keep,
            tags=self._tags,
        )
        bucket = buckets.bucket
        urls = self._ecr(name, args.ecr, key, force_delete=args.force_destroy)

        self.mountpoint_role_arn = None
        if args.mountpoint.enabled and cluster_name is not None:
            self.mountpoint_role_arn = mountpoint_driver(
                self,
                name,
                args.mountpoint,
                cluster_name=cluster_name,
                bucket=bucket,
                key=key,
                tags=self._tags,
            )
        self.fsx_file_system_id = self.fsx_dns_name = self.fsx_mount_name = None
        if args.fsx.enabled and network is not None:
            fs = lustre_file_system(
                self,
                name,
                args.fsx,
                network=network,
                key=key,
                bucket=bucket,
                bucket_ready=buckets.ready,
                keep=self._keep,
                tags=self._tags,
            )
            self.fsx_file_system_id = fs.id
            self.fsx_dns_name = fs.dns_name
            self.fsx_mount_name = fs.mount_name

        self.bucket_name = bucket.bucket
        self.bucket_arn = bucket.arn
        self.log_bucket_name = buckets.log_bucket.bucket
        self.kms_key_arn = key.arn
        self.kms_key_id = key.key_id
        self.ecr_repository_urls = (
            pulumi.Output.all(**urls) if urls else pulumi.Output.from_input({})
        )
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

    # --- parts -----------------------------------------------------------------------------

    def _key(
        self,
        name: str,
        args: ModelStoreArgs,
        inv: pulumi.InvokeOutputOptions,
        account: pulumi.Output[str],
    ) -> aws.kms.Key:
        """The store's customer-managed, rotating key (buckets, ECR, FSx) and its alias."""
        partition = aws.get_partition_output(opts=inv).partition
        region = aws.get_region_output(opts=inv).region
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
        return key

    def _ecr(
        self, name: str, ecr: EcrArgs, key: aws.kms.Key, *, force_delete: bool
    ) -> dict[str, pulumi.Output[str]]:
        """Immutable, scanned, KMS-encrypted repositories with a lifecycle policy each; returns
        their URLs by key (ARNs in ``ecr_repository_arns``)."""
        prefix = ecr.prefix or f"{pulumi.get_project()}/{pulumi.get_stack()}".lower()
        urls: dict[str, pulumi.Output[str]] = {}
        self.ecr_repository_arns = {}
        for repo_key in ecr.repositories:
            repo = aws.ecr.Repository(
                f"{name}-ecr-{repo_key.replace('/', '-')}",
                name=f"{prefix}/{repo_key}",
                image_tag_mutability="IMMUTABLE",
                image_scanning_configuration={"scan_on_push": True},
                encryption_configurations=[{"encryption_type": "KMS", "kms_key": key.arn}],
                force_delete=force_delete,
                tags=self._tags,
                opts=self._keep,
            )
            aws.ecr.LifecyclePolicy(
                f"{name}-ecr-{repo_key.replace('/', '-')}-lifecycle",
                repository=repo.name,
                policy=json.dumps(
                    ecr_lifecycle_policy(ecr.untagged_expire_days, ecr.max_tagged_images)
                ),
                opts=pulumi.ResourceOptions(parent=repo),
            )
            urls[repo_key] = repo.repository_url
            self.ecr_repository_arns[repo_key] = repo.arn
        return urls

    # --- views for other components ----------------------------------------------------------

    def refs(self) -> StoreRefs:
        return StoreRefs(
            bucket_arn=self.bucket_arn,
            kms_key_arn=self.kms_key_arn,
            ecr_repository_arns=dict(self.ecr_repository_arns),
        )

    def backend(self, region: str) -> StorageBackend:
        return StorageBackend(kind="s3", bucket=self.bucket_name, region=region)
