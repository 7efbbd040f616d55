"""Pricing of what Kubernetes workloads keep running while idle: volumes, the capacity always-on
pods need beyond the system nodes (Karpenter nodes, or a larger node group), and GPU pools."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from mlplatform.cost import gpu_pools
from mlplatform.cost.aws_resources import NodeGroupShape
from mlplatform.cost.catalogue import (
    Ledger,
    by_type,
    dig,
    gib,
    num,
)
from mlplatform.cost.scheduling import (
    CAPACITY_TYPE,
    INSTANCE_LABELS,
    Pod,
    allocatable,
    expression_holds,
    helm_pods,
    instance_labels,
    manifest_pods,
    pack,
    selects,
    tolerates,
)

Resources = list[Mapping[str, Any]]
Manifests = list[Mapping[str, Any]]


# --------------------------------------------------------------------------------------------
# volumes


def _pvc_sizes(
    resources: Resources, manifests: Manifests, helm: Manifests
) -> Iterator[tuple[str, float, str]]:
    """(what, GiB, storage class) for every volume the plan asks for."""
    for m in manifests:
        kind = m.get("kind")
        meta = m.get("metadata") or {}
        ident = f"{kind}/{meta.get('namespace', 'default')}/{meta.get('name')}"
        if kind == "PersistentVolumeClaim":
            size = gib(dig(m, "spec", "resources", "requests", "storage", default=0))
            yield ident, size, str(dig(m, "spec", "storageClassName", default="") or "")
        elif kind == "StatefulSet":
            replicas = int(num(dig(m, "spec", "replicas"), 1))
            for tpl in dig(m, "spec", "volumeClaimTemplates", default=[]) or []:
                size = gib(dig(tpl, "spec", "resources", "requests", "storage", default=0))
                cls = str(dig(tpl, "spec", "storageClassName", default="") or "")
                yield ident, size * replicas, cls
    for rel in helm:
        ident = f"helm/{rel.get('namespace', 'default')}/{rel.get('name')}"
        for size, cls in _helm_volumes(rel.get("values") or {}):
            yield ident, size, cls
    for vol in by_type(resources, "aws:ebs/volume:Volume"):
        inputs = vol.get("inputs") or {}
        yield vol["urn"], num(inputs.get("size")), str(inputs.get("type") or "gp3")


def _helm_volumes(values: Any) -> Iterator[tuple[float, str]]:
    if isinstance(values, Mapping):
        tpl = values.get("volumeClaimTemplate")
        if isinstance(tpl, Mapping):
            size = gib(dig(tpl, "spec", "resources", "requests", "storage", default=0))
            if size:
                yield size, str(dig(tpl, "spec", "storageClassName", default="") or "")
        pers = values.get("persistence")
        if isinstance(pers, Mapping) and pers.get("enabled") in (True, "true") and pers.get("size"):
            yield gib(pers["size"]), str(pers.get("storageClass") or "")
        for k, v in values.items():
            if k not in ("volumeClaimTemplate", "persistence"):
                yield from _helm_volumes(v)
    elif isinstance(values, list):
        for v in values:
            yield from _helm_volumes(v)


def _storage_type(b: Ledger, storage_class: str) -> str:
    cls = storage_class.lower()
    for vtype in ("gp2", "gp3", "io1", "io2", "st1"):
        if vtype in cls:
            return vtype
    return b.assumptions.default_storage_class


def volumes(b: Ledger, resources: Resources, manifests: Manifests, helm: Manifests) -> None:
    totals: dict[str, float] = {}
    what: dict[str, list[str]] = {}
    for ident, size, cls in _pvc_sizes(resources, manifests, helm):
        if size <= 0:
            continue
        vtype = _storage_type(b, cls)
        totals[vtype] = totals.get(vtype, 0) + size
        what.setdefault(vtype, []).append(ident)
    for vtype, size in sorted(totals.items()):
        b.add(
            f"Persistent volumes ({vtype})",
            "ebs",
            size,
            "GiB-month",
            b.ebs_price(vtype),
            resources=what[vtype],
        )


# --------------------------------------------------------------------------------------------
# Karpenter pools for CPU work


@dataclass
class _CpuPool:
    name: str
    labels: dict[str, str]
    taints: list[Mapping[str, Any]]
    requirements: list[Mapping[str, Any]]
    capacity_types: list[str]
    root_gib: float
    root_type: str
    public_ip: bool


def _cpu_pools(manifests: Manifests) -> list[_CpuPool]:
    classes = {
        str(dig(m, "metadata", "name")): m for m in manifests if m.get("kind") == "EC2NodeClass"
    }
    gpu = {id(m) for m in gpu_pools.gpu_pools(manifests).values()}
    out = []
    for m in manifests:
        if m.get("kind") != "NodePool" or not str(m.get("apiVersion", "")).startswith(
            "karpenter.sh"
        ):
            continue
        if id(m) in gpu:
            continue
        tmpl = dig(m, "spec", "template", default={}) or {}
        reqs = list(dig(tmpl, "spec", "requirements", default=[]) or [])
        cap = [
            str(v)
            for r in reqs
            if r.get("key") == CAPACITY_TYPE and r.get("operator") == "In"
            for v in r.get("values") or []
        ]
        node_class = classes.get(str(dig(tmpl, "spec", "nodeClassRef", "name", default="")), {})
        disks = dig(node_class, "spec", "blockDeviceMappings", default=[]) or []
        root = sum(gib(dig(d, "ebs", "volumeSize", default=0)) for d in disks) or 20.0
        out.append(
            _CpuPool(
                name=str(dig(m, "metadata", "name")),
                labels={str(k): str(v) for k, v in (dig(tmpl, "metadata", "labels") or {}).items()},
                taints=list(dig(tmpl, "spec", "taints", default=[]) or []),
                requirements=reqs,
                # Karpenter launches on-demand unless the pool allows spot; it prefers spot.
                capacity_types=cap or ["on-demand"],
                root_gib=root,
                root_type=str(dig(disks[0] if disks else {}, "ebs", "volumeType") or "gp3"),
                public_ip=dig(node_class, "spec", "associatePublicIPAddress") is True,
            )
        )
    return out


def _pool_offers(pool: _CpuPool, b: Ledger) -> list[tuple[str, str, dict[str, str]]]:
    """(instance type, capacity type, node labels) the pool may launch, from the price table."""
    offers = []
    for itype, spec in b.prices["ec2"].items():
        if spec.get("gpus"):
            continue
        labels = {**instance_labels(itype, spec), **pool.labels}
        if all(
            expression_holds(r, labels)
            for r in pool.requirements
            if r.get("key") in INSTANCE_LABELS or r.get("key") in pool.labels
        ):
            for cap in pool.capacity_types:
                offers.append((itype, cap, {**labels, CAPACITY_TYPE: cap}))
    return offers


def _admits(pool: _CpuPool, pod: Pod, offers: list[tuple[str, str, dict[str, str]]]) -> bool:
    return tolerates(pod, pool.taints) and any(selects(pod, labels) for _, _, labels in offers)


@dataclass
class _Choice:
    itype: str
    capacity: str
    nodes: int
    monthly: float


def _cheapest(
    b: Ledger, pool: _CpuPool, pods: list[Pod], daemons: list[Pod], offers: Any
) -> _Choice | None:
    best: _Choice | None = None
    for itype, cap, labels in offers:
        if not all(selects(p, labels) for p in pods):
            continue
        spec = b.prices["ec2"][itype]
        cpu, mem = allocatable(spec)
        for d in daemons:
            if tolerates(d, pool.taints) and selects(d, labels):
                cpu, mem = cpu - d.cpu, mem - d.mem_gib
        free: list[list[float]] = []
        if cpu <= 0 or mem <= 0 or pack(pods, (cpu, mem), free):
            continue
        rate = b.hourly(itype, spot=cap == "spot") or 0.0
        monthly = len(free) * (rate * b.hours + pool.root_gib * b.ebs_price(pool.root_type))
        if best is None or (monthly, len(free)) < (best.monthly, best.nodes):
            best = _Choice(itype, cap, len(free), monthly)
    return best


# --------------------------------------------------------------------------------------------
# always-on pods


def _requested(pods: list[Pod]) -> tuple[float, float]:
    return sum(p.cpu * p.count for p in pods), sum(p.mem_gib * p.count for p in pods)


def always_on(
    b: Ledger, manifests: Manifests, helm: Manifests, system: list[NodeGroupShape]
) -> dict[str, Any]:
    """Place always-on pods on the system nodes, then on Karpenter pools; price what they add."""
    pods = manifest_pods(manifests) + helm_pods(helm)
    daemons = [p for p in pods if p.daemon and not p.gpus]
    regular = [p for p in pods if not p.daemon and not p.gpus]
    pools = _cpu_pools(manifests)
    offers = {pool.name: _pool_offers(pool, b) for pool in pools}

    def flexible(pod: Pod) -> bool:
        return any(_admits(pool, pod, offers[pool.name]) for pool in pools)

    # System nodes first: the scheduler fills existing nodes before Karpenter adds any. Pods
    # that only the system nodes can run go first, so Karpenter takes the ones it can.
    alloc_cpu = alloc_mem = 0.0
    daemon_cpu = daemon_mem = 0.0
    leftover = list(regular)
    for group in system:
        spec = b.instance(group.instance_type)
        if spec is None:
            continue
        cpu, mem = allocatable(spec)
        alloc_cpu += cpu * group.count
        alloc_mem += mem * group.count
        for d in daemons:
            if tolerates(d, group.taints) and selects(d, group.labels):
                cpu, mem = cpu - d.cpu, mem - d.mem_gib
                daemon_cpu += d.cpu * group.count
                daemon_mem += d.mem_gib * group.count
        free = [[cpu, mem] for _ in range(group.count)]
        fits = [p for p in leftover if tolerates(p, group.taints) and selects(p, group.labels)]
        pinned = [p for p in fits if not flexible(p)]
        rest = pack(pinned, (0.0, 0.0), free)
        rest += pack([p for p in fits if p not in pinned], (0.0, 0.0), free)
        leftover = [p for p in leftover if p not in fits] + rest

    # Then Karpenter: the first CPU pool that can run a pod gets it.
    by_pool: dict[str, list[Pod]] = {}
    unplaced: list[Pod] = []
    for pod in leftover:
        pool = next((p for p in pools if _admits(p, pod, offers[p.name])), None)
        if pool is None:
            unplaced.append(pod)
        else:
            by_pool.setdefault(pool.name, []).append(pod)
    karpenter: list[dict[str, Any]] = []
    for pool in pools:
        placed = by_pool.get(pool.name)
        if not placed:
            continue
        choice = _cheapest(b, pool, placed, daemons, offers[pool.name])
        if choice is None:
            unplaced += placed
            continue
        cpu, mem = _requested(placed)
        rate = b.hourly(choice.itype, spot=choice.capacity == "spot") or 0.0
        idents = sorted({p.ident for p in placed})
        b.add(
            f"Always-on pods on Karpenter pool {pool.name}",
            "pods",
            choice.nodes,
            f"{choice.itype} {choice.capacity} node",
            rate * b.hours,
            resources=idents,
            note=(
                f"requests {cpu:.2f} vCPU / {mem:.2f} GiB that the system nodes cannot take "
                "(taints, selectors or room); the cheapest type the pool allows"
            ),
        )
        b.add(
            f"Karpenter node root volumes ({pool.root_type})",
            "ebs",
            choice.nodes * pool.root_gib,
            "GiB-month",
            b.ebs_price(pool.root_type),
            resources=[f"NodePool/{pool.name}"],
        )
        if pool.public_ip:
            b.add(
                f"Public IPv4 addresses (Karpenter pool {pool.name})",
                "network",
                choice.nodes,
                "address",
                b.price("publicIpv4") * b.hours,
                resources=[f"NodePool/{pool.name}"],
            )
        karpenter.append(
            {
                "pool": pool.name,
                "instanceType": choice.itype,
                "capacityType": choice.capacity,
                "nodes": choice.nodes,
                "pods": idents,
            }
        )

    # Pods that only the system nodes could run but that do not fit there.
    extra = 0
    unschedulable: list[str] = []
    fits_system = [
        p for p in unplaced if any(tolerates(p, g.taints) and selects(p, g.labels) for g in system)
    ]
    first = system[0] if system else None
    spec = b.instance(first.instance_type) if first else None
    if fits_system and first and spec:
        new: list[list[float]] = []
        pack(fits_system, allocatable(spec), new)
        extra = len(new)
        cpu, mem = _requested(fits_system)
        b.add(
            "Always-on pods beyond system node capacity",
            "pods",
            extra,
            f"{first.instance_type} node",
            (b.hourly(first.instance_type, first.spot) or 0.0) * b.hours,
            resources=sorted({p.ident for p in fits_system}),
            note=(
                f"{cpu:.2f} vCPU / {mem:.2f} GiB more than the system nodes hold "
                f"({alloc_cpu:.2f} vCPU / {alloc_mem:.2f} GiB allocatable) and no NodePool takes it"
            ),
        )
    for p in unplaced:
        if p not in fits_system:
            unschedulable.append(p.ident)
            b.unpriced.append(
                {
                    "urn": p.ident,
                    "reason": "no node group or CPU NodePool in the plan can run it "
                    "(taints, node selectors or affinity)",
                }
            )

    cpu_total, mem_total = _requested(regular)
    gpu_pools.always_on_gpu_pods(b, manifests, [p for p in pods if p.gpus and not p.daemon])
    return {
        "systemNodes": sum(g.count for g in system),
        "cpuRequested": round(cpu_total + daemon_cpu, 3),
        "memoryRequestedGiB": round(mem_total + daemon_mem, 3),
        "cpuAllocatable": round(alloc_cpu, 3),
        "memoryAllocatableGiB": round(alloc_mem, 3),
        "extraNodes": extra,
        "karpenter": karpenter,
        "unschedulable": unschedulable,
    }
