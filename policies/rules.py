"""The platform's policy rules, as plain functions.

Each rule is a pure ``validate(args, report_violation)`` over camelCase resource inputs
(``args.props``), wrapped in a ``pulumi_policy.ResourceValidationPolicy`` by :func:`build_policies`.
Importing this module starts nothing: ``policies/__main__.py`` alone builds the ``PolicyPack``
(which starts a gRPC server), and ``mlplatform.policy`` runs the very same policies over the
offline plan.

The environment decides the enforcement level (advisory in dev, mandatory in prod) and whether
the prod-only rules (no force-destroy, protected stateful resources) are in the pack at all.
The pack learns its environment from ``MLPLATFORM_ENVIRONMENT`` (see :func:`resolve_environment`).
"""

from __future__ import annotations

import fnmatch
import functools
import ipaddress
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

Args = ResourceValidationArgs
SSE_CONFIG = (
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
)
REQUIRED_TAGS = ("project", "environment", "owner", "cost-center")
ADVISORY_ENVIRONMENTS = frozenset({"dev", "local", "test"})
ENV_VARS = ("MLPLATFORM_ENVIRONMENT", "PULUMI_STACK")

_TAGGABLE_FILE = Path(__file__).with_name("taggable_aws_types.json")


def enforcement_for(environment: str) -> EnforcementLevel:
    """Advisory for dev/local/test stacks, mandatory for prod and anything unknown (fail closed)."""
    return (
        EnforcementLevel.ADVISORY
        if environment.strip().lower() in ADVISORY_ENVIRONMENTS
        else EnforcementLevel.MANDATORY
    )


def resolve_environment(environ: Mapping[str, str]) -> tuple[str, str]:
    """Which environment the pack runs for, and where that came from.

    ``MLPLATFORM_ENVIRONMENT`` wins; else the last segment of ``PULUMI_STACK`` (``org/proj/dev``).
    The engine does not tell a Python policy pack its stack name, so with neither set the pack
    assumes ``prod``: a forgotten variable makes the checks stricter, never looser.
    """
    for var in ENV_VARS:
        value = environ.get(var, "").strip()
        if value:
            return value.rsplit("/", 1)[-1].lower(), var
    return "prod", "default (no MLPLATFORM_ENVIRONMENT or PULUMI_STACK set)"


# --------------------------------------------------------------------------------------------
# helpers


def _normalize_type(resource_type: str) -> str:
    """Fold pulumi-aws 6 ``...V2`` tokens onto their 7.x names (``bucketVersioningV2`` etc.)."""
    if not resource_type.startswith("aws:"):
        return resource_type
    head, _, cls = resource_type.rpartition(":")
    if cls.endswith("V2"):
        module = head.rsplit("/", 1)
        if len(module) == 2 and module[1].endswith("V2"):
            return f"{module[0]}/{module[1][:-2]}:{cls[:-2]}"
    return resource_type


def _get(obj: Any, *path: str | int, default: Any = None) -> Any:
    cur = obj
    for part in path:
        if isinstance(part, int):
            if not _is_list(cur) or part >= len(cur):
                return default
            cur = cur[part]
        else:
            if not isinstance(cur, Mapping) or part not in cur:
                return default
            cur = cur[part]
    return cur


def _is_list(value: Any) -> TypeGuard[Sequence[Any]]:
    """A JSON array: a list offline, a read-only sequence proxy under the engine."""
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes))


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if _is_list(value):
        return list(value)
    return [value]


def _load_json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


@functools.cache
def taggable_types() -> frozenset[str]:
    """AWS types that accept ``tags`` (generated from pulumi-aws by generate_taggable.py)."""
    doc = json.loads(_TAGGABLE_FILE.read_text(encoding="utf-8"))
    return frozenset(doc["types"])


def _tags_of(props: Mapping[str, Any]) -> dict[str, Any]:
    tags = props.get("tags")
    if isinstance(tags, Mapping):
        return dict(tags)
    if _is_list(tags):  # autoscaling groups: [{key, value, propagateAtLaunch}]
        return {str(t.get("key")): t.get("value") for t in tags if isinstance(t, Mapping)}
    return {}


# --------------------------------------------------------------------------------------------
# rules


def validate_required_tags(args: Args, report_violation: ReportViolation) -> None:
    """Every taggable AWS resource carries project, environment, owner and cost-center."""
    rtype = args.resource_type
    if not rtype.startswith("aws:"):
        return
    if rtype not in taggable_types() and "tags" not in args.props:
        return
    tags: dict[str, Any] = {}
    if args.provider is not None:
        # Providers receive nested config as JSON text (as the engine sends it) or as objects.
        default_tags = _load_json(args.provider.props.get("defaultTags")) or {}
        tags.update((default_tags.get("tags") if isinstance(default_tags, Mapping) else None) or {})
    tags.update(_tags_of(args.props))
    missing = [k for k in REQUIRED_TAGS if not str(tags.get(k) or "").strip()]
    if missing:
        report_violation(
            f"{rtype} '{args.name}' is missing required tags: {', '.join(missing)} "
            f"(required: {', '.join(REQUIRED_TAGS)}; provider defaultTags count)",
            None,
        )


_PUBLIC_ACLS = {"public-read", "public-read-write", "authenticated-read"}
_PAB_KEYS = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
_SSE_ALGORITHMS = {"aws:kms", "aws:kms:dsse", "AES256"}


def _statements(policy: Any) -> list[Mapping[str, Any]]:
    doc = _load_json(policy)
    return [s for s in _as_list(_get(doc, "Statement")) if isinstance(s, Mapping)]


def _denies_insecure_transport(policy: Any) -> bool:
    for st in _statements(policy):
        if st.get("Effect") != "Deny":
            continue
        cond = _get(st, "Condition", "Bool", "aws:SecureTransport")
        if str(cond).lower() == "false" or cond is False:
            return True
    return False


def _is_public_principal(principal: Any) -> bool:
    if principal == "*":
        return True
    if isinstance(principal, Mapping):
        return "*" in _as_list(principal.get("AWS"))
    return False


def validate_s3_hardening(args: Args, report_violation: ReportViolation) -> None:
    """S3 buckets are encrypted, versioned, never public and TLS-only (resource-level checks)."""
    rtype = _normalize_type(args.resource_type)
    props = args.props
    if rtype == "aws:s3/bucket:Bucket":
        if props.get("acl") in _PUBLIC_ACLS:
            report_violation(f"bucket '{args.name}' has public ACL {props.get('acl')!r}", None)
        if _get(props, "versioning", "enabled") is False:
            report_violation(f"bucket '{args.name}' disables versioning", None)
        if props.get("policy") and not _denies_insecure_transport(props.get("policy")):
            report_violation(
                f"bucket '{args.name}' policy lacks a Deny on aws:SecureTransport=false", None
            )
    elif rtype == "aws:s3/bucketVersioning:BucketVersioning":
        status = _get(props, "versioningConfiguration", "status")
        if status != "Enabled":
            report_violation(
                f"bucket versioning '{args.name}' has status {status!r}; must be 'Enabled'", None
            )
    elif rtype == SSE_CONFIG:
        algos = [
            _get(r, "applyServerSideEncryptionByDefault", "sseAlgorithm")
            for r in _as_list(props.get("rules"))
        ]
        if not any(a in _SSE_ALGORITHMS for a in algos):
            report_violation(
                f"bucket encryption '{args.name}' sets no default sseAlgorithm "
                f"(allowed: {', '.join(sorted(_SSE_ALGORITHMS))})",
                None,
            )
    elif rtype == "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock":
        off = [k for k in _PAB_KEYS if props.get(k) is not True]
        if off:
            report_violation(
                f"public access block '{args.name}' must set true: {', '.join(off)}", None
            )
    elif rtype == "aws:s3/bucketAcl:BucketAcl":
        if props.get("acl") in _PUBLIC_ACLS:
            report_violation(f"bucket ACL '{args.name}' is public ({props.get('acl')!r})", None)
    elif rtype == "aws:s3/bucketPolicy:BucketPolicy":
        policy = props.get("policy")
        if not _denies_insecure_transport(policy):
            report_violation(
                f"bucket policy '{args.name}' must Deny requests with aws:SecureTransport=false",
                None,
            )
        for st in _statements(policy):
            if (
                st.get("Effect") == "Allow"
                and _is_public_principal(st.get("Principal"))
                and not st.get("Condition")
            ):
                report_violation(
                    f"bucket policy '{args.name}' allows an anonymous principal ('*') "
                    "without a condition",
                    None,
                )


_S3_COMPANIONS = {
    "aws:s3/bucketVersioning:BucketVersioning": "versioning (BucketVersioning)",
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration": (
        "default encryption (BucketServerSideEncryptionConfiguration)"
    ),
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": (
        "public access block (BucketPublicAccessBlock)"
    ),
    "aws:s3/bucketPolicy:BucketPolicy": "TLS-only bucket policy (BucketPolicy)",
}


def validate_s3_companions(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    """Each bucket has versioning, encryption, a public access block and a TLS-only policy.

    A companion belongs to the bucket it depends on, so this works with unknown bucket names.
    """
    buckets = [
        r for r in args.resources if _normalize_type(r.resource_type) == "aws:s3/bucket:Bucket"
    ]
    for bucket in buckets:
        found: set[str] = set()
        for res in args.resources:
            rtype = _normalize_type(res.resource_type)
            if rtype in _S3_COMPANIONS and any(d.urn == bucket.urn for d in res.dependencies):
                found.add(rtype)
        # Inline (deprecated) settings on the bucket itself count too.
        if _get(bucket.props, "versioning", "enabled") is True:
            found.add("aws:s3/bucketVersioning:BucketVersioning")
        if _get(bucket.props, "serverSideEncryptionConfiguration"):
            found.add(
                "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
            )
        if _denies_insecure_transport(bucket.props.get("policy")):
            found.add("aws:s3/bucketPolicy:BucketPolicy")
        missing = [label for t, label in _S3_COMPANIONS.items() if t not in found]
        if missing:
            report_violation(f"bucket '{bucket.name}' has no {'; no '.join(missing)}", bucket.urn)


def validate_no_force_destroy(args: Args, report_violation: ReportViolation) -> None:
    """Prod resources never delete their data with them (force_destroy, force_delete...)."""
    props = args.props
    for key in ("forceDestroy", "forceDelete"):
        if props.get(key) is True:
            report_violation(f"'{args.name}' sets {key}=true, which is not allowed in prod", None)
    if (
        _normalize_type(args.resource_type)
        in (
            "aws:rds/instance:Instance",
            "aws:rds/cluster:Cluster",
        )
        and props.get("skipFinalSnapshot") is True
    ):
        report_violation(
            f"'{args.name}' sets skipFinalSnapshot=true, which is not allowed in prod", None
        )


STATEFUL_TYPES = frozenset(
    {
        "aws:s3/bucket:Bucket",
        "aws:rds/instance:Instance",
        "aws:rds/cluster:Cluster",
        "aws:kms/key:Key",
        "aws:efs/fileSystem:FileSystem",
        "aws:fsx/lustreFileSystem:LustreFileSystem",
        "aws:dynamodb/table:Table",
        "aws:ecr/repository:Repository",
    }
)


# The stack key that protects what a component creates; the others protect with environment.
PROTECT_KEYS = {
    "mlplatform:storage:ModelStore": "ml-platform:modelStore.protect",
    "mlplatform:registry:ModelRegistry": "ml-platform:modelRegistry.protect",
}


def protect_hint(urn: str) -> str:
    """What to change so the resource at ``urn`` is protected: the stack key, where one exists."""
    parts = urn.split("::")
    chain = parts[2].split("$") if len(parts) >= 4 else []
    for token in reversed(chain[:-1]):
        if token in PROTECT_KEYS:
            return f"set `{PROTECT_KEYS[token]}: true` in the stack file"
    return (
        "it is protected when `ml-platform:environment` is prod; a component that declares it "
        "unprotected there is a bug"
    )


def validate_stateful_protected(
    args: ResourceValidationArgs, report_violation: ReportViolation
) -> None:
    """Prod data stores carry ``protect=True`` so a bad change cannot delete them."""
    if _normalize_type(args.resource_type) in STATEFUL_TYPES and not args.opts.protect:
        report_violation(
            f"stateful {args.resource_type} '{args.name}' must be protected in prod "
            f"(protect=True): {protect_hint(args.urn)}",
            None,
        )


def validate_eks_cluster(args: Args, report_violation: ReportViolation) -> None:
    """EKS clusters have a private endpoint, no world-open public one, and KMS-encrypted secrets."""
    if args.resource_type != "aws:eks/cluster:Cluster":
        return
    vpc = args.props.get("vpcConfig") or {}
    if vpc.get("endpointPrivateAccess") is not True:
        report_violation(f"EKS cluster '{args.name}' must set endpointPrivateAccess=true", None)
    # The API defaults endpointPublicAccess to true and publicAccessCidrs to 0.0.0.0/0.
    if vpc.get("endpointPublicAccess", True) is not False:
        cidrs = _as_list(vpc.get("publicAccessCidrs")) or ["0.0.0.0/0"]
        if "0.0.0.0/0" in cidrs:
            report_violation(
                f"EKS cluster '{args.name}' has a public endpoint open to 0.0.0.0/0; "
                "disable it or set publicAccessCidrs",
                None,
            )
    configs = _as_list(args.props.get("encryptionConfig"))
    encrypted = any(
        "secrets" in _as_list(c.get("resources")) and _get(c, "provider", "keyArn")
        for c in configs
        if isinstance(c, Mapping)
    )
    if not encrypted:
        report_violation(
            f"EKS cluster '{args.name}' must encrypt secrets with a KMS key "
            "(encryptionConfig.resources=['secrets'], provider.keyArn)",
            None,
        )


def validate_imdsv2(args: Args, report_violation: ReportViolation) -> None:
    """Instances, launch templates, node groups and Karpenter node classes require IMDSv2."""
    rtype = args.resource_type
    props = args.props
    if rtype in ("aws:ec2/launchTemplate:LaunchTemplate", "aws:ec2/instance:Instance"):
        tokens = _get(props, "metadataOptions", "httpTokens")
        if tokens != "required":
            report_violation(
                f"{rtype.rsplit(':', 1)[-1]} '{args.name}' must set "
                f"metadataOptions.httpTokens='required' (got {tokens!r})",
                None,
            )
    elif rtype == "aws:eks/nodeGroup:NodeGroup":
        if not props.get("launchTemplate"):
            report_violation(
                f"node group '{args.name}' has no launch template, so IMDSv2 is not enforced; "
                "attach one with metadataOptions.httpTokens='required'",
                None,
            )
    elif rtype.startswith("kubernetes:karpenter.k8s.aws/") and rtype.endswith(":EC2NodeClass"):
        # Karpenter defaults to httpTokens=required; only an explicit downgrade is a violation.
        tokens = _get(props, "spec", "metadataOptions", "httpTokens", default="required")
        if tokens != "required":
            report_violation(
                f"EC2NodeClass '{args.name}' sets metadataOptions.httpTokens={tokens!r}", None
            )


_GPU_FAMILY = re.compile(r"^(g\d|p\d|gr\d)")


def _is_gpu_nodepool(spec: Mapping[str, Any]) -> bool:
    tmpl = _get(spec, "template", default={}) or {}
    taints = _as_list(_get(tmpl, "spec", "taints"))
    if any(_get(t, "key") == "nvidia.com/gpu" for t in taints):
        return True
    if "mlplatform.io/accelerator" in (_get(tmpl, "metadata", "labels", default={}) or {}):
        return True
    for req in _as_list(_get(tmpl, "spec", "requirements")):
        key = _get(req, "key", default="")
        values = [str(v) for v in _as_list(_get(req, "values"))]
        op = _get(req, "operator", default="In")
        if key in ("karpenter.k8s.aws/instance-gpu-count", "karpenter.k8s.aws/instance-gpu-name"):
            # DoesNotExist / NotIn / Lt 1 are how CPU pools exclude GPUs.
            if op == "Exists" or op == "Gt" or (op == "In" and any(v != "0" for v in values)):
                return True
            continue
        if (
            op == "In"
            and key in ("karpenter.k8s.aws/instance-family", "node.kubernetes.io/instance-type")
            and any(_GPU_FAMILY.match(v) for v in values)
        ):
            return True
    return False


def validate_gpu_pool_limits(args: Args, report_violation: ReportViolation) -> None:
    """GPU node pools cap how many GPUs they may launch."""
    rtype = args.resource_type
    props = args.props
    if rtype.startswith("kubernetes:karpenter.sh/") and rtype.endswith(":NodePool"):
        spec = props.get("spec") or {}
        if _is_gpu_nodepool(spec) and not _get(spec, "limits", "nvidia.com/gpu"):
            report_violation(
                f"GPU NodePool '{args.name}' must set spec.limits['nvidia.com/gpu']", None
            )
    elif rtype == "aws:eks/nodeGroup:NodeGroup":
        types = [str(t) for t in _as_list(props.get("instanceTypes"))]
        gpu = "GPU" in str(props.get("amiType") or "").upper() or any(
            _GPU_FAMILY.match(t) for t in types
        )
        if gpu and not _get(props, "scalingConfig", "maxSize"):
            report_violation(f"GPU node group '{args.name}' must set scalingConfig.maxSize", None)


def _reserved_only(spec: Mapping[str, Any]) -> bool:
    for req in _as_list(_get(spec, "template", "spec", "requirements")):
        if _get(req, "key") == "karpenter.sh/capacity-type" and _get(req, "operator") == "In":
            return [str(v) for v in _as_list(_get(req, "values"))] == ["reserved"]
    return False


def _gpu_quota(queue: Mapping[str, Any], flavors: set[str]) -> bool:
    for group in _as_list(_get(queue, "spec", "resourceGroups")):
        for flavor in _as_list(_get(group, "flavors")):
            if _get(flavor, "name") not in flavors:
                continue
            for res in _as_list(_get(flavor, "resources")):
                quota = str(_get(res, "nominalQuota", default="0"))
                if _get(res, "name") == "nvidia.com/gpu" and quota not in ("0", ""):
                    return True
    return False


def validate_reserved_pools_queued(
    args: StackValidationArgs, report_violation: ReportViolation
) -> None:
    """A NodePool that launches reserved capacity only has GPU quota in some Kueue ClusterQueue.

    Nothing else is launched when its reservations are full: pods that bypass Kueue wait
    unscheduled (a distributed job holding half its gang), while Kueue's quota would queue them.
    """

    def kind(res: Any, name: str) -> bool:
        return str(res.resource_type).endswith(f":{name}")

    flavors_by_pool: dict[str, set[str]] = {}
    for res in args.resources:
        if kind(res, "ResourceFlavor") and "kueue.x-k8s.io" in res.resource_type:
            pool = _get(res.props, "spec", "nodeLabels", "mlplatform.io/pool")
            name = _get(res.props, "metadata", "name")
            if pool and name:
                flavors_by_pool.setdefault(str(pool), set()).add(str(name))
    queues = [
        r.props
        for r in args.resources
        if kind(r, "ClusterQueue") and "kueue.x-k8s.io" in r.resource_type
    ]
    for res in args.resources:
        if not (res.resource_type.startswith("kubernetes:karpenter.sh/") and kind(res, "NodePool")):
            continue
        spec = res.props.get("spec") or {}
        if not _reserved_only(spec):
            continue
        pool = _get(spec, "template", "metadata", "labels", "mlplatform.io/pool") or _get(
            res.props, "metadata", "name"
        )
        flavors = flavors_by_pool.get(str(pool), set())
        if not any(_gpu_quota(q, flavors) for q in queues):
            report_violation(
                f"NodePool '{pool}' launches reserved capacity only, but no Kueue ClusterQueue "
                "has GPU quota on it: when its reservations are full, pods that bypass the queue "
                "wait unscheduled instead of queueing; give a team a quota on the pool",
                res.urn,
            )


def validate_no_placement_group_on_reservations(
    args: Args, report_violation: ReportViolation
) -> None:
    """A node class that uses reservations forces no placement group: reserved instances are
    not all in one spine, and a cluster placement group then fails with insufficient capacity."""
    if not (
        args.resource_type.startswith("kubernetes:karpenter.k8s.aws/")
        and args.resource_type.endswith(":EC2NodeClass")
    ):
        return
    spec = args.props.get("spec") or {}
    if _get(spec, "capacityReservationSelectorTerms") and _get(spec, "placementGroupSelector"):
        report_violation(
            f"EC2NodeClass '{args.name}' selects capacity reservations and forces a placement "
            "group: launches into the reservations fail with insufficient capacity",
            None,
        )


@dataclass(frozen=True)
class _Container:
    path: str
    container: Mapping[str, Any]
    pod: Mapping[str, Any]


def _containers(props: Mapping[str, Any]) -> Iterator[_Container]:
    """Every container of every pod spec in a Kubernetes object (built-in kinds and CRs)."""

    def walk(node: Any, path: str) -> Iterator[_Container]:
        if isinstance(node, Mapping):
            conts = node.get("containers")
            if _is_list(conts) and any(isinstance(c, Mapping) for c in conts):
                for key in ("initContainers", "containers", "ephemeralContainers"):
                    for i, c in enumerate(_as_list(node.get(key))):
                        if isinstance(c, Mapping):
                            yield _Container(f"{path}{key}[{i}]", c, node)
                return
            for k, v in node.items():
                yield from walk(v, f"{path}{k}.")
        elif _is_list(node):
            for i, v in enumerate(node):
                yield from walk(v, f"{path}[{i}].")

    yield from walk(props.get("spec"), "spec.")


def _is_workload(rtype: str) -> bool:
    return rtype.startswith("kubernetes:") and not rtype.startswith("kubernetes:helm.sh/")


def _runs_as_non_root(c: _Container) -> bool:
    csc = c.container.get("securityContext") or {}
    psc = c.pod.get("securityContext") or {}
    user = csc.get("runAsUser", psc.get("runAsUser"))
    if user == 0:
        return False
    non_root = csc.get("runAsNonRoot", psc.get("runAsNonRoot"))
    return non_root is True or (isinstance(user, int) and user > 0)


def validate_containers(args: Args, report_violation: ReportViolation) -> None:
    """Containers run as non-root and set cpu/memory requests and a memory limit.

    CPU limits are optional on purpose: they throttle bursty ML pods without protecting the node.
    """
    if not _is_workload(args.resource_type):
        return
    for c in _containers(args.props):
        name = c.container.get("name", c.path)
        if not _runs_as_non_root(c):
            report_violation(
                f"container '{name}' in '{args.name}' must run as non-root "
                "(securityContext.runAsNonRoot=true or a non-zero runAsUser)",
                None,
            )
        requests = _get(c.container, "resources", "requests", default={}) or {}
        limits = _get(c.container, "resources", "limits", default={}) or {}
        missing = [f"requests.{k}" for k in ("cpu", "memory") if k not in requests]
        missing += [f"limits.{k}" for k in ("memory",) if k not in limits]
        if missing:
            report_violation(
                f"container '{name}' in '{args.name}' must set resources {', '.join(missing)}",
                None,
            )


def image_problem(image: Any) -> str | None:
    """Why an image reference is not pinned, or None when it is."""
    if not isinstance(image, str) or not image.strip():
        return "has no image"
    if "@sha256:" in image:
        return None
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return f"image {image!r} has no tag"
    if last.rsplit(":", 1)[-1] == "latest":
        return f"image {image!r} uses :latest"
    return None


def validate_image_tags(args: Args, report_violation: ReportViolation) -> None:
    """Images are pinned to a tag other than latest, or to a digest."""
    if not _is_workload(args.resource_type):
        return
    for c in _containers(args.props):
        problem = image_problem(c.container.get("image"))
        if problem:
            name = c.container.get("name", c.path)
            report_violation(f"container '{name}' in '{args.name}' {problem}", None)


_IAM_POLICY_TYPES = frozenset(
    {
        "aws:iam/policy:Policy",
        "aws:iam/rolePolicy:RolePolicy",
        "aws:iam/userPolicy:UserPolicy",
        "aws:iam/groupPolicy:GroupPolicy",
    }
)
_ADMIN_ARNS = ("arn:aws:iam::aws:policy/AdministratorAccess",)


def _star(value: Any) -> bool:
    return any(v == "*" or v == "*:*" for v in _as_list(value))


def _wildcard_statements(policy: Any) -> list[Mapping[str, Any]]:
    return [
        st
        for st in _statements(policy)
        if st.get("Effect") == "Allow" and _star(st.get("Action")) and _star(st.get("Resource"))
    ]


def validate_iam_no_wildcard(args: Args, report_violation: ReportViolation) -> None:
    """No IAM statement allows every action on every resource."""
    rtype = args.resource_type
    props = args.props
    docs: list[tuple[str, Any]] = []
    if rtype in _IAM_POLICY_TYPES:
        docs.append(("policy", props.get("policy")))
    elif rtype == "aws:iam/role:Role":
        for i, p in enumerate(_as_list(props.get("inlinePolicies"))):
            docs.append((f"inlinePolicies[{i}]", _get(p, "policy")))
    elif rtype.endswith("PolicyAttachment") and rtype.startswith("aws:iam/"):
        arn = str(props.get("policyArn") or "")
        if any(fnmatch.fnmatch(arn, a) for a in _ADMIN_ARNS):
            report_violation(f"'{args.name}' attaches {arn}", None)
        return
    for where, doc in docs:
        if _wildcard_statements(doc):
            report_violation(
                f"'{args.name}' {where} allows Action '*' on Resource '*'; scope it down", None
            )


_LB_WORDS = re.compile(r"(^|[^a-z])(lb|alb|nlb|elb|load[- _]?balancer|ingress)([^a-z]|$)")
_OPEN = ("0.0.0.0/0", "::/0")
_LB_PORTS = frozenset({80, 443})


def _is_open(cidr: Any) -> bool:
    try:
        return ipaddress.ip_network(str(cidr), strict=False).prefixlen == 0
    except ValueError:
        return cidr in _OPEN


def _marks_load_balancer(args: ResourceValidationArgs) -> bool:
    props = args.props
    tags = _tags_of(props)
    if str(tags.get("mlplatform.io/role", "")).lower() == "load-balancer":
        return True
    text = " ".join(
        str(v)
        for v in (args.name, props.get("name"), props.get("namePrefix"), props.get("description"))
        if v
    ).lower()
    return bool(_LB_WORDS.search(text))


def _lb_ports_only(from_port: Any, to_port: Any, protocol: Any) -> bool:
    if str(protocol) in ("-1", "all"):
        return False
    try:
        lo, hi = int(from_port), int(to_port)
    except (TypeError, ValueError):
        return False
    return lo == hi and lo in _LB_PORTS


def validate_no_open_ingress(args: Args, report_violation: ReportViolation) -> None:
    """No ingress from 0.0.0.0/0 or ::/0, except ports 80/443 on a load balancer's group."""
    rtype = args.resource_type
    props = args.props
    rules: list[tuple[str, Any, Any, Any, list[Any]]] = []
    if rtype == "aws:ec2/securityGroup:SecurityGroup":
        for i, r in enumerate(_as_list(props.get("ingress"))):
            cidrs = _as_list(_get(r, "cidrBlocks")) + _as_list(_get(r, "ipv6CidrBlocks"))
            rules.append(
                (
                    f"ingress[{i}]",
                    _get(r, "fromPort"),
                    _get(r, "toPort"),
                    _get(r, "protocol"),
                    cidrs,
                )
            )
    elif rtype == "aws:ec2/securityGroupRule:SecurityGroupRule":
        if props.get("type") == "ingress":
            cidrs = _as_list(props.get("cidrBlocks")) + _as_list(props.get("ipv6CidrBlocks"))
            rules.append(
                ("rule", props.get("fromPort"), props.get("toPort"), props.get("protocol"), cidrs)
            )
    elif rtype == "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule":
        cidrs = [c for c in (props.get("cidrIpv4"), props.get("cidrIpv6")) if c]
        rules.append(
            ("rule", props.get("fromPort"), props.get("toPort"), props.get("ipProtocol"), cidrs)
        )
    for where, lo, hi, proto, cidrs in rules:
        open_cidrs = [c for c in cidrs if _is_open(c)]
        if not open_cidrs:
            continue
        if _lb_ports_only(lo, hi, proto) and _marks_load_balancer(args):
            continue
        report_violation(
            f"'{args.name}' {where} allows {', '.join(map(str, open_cidrs))} on ports "
            f"{lo}-{hi}/{proto}; only 80/443 on a load balancer's security group may be open",
            None,
        )


_ROUTER_TYPES = ("aws:ec2/networkInterface:NetworkInterface", "aws:ec2/instance:Instance")


def validate_no_nat_instance(args: Args, report_violation: ReportViolation) -> None:
    """Prod egress goes through NAT gateways: nothing turns off source/destination checks.

    An interface or instance with the check off forwards other hosts' traffic: a NAT instance
    (components/nat_instance.py) or another self-managed router, one instance that every private
    subnet's egress depends on.
    """
    if args.resource_type in _ROUTER_TYPES and args.props.get("sourceDestCheck") is False:
        report_violation(
            f"'{args.name}' turns off the source/destination check, as a NAT instance does: a "
            "single instance would carry prod's egress; use NAT gateways (network.nat: "
            "gateway-per-az)",
            None,
        )


# --------------------------------------------------------------------------------------------
# the pack


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    validate: Callable[..., None]
    prod_only: bool = False
    stack: bool = False


RULES: tuple[Rule, ...] = (
    Rule(
        "required-tags",
        "Taggable AWS resources carry project, environment, owner and cost-center tags.",
        validate_required_tags,
    ),
    Rule(
        "s3-hardening",
        "S3 buckets are encrypted, versioned, never public and TLS-only.",
        validate_s3_hardening,
    ),
    Rule(
        "s3-bucket-companions",
        "Each S3 bucket has versioning, default encryption, a public access block and a "
        "TLS-only bucket policy.",
        validate_s3_companions,
        stack=True,
    ),
    Rule(
        "no-force-destroy-in-prod",
        "Prod resources do not set forceDestroy/forceDelete/skipFinalSnapshot.",
        validate_no_force_destroy,
        prod_only=True,
    ),
    Rule(
        "stateful-protected-in-prod",
        "Prod data stores (buckets, databases, KMS keys, file systems, registries) are protected.",
        validate_stateful_protected,
        prod_only=True,
    ),
    Rule(
        "no-nat-instance-in-prod",
        "Prod has no NAT instance (or other interface with the source/destination check off).",
        validate_no_nat_instance,
        prod_only=True,
    ),
    Rule(
        "eks-private-encrypted",
        "EKS clusters have a private endpoint and KMS-encrypted secrets.",
        validate_eks_cluster,
    ),
    Rule(
        "imdsv2-required",
        "EC2 instances, launch templates, node groups and node classes require IMDSv2.",
        validate_imdsv2,
    ),
    Rule("gpu-pool-limits", "GPU node pools set GPU limits.", validate_gpu_pool_limits),
    Rule(
        "reserved-pools-queued",
        "Node pools that launch reserved capacity only have GPU quota in a Kueue ClusterQueue.",
        validate_reserved_pools_queued,
        stack=True,
    ),
    Rule(
        "no-placement-group-on-reservations",
        "Node classes that use capacity reservations force no placement group.",
        validate_no_placement_group_on_reservations,
    ),
    Rule(
        "containers-nonroot-resources",
        "Containers run as non-root with cpu/memory requests and a memory limit.",
        validate_containers,
    ),
    Rule(
        "no-latest-images",
        "Container images are pinned to a tag other than latest, or a digest.",
        validate_image_tags,
    ),
    Rule(
        "iam-no-wildcard-admin",
        "No IAM statement allows Action '*' on Resource '*'.",
        validate_iam_no_wildcard,
    ),
    Rule(
        "no-open-ingress",
        "No 0.0.0.0/0 or ::/0 ingress except 80/443 on load balancers.",
        validate_no_open_ingress,
    ),
)


def rules_for(environment: str) -> list[Rule]:
    prod_like = enforcement_for(environment) is EnforcementLevel.MANDATORY
    return [r for r in RULES if prod_like or not r.prod_only]


def build_policies(environment: str) -> list[Policy]:
    """The pack's policies for one environment, each at that environment's enforcement level."""
    level = enforcement_for(environment)
    policies: list[Policy] = []
    for rule in rules_for(environment):
        if rule.stack:
            policies.append(
                StackValidationPolicy(
                    name=rule.name,
                    description=rule.description,
                    validate=rule.validate,
                    enforcement_level=level,
                )
            )
        else:
            policies.append(
                ResourceValidationPolicy(
                    name=rule.name,
                    description=rule.description,
                    validate=rule.validate,
                    enforcement_level=level,
                )
            )
    return policies
