"""Idle cost estimate of a plan, from a dated price table shipped with the package.

``estimate_cost(plan)`` reads only the plan dict (resource types and inputs, manifests and Helm
values, per the plan JSON contract), so it works offline on any stack. It prices what runs while
nobody trains or serves anything: the control plane, system nodes, NAT, public IPv4 addresses,
endpoints, load balancers, databases, volumes, keys, log ingestion and the capacity always-on pods
force into existence. GPU pools scale to zero and are reported as hourly prices per node type.

The parts: ``catalogue`` (prices, assumptions, the ledger of lines); ``aws_resources`` and
``aws_network`` (what the plan's AWS resources cost); ``scheduling`` and ``workloads`` (where
Kubernetes workloads land, and the capacity and volumes they keep alive); ``gpu_pools`` (GPU node
types and prices); ``render`` (the text table).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from mlplatform.cost import aws_network, aws_resources, gpu_pools, workloads
from mlplatform.cost.catalogue import (
    CONTROL_PLANE_LOG_TYPES,
    DEFAULT_REGION,
    GPU_RESOURCE,
    CostAssumptions,
    Ledger,
    dig,
    load_prices,
    parse_quantity,
)
from mlplatform.cost.render import render_cost_table
from mlplatform.cost.scheduling import node_allocatable

__all__ = [
    "CONTROL_PLANE_LOG_TYPES",
    "GPU_RESOURCE",
    "CostAssumptions",
    "estimate_cost",
    "gpu_hourly",
    "load_prices",
    "node_allocatable",
    "parse_quantity",
    "render_cost_table",
]


def gpu_hourly(
    plan: Mapping[str, Any], prices: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Per GPU pool, each candidate node type's hourly price on-demand and spot."""
    return gpu_pools.gpu_hourly(plan, prices or load_prices())


def estimate_cost(
    plan: Mapping[str, Any],
    *,
    assumptions: CostAssumptions | None = None,
    region: str | None = None,
) -> dict[str, Any]:
    """The plan's idle monthly cost, per line, plus GPU hourly prices and the assumptions used."""
    assumptions = assumptions or CostAssumptions()
    region = region or str(dig(plan, "outputs", "region", default="") or DEFAULT_REGION)
    prices = load_prices(region)
    b = Ledger(prices, assumptions)
    if prices["region"] != region:
        b.notes.append(
            f"no price table for {region}; {prices['region']} prices are used as an approximation"
        )
    resources = [r for r in plan.get("resources") or [] if r.get("custom", True)]
    manifests = list(plan.get("manifests") or [])
    helm = list(plan.get("helmReleases") or [])

    aws_resources.control_plane(b, resources)
    system_nodes = aws_resources.node_groups(b, resources)
    aws_resources.instances(b, resources)
    aws_network.nat_gateways(b, resources)
    aws_network.public_ipv4(b, resources, manifests)
    aws_network.endpoints(b, resources)
    aws_network.load_balancers(b, resources, manifests)
    aws_resources.databases(b, resources)
    workloads.volumes(b, resources, manifests, helm)
    aws_resources.keys_and_misc(b, resources)
    aws_resources.logs(b, resources)
    aws_resources.ci_runners(b, resources)
    capacity = workloads.always_on(b, manifests, helm, system_nodes)
    gpu = gpu_pools.gpu_hourly(plan, prices)

    monthly = round(sum(line["monthly"] for line in b.lines), 2)
    return {
        "currency": prices["currency"],
        "region": region,
        "priceTable": {"region": prices["region"], "asOf": prices["asOf"]},
        "monthlyIdle": monthly,
        "lines": b.lines,
        "gpuHourly": gpu,
        "capacity": capacity,
        "unpriced": b.unpriced,
        "assumptions": [
            f"{prices['hoursPerMonth']} hours per month; list prices for {prices['region']} "
            f"as of {prices['asOf']} (mlplatform/data/prices-{prices['region']}.json), "
            "before free tiers, credits, Savings Plans and taxes",
            "GPU pools scale to zero when idle: their cost is per node-hour (gpuHourly)",
            "Spot prices are on-demand times a per-family planning ratio, not a quote",
            "S3, ECR and EFS storage are priced at zero bytes stored (idle means no data yet)",
            "Helm charts are priced from their values: PVCs under persistence/volumeClaimTemplate "
            "and resources.requests; objects a chart creates beyond its values are not seen",
            "Always-on pods fill the system nodes first (selectors, taints, requests); the rest "
            "go to the first Karpenter CPU pool that admits them, on its cheapest priced type",
            "Every public IPv4 address is charged, in use or idle: Elastic IPs, instances' "
            "public addresses, one per AZ of each internet-facing load balancer; the EKS public "
            "endpoint's addresses belong to AWS",
            *assumptions.describe(),
            *b.notes,
        ],
        "assumptionValues": asdict(assumptions),
    }
