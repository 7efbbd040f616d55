"""What the compliance checks read from a stack: values through the engine's proxies, the
resources indexed with their references, and how long S3 keeps an object.

Resources arrive as ``pulumi_policy.PolicyResource`` (type, camelCase properties, dependencies,
property dependencies), from the engine (``pulumi preview --policy-pack``) or from
``mlplatform plan``. Values the engine cannot know during a preview (computed outputs such as a
key's ARN) read as :data:`UNKNOWN`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pulumi_policy import PolicyResource
from pulumi_policy.proxy import UnknownValueError

Finding = tuple[str, str]


class _Unknown:
    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN: Any = _Unknown()
_UNKNOWN_TEXT = "[unknown]"  # how the offline plan prints an output its mocks left unresolved

# Resource types (pulumi-aws 7 tokens; 6.x ``...V2`` tokens are folded onto them).
BUCKET = "aws:s3/bucket:Bucket"
BUCKET_SSE = (
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
)
BUCKET_LOGGING = "aws:s3/bucketLogging:BucketLogging"
BUCKET_LIFECYCLE = "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration"
BUCKET_VERSIONING = "aws:s3/bucketVersioning:BucketVersioning"
BUCKET_OBJECT_LOCK = "aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
EKS_CLUSTER = "aws:eks/cluster:Cluster"
RDS_TYPES = ("aws:rds/instance:Instance", "aws:rds/cluster:Cluster")
IAM_ROLE = "aws:iam/role:Role"
TRAIL = "aws:cloudtrail/trail:Trail"

COMPONENT_TAG = "mlplatform.io/component"
PROJECT_TAG = "mlplatform.io/project"
MODEL_STORE = "model-store"
EKS_AUDIT_LOG_TYPES = ("api", "audit", "authenticator")
EBS_PROVISIONERS = ("ebs.csi.aws.com", "ebs.csi.eks.amazonaws.com", "kubernetes.io/aws-ebs")


def inference_log_prefix(project: str) -> str:
    """Where a project's sampled, encrypted inference log lives in the model bucket."""
    return f"projects/{project}/inference-logs/"


# --------------------------------------------------------------------------------------------
# reading values through the engine's proxies


def val(obj: Any, *path: str | int) -> Any:
    """``obj[path...]``: None when absent, :data:`UNKNOWN` when not known yet."""
    cur = obj
    try:
        for part in path:
            if isinstance(part, int):
                if not is_list(cur) or part >= len(cur):
                    return None
            elif not isinstance(cur, Mapping) or part not in cur:
                return None
            cur = cur[part]
    except UnknownValueError:
        return UNKNOWN
    return UNKNOWN if cur == _UNKNOWN_TEXT else cur


def is_list(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes))


def items(value: Any) -> list[Any]:
    """A JSON array's elements (a lone object counts as one); [] when absent or unknown."""
    if value is None or value is UNKNOWN:
        return []
    try:
        return list(value) if is_list(value) else [value]
    except UnknownValueError:
        return []


def is_true(value: Any) -> bool:
    """True for ``true`` and ``"true"`` (launch templates take strings), and for unknown."""
    return value is UNKNOWN or value is True or str(value).lower() == "true"


def is_set(value: Any) -> bool:
    return value is UNKNOWN or (value is not None and value != "")


def aws_managed_key(value: Any) -> bool:
    """``alias/aws/<service>``: a key AWS manages for the account, not a customer-managed one."""
    return isinstance(value, str) and "alias/aws/" in value


def cmk(value: Any) -> bool:
    """Names a customer-managed key (a computed ARN counts: it comes from a declared key)."""
    return is_set(value) and not aws_managed_key(value)


def number(value: Any) -> float | None:
    if value is None or value is UNKNOWN:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def normalize_type(resource_type: str) -> str:
    """Fold pulumi-aws 6 ``...V2`` tokens onto their 7.x names."""
    head, _, cls = resource_type.rpartition(":")
    if resource_type.startswith("aws:") and cls.endswith("V2"):
        module = head.rsplit("/", 1)
        if len(module) == 2 and module[1].endswith("V2"):
            return f"{module[0]}/{module[1][:-2]}:{cls[:-2]}"
    return resource_type


def tags(res: PolicyResource) -> dict[str, Any]:
    found = val(res.props, "tags")
    return dict(found) if isinstance(found, Mapping) else {}


def label(res: PolicyResource) -> str:
    return f"{normalize_type(res.resource_type).rsplit(':', 1)[-1]} '{res.name}'"


# --------------------------------------------------------------------------------------------
# the stack, indexed


class Stack:
    """The declared resources, with the relations the checks need."""

    def __init__(self, resources: Iterable[PolicyResource]):
        self.resources = [r for r in resources if not r.resource_type.startswith("pulumi:")]

    def of(self, *types: str) -> list[PolicyResource]:
        return [r for r in self.resources if normalize_type(r.resource_type) in types]

    def kube(self, kind: str, group: str = "") -> list[PolicyResource]:
        """Kubernetes objects of a kind (any API version), e.g. ``kube("Service", "core")``."""
        return [
            r
            for r in self.resources
            if r.resource_type.startswith(f"kubernetes:{group}")
            and r.resource_type.endswith(f":{kind}")
        ]

    @staticmethod
    def refers(res: PolicyResource, prop: str, candidates: Sequence[PolicyResource]) -> list:
        """The candidates that ``res``'s input ``prop`` is computed from.

        Property dependencies say it exactly; without them a resource that depends on exactly
        one candidate refers to that one.
        """
        by_prop = (res.property_dependencies or {}).get(prop) or []
        if by_prop:
            urns = {d.urn for d in by_prop}
            return [c for c in candidates if c.urn in urns]
        deps = {d.urn for d in res.dependencies}
        found = [c for c in candidates if c.urn in deps]
        return found if len(found) == 1 else []

    def for_bucket(self, bucket: PolicyResource, rtype: str) -> list[PolicyResource]:
        """Companions of ``rtype`` (versioning, lifecycle...) whose ``bucket`` is this bucket."""
        return [c for c in self.of(rtype) if bucket in self.refers(c, "bucket", [bucket])]

    def buckets(self) -> list[PolicyResource]:
        return self.of(BUCKET)

    def access_log_targets(self) -> list[PolicyResource]:
        """Buckets that receive S3 server access logs (the target of a BucketLogging)."""
        buckets = self.buckets()
        out: list[PolicyResource] = []
        for logging in self.of(BUCKET_LOGGING):
            for b in self.refers(logging, "targetBucket", buckets):
                if b not in out:
                    out.append(b)
        return out

    def logged_buckets(self) -> set[str]:
        buckets = self.buckets()
        return {b.urn for lg in self.of(BUCKET_LOGGING) for b in self.refers(lg, "bucket", buckets)}

    def data_buckets(self) -> list[PolicyResource]:
        """Buckets that are not access-log destinations."""
        targets = {b.urn for b in self.access_log_targets()}
        return [b for b in self.buckets() if b.urn not in targets]

    def model_buckets(self) -> list[PolicyResource]:
        """The ModelStore's data buckets (tagged by the component), where projects keep data."""
        return [b for b in self.data_buckets() if tags(b).get(COMPONENT_TAG) == MODEL_STORE]

    def projects(self) -> list[str]:
        """Projects granted access to the store (their Pod Identity roles carry the tag)."""
        names = {str(tags(r).get(PROJECT_TAG)) for r in self.of(IAM_ROLE)}
        return sorted(n for n in names if n and n != "None")


@dataclass(frozen=True)
class Limits:
    """One profile's parameters, as the checks use them."""

    allowed_regions: tuple[str, ...] | None
    audit_log_min_days: int
    inference_log_max_days: int
    backup_min_days: int
    object_lock: bool


# --------------------------------------------------------------------------------------------
# S3: how long a lifecycle configuration keeps an object


def expiration_days(stack: Stack, bucket: PolicyResource, prefix: str) -> float | None:
    """The shortest current-version expiration of ``bucket``'s enabled rules covering ``prefix``."""
    found: list[float] = []
    for lc in stack.for_bucket(bucket, BUCKET_LIFECYCLE):
        for rule in items(val(lc.props, "rules")):
            if covers(rule, prefix):
                days = number(val(rule, "expiration", "days"))
                if days is not None:
                    found.append(days)
    return min(found) if found else None


def covers(rule: Any, key_prefix: str) -> bool:
    """An enabled lifecycle rule that applies to every object under ``key_prefix``."""
    if val(rule, "status") != "Enabled":
        return False
    filt = val(rule, "filter")
    prefix = val(rule, "prefix") or ""
    if isinstance(filt, Mapping):
        if val(filt, "tag") is not None or val(filt, "objectSizeGreaterThan") is not None:
            return False
        if val(filt, "objectSizeLessThan") is not None:
            return False
        conj = val(filt, "and")
        if conj is not None:
            if val(conj, "tags") or val(conj, "objectSizeGreaterThan") is not None:
                return False
            if val(conj, "objectSizeLessThan") is not None:
                return False
            prefix = val(conj, "prefix") or ""
        else:
            prefix = val(filt, "prefix") or prefix
    return isinstance(prefix, str) and key_prefix.startswith(prefix)


def lock_days(stack: Stack, bucket: PolicyResource) -> float:
    days = 0.0
    for conf in stack.for_bucket(bucket, BUCKET_OBJECT_LOCK):
        retention = val(conf.props, "rule", "defaultRetention")
        d = number(val(retention, "days")) or 365 * (number(val(retention, "years")) or 0)
        days = max(days, d)
    return days


def versioned(stack: Stack, bucket: PolicyResource, *, enabled: bool = False) -> bool:
    """Whether the bucket keeps old versions (suspended versioning still holds the ones it
    has); ``enabled``: whether it versions new writes."""
    if val(bucket.props, "versioning", "enabled") is True:
        return True
    states = ("Enabled", UNKNOWN) if enabled else ("Enabled", "Suspended", UNKNOWN)
    return any(
        val(v.props, "versioningConfiguration", "status") in states
        for v in stack.for_bucket(bucket, BUCKET_VERSIONING)
    )


def retention_of(stack: Stack, bucket: PolicyResource, key_prefix: str) -> tuple[float, str] | None:
    """How long an object under ``key_prefix`` can live at most, and why; None if unbounded.

    Expiring a current version in a versioned bucket only hides it: the data stays as a
    noncurrent version until a noncurrent expiration removes it, and object lock keeps every
    version for its default retention whatever the lifecycle says.
    """
    keeps_versions = versioned(stack, bucket)
    best: tuple[float, str] | None = None
    for lc in stack.for_bucket(bucket, BUCKET_LIFECYCLE):
        for rule in items(val(lc.props, "rules")):
            if not covers(rule, key_prefix):
                continue
            days = number(val(rule, "expiration", "days"))
            if days is None:
                continue
            total, why = days, f"expires after {days:g} days"
            if keeps_versions:
                extra = number(val(rule, "noncurrentVersionExpiration", "noncurrentDays"))
                if extra is None:
                    continue  # this rule alone leaves the data as noncurrent versions forever
                total = days + extra
                why = f"{why} + {extra:g} day{'' if extra == 1 else 's'} as a noncurrent version"
            if best is None or total < best[0]:
                best = (total, f"rule '{val(rule, 'id')}' {why}")
    if best is None:
        return None
    lock = lock_days(stack, bucket)
    if lock > best[0]:
        return lock, f"{best[1]}, but object lock retains every version {lock:g} days"
    return best
