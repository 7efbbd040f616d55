"""The model store's typed arguments and their validation (ModelStore, components/model_store.py)."""

from __future__ import annotations

import ipaddress
import re
from enum import StrEnum
from typing import Literal

from pydantic import Field

from components.common import ArgsModel, Issue

BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
ECR_NAME = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$")
ADDON_VERSION = re.compile(r"^v(\d+)\.(\d+)\.(\d+)-eksbuild\.\d+$")


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
