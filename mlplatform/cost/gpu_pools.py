"""GPU pools: which node types each Karpenter GPU pool may launch, their hourly prices, and the
nodes that always-on GPU pods keep running."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from mlplatform.cost.catalogue import (
    ACCELERATOR_LABEL,
    GPU_RESOURCE,
    POOL_LABEL,
    PRESET_FAMILIES,
    Ledger,
    by_type,
    dig,
    family,
    short_name,
)
from mlplatform.cost.scheduling import CAPACITY_TYPE, Pod

Manifests = list[Mapping[str, Any]]


def always_on_gpu_pods(b: Ledger, manifests: Manifests, pods: list[Pod]) -> None:
    gpu_pods: dict[str, float] = {}
    for p in pods:
        pool = p.selector.get(POOL_LABEL, "")
        gpu_pods[pool] = gpu_pods.get(pool, 0) + p.gpus * p.count
    pools = gpu_pools(manifests)
    for pool, gpus in sorted(gpu_pods.items()):
        candidates = _pool_instance_types(pools.get(pool), b.prices)
        if not candidates:
            b.unpriced.append(
                {"urn": f"pool/{pool or '?'}", "reason": "always-on GPU pods, pool types unknown"}
            )
            continue
        best = min(candidates, key=lambda t: b.prices["ec2"][t]["hourly"])
        per = int(b.prices["ec2"][best].get("gpus", 1))
        count = math.ceil(gpus / per)
        b.add(
            f"Always-on GPU pods in pool {pool or '(unpinned)'}",
            "pods",
            count,
            f"{best} on-demand node",
            float(b.prices["ec2"][best]["hourly"]) * b.hours,
            note=f"{gpus:g} GPUs requested by pods with replicas >= 1",
        )


def gpu_pools(manifests: Manifests) -> dict[str, Mapping[str, Any]]:
    """Karpenter NodePools that offer GPUs, by pool name (label) and object name."""
    out: dict[str, Mapping[str, Any]] = {}
    for m in manifests:
        if m.get("kind") != "NodePool" or not str(m.get("apiVersion", "")).startswith(
            "karpenter.sh"
        ):
            continue
        tmpl = dig(m, "spec", "template", default={}) or {}
        labels = dig(tmpl, "metadata", "labels", default={}) or {}
        taints = dig(tmpl, "spec", "taints", default=[]) or []
        gpu = ACCELERATOR_LABEL in labels or any(t.get("key") == GPU_RESOURCE for t in taints)
        if not gpu:
            continue
        name = str(dig(m, "metadata", "name", default=""))
        out[name] = m
        if labels.get(POOL_LABEL):
            out[str(labels[POOL_LABEL])] = m
    return out


def _requirement_values(reqs: list[Mapping[str, Any]], key: str) -> tuple[set[str], set[str]]:
    inc: set[str] = set()
    exc: set[str] = set()
    for r in reqs:
        if r.get("key") != key:
            continue
        vals = {str(v) for v in r.get("values") or []}
        if r.get("operator") == "In":
            inc |= vals
        elif r.get("operator") == "NotIn":
            exc |= vals
    return inc, exc


def _pool_instance_types(pool: Mapping[str, Any] | None, prices: Mapping[str, Any]) -> list[str]:
    if pool is None:
        return []
    tmpl = dig(pool, "spec", "template", default={}) or {}
    reqs = list(dig(tmpl, "spec", "requirements", default=[]) or [])
    labels = dig(tmpl, "metadata", "labels", default={}) or {}
    candidates = [t for t, s in prices["ec2"].items() if s.get("gpus")]
    filters = {
        "node.kubernetes.io/instance-type": lambda t: t,
        "karpenter.k8s.aws/instance-family": family,
        "karpenter.k8s.aws/instance-size": lambda t: t.split(".", 1)[1],
        "karpenter.k8s.aws/instance-gpu-name": lambda t: str(prices["ec2"][t]["gpu"]).lower(),
    }
    constrained = False
    for key, fn in filters.items():
        inc, exc = _requirement_values(reqs, key)
        if inc:
            constrained = True
            candidates = [t for t in candidates if fn(t) in inc]
        if exc:
            candidates = [t for t in candidates if fn(t) not in exc]
    preset = labels.get(ACCELERATOR_LABEL)
    if not constrained and preset in PRESET_FAMILIES:
        candidates = [t for t in candidates if family(t) == PRESET_FAMILIES[preset]]
    elif not constrained:
        return []
    return sorted(candidates, key=lambda t: prices["ec2"][t]["hourly"])


def gpu_hourly(plan: Mapping[str, Any], prices: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per GPU pool, each candidate node type's hourly price on-demand and spot."""
    resources = [r for r in plan.get("resources") or [] if r.get("custom", True)]
    manifests = list(plan.get("manifests") or [])

    def row(itype: str) -> dict[str, Any]:
        spec = prices["ec2"][itype]
        table = prices["spotFraction"]
        frac = float(table.get(family(itype), table["default"])["fraction"])
        return {
            "instanceType": itype,
            "gpus": spec["gpus"],
            "gpu": spec["gpu"],
            "onDemand": round(float(spec["hourly"]), 4),
            "spot": round(float(spec["hourly"]) * frac, 4),
        }

    out: list[dict[str, Any]] = []
    seen: set[int] = set()
    for name, pool in gpu_pools(manifests).items():
        if id(pool) in seen:
            continue
        seen.add(id(pool))
        reqs = list(dig(pool, "spec", "template", "spec", "requirements", default=[]) or [])
        cap, _ = _requirement_values(reqs, CAPACITY_TYPE)
        labels = dig(pool, "spec", "template", "metadata", "labels", default={}) or {}
        out.append(
            {
                "pool": str(labels.get(POOL_LABEL) or name),
                "nodePool": str(dig(pool, "metadata", "name", default=name)),
                "accelerator": labels.get(ACCELERATOR_LABEL),
                "capacityTypes": sorted(cap) or ["on-demand"],
                "gpuLimit": dig(pool, "spec", "limits", GPU_RESOURCE),
                "nodeTypes": [row(t) for t in _pool_instance_types(pool, prices)],
                "unpricedTypes": sorted(
                    _requirement_values(reqs, "node.kubernetes.io/instance-type")[0]
                    - set(prices["ec2"])
                ),
            }
        )
    for ng in by_type(resources, "aws:eks/nodeGroup:NodeGroup"):
        inputs = ng.get("inputs") or {}
        types = [
            t for t in inputs.get("instanceTypes") or [] if prices["ec2"].get(t, {}).get("gpus")
        ]
        if not types:
            continue
        spot = str(inputs.get("capacityType", "ON_DEMAND")).upper() == "SPOT"
        out.append(
            {
                "pool": short_name(ng),
                "nodePool": None,
                "accelerator": (inputs.get("labels") or {}).get(ACCELERATOR_LABEL),
                "capacityTypes": ["spot" if spot else "on-demand"],
                "gpuLimit": None,
                "nodeTypes": [row(t) for t in types],
                "unpricedTypes": [],
            }
        )
    return out
