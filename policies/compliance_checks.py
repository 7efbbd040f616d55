"""The checks behind the compliance profiles (``compliance.py``), as pure functions over a stack.

A check reads the declared resources (``pulumi_policy.PolicyResource``: type, camelCase inputs,
dependencies, property dependencies) and yields ``(urn, message)`` findings. The same resources
reach it from the engine (``pulumi preview --policy-pack``) and from ``mlplatform plan``.

Values the engine cannot know during a preview (computed outputs such as a key's ARN) read as
:data:`UNKNOWN`. A reference to a computed value counts as set; a check never reports what it
cannot see, and ``pulumi up`` runs it again with the real values.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
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
# data residency


def check_regions(stack: Stack, limits: Limits) -> Iterator[Finding]:
    """Every AWS resource is created in an allowed region (provider region or its own)."""
    allowed = limits.allowed_regions
    if allowed is None:
        return
    shown = ", ".join(allowed)
    providers: dict[str, tuple[Any, int]] = {}
    for res in stack.resources:
        if not res.resource_type.startswith("aws:"):
            continue
        prov = res.provider
        key = prov.urn if prov is not None else ""
        region = val(prov.props, "region") if prov is not None else None
        # pulumi-aws 7 resources may override the provider's region (and report it as an
        # output): only a different region is the resource's own finding.
        own = val(res.props, "region")
        if is_set(own) and own is not UNKNOWN and own != region:
            if own not in allowed:
                yield res.urn, f"{label(res)} is placed in {own}; allowed regions: {shown}"
            continue
        seen = providers.get(key)
        providers[key] = (region, (seen[1] if seen else 0) + 1)
    for key, (region, count) in sorted(providers.items()):
        name = key.rsplit("::", 1)[-1] or "default"
        if region is UNKNOWN:
            continue
        if not region:
            yield (
                key,
                (
                    f"AWS provider '{name}' sets no region, so the region of its {count} resources "
                    f"cannot be checked; set aws:region (allowed: {shown})"
                ),
            )
        elif region not in allowed:
            yield (
                key,
                (
                    f"AWS provider '{name}' places {count} resources in {region}; "
                    f"allowed regions: {shown}"
                ),
            )


# --------------------------------------------------------------------------------------------
# encryption with customer-managed keys

# type -> (input holding the key, what to set)
_KEY_PROPS = {
    LOG_GROUP: ("kmsKeyId", "kmsKeyId"),
    "aws:sns/topic:Topic": ("kmsMasterKeyId", "kmsMasterKeyId (not alias/aws/sns)"),
    "aws:sqs/queue:Queue": ("kmsMasterKeyId", "kmsMasterKeyId (SQS-managed SSE is not a CMK)"),
    "aws:secretsmanager/secret:Secret": ("kmsKeyId", "kmsKeyId"),
    TRAIL: ("kmsKeyId", "kmsKeyId"),
    "aws:fsx/lustreFileSystem:LustreFileSystem": ("kmsKeyId", "kmsKeyId"),
}


def _ebs_problem(ebs: Any, key_prop: str) -> str | None:
    if not is_true(val(ebs, "encrypted")):
        return "is not encrypted"
    if not cmk(val(ebs, key_prop)):
        return f"uses the AWS-managed EBS key; set {key_prop}"
    return None


def _block_devices(res: PolicyResource) -> Iterator[tuple[str, Any, str]]:
    """(where, ebs settings, key input) for every EBS volume a resource declares."""
    rtype = res.resource_type
    props = res.props
    if rtype == "aws:ec2/launchTemplate:LaunchTemplate":
        for i, bdm in enumerate(items(val(props, "blockDeviceMappings"))):
            if val(bdm, "ebs") is not None:
                yield f"blockDeviceMappings[{i}]", val(bdm, "ebs"), "kmsKeyId"
    elif rtype == "aws:ec2/instance:Instance":
        yield "rootBlockDevice", val(props, "rootBlockDevice") or {}, "kmsKeyId"
        for i, dev in enumerate(items(val(props, "ebsBlockDevices"))):
            yield f"ebsBlockDevices[{i}]", dev, "kmsKeyId"
    elif rtype == "aws:ebs/volume:Volume":
        yield "volume", props, "kmsKeyId"
    elif rtype.startswith("kubernetes:karpenter.k8s.aws/") and rtype.endswith(":EC2NodeClass"):
        for i, bdm in enumerate(items(val(props, "spec", "blockDeviceMappings"))):
            if val(bdm, "ebs") is not None:
                yield f"spec.blockDeviceMappings[{i}].ebs", val(bdm, "ebs"), "kmsKeyID"


def _sse_problem(res: PolicyResource) -> str | None:
    rules = items(val(res.props, "rules"))
    if not rules:
        return "sets no default encryption"
    for rule in rules:
        algo = val(rule, "applyServerSideEncryptionByDefault", "sseAlgorithm")
        key = val(rule, "applyServerSideEncryptionByDefault", "kmsMasterKeyId")
        if algo is UNKNOWN:
            continue
        if algo not in ("aws:kms", "aws:kms:dsse"):
            return f"uses {algo}; use aws:kms with a customer-managed kmsMasterKeyId"
        if not cmk(key):
            return "uses the AWS-managed aws/s3 key; set kmsMasterKeyId"
    return None


def check_encryption(stack: Stack, _limits: Limits) -> Iterator[Finding]:
    """Data at rest is encrypted with customer-managed KMS keys that rotate."""
    log_targets = stack.access_log_targets()
    for res in stack.resources:
        rtype = normalize_type(res.resource_type)
        props = res.props
        if rtype == BUCKET_SSE:
            problem = _sse_problem(res)
            targets = stack.refers(res, "bucket", log_targets)
            sse_s3 = all(
                val(r, "applyServerSideEncryptionByDefault", "sseAlgorithm") == "AES256"
                for r in items(val(props, "rules"))
            )
            # S3 server access logging delivers only to SSE-S3 buckets (AWS documents SSE-KMS
            # destinations as unsupported), so a declared log destination may use AES256.
            if problem and not (targets and sse_s3):
                yield res.urn, f"bucket encryption {label(res)} {problem}"
        elif rtype == BUCKET and val(props, "serverSideEncryptionConfiguration") is not None:
            rule = val(props, "serverSideEncryptionConfiguration", "rule")
            key = val(rule, "applyServerSideEncryptionByDefault", "kmsMasterKeyId")
            if not cmk(key):
                yield res.urn, f"{label(res)} inline encryption has no customer-managed key"
        elif rtype in _KEY_PROPS:
            prop, what = _KEY_PROPS[rtype]
            if not cmk(val(props, prop)):
                yield (
                    res.urn,
                    f"{label(res)} is not encrypted with a customer-managed key: set {what}",
                )
        elif rtype in RDS_TYPES:
            if not is_true(val(props, "storageEncrypted")) or not cmk(val(props, "kmsKeyId")):
                yield res.urn, f"{label(res)} must set storageEncrypted=true and kmsKeyId (a CMK)"
            if val(props, "performanceInsightsEnabled") is True and not cmk(
                val(props, "performanceInsightsKmsKeyId")
            ):
                yield (
                    res.urn,
                    f"{label(res)} Performance Insights needs performanceInsightsKmsKeyId",
                )
        elif rtype == "aws:ecr/repository:Repository":
            confs = items(val(props, "encryptionConfigurations"))
            if not any(
                val(c, "encryptionType") in ("KMS", UNKNOWN) and cmk(val(c, "kmsKey"))
                for c in confs
            ):
                yield (
                    res.urn,
                    (
                        f"{label(res)} must set encryptionConfigurations "
                        "[{encryptionType: KMS, kmsKey: <CMK>}] (AES256 and the aws/ecr key are not CMKs)"
                    ),
                )
        elif rtype == EKS_CLUSTER:
            if not any(
                "secrets" in items(val(c, "resources")) and cmk(val(c, "provider", "keyArn"))
                for c in items(val(props, "encryptionConfig"))
            ):
                yield res.urn, f"{label(res)} must envelope-encrypt secrets with a CMK"
        elif rtype == "aws:efs/fileSystem:FileSystem":
            if not is_true(val(props, "encrypted")) or not cmk(val(props, "kmsKeyId")):
                yield res.urn, f"{label(res)} must set encrypted=true and kmsKeyId"
        elif rtype == "aws:dynamodb/table:Table":
            if not is_true(val(props, "serverSideEncryption", "enabled")) or not cmk(
                val(props, "serverSideEncryption", "kmsKeyArn")
            ):
                yield res.urn, f"{label(res)} must set serverSideEncryption with a kmsKeyArn"
        elif rtype == "aws:kms/key:Key":
            spec = val(props, "customerMasterKeySpec") or val(props, "keySpec")
            symmetric = spec in (None, UNKNOWN, "SYMMETRIC_DEFAULT")
            if symmetric and not is_true(val(props, "enableKeyRotation")):
                yield res.urn, f"{label(res)} must rotate (enableKeyRotation=true)"
        elif rtype.startswith("kubernetes:storage.k8s.io/") and rtype.endswith(":StorageClass"):
            if val(props, "provisioner") not in EBS_PROVISIONERS:
                continue
            params = val(props, "parameters") or {}
            if not is_true(val(params, "encrypted")) or not cmk(val(params, "kmsKeyId")):
                yield (
                    res.urn,
                    (
                        f'EBS {label(res)} must set parameters encrypted: "true" and kmsKeyId (a CMK)'
                    ),
                )
        else:
            declared = list(_block_devices(res))
            if rtype == "aws:ec2/launchTemplate:LaunchTemplate" and not declared:
                yield (
                    res.urn,
                    (
                        f"{label(res)} declares no EBS block device, so the root volume takes the "
                        "AMI's encryption; map it with encrypted=true and a kmsKeyId"
                    ),
                )
            for where, ebs, key_prop in declared:
                problem = _ebs_problem(ebs, key_prop)
                if problem:
                    yield res.urn, f"{label(res)} {where} {problem}"


# --------------------------------------------------------------------------------------------
# audit logging and its retention


def check_audit_logging(stack: Stack, _limits: Limits) -> Iterator[Finding]:
    """Control-plane audit logs, S3 access logs, VPC flow logs and database logs are on."""
    for cluster in stack.of(EKS_CLUSTER):
        enabled = items(val(cluster.props, "enabledClusterLogTypes"))
        missing = [t for t in EKS_AUDIT_LOG_TYPES if t not in enabled]
        if missing and UNKNOWN not in enabled:
            yield (
                cluster.urn,
                f"{label(cluster)} must enable control-plane logs: {', '.join(missing)}",
            )
    logged = stack.logged_buckets()
    for bucket in stack.data_buckets():
        if bucket.urn not in logged and val(bucket.props, "loggings") is None:
            yield (
                bucket.urn,
                (
                    f"{label(bucket)} has no server access logging (aws.s3.BucketLogging to a log bucket)"
                ),
            )
    vpcs = stack.of("aws:ec2/vpc:Vpc")
    flowed = {
        v.urn for f in stack.of("aws:ec2/flowLog:FlowLog") for v in stack.refers(f, "vpcId", vpcs)
    }
    for vpc in vpcs:
        if vpc.urn not in flowed:
            yield vpc.urn, f"{label(vpc)} has no flow log (aws.ec2.FlowLog with trafficType ALL)"
    for db in stack.of(*RDS_TYPES):
        if (
            not items(val(db.props, "enabledCloudwatchLogsExports"))
            and val(db.props, "enabledCloudwatchLogsExports") is not UNKNOWN
        ):
            yield db.urn, f"{label(db)} exports no logs (enabledCloudwatchLogsExports)"
    for trail in stack.of(TRAIL):
        props = trail.props
        for key, what in (
            ("isMultiRegionTrail", "record every region (isMultiRegionTrail=true)"),
            ("enableLogFileValidation", "validate log files (enableLogFileValidation=true)"),
        ):
            if not is_true(val(props, key)):
                yield trail.urn, f"{label(trail)} must {what}"
        if val(props, "enableLogging") is False:
            yield trail.urn, f"{label(trail)} has logging turned off"


def _expiration_days(stack: Stack, bucket: PolicyResource, prefix: str) -> float | None:
    """The shortest current-version expiration of ``bucket``'s enabled rules covering ``prefix``."""
    found: list[float] = []
    for lc in stack.for_bucket(bucket, BUCKET_LIFECYCLE):
        for rule in items(val(lc.props, "rules")):
            if _covers(rule, prefix):
                days = number(val(rule, "expiration", "days"))
                if days is not None:
                    found.append(days)
    return min(found) if found else None


def check_log_retention(stack: Stack, limits: Limits) -> Iterator[Finding]:
    """Log groups and access-log buckets keep logs at least the profile's minimum."""
    need = limits.audit_log_min_days
    for group in stack.of(LOG_GROUP):
        days = number(val(group.props, "retentionInDays"))
        if days is not None and 0 < days < need:
            yield group.urn, f"{label(group)} keeps logs {days:g} days; the minimum is {need}"
    for target in stack.access_log_targets():
        days = _expiration_days(stack, target, "")
        if days is not None and days < need:
            yield (
                target.urn,
                (
                    f"access-log {label(target)} expires logs after {days:g} days; the minimum is {need}"
                ),
            )


# --------------------------------------------------------------------------------------------
# raw inference logs: maximum retention


def _covers(rule: Any, key_prefix: str) -> bool:
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


def _lock_days(stack: Stack, bucket: PolicyResource) -> float:
    days = 0.0
    for conf in stack.for_bucket(bucket, BUCKET_OBJECT_LOCK):
        retention = val(conf.props, "rule", "defaultRetention")
        d = number(val(retention, "days")) or 365 * (number(val(retention, "years")) or 0)
        days = max(days, d)
    return days


def _versioned(stack: Stack, bucket: PolicyResource, *, enabled: bool = False) -> bool:
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
    versioned = _versioned(stack, bucket)
    best: tuple[float, str] | None = None
    for lc in stack.for_bucket(bucket, BUCKET_LIFECYCLE):
        for rule in items(val(lc.props, "rules")):
            if not _covers(rule, key_prefix):
                continue
            days = number(val(rule, "expiration", "days"))
            if days is None:
                continue
            total, why = days, f"expires after {days:g} days"
            if versioned:
                extra = number(val(rule, "noncurrentVersionExpiration", "noncurrentDays"))
                if extra is None:
                    continue  # this rule alone leaves the data as noncurrent versions forever
                total = days + extra
                why = f"{why} + {extra:g} day{'' if extra == 1 else 's'} as a noncurrent version"
            if best is None or total < best[0]:
                best = (total, f"rule '{val(rule, 'id')}' {why}")
    if best is None:
        return None
    lock = _lock_days(stack, bucket)
    if lock > best[0]:
        return lock, f"{best[1]}, but object lock retains every version {lock:g} days"
    return best


def check_inference_logs(stack: Stack, limits: Limits) -> Iterator[Finding]:
    """Each project's raw inference log under the model bucket expires within the maximum."""
    most = limits.inference_log_max_days
    projects = stack.projects()
    for bucket in stack.model_buckets():
        for project in projects:
            prefix = inference_log_prefix(project)
            found = retention_of(stack, bucket, prefix)
            if found is None:
                yield (
                    bucket.urn,
                    (
                        f"{label(bucket)} keeps {prefix} forever: add a lifecycle rule expiring it "
                        f"(and its noncurrent versions) within {most} days"
                    ),
                )
            elif found[0] > most:
                yield (
                    bucket.urn,
                    (
                        f"{label(bucket)} keeps {prefix} up to {found[0]:g} days ({found[1]}); "
                        f"the maximum is {most}"
                    ),
                )


# --------------------------------------------------------------------------------------------
# no public endpoints

_SCHEME = "alb.ingress.kubernetes.io/scheme"
_SVC_SCHEME = "service.beta.kubernetes.io/aws-load-balancer-scheme"
_SVC_INTERNAL = "service.beta.kubernetes.io/aws-load-balancer-internal"


def check_public_endpoints(stack: Stack, _limits: Limits) -> Iterator[Finding]:
    """Nothing is reachable from the internet: private EKS API, internal load balancers,
    no public IPs, no publicly accessible databases (public S3 is the base pack's s3 rules)."""
    for cluster in stack.of(EKS_CLUSTER):
        if val(cluster.props, "vpcConfig", "endpointPublicAccess") in (None, True, "true"):
            yield (
                cluster.urn,
                (
                    f"{label(cluster)} has a public API endpoint (set endpointPublicAccess=false; "
                    "CIDR allow-lists still expose it)"
                ),
            )
    for lb in stack.of("aws:lb/loadBalancer:LoadBalancer", "aws:alb/loadBalancer:LoadBalancer"):
        if val(lb.props, "internal") not in (True, "true", UNKNOWN):
            yield lb.urn, f"{label(lb)} is internet-facing (set internal=true)"
    for lb in stack.of("aws:elb/loadBalancer:LoadBalancer"):
        if val(lb.props, "internal") not in (True, "true", UNKNOWN):
            yield lb.urn, f"{label(lb)} is internet-facing (set internal=true)"
    for ing in stack.kube("Ingress", "networking.k8s.io"):
        if val(ing.props, "metadata", "annotations", _SCHEME) == "internet-facing":
            yield ing.urn, f"Ingress '{ing.name}' asks for an internet-facing ALB ({_SCHEME})"
    for params in stack.kube("IngressClassParams", "elbv2.k8s.aws"):
        if val(params.props, "spec", "scheme") == "internet-facing":
            yield params.urn, f"IngressClassParams '{params.name}' makes ALBs internet-facing"
    for svc in stack.kube("Service", "core"):
        if val(svc.props, "spec", "type") != "LoadBalancer":
            continue
        notes = val(svc.props, "metadata", "annotations") or {}
        internal = val(notes, _SVC_SCHEME) == "internal" or is_true(val(notes, _SVC_INTERNAL) or "")
        if not internal:
            yield (
                svc.urn,
                (
                    f"Service '{svc.name}' of type LoadBalancer is internet-facing unless annotated "
                    f"{_SVC_SCHEME}: internal"
                ),
            )
    for db in stack.of(*RDS_TYPES):
        if (
            is_true(val(db.props, "publiclyAccessible") or False)
            and val(db.props, "publiclyAccessible") is not UNKNOWN
        ):
            yield db.urn, f"{label(db)} is publicly accessible"
    for subnet in stack.of("aws:ec2/subnet:Subnet"):
        if val(subnet.props, "mapPublicIpOnLaunch") is True:
            yield (
                subnet.urn,
                f"{label(subnet)} gives every instance a public IP (mapPublicIpOnLaunch)",
            )
    for lt in stack.of("aws:ec2/launchTemplate:LaunchTemplate"):
        for i, nic in enumerate(items(val(lt.props, "networkInterfaces"))):
            if val(nic, "associatePublicIpAddress") in (True, "true"):
                yield lt.urn, f"{label(lt)} networkInterfaces[{i}] associates a public IP"
    for inst in stack.of("aws:ec2/instance:Instance"):
        if val(inst.props, "associatePublicIpAddress") is True:
            yield inst.urn, f"{label(inst)} has a public IP"
    for nc in stack.kube("EC2NodeClass", "karpenter.k8s.aws"):
        if val(nc.props, "spec", "associatePublicIPAddress") is True:
            yield nc.urn, f"EC2NodeClass '{nc.name}' gives nodes public IPs"


# --------------------------------------------------------------------------------------------
# backups


def check_backups(stack: Stack, limits: Limits) -> Iterator[Finding]:
    """Databases keep automated backups and a final snapshot; data buckets are versioned, and
    locked where the profile asks for it."""
    need = limits.backup_min_days
    for db in stack.of(*RDS_TYPES):
        props = db.props
        days = number(val(props, "backupRetentionPeriod"))
        if val(props, "backupRetentionPeriod") is not UNKNOWN and (days or 0) < need:
            shown = "unset" if days is None else f"{days:g} days"
            yield db.urn, f"{label(db)} keeps automated backups {shown}; the minimum is {need} days"
        if val(props, "skipFinalSnapshot") is True:
            yield db.urn, f"{label(db)} skips the final snapshot on delete"
        if normalize_type(db.resource_type) == RDS_TYPES[0] and val(
            props, "deleteAutomatedBackups"
        ) in (None, True):
            yield (
                db.urn,
                f"{label(db)} deletes its automated backups with it (deleteAutomatedBackups)",
            )
        if val(props, "deletionProtection") not in (True, UNKNOWN):
            yield db.urn, f"{label(db)} has no deletion protection"
    for table in stack.of("aws:dynamodb/table:Table"):
        if not is_true(val(table.props, "pointInTimeRecovery", "enabled") or False):
            yield table.urn, f"{label(table)} has no point-in-time recovery"
    for bucket in stack.data_buckets():
        if not _versioned(stack, bucket, enabled=True):
            yield bucket.urn, f"{label(bucket)} does not version new writes (status Enabled)"
    if limits.object_lock:
        for bucket in stack.model_buckets():
            if val(bucket.props, "objectLockEnabled") not in (True, UNKNOWN) or not _lock_days(
                stack, bucket
            ):
                yield (
                    bucket.urn,
                    (
                        f"{label(bucket)} needs object lock with a default retention "
                        "(modelStore.objectLock.enabled: true)"
                    ),
                )
