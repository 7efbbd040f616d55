"""NAT instances and every public IPv4 address are priced; private ones are not."""

from __future__ import annotations

from typing import Any

import pytest

from mlplatform.cost import estimate_cost
from tests.cost.helpers import HOURS, NO_LOGS, dev_plan, ec2, line, p, res

LT = "aws:ec2/launchTemplate:LaunchTemplate"
ASG = "aws:autoscaling/group:Group"


def without_gateway(plan: dict[str, Any]) -> dict[str, Any]:
    plan["resources"] = [
        r
        for r in plan["resources"]
        if r["type"] not in ("aws:ec2/natGateway:NatGateway", "aws:ec2/eip:Eip")
    ]
    return plan


def nat_instance(public: bool = True, itype: str = "t4g.nano") -> list[dict[str, Any]]:
    lt = res(
        LT,
        "nat-lt",
        {
            "instanceType": itype,
            "networkInterfaces": [
                {"deviceIndex": 0, "associatePublicIpAddress": "true" if public else "false"}
            ],
            "blockDeviceMappings": [{"ebs": {"volumeSize": 8, "volumeType": "gp3"}}],
            "tags": {"mlplatform.io/nat-instance": "nat"},
        },
    )
    asg = res(
        ASG,
        "nat-asg",
        {"minSize": 1, "maxSize": 1, "desiredCapacity": 1},
        dependencies=[lt["urn"]],
    )
    return [lt, asg]


def test_nat_instance_costs_its_instance_disk_and_address_and_no_gateway() -> None:
    plan = without_gateway(dev_plan())
    plan["resources"] += nat_instance()
    cost = estimate_cost(plan, assumptions=NO_LOGS)
    nat = line(cost, "NAT instance: nat-asg")
    assert nat["unit"] == "t4g.nano on-demand instance"
    assert nat["monthly"] == pytest.approx(HOURS * ec2("t4g.nano"), abs=0.01)
    assert line(cost, "Instance root volumes (gp3)")["quantity"] == 8
    ips = line(cost, "Public IPv4 addresses")
    assert ips["quantity"] == 1 and ips["resources"] == [plan["resources"][-1]["urn"]]
    assert not [ln for ln in cost["lines"] if ln["item"].startswith("NAT gateways")]
    gateway = estimate_cost(dev_plan(), assumptions=NO_LOGS)
    # Both pay one address; the instance and its disk replace the gateway's hours.
    saved = HOURS * (p("natGateway") - ec2("t4g.nano")) - 8 * p("ebsGp3")
    assert gateway["monthlyIdle"] - cost["monthlyIdle"] == pytest.approx(saved, abs=0.02)


def test_an_instance_without_a_public_address_is_not_charged_for_one() -> None:
    plan = without_gateway(dev_plan())
    plan["resources"] += nat_instance(public=False)
    cost = estimate_cost(plan, assumptions=NO_LOGS)
    assert not [ln for ln in cost["lines"] if ln["item"] == "Public IPv4 addresses"]


def test_unpriced_instance_types_are_listed() -> None:
    plan = without_gateway(dev_plan())
    plan["resources"] += nat_instance(itype="x9g.tiny")
    cost = estimate_cost(plan, assumptions=NO_LOGS)
    assert [u["reason"] for u in cost["unpriced"]] == ["no price for instance type 'x9g.tiny'"]


def _ingress(name: str, **ann: str) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": name, "namespace": "serving", "annotations": ann},
        "spec": {"ingressClassName": "alb"},
    }


def _public_subnets(n: int) -> list[dict[str, Any]]:
    return [
        res("aws:ec2/subnet:Subnet", f"public-{i}", {"tags": {"kubernetes.io/role/elb": "1"}})
        for i in range(n)
    ]


def test_internet_facing_load_balancers_pay_an_address_per_az_internal_ones_none() -> None:
    plan = dev_plan(
        manifests=[
            _ingress("internal", **{"alb.ingress.kubernetes.io/group.name": "shared"}),
            _ingress(
                "public-a",
                **{
                    "alb.ingress.kubernetes.io/scheme": "internet-facing",
                    "alb.ingress.kubernetes.io/group.name": "edge",
                },
            ),
            # same group: the same load balancer, the same addresses
            _ingress(
                "public-b",
                **{
                    "alb.ingress.kubernetes.io/scheme": "internet-facing",
                    "alb.ingress.kubernetes.io/group.name": "edge",
                },
            ),
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {
                    "name": "nlb",
                    "annotations": {
                        "service.beta.kubernetes.io/aws-load-balancer-type": "external",
                        "service.beta.kubernetes.io/aws-load-balancer-scheme": "internet-facing",
                    },
                },
                "spec": {"type": "LoadBalancer"},
            },
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {
                    "name": "private-nlb",
                    "annotations": {
                        "service.beta.kubernetes.io/aws-load-balancer-type": "external"
                    },
                },
                "spec": {"type": "LoadBalancer"},
            },
        ]
    )
    plan["resources"] += _public_subnets(3)
    plan["resources"].append(
        res(
            "aws:lb/loadBalancer:LoadBalancer",
            "api",
            {"internal": False, "subnets": ["subnet-a", "subnet-b"]},
        )
    )
    plan["resources"].append(res("aws:lb/loadBalancer:LoadBalancer", "db", {"internal": True}))
    ips = line(estimate_cost(plan, assumptions=NO_LOGS), "Public IPv4 addresses")
    # the NAT gateway's EIP + the "edge" ALB in 3 AZs + the NLB in 3 AZs + the 2-subnet LB
    assert ips["quantity"] == 1 + 3 + 3 + 2
    assert "Ingress/serving/public-a (x3)" in ips["resources"]
    assert not any("internal" in r or "private-nlb" in r for r in ips["resources"])


def test_nodes_in_public_subnets_pay_for_their_addresses() -> None:
    plan = dev_plan()
    subnet = res("aws:ec2/subnet:Subnet", "public-0", {"mapPublicIpOnLaunch": True})
    nodes = res(
        "aws:eks/nodeGroup:NodeGroup",
        "edge-nodes",
        {
            "instanceTypes": ["t4g.medium"],
            "scalingConfig": {"minSize": 2, "desiredSize": 3, "maxSize": 4},
        },
        dependencies=[subnet["urn"]],
    )
    plan["resources"] += [subnet, nodes]
    ips = line(estimate_cost(plan, assumptions=NO_LOGS), "Public IPv4 addresses")
    assert ips["quantity"] == 1 + 3
    assert f"{nodes['urn']} (x3)" in ips["resources"]
