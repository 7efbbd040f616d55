"""Synthetic plan pieces and price lookups shared by the cost tests."""

from __future__ import annotations

from typing import Any

from mlplatform.cost import CONTROL_PLANE_LOG_TYPES, CostAssumptions, load_prices

PRICES = load_prices()
HOURS = PRICES["hoursPerMonth"]
STACK = "urn:pulumi:dev::ml-platform::"
# Logs off unless a test asks for them, so sums stay readable.
NO_LOGS = CostAssumptions(
    control_plane_log_gb=dict.fromkeys(CONTROL_PLANE_LOG_TYPES, 0.0),
    flow_log_gb=0,
    other_log_group_gb=0,
    nat_data_gb=0,
)


def p(key: str) -> float:
    return float(PRICES["prices"][key]["usd"])


def ec2(itype: str) -> float:
    return float(PRICES["ec2"][itype]["hourly"])


def res(
    rtype: str, name: str, inputs: dict[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    return {
        "urn": f"{STACK}{rtype}::{name}",
        "type": rtype,
        "custom": True,
        "parent": "",
        "inputs": inputs or {},
        "protect": False,
        "retainOnDelete": False,
        "dependencies": [],
        "provider": "",
        **extra,
    }


def dev_plan(instance: str = "t4g.medium", root_gib: int = 20, **plan: Any) -> dict[str, Any]:
    lt = res(
        "aws:ec2/launchTemplate:LaunchTemplate",
        "system-lt",
        {"blockDeviceMappings": [{"ebs": {"volumeSize": root_gib, "volumeType": "gp3"}}]},
    )
    resources = [
        res("aws:eks/cluster:Cluster", "eks", {"enabledClusterLogTypes": ["api", "audit"]}),
        lt,
        res(
            "aws:eks/nodeGroup:NodeGroup",
            "system",
            {
                "instanceTypes": [instance],
                "capacityType": "ON_DEMAND",
                "scalingConfig": {"minSize": 1, "desiredSize": 1, "maxSize": 2},
                "launchTemplate": {"id": "lt-1", "version": "1"},
            },
            dependencies=[lt["urn"]],
        ),
        res("aws:ec2/natGateway:NatGateway", "nat-0"),
        res("aws:ec2/eip:Eip", "nat-0-eip"),
        res("aws:kms/key:Key", "eks-key"),
        res("aws:kms/key:Key", "logs-key"),
        res("aws:ec2/vpcEndpoint:VpcEndpoint", "s3", {"vpcEndpointType": "Gateway"}),
        res("aws:ec2/vpc:Vpc", "vpc", {"cidrBlock": "10.0.0.0/16"}),
    ]
    return {"stack": "dev", "resources": resources, "outputs": {"region": "us-east-1"}, **plan}


def line(cost: dict[str, Any], prefix: str) -> dict[str, Any]:
    found = [ln for ln in cost["lines"] if ln["item"].startswith(prefix)]
    assert len(found) == 1, [ln["item"] for ln in cost["lines"]]
    return found[0]


def deployment(name: str, cpu: str, mem: str, replicas: int = 1, **pod: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "x"},
        "spec": {
            "replicas": replicas,
            "template": {
                "spec": {
                    "containers": [
                        {"name": "c", "resources": {"requests": {"cpu": cpu, "memory": mem}}}
                    ],
                    **pod,
                }
            },
        },
    }
