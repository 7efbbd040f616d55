"""Where the always-on pods of a plan land: which nodes they may use, and how many nodes they fill.

A small model of the scheduler, enough to price idle capacity: node selectors, required node
affinity, taints and tolerations, and requests packed first-fit-decreasing. Pods come from the
plan's manifests and from Helm values (each ``resources.requests`` block, placed by the nearest
``nodeSelector``/``tolerations``/``affinity`` at or above it).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from mlplatform.cost.catalogue import (
    ACCELERATOR_LABEL,
    GPU_RESOURCE,
    dig,
    family,
    gib,
    num,
    parse_quantity,
)

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet")
_BLOCKING_EFFECTS = ("NoSchedule", "NoExecute")
# Labels Karpenter can satisfy by choosing an instance type, with each type's value.
INSTANCE_LABELS = (
    "node.kubernetes.io/instance-type",
    "kubernetes.io/arch",
    "kubernetes.io/os",
    "karpenter.k8s.aws/instance-family",
    "karpenter.k8s.aws/instance-size",
    "karpenter.k8s.aws/instance-category",
    "karpenter.k8s.aws/instance-generation",
    "karpenter.k8s.aws/instance-cpu",
    "karpenter.k8s.aws/instance-memory",
    "karpenter.k8s.aws/instance-gpu-count",
)
CAPACITY_TYPE = "karpenter.sh/capacity-type"


@dataclass
class Pod:
    """One kind of always-on pod: its requests, how many run, and its placement constraints."""

    ident: str
    cpu: float
    mem_gib: float
    count: float
    selector: dict[str, str] = field(default_factory=dict)
    terms: list[list[Mapping[str, Any]]] = field(default_factory=list)
    tolerations: list[Mapping[str, Any]] = field(default_factory=list)
    daemon: bool = False
    gpus: float = 0.0


def pod_spec(m: Mapping[str, Any]) -> Mapping[str, Any]:
    return dig(m, "spec", "template", "spec", default={}) or {}


def requests_of(pod: Mapping[str, Any]) -> tuple[float, float, float]:
    cpu = mem = gpus = 0.0
    for c in pod.get("containers") or []:
        req = dig(c, "resources", "requests", default={}) or {}
        lim = dig(c, "resources", "limits", default={}) or {}
        cpu += parse_quantity(req.get("cpu", 0))
        mem += gib(req.get("memory", 0))
        gpus += parse_quantity(req.get(GPU_RESOURCE, lim.get(GPU_RESOURCE, 0)))
    return cpu, mem, gpus


def _terms(affinity: Any) -> list[list[Mapping[str, Any]]]:
    required = dig(
        affinity or {},
        "nodeAffinity",
        "requiredDuringSchedulingIgnoredDuringExecution",
        "nodeSelectorTerms",
        default=[],
    )
    return [list(t.get("matchExpressions") or []) for t in required or [] if isinstance(t, Mapping)]


def manifest_pods(manifests: list[Mapping[str, Any]]) -> list[Pod]:
    out: list[Pod] = []
    for m in manifests:
        kind = m.get("kind")
        if kind not in WORKLOAD_KINDS:
            continue
        spec = pod_spec(m)
        cpu, mem, gpus = requests_of(spec)
        meta = m.get("metadata") or {}
        replicas = 1.0 if kind == "DaemonSet" else num(dig(m, "spec", "replicas"), 1)
        if replicas <= 0:
            continue
        out.append(
            Pod(
                ident=f"{kind}/{meta.get('namespace', 'default')}/{meta.get('name')}",
                cpu=cpu,
                mem_gib=mem,
                count=replicas,
                selector={str(k): str(v) for k, v in (spec.get("nodeSelector") or {}).items()},
                terms=_terms(spec.get("affinity")),
                tolerations=list(spec.get("tolerations") or []),
                daemon=kind == "DaemonSet",
                gpus=gpus,
            )
        )
    return out


_PLACEMENT_KEYS = ("nodeSelector", "tolerations", "affinity")


def _helm_items(
    values: Any, path: str, replicas: float, placement: dict[str, Any]
) -> Iterator[tuple[str, float, float, float, dict[str, Any]]]:
    if isinstance(values, Mapping):
        reps = num(values.get("replicas", values.get("replicaCount")), replicas)
        here = dict(placement)
        for key in _PLACEMENT_KEYS:
            if values.get(key):
                here[key] = values[key]
        req = dig(values, "resources", "requests")
        if isinstance(req, Mapping):
            yield path, parse_quantity(req.get("cpu", 0)), gib(req.get("memory", 0)), reps, here
        for k, v in values.items():
            if k != "resources" and k not in _PLACEMENT_KEYS:
                yield from _helm_items(v, f"{path}.{k}" if path else str(k), reps, here)
    elif isinstance(values, list):
        for v in values:
            yield from _helm_items(v, path, replicas, placement)


def helm_pods(helm: list[Mapping[str, Any]]) -> list[Pod]:
    """Always-on pods a chart's values ask for; GPU-only daemons (no GPU node idles) are left out."""
    out: list[Pod] = []
    for rel in helm:
        base = f"helm/{rel.get('namespace', 'default')}/{rel.get('name')}"
        for path, cpu, mem, reps, where in _helm_items(rel.get("values") or {}, "", 1.0, {}):
            if ACCELERATOR_LABEL in json.dumps([where.get("affinity"), where.get("nodeSelector")]):
                continue
            if reps <= 0 or not (cpu or mem):
                continue
            selector = where.get("nodeSelector")
            tolerations = where.get("tolerations")
            out.append(
                Pod(
                    ident=f"{base}:{path}" if path else base,
                    cpu=cpu,
                    mem_gib=mem,
                    count=reps,
                    selector=dict(selector) if isinstance(selector, Mapping) else {},
                    terms=_terms(where.get("affinity")),
                    tolerations=list(tolerations) if isinstance(tolerations, list) else [],
                )
            )
    return out


# --------------------------------------------------------------------------------------------
# matching


def _tolerated(toleration: Mapping[str, Any], taint: Mapping[str, Any]) -> bool:
    effect = toleration.get("effect")
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key")
    exists = toleration.get("operator", "Equal") == "Exists"
    if not key:
        return exists
    if key != taint.get("key"):
        return False
    return exists or str(toleration.get("value") or "") == str(taint.get("value") or "")


def tolerates(pod: Pod, taints: Any) -> bool:
    return all(
        any(_tolerated(tol, t) for tol in pod.tolerations)
        for t in taints
        if t.get("effect") in _BLOCKING_EFFECTS
    )


def expression_holds(expr: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    key, op = str(expr.get("key")), expr.get("operator")
    values = [str(v) for v in expr.get("values") or []]
    value = labels.get(key)
    if op == "In":
        return value in values
    if op == "NotIn":
        return value not in values
    if op == "Exists":
        return value is not None
    if op == "DoesNotExist":
        return value is None
    if op in ("Gt", "Lt") and value is not None and values:
        try:
            a, b = float(value), float(values[0])
        except ValueError:
            return False
        return a > b if op == "Gt" else a < b
    return False


def selects(pod: Pod, labels: Mapping[str, str]) -> bool:
    """Whether a node with these labels satisfies the pod's selector and required affinity."""
    if any(labels.get(k) != v for k, v in pod.selector.items()):
        return False
    return not pod.terms or any(
        all(expression_holds(e, labels) for e in term) for term in pod.terms
    )


def instance_labels(itype: str, spec: Mapping[str, Any]) -> dict[str, str]:
    """The well-known labels a node of this instance type gets from Karpenter."""
    fam = family(itype)
    generation = re.search(r"\d+", fam)
    labels = {
        "node.kubernetes.io/instance-type": itype,
        "kubernetes.io/arch": "arm64" if spec.get("arch") == "arm64" else "amd64",
        "kubernetes.io/os": "linux",
        "karpenter.k8s.aws/instance-family": fam,
        "karpenter.k8s.aws/instance-size": itype.split(".", 1)[1],
        "karpenter.k8s.aws/instance-category": re.sub(r"\d.*", "", fam),
        "karpenter.k8s.aws/instance-cpu": str(int(num(spec.get("vcpu")))),
        "karpenter.k8s.aws/instance-memory": str(int(num(spec.get("memoryGiB")) * 1024)),
    }
    if generation:
        labels["karpenter.k8s.aws/instance-generation"] = generation.group(0)
    if spec.get("gpus"):
        labels["karpenter.k8s.aws/instance-gpu-count"] = str(spec["gpus"])
    return labels


def node_allocatable(spec: Mapping[str, Any]) -> tuple[float, float, int]:
    """Roughly what EKS leaves for pods on a node of this instance (an ``ec2`` entry of the price
    data): vCPUs and GiB after kube-reserved, system-reserved and eviction, and max pods."""
    vcpu, mem = float(spec["vcpu"]), float(spec["memoryGiB"])
    max_pods = 17 if mem <= 4 else (35 if vcpu <= 2 else 58)
    reserved_mem = (255 + 11 * max_pods + 100) / 1024
    return vcpu - 0.07 - 0.01 * max(0.0, vcpu - 1), max(0.0, mem - reserved_mem), max_pods


def allocatable(spec: Mapping[str, Any]) -> tuple[float, float]:
    cpu, mem, _ = node_allocatable(spec)
    return cpu, mem


def pack(pods: list[Pod], per_node: tuple[float, float], free: list[list[float]]) -> list[Pod]:
    """First-fit-decreasing of pod replicas into nodes' free [cpu, mem]; returns what did not fit.

    ``free`` is updated in place. With ``per_node`` set (cpu > 0), new nodes of that size are
    opened for replicas that fit none of the existing ones; otherwise they are returned.
    """
    units = [(p, 1.0) for p in pods for _ in range(int(p.count))]
    units += [(p, p.count - int(p.count)) for p in pods if p.count != int(p.count)]
    units.sort(key=lambda u: -max(u[0].cpu * u[1], u[0].mem_gib * u[1] / 4))
    left: dict[int, Pod] = {}
    for pod, share in units:
        cpu, mem = pod.cpu * share, pod.mem_gib * share
        node = next((n for n in free if n[0] >= cpu - 1e-9 and n[1] >= mem - 1e-9), None)
        if node is None and per_node[0] > 0 and cpu <= per_node[0] and mem <= per_node[1]:
            node = [per_node[0], per_node[1]]
            free.append(node)
        if node is None:
            rest = left.setdefault(id(pod), Pod(**{**pod.__dict__, "count": 0.0}))
            rest.count += share
            continue
        node[0] -= cpu
        node[1] -= mem
    return list(left.values())
