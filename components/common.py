"""Shared building blocks for components: typed args, issue collection, format checks (DNS labels,
quantities, image references), tags and pod hardening.

Every component takes a typed args model (a subclass of :class:`ArgsModel`). The same models are
the sections of the platform's stack config, so a default has exactly one owner: the field here.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

if TYPE_CHECKING:
    import pulumi

Path = tuple[str | int, ...]


class Environment(StrEnum):
    """Environment class of a stack: it decides protection, HA and public exposure defaults."""

    DEV = "dev"
    PROD = "prod"


@dataclass(frozen=True)
class Issue:
    """One problem with an input, located by its property path (camelCase keys, list indexes)."""

    path: Path
    message: str

    def at(self, *prefix: str | int) -> Issue:
        return Issue((*prefix, *self.path), self.message)


def format_path(path: Path, root: str = "") -> str:
    out = root
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif out and not out.endswith(":"):
            out += f".{part}"
        else:
            out += part
    return out


class InvalidArgsError(ValueError):
    """Raised by a component whose args fail their semantic checks."""

    def __init__(self, component: str, issues: Sequence[Issue]):
        self.issues = list(issues)
        lines = "\n".join(f"  - {format_path(i.path)}: {i.message}" for i in self.issues)
        super().__init__(f"invalid {component} args:\n{lines}")


class ArgsModel(BaseModel):
    """Base for typed inputs: unknown keys are errors, keys are camelCase as in stack config."""

    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        frozen=True,
        validate_default=True,
        use_enum_values=False,
    )

    def issues(self) -> list[Issue]:
        """Semantic checks across fields. Override in subclasses; nested models are visited."""
        found: list[Issue] = []
        for field_name, field in type(self).model_fields.items():
            key = field.alias or field_name
            value = getattr(self, field_name)
            for idx, item in _children(value):
                prefix: Path = (key,) if idx is None else (key, idx)
                found.extend(i.at(*prefix) for i in item.issues())
        return found

    def raise_if_invalid(self, component: str) -> None:
        found = self.issues()
        if found:
            raise InvalidArgsError(component, found)


def _children(value: Any) -> Iterable[tuple[int | str | None, ArgsModel]]:
    if isinstance(value, ArgsModel):
        yield None, value
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            if isinstance(item, ArgsModel):
                yield i, item
    elif isinstance(value, Mapping):
        for k, item in value.items():
            if isinstance(item, ArgsModel):
                yield k, item


def check_min_max(
    min_key: str, min_value: int | None, max_key: str, max_value: int | None
) -> list[Issue]:
    if min_value is not None and max_value is not None and min_value > max_value:
        return [Issue((min_key,), f"must be <= {max_key} ({max_value}), got {min_value}")]
    return []


def check_cidr(key: str, value: str) -> list[Issue]:
    try:
        ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        return [Issue((key,), f"invalid CIDR {value!r}: {exc}")]
    return []


# --- Shared format checks. Each takes the key (a name or a path) and returns its Issues. ---------
# Whole-string matches (fullmatch or \Z): "$" would accept a trailing newline.

# DNS-1123 label: most Kubernetes object names (namespaces, service accounts, queues).
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z")
# DNS-1035 label: the stricter rule for names that must start with a letter (Services).
DNS_1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?\Z")


def _as_path(key: str | Path) -> Path:
    return (key,) if isinstance(key, str) else tuple(key)


def check_dns_label(
    path: str | Path, value: str | None, *, leading_letter: bool = False
) -> list[Issue]:
    """A DNS label (``leading_letter``: one that starts with a letter, DNS-1035); None is unset."""
    if value is None:
        return []
    pattern, name, first = (
        (DNS_1035_LABEL, "DNS-1035", "a letter")
        if leading_letter
        else (DNS_LABEL, "DNS-1123", "a letter or digit")
    )
    if pattern.fullmatch(value):
        return []
    return [
        Issue(
            _as_path(path),
            f"must be a {name} label (lowercase letters, digits and '-', starting with {first}, "
            f"ending with a letter or digit, at most 63 characters), got {value!r}",
        )
    ]


# A non-negative Kubernetes quantity in the plain forms the platform accepts ("500m", "2", "4Gi").
_QUANTITY = re.compile(r"(?P<num>[0-9]+(\.[0-9]+)?)(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)?")
_QUANTITY_FACTOR: dict[str | None, Decimal] = {
    None: Decimal(1),
    "m": Decimal("0.001"),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15,
    "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
}


def parse_quantity(value: str | int) -> Decimal | None:
    """A non-negative Kubernetes quantity ("500m", "64Gi", "8") as a number; None if invalid."""
    match = _QUANTITY.fullmatch(str(value))
    if not match:
        return None
    return Decimal(match["num"]) * _QUANTITY_FACTOR[match["suffix"]]


def check_quantity(
    path: str | Path, value: str | None, *, units: Sequence[str] | None = None
) -> list[Issue]:
    """A Kubernetes quantity; None is unset.

    ``units`` narrows it to a whole number with one of those suffixes (volume sizes: Mi, Gi, Ti).
    """
    if value is None:
        return []
    if units is None:
        if parse_quantity(value) is not None:
            return []
        return [
            Issue(
                _as_path(path),
                "must be a non-negative Kubernetes quantity such as 8, 500m or 64Gi, "
                f"got {value!r}",
            )
        ]
    match = re.fullmatch(r"[0-9]+([A-Za-z]*)", value)
    if match and match[1] in units:
        return []
    allowed = " or ".join(units)
    return [
        Issue(_as_path(path), f"must be a whole number of {allowed} such as 20Gi, got {value!r}")
    ]


# Image references, as the distribution reference grammar has them:
# [registry[:port]/]path/components[:tag][@sha256:digest]
_REGISTRY_PART = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_IMAGE_REGISTRY = re.compile(rf"{_REGISTRY_PART}(?:\.{_REGISTRY_PART})*(?::[0-9]{{1,5}})?")
_IMAGE_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_IMAGE_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_IMAGE_DIGEST = re.compile(r"sha256:[a-f0-9]{64}")


def check_image(path: str | Path, image: str) -> list[Issue]:
    """A well-formed image reference pinned by a tag other than ``latest``, or by a digest.

    A registry port is not a tag: ``registry:5000/app`` is untagged.
    """
    rest, at, digest = image.partition("@")
    head, slash, last = rest.rpartition("/")
    repo, colon, tag = last.partition(":")
    parts = f"{head}{slash}{repo}".split("/")
    registry_ok = True
    # As in Docker: the first part is a registry if it has a dot or a port, or is localhost.
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        registry_ok = bool(_IMAGE_REGISTRY.fullmatch(parts[0]))
        parts = parts[1:]
    problems: list[str] = []
    if not registry_ok or not all(_IMAGE_COMPONENT.fullmatch(p) for p in parts):
        problems.append(
            "must be an image reference like registry.example.com/team/app:1.0 "
            "(lowercase path parts)"
        )
    if at and not _IMAGE_DIGEST.fullmatch(digest):
        problems.append("has an invalid digest (expected sha256: and 64 lowercase hex digits)")
    if colon and not _IMAGE_TAG.fullmatch(tag):
        problems.append("has an invalid tag (letters, digits, '_', '.', '-', at most 128)")
    if not colon and not at:
        problems.append("must be pinned to a tag or a digest (untagged means :latest)")
    elif tag == "latest" and not at:
        problems.append("must be pinned to a version tag or a digest, not the mutable :latest")
    return [Issue(_as_path(path), f"{p}, got {image!r}") for p in problems]


# One release of a Helm chart: X.Y.Z, a pre-release suffix allowed. Helm takes the version as a
# semver constraint, so anything looser ("1.2", "^1.2.0") may resolve to a newer release.
_CHART_VERSION = re.compile(r"\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?")


def check_chart_version(path: str | Path, version: str) -> list[Issue]:
    if _CHART_VERSION.fullmatch(version):
        return []
    return [Issue(_as_path(path), f"must be an exact version X.Y.Z, got {version!r}")]


def merge_tags(*layers: Mapping[str, str] | None) -> dict[str, str]:
    """Merge tag maps from least to most specific: a later layer wins on the same key."""
    merged: dict[str, str] = {}
    for layer in layers:
        if layer:
            merged.update(layer)
    return merged


# --- IAM trust policies: the one implementation every role uses. ----------------------------

POD_IDENTITY_PRINCIPAL = "pods.eks.amazonaws.com"

# Managed policies every EKS node role needs (resource-name suffix, policy name). Karpenter's
# node role adds SSM on top.
NODE_MANAGED_POLICIES: tuple[tuple[str, str], ...] = (
    ("worker", "AmazonEKSWorkerNodePolicy"),
    ("cni", "AmazonEKS_CNI_Policy"),
    ("ecr", "AmazonEC2ContainerRegistryPullOnly"),
)


def managed_policy(name: str) -> str:
    """The ARN of an AWS managed IAM policy (``service-role/...`` paths included)."""
    return f"arn:aws:iam::aws:policy/{name}"


def cluster_arn(partition: str, region: str, account_id: str, cluster_name: str) -> str:
    return f"arn:{partition}:eks:{region}:{account_id}:cluster/{cluster_name}"


def pod_identity_trust_policy(*, account_id: str, cluster_arn: str) -> dict[str, Any]:
    """Trust policy for a role assumed through EKS Pod Identity from one cluster only."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "EksPodIdentity",
                "Effect": "Allow",
                "Principal": {"Service": POD_IDENTITY_PRINCIPAL},
                # TagSession: Pod Identity attaches namespace/service-account session tags.
                "Action": ["sts:AssumeRole", "sts:TagSession"],
                # Confused-deputy guard: only this account's cluster may hand the role out.
                "Condition": {
                    "StringEquals": {"aws:SourceAccount": account_id},
                    "ArnEquals": {"aws:SourceArn": cluster_arn},
                },
            }
        ],
    }


def pod_identity_trust_json(
    *,
    partition: pulumi.Input[str],
    region: pulumi.Input[str],
    account_id: pulumi.Input[str],
    cluster_name: pulumi.Input[str],
) -> pulumi.Output[str]:
    """:func:`pod_identity_trust_policy` as a JSON ``Output[str]``, from Inputs (Outputs allowed).

    The document is built inside ``apply`` so the condition values are the resolved strings.
    """
    import pulumi

    def build(a: list[str]) -> str:
        part, reg, account, name = a
        doc = pod_identity_trust_policy(
            account_id=account, cluster_arn=cluster_arn(part, reg, account, name)
        )
        return json.dumps(doc, sort_keys=True)

    return pulumi.Output.all(partition, region, account_id, cluster_name).apply(build)


def service_trust_policy(
    service: str, *, tag_session: bool = False, source_account: str | None = None
) -> dict[str, Any]:
    """Trust policy for an AWS service principal.

    ``source_account`` adds the confused-deputy guard; pass it only for services that set
    ``aws:SourceAccount`` when they assume the role (vpc-flow-logs does; ec2 and eks do not,
    and a condition on a key the service never sends would deny it).
    """
    statement: dict[str, Any] = {
        "Effect": "Allow",
        "Principal": {"Service": service},
        "Action": ["sts:AssumeRole", "sts:TagSession"] if tag_session else "sts:AssumeRole",
    }
    if source_account is not None:
        statement["Condition"] = {"StringEquals": {"aws:SourceAccount": source_account}}
    return {"Version": "2012-10-17", "Statement": [statement]}


# Pod hardening shared by every workload the platform declares (Pod Security "restricted").
RESTRICTED_NAMESPACE_LABELS = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
    "pod-security.kubernetes.io/audit": "restricted",
    "pod-security.kubernetes.io/warn": "restricted",
}


def ports_only_network_policy(name: str, namespace: str, ports: Iterable[int]) -> dict[str, Any]:
    """A controller namespace's NetworkPolicy: its pods admit TCP on ``ports`` only (a webhook
    the API server calls, a metrics port Prometheus scrapes). API server addresses are not known
    in advance, so the ports are the only filter."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "podSelector": {},
            "policyTypes": ["Ingress"],
            "ingress": [{"ports": [{"protocol": "TCP", "port": port} for port in ports]}],
        },
    }


def pod_security_context(uid: int = 10001, fs_group: int | None = 10001) -> dict[str, Any]:
    ctx: dict[str, Any] = {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if fs_group is not None:
        ctx["fsGroup"] = fs_group
    return ctx


def container_security_context(uid: int = 10001, read_only_root: bool = True) -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": read_only_root,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


# Workloads state the CPU architectures their images are built for (see the README's
# "Where workloads run"): a pod never lands on a node its image cannot execute on.
ARCH_LABEL = "kubernetes.io/arch"
ARCHITECTURES = ("amd64", "arm64")


def arch_selector(architectures: Iterable[str]) -> dict[str, str]:
    """The nodeSelector that keeps a pod on nodes its image runs on: none for a multi-arch
    image (every node qualifies), the one architecture otherwise."""
    archs = sorted(set(architectures))
    if not archs:
        raise ValueError("an image runs on at least one architecture")
    if set(archs) >= set(ARCHITECTURES):
        return {}
    if len(archs) > 1:
        raise ValueError(f"unknown architectures {archs}; known: {list(ARCHITECTURES)}")
    return {ARCH_LABEL: archs[0]}


GPU_RESOURCE = "nvidia.com/gpu"
# EFA devices (the EFA device plugin): Karpenter attaches EFA interfaces only to nodes launched
# for pods that request them.
EFA_RESOURCE = "vpc.amazonaws.com/efa"
GPU_TAINT = {"key": GPU_RESOURCE, "value": "true", "effect": "NoSchedule"}
GPU_TOLERATION = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}
POOL_LABEL = "mlplatform.io/pool"
ACCELERATOR_LABEL = "mlplatform.io/accelerator"
# On a namespace: the team that owns it (Kueue ClusterQueue); cost rules sum spend by it.
TEAM_LABEL = "mlplatform.io/team"
DO_NOT_DISRUPT = {"karpenter.sh/do-not-disrupt": "true"}


@dataclass(frozen=True)
class KubeTarget:
    """Where Kubernetes objects go, and what they must wait for.

    On AWS, ``depends_on`` holds the EKS cluster, its system node group, the admin access entries
    and the default StorageClass, so every object is created after them and destroyed before
    them. On the local stack it is empty.
    """

    provider: Any  # pulumi_kubernetes.Provider (typed loosely to keep this module import-light)
    depends_on: tuple[Any, ...] = ()
    cluster_name: Any = None  # pulumi.Input[str] on AWS (for Pod Identity), None locally
    on_aws: bool = True
    # The StorageClass claims name (the cluster's default); None: the cluster's own default.
    storage_class: str | None = None
    # Whether the cluster's CNI enforces NetworkPolicy: components declare policies only then,
    # so a policy in the plan is never a claim without effect.
    network_policy: bool = True


@dataclass(frozen=True)
class StorageBackend:
    """Where models and checkpoints live: S3 on AWS, MinIO on the local stack."""

    kind: str  # "s3" | "minio"
    bucket: Any  # pulumi.Input[str]
    region: str = ""
    endpoint_url: Any = None  # pulumi.Input[str] for MinIO; None for S3
    credentials_secret: str | None = None  # k8s Secret name with MinIO keys (local only)

    def project_prefix(self, project: str) -> str:
        return f"projects/{project}/"

    def uri(self, project: str, *parts: str) -> Any:
        import pulumi

        tail = "/".join(p.strip("/") for p in parts if p)
        return pulumi.Output.concat("s3://", self.bucket, "/", self.project_prefix(project), tail)
