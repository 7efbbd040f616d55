"""kwok Node objects shaped like a plan's node groups and Karpenter NodePools.

Each EKS managed node group becomes ``desiredSize`` nodes, spread over its subnets' zones; each
NodePool becomes one node of the instance type Karpenter would launch first for it (the cheapest
type in the price data that meets its requirements). Labels are the ones EKS and Karpenter put on
such nodes (architecture, zone, pool, capacity type, instance type, the template's own), taints
are the node group's or the NodePool template's, and allocatable cpu, memory and pods come from
:func:`mlplatform.cost.node_allocatable`, ephemeral-storage from the root volume, and
``nvidia.com/gpu`` from the instance type. A plan with neither (the local stack, which runs on
"your cluster") gets one node shaped like a laptop's kind cluster.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from mlplatform.cost import GPU_RESOURCE, load_prices, node_allocatable, parse_quantity

KWOK_ANNOTATION = {"kwok.x-k8s.io/node": "fake"}
ARCH = {"x86_64": "amd64", "arm64": "arm64"}
EFFECTS = {
    "NO_SCHEDULE": "NoSchedule",
    "NO_EXECUTE": "NoExecute",
    "PREFER_NO_SCHEDULE": "PreferNoSchedule",
}
AMI_ARCH = {
    "AL2023_ARM_64_STANDARD": "arm64",
    "AL2023_x86_64_STANDARD": "amd64",
    "AL2023_x86_64_NVIDIA": "amd64",
}
# EKS's default eviction threshold (nodefs.available < 10%) and kube-reserved ephemeral storage.
EVICTION_FRACTION, KUBE_RESERVED_DISK_GIB = 0.10, 1.0
# The local stack's cluster: one kind node on a laptop (4 cores, 8 GiB, kind's default max pods).
LOCAL_NODE = {"cpu": "4", "memory": "8Gi", "pods": "110", "ephemeral-storage": "50Gi"}


def _labels_of(instance_type: str, spec: Mapping[str, Any]) -> dict[str, str]:
    """The well-known labels an EC2 node of this type carries (Karpenter's, for requirements)."""
    family, size = instance_type.split(".", 1)
    match = re.match(r"^([a-z]+?)(\d+)", family)
    labels = {
        "node.kubernetes.io/instance-type": instance_type,
        "kubernetes.io/arch": ARCH[spec["arch"]],
        "kubernetes.io/os": "linux",
        "karpenter.k8s.aws/instance-family": family,
        "karpenter.k8s.aws/instance-size": size,
        "karpenter.k8s.aws/instance-cpu": str(spec["vcpu"]),
        "karpenter.k8s.aws/instance-memory": str(int(float(spec["memoryGiB"]) * 1024)),
    }
    if match:
        labels["karpenter.k8s.aws/instance-category"] = match.group(1)
        labels["karpenter.k8s.aws/instance-generation"] = match.group(2)
    if spec.get("gpus"):
        labels["karpenter.k8s.aws/instance-gpu-count"] = str(spec["gpus"])
        labels["karpenter.k8s.aws/instance-gpu-name"] = str(spec["gpu"]).lower()
        labels["karpenter.k8s.aws/instance-gpu-manufacturer"] = "nvidia"
    return labels


def requirement_met(req: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """One NodeSelectorRequirement (the operators Karpenter accepts) against a label set."""
    key, op, values = req["key"], req["operator"], [str(v) for v in req.get("values") or []]
    value = labels.get(key)
    if op == "In":
        return value in values
    if op == "NotIn":
        return value not in values
    if op == "Exists":
        return value is not None
    if op == "DoesNotExist":
        return value is None
    if op in ("Gt", "Lt") and value is not None and value.isdigit():
        return int(value) > int(values[0]) if op == "Gt" else int(value) < int(values[0])
    return False


def _resources(
    instance_type: str, spec: Mapping[str, Any], disk_gib: float
) -> tuple[dict[str, str], dict[str, str]]:
    cpu, mem_gib, pods = node_allocatable(spec)
    disk_alloc = disk_gib * (1 - EVICTION_FRACTION) - KUBE_RESERVED_DISK_GIB
    capacity = {
        "cpu": str(spec["vcpu"]),
        "memory": f"{int(float(spec['memoryGiB']) * 1024)}Mi",
        "pods": str(pods),
        "ephemeral-storage": f"{int(disk_gib)}Gi",
    }
    allocatable = {
        "cpu": f"{int(cpu * 1000)}m",
        "memory": f"{int(mem_gib * 1024)}Mi",
        "pods": str(pods),
        "ephemeral-storage": f"{int(disk_alloc * 1024)}Mi",
    }
    if spec.get("gpus"):
        capacity[GPU_RESOURCE] = allocatable[GPU_RESOURCE] = str(spec["gpus"])
    return capacity, allocatable


def node(
    name: str,
    labels: Mapping[str, str],
    taints: Iterable[Mapping[str, Any]],
    capacity: Mapping[str, str],
    allocatable: Mapping[str, str],
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {**labels, "kubernetes.io/hostname": name},
            "annotations": {**KWOK_ANNOTATION, **(annotations or {})},
        },
        "spec": {"taints": [dict(t) for t in taints]},
        "status": {
            "capacity": dict(capacity),
            "allocatable": dict(allocatable),
            "nodeInfo": {
                "architecture": labels["kubernetes.io/arch"],
                "operatingSystem": "linux",
            },
        },
    }


def _resources_of(plan: Mapping[str, Any], type_: str) -> list[Mapping[str, Any]]:
    return [r for r in plan["resources"] if r["type"] == type_]


def _subnets(plan: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {r["urn"]: r["inputs"] for r in _resources_of(plan, "aws:ec2/subnet:Subnet")}


def _region(zone: str) -> str:
    return zone[:-1]


def node_group_nodes(plan: Mapping[str, Any], prices: Mapping[str, Any]) -> list[dict[str, Any]]:
    subnets = _subnets(plan)
    templates = {
        r["urn"]: r["inputs"] for r in _resources_of(plan, "aws:ec2/launchTemplate:LaunchTemplate")
    }
    nodes = []
    for ng in _resources_of(plan, "aws:eks/nodeGroup:NodeGroup"):
        inputs = ng["inputs"]
        deps = ng.get("dependencies") or []
        zones = sorted({subnets[d]["availabilityZone"] for d in deps if d in subnets})
        lt = next((templates[d] for d in deps if d in templates), {})
        itype = (inputs.get("instanceTypes") or [lt.get("instanceType")])[0]
        spec = prices["ec2"][itype]
        arch = ARCH[spec["arch"]]
        assert AMI_ARCH.get(inputs.get("amiType", ""), arch) == arch, (
            f"node group {ng['urn']}: amiType {inputs.get('amiType')} does not run {itype} ({arch})"
        )
        disk = float(
            (lt.get("blockDeviceMappings") or [{}])[0].get("ebs", {}).get("volumeSize", 20)
        )
        capacity, allocatable = _resources(itype, spec, disk)
        group = inputs.get("nodeGroupName") or ng["urn"].rsplit("::", 1)[-1]
        capacity_type = str(inputs.get("capacityType", "ON_DEMAND")).upper()
        taints = [
            {"key": t["key"], "value": t.get("value", ""), "effect": EFFECTS[t["effect"]]}
            for t in inputs.get("taints") or []
        ]
        for i in range(int(inputs["scalingConfig"]["desiredSize"])):
            zone = zones[i % len(zones)]
            labels = {
                **_labels_of(itype, spec),
                **(inputs.get("labels") or {}),
                "eks.amazonaws.com/nodegroup": group,
                "eks.amazonaws.com/capacityType": capacity_type,
                "topology.kubernetes.io/zone": zone,
                "topology.kubernetes.io/region": _region(zone),
            }
            nodes.append(node(f"{group}-{i}", labels, taints, capacity, allocatable))
    return nodes


def _node_class_zones(plan: Mapping[str, Any], node_class: Mapping[str, Any]) -> list[str]:
    zones = set()
    for term in node_class["spec"].get("subnetSelectorTerms") or []:
        wanted = term.get("tags") or {}
        for subnet in _subnets(plan).values():
            tags = subnet.get("tags") or {}
            if wanted and all(tags.get(k) == v for k, v in wanted.items()):
                zones.add(subnet["availabilityZone"])
    return sorted(zones)


def launch_choice(
    requirements: list[Mapping[str, Any]], prices: Mapping[str, Any], zones: list[str]
) -> tuple[str, str, str]:
    """(instance type, capacity type, zone) Karpenter would pick first for these requirements:
    the cheapest type that meets them, spot where allowed."""
    capacity_types = ["spot", "on-demand"]
    zone_req = [r for r in requirements if r["key"] == "topology.kubernetes.io/zone"]
    for req in requirements:
        if req["key"] == "karpenter.sh/capacity-type":
            capacity_types = [c for c in capacity_types if requirement_met(req, {req["key"]: c})]
    zones = [z for z in zones if all(requirement_met(r, {r["key"]: z}) for r in zone_req)]
    fits = [
        t
        for t, spec in prices["ec2"].items()
        if all(
            requirement_met(r, _labels_of(t, spec))
            for r in requirements
            if r["key"] not in ("karpenter.sh/capacity-type", "topology.kubernetes.io/zone")
        )
    ]
    assert fits and capacity_types and zones, (
        f"no instance type, capacity type or zone meets {requirements} in the price data"
    )
    return min(fits, key=lambda t: prices["ec2"][t]["hourly"]), capacity_types[0], zones[0]


def node_pool_nodes(plan: Mapping[str, Any], prices: Mapping[str, Any]) -> list[dict[str, Any]]:
    manifests = plan["manifests"]
    classes = {m["metadata"]["name"]: m for m in manifests if m["kind"] == "EC2NodeClass"}
    nodes = []
    for pool in (m for m in manifests if m["kind"] == "NodePool"):
        name = pool["metadata"]["name"]
        template = pool["spec"]["template"]
        node_class = classes[template["spec"]["nodeClassRef"]["name"]]
        reqs = template["spec"].get("requirements") or []
        itype, capacity_type, zone = launch_choice(
            reqs, prices, _node_class_zones(plan, node_class)
        )
        spec = prices["ec2"][itype]
        volume = (node_class["spec"].get("blockDeviceMappings") or [{}])[0].get("ebs", {})
        disk_gib = parse_quantity(volume.get("volumeSize", "20Gi")) / 2**30
        capacity, allocatable = _resources(itype, spec, disk_gib)
        labels = {
            **_labels_of(itype, spec),
            **(template.get("metadata", {}).get("labels") or {}),
            "karpenter.sh/nodepool": name,
            "karpenter.sh/capacity-type": capacity_type,
            "karpenter.k8s.aws/ec2nodeclass": node_class["metadata"]["name"],
            "karpenter.sh/initialized": "true",
            "karpenter.sh/registered": "true",
            "topology.kubernetes.io/zone": zone,
            "topology.kubernetes.io/region": _region(zone),
        }
        for req in reqs:  # a requirement with one value becomes that label, as Karpenter does
            if req["operator"] == "In" and len(req.get("values") or []) == 1:
                labels.setdefault(req["key"], str(req["values"][0]))
        taints = template["spec"].get("taints") or []
        nodes.append(
            node(f"{name}-{itype.replace('.', '-')}", labels, taints, capacity, allocatable)
        )
    return nodes


def local_nodes() -> list[dict[str, Any]]:
    labels = {"kubernetes.io/arch": "amd64", "kubernetes.io/os": "linux"}
    return [node("local-worker", labels, [], LOCAL_NODE, LOCAL_NODE)]


def plan_nodes(
    plan: Mapping[str, Any], prices: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    """The Node objects that stand for the plan's node groups and NodePools."""
    prices = prices or load_prices()
    nodes = node_group_nodes(plan, prices) + node_pool_nodes(plan, prices)
    return nodes or local_nodes()
