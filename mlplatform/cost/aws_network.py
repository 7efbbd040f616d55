"""Pricing of the network: NAT gateways, public IPv4 addresses (AWS charges each one, attached
or idle, Elastic or auto-assigned), interface endpoints and load balancers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mlplatform.cost.aws_resources import SUBNET, Resources, launch_template_for
from mlplatform.cost.catalogue import Ledger, by_type, dig, num, truthy

ELB_SUBNET_TAG = "kubernetes.io/role/elb"


def nat_gateways(b: Ledger, resources: Resources) -> None:
    nats = by_type(resources, "aws:ec2/natGateway:NatGateway")
    b.add(
        "NAT gateways",
        "network",
        len(nats),
        "gateway",
        b.price("natGateway") * b.hours,
        resources=[r["urn"] for r in nats],
    )
    if nats:
        b.add(
            "NAT data processing",
            "network",
            b.assumptions.nat_data_gb,
            "GB",
            b.price("natGatewayData"),
            note="assumed volume",
        )


def _public_subnet_count(resources: Resources) -> int:
    tagged = [
        s for s in by_type(resources, SUBNET) if dig(s, "inputs", "tags", ELB_SUBNET_TAG) == "1"
    ]
    return len(tagged) or 2  # an internet-facing load balancer spans at least two AZs


def _load_balancer_addresses(
    resources: Resources, manifests: list[Mapping[str, Any]]
) -> list[tuple[str, int]]:
    """(what, addresses) for every internet-facing load balancer: one address per AZ."""
    out: list[tuple[str, int]] = []
    for lb in by_type(
        resources, "aws:lb/loadBalancer:LoadBalancer", "aws:alb/loadBalancer:LoadBalancer"
    ):
        inputs = lb.get("inputs") or {}
        if truthy(inputs.get("internal")):
            continue
        azs = len(inputs.get("subnets") or inputs.get("subnetMappings") or []) or 2
        out.append((lb["urn"], azs))
    public_azs = _public_subnet_count(resources)
    groups: set[str] = set()
    for m in manifests:
        meta = m.get("metadata") or {}
        ann = meta.get("annotations") or {}
        ident = f"{m.get('kind')}/{meta.get('namespace', 'default')}/{meta.get('name')}"
        if m.get("kind") == "Ingress":
            if ann.get("alb.ingress.kubernetes.io/scheme") != "internet-facing":
                continue  # the AWS load balancer controller defaults to internal
            group = ann.get("alb.ingress.kubernetes.io/group.name")
            if group:
                if group in groups:
                    continue
                groups.add(group)
            subnets = str(ann.get("alb.ingress.kubernetes.io/subnets", "")).split(",")
            out.append((ident, len([s for s in subnets if s.strip()]) or public_azs))
        elif m.get("kind") == "Service" and dig(m, "spec", "type") == "LoadBalancer":
            scheme = ann.get("service.beta.kubernetes.io/aws-load-balancer-scheme")
            by_controller = dig(m, "spec", "loadBalancerClass") or ann.get(
                "service.beta.kubernetes.io/aws-load-balancer-type"
            )
            internal = truthy(ann.get("service.beta.kubernetes.io/aws-load-balancer-internal"))
            # The controller defaults to internal; the in-tree provider to internet-facing.
            public = scheme == "internet-facing" or (
                scheme is None and not by_controller and not internal
            )
            if public:
                out.append((ident, public_azs))
    return out


def _public_subnets(resources: Resources) -> set[str]:
    return {
        s["urn"]
        for s in by_type(resources, SUBNET)
        if truthy(dig(s, "inputs", "mapPublicIpOnLaunch"))
    }


def _launched_addresses(resources: Resources) -> list[tuple[str, int]]:
    """Addresses that instances get at launch: node groups, Auto Scaling groups, instances."""
    public_subnets = _public_subnets(resources)
    out: list[tuple[str, int]] = []
    for res in by_type(
        resources,
        "aws:eks/nodeGroup:NodeGroup",
        "aws:autoscaling/group:Group",
        "aws:ec2/instance:Instance",
    ):
        inputs = res.get("inputs") or {}
        lt_inputs = launch_template_for(res, resources).get("inputs") or {}
        interfaces = [*(lt_inputs.get("networkInterfaces") or [])]
        if any("associatePublicIpAddress" in i for i in interfaces):
            public = any(truthy(i.get("associatePublicIpAddress")) for i in interfaces)
        elif "associatePublicIpAddress" in inputs:
            public = truthy(inputs["associatePublicIpAddress"])
        else:
            public = bool(set(res.get("dependencies") or []) & public_subnets)
        if not public:
            continue
        if res.get("type") == "aws:eks/nodeGroup:NodeGroup":
            scaling = inputs.get("scalingConfig") or {}
            count = max(num(scaling.get("desiredSize")), num(scaling.get("minSize")))
        elif res.get("type") == "aws:autoscaling/group:Group":
            count = max(num(inputs.get("desiredCapacity")), num(inputs.get("minSize")))
        else:
            count = 1
        if count:
            out.append((res["urn"], int(count)))
    return out


def public_ipv4(b: Ledger, resources: Resources, manifests: list[Mapping[str, Any]]) -> None:
    found = [(r["urn"], 1) for r in by_type(resources, "aws:ec2/eip:Eip")]
    found += _launched_addresses(resources)
    found += _load_balancer_addresses(resources, manifests)
    b.add(
        "Public IPv4 addresses",
        "network",
        sum(n for _, n in found),
        "address",
        b.price("publicIpv4") * b.hours,
        resources=[what if n == 1 else f"{what} (x{n})" for what, n in found],
        note="Elastic IPs, instances' public addresses, internet-facing load balancers (per AZ)",
    )


def endpoints(b: Ledger, resources: Resources) -> None:
    azs = 0
    urns = []
    for ep in by_type(resources, "aws:ec2/vpcEndpoint:VpcEndpoint"):
        inputs = ep.get("inputs") or {}
        if str(inputs.get("vpcEndpointType", "Gateway")) != "Interface":
            continue
        azs += max(1, len(inputs.get("subnetIds") or []))
        urns.append(ep["urn"])
    b.add(
        "Interface VPC endpoints",
        "network",
        azs,
        "endpoint-AZ",
        b.price("interfaceEndpoint") * b.hours,
        resources=urns,
        note="gateway endpoints (S3, DynamoDB) are free",
    )


def load_balancers(b: Ledger, resources: Resources, manifests: list[Mapping[str, Any]]) -> None:
    albs: list[str] = []
    nlbs: list[str] = []
    for lb in by_type(
        resources, "aws:lb/loadBalancer:LoadBalancer", "aws:alb/loadBalancer:LoadBalancer"
    ):
        lb_kind = str((lb.get("inputs") or {}).get("loadBalancerType", "application"))
        (nlbs if lb_kind == "network" else albs).append(lb["urn"])
    ingress_groups: set[str] = set()
    for m in manifests:
        kind = m.get("kind")
        meta = m.get("metadata") or {}
        if kind == "Service" and dig(m, "spec", "type") == "LoadBalancer":
            nlbs.append(f"Service/{meta.get('namespace', 'default')}/{meta.get('name')}")
        elif kind == "Ingress":
            ann = meta.get("annotations") or {}
            cls = dig(m, "spec", "ingressClassName") or ann.get("kubernetes.io/ingress.class")
            if cls == "alb":
                group = ann.get("alb.ingress.kubernetes.io/group.name")
                key = f"group:{group}" if group else f"{meta.get('namespace')}/{meta.get('name')}"
                if key not in ingress_groups:
                    ingress_groups.add(key)
                    albs.append(f"Ingress/{key}")
    lcu = b.assumptions.load_balancer_lcu
    b.add(
        "Application load balancers",
        "network",
        len(albs),
        "ALB",
        (b.price("alb") + lcu * b.price("albLcu")) * b.hours,
        resources=albs,
    )
    b.add(
        "Network load balancers",
        "network",
        len(nlbs),
        "NLB",
        (b.price("nlb") + lcu * b.price("nlbLcu")) * b.hours,
        resources=nlbs,
    )
