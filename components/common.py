"""Shared building blocks for components: typed args, issue collection, tags and pod hardening.

Every component takes a typed args model (a subclass of :class:`ArgsModel`). The same models are
the sections of the platform's stack config, so a default has exactly one owner: the field here.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

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


def merge_tags(*layers: Mapping[str, str] | None) -> dict[str, str]:
    """Merge tag maps from least to most specific: a later layer wins on the same key."""
    merged: dict[str, str] = {}
    for layer in layers:
        if layer:
            merged.update(layer)
    return merged


# Pod hardening shared by every workload the platform declares (Pod Security "restricted").
RESTRICTED_NAMESPACE_LABELS = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
    "pod-security.kubernetes.io/audit": "restricted",
    "pod-security.kubernetes.io/warn": "restricted",
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


GPU_RESOURCE = "nvidia.com/gpu"
GPU_TAINT = {"key": GPU_RESOURCE, "value": "true", "effect": "NoSchedule"}
GPU_TOLERATION = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}
POOL_LABEL = "mlplatform.io/pool"
ACCELERATOR_LABEL = "mlplatform.io/accelerator"
DO_NOT_DISRUPT = {"karpenter.sh/do-not-disrupt": "true"}


@dataclass(frozen=True)
class KubeTarget:
    """Where Kubernetes objects go, and what they must wait for.

    On AWS, ``depends_on`` holds the EKS cluster and its system node group, so every object is
    created after them and destroyed before them. On the local stack it is empty.
    """

    provider: Any  # pulumi_kubernetes.Provider (typed loosely to keep this module import-light)
    depends_on: tuple[Any, ...] = ()
    cluster_name: Any = None  # pulumi.Input[str] on AWS (for Pod Identity), None locally
    on_aws: bool = True


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
