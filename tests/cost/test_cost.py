"""Idle cost estimates over synthetic plan dicts, checked against the shipped price table."""

from __future__ import annotations

from typing import Any

import pytest

from mlplatform.cost import (
    CostAssumptions,
    estimate_cost,
    gpu_hourly,
    parse_quantity,
    render_cost_table,
)
from tests.cost.helpers import HOURS, NO_LOGS, PRICES, deployment, dev_plan, ec2, line, p, res


def test_idle_total_is_the_sum_of_priced_lines() -> None:
    cost = estimate_cost(dev_plan(), assumptions=NO_LOGS)
    expected = (
        HOURS * (p("eksControlPlane") + ec2("t4g.medium") + p("natGateway") + p("publicIpv4"))
        + 20 * p("ebsGp3")
        + 2 * p("kmsKey")
    )
    assert cost["monthlyIdle"] == pytest.approx(expected, abs=0.02)
    assert cost["monthlyIdle"] == pytest.approx(
        sum(ln["monthly"] for ln in cost["lines"]), abs=0.01
    )
    assert line(cost, "System nodes")["unit"] == "t4g.medium on-demand node"
    # gateway endpoints and VPCs are free
    assert not [ln for ln in cost["lines"] if "endpoint" in ln["item"].lower()]


def test_recommended_dev_sizing_meets_the_150_dollar_goal_with_default_log_assumptions() -> None:
    cost = estimate_cost(dev_plan("t4g.medium", 20))
    assert cost["monthlyIdle"] <= 150, render_cost_table(cost)
    larger = estimate_cost(dev_plan("t3.large", 40))
    assert larger["monthlyIdle"] > 150


def test_log_ingestion_follows_enabled_types_and_flow_logs() -> None:
    a = CostAssumptions(control_plane_log_gb={"api": 2.0, "audit": 8.0}, flow_log_gb=3.0)
    plan = dev_plan()
    plan["resources"] += [
        res("aws:ec2/flowLog:FlowLog", "flow", {"logDestinationType": "cloud-watch-logs"}),
    ]
    cost = estimate_cost(plan, assumptions=a)
    ingest = line(cost, "CloudWatch log ingestion")
    assert ingest["quantity"] == pytest.approx(2 + 8 + 3)
    assert ingest["monthly"] == pytest.approx(13 * p("logsIngestion"), abs=0.01)
    assert any("audit 8 GB" in s for s in cost["assumptions"])


def test_interface_endpoints_are_priced_per_az() -> None:
    plan = dev_plan()
    plan["resources"].append(
        res(
            "aws:ec2/vpcEndpoint:VpcEndpoint",
            "ecr-api",
            {"vpcEndpointType": "Interface", "subnetIds": ["subnet-a", "subnet-b"]},
        )
    )
    ln = line(estimate_cost(plan, assumptions=NO_LOGS), "Interface VPC endpoints")
    assert ln["quantity"] == 2
    assert ln["monthly"] == pytest.approx(2 * HOURS * p("interfaceEndpoint"), abs=0.01)


def test_rds_multi_az_counts_twice_and_storage_is_added() -> None:
    plan = dev_plan()
    plan["resources"].append(
        res(
            "aws:rds/instance:Instance",
            "mlflow-db",
            {"instanceClass": "db.t4g.micro", "multiAz": True, "allocatedStorage": 20},
        )
    )
    cost = estimate_cost(plan, assumptions=NO_LOGS)
    db = line(cost, "RDS db.t4g.micro")
    assert db["monthly"] == pytest.approx(
        2 * HOURS * PRICES["rds"]["db.t4g.micro"]["hourly"], abs=0.01
    )
    assert line(cost, "RDS storage")["quantity"] == 40


def test_load_balancers_from_resources_services_and_ingress_groups() -> None:
    plan = dev_plan()
    plan["resources"].append(
        res("aws:lb/loadBalancer:LoadBalancer", "nlb", {"loadBalancerType": "network"})
    )
    ingress = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "name": "a",
            "namespace": "serving",
            "annotations": {"alb.ingress.kubernetes.io/group.name": "public"},
        },
        "spec": {"ingressClassName": "alb"},
    }
    plan["manifests"] = [
        ingress,
        {**ingress, "metadata": {**ingress["metadata"], "name": "b"}},  # same group, same ALB
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "s"},
            "spec": {"type": "LoadBalancer"},
        },
    ]
    cost = estimate_cost(plan, assumptions=NO_LOGS)
    assert line(cost, "Application load balancers")["quantity"] == 1
    assert line(cost, "Network load balancers")["quantity"] == 2


def test_persistent_volumes_from_pvcs_statefulsets_and_helm_values() -> None:
    plan = dev_plan(
        manifests=[
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": "data"},
                "spec": {"resources": {"requests": {"storage": "10Gi"}}},
            },
            {
                "apiVersion": "apps/v1",
                "kind": "StatefulSet",
                "metadata": {"name": "db"},
                "spec": {
                    "replicas": 2,
                    "template": {"spec": {"containers": []}},
                    "volumeClaimTemplates": [
                        {"spec": {"resources": {"requests": {"storage": "5Gi"}}}}
                    ],
                },
            },
        ],
        helmReleases=[
            {
                "name": "monitoring",
                "namespace": "monitoring",
                "values": {
                    "prometheus": {
                        "prometheusSpec": {
                            "storageSpec": {
                                "volumeClaimTemplate": {
                                    "spec": {"resources": {"requests": {"storage": "20Gi"}}}
                                }
                            }
                        }
                    },
                    "grafana": {"persistence": {"enabled": True, "size": "2Gi"}},
                    "alertmanager": {"persistence": {"enabled": False, "size": "50Gi"}},
                },
            }
        ],
    )
    pv = line(estimate_cost(plan, assumptions=NO_LOGS), "Persistent volumes (gp3)")
    assert pv["quantity"] == pytest.approx(10 + 2 * 5 + 20 + 2)


def test_always_on_pods_beyond_system_capacity_force_extra_nodes() -> None:
    fits = estimate_cost(
        dev_plan(manifests=[deployment("small", "500m", "1Gi")]), assumptions=NO_LOGS
    )
    assert fits["capacity"]["extraNodes"] == 0
    assert not [ln for ln in fits["lines"] if ln["category"] == "pods"]
    big = estimate_cost(
        dev_plan(manifests=[deployment("big", "1", "3Gi", replicas=3)]), assumptions=NO_LOGS
    )
    extra = line(big, "Always-on pods beyond system node capacity")
    assert extra["quantity"] == big["capacity"]["extraNodes"] >= 2
    assert extra["unitMonthly"] == pytest.approx(HOURS * ec2("t4g.medium"), abs=0.01)


GPU_NODEPOOL = {
    "apiVersion": "karpenter.sh/v1",
    "kind": "NodePool",
    "metadata": {"name": "gpu-a10g"},
    "spec": {
        "template": {
            "metadata": {
                "labels": {"mlplatform.io/pool": "a10g", "mlplatform.io/accelerator": "nvidia-a10g"}
            },
            "spec": {
                "taints": [{"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"}],
                "requirements": [
                    {
                        "key": "karpenter.k8s.aws/instance-family",
                        "operator": "In",
                        "values": ["g5"],
                    },
                    {
                        "key": "karpenter.k8s.aws/instance-size",
                        "operator": "In",
                        "values": ["xlarge", "2xlarge"],
                    },
                    {
                        "key": "karpenter.sh/capacity-type",
                        "operator": "In",
                        "values": ["spot", "on-demand"],
                    },
                ],
            },
        },
        "limits": {"nvidia.com/gpu": 4},
    },
}


def test_gpu_hourly_lists_each_pool_node_type_on_demand_and_spot() -> None:
    rows = gpu_hourly(dev_plan(manifests=[GPU_NODEPOOL]))
    assert len(rows) == 1
    pool = rows[0]
    assert pool["pool"] == "a10g"
    assert pool["capacityTypes"] == ["on-demand", "spot"]
    assert pool["gpuLimit"] == 4
    assert [n["instanceType"] for n in pool["nodeTypes"]] == ["g5.xlarge", "g5.2xlarge"]
    for n in pool["nodeTypes"]:
        assert n["onDemand"] == pytest.approx(ec2(n["instanceType"]))
        assert 0 < n["spot"] < n["onDemand"]


def test_gpu_pools_do_not_add_idle_cost_unless_pods_keep_them_up() -> None:
    idle = estimate_cost(dev_plan(manifests=[GPU_NODEPOOL]), assumptions=NO_LOGS)
    base = estimate_cost(dev_plan(), assumptions=NO_LOGS)
    assert idle["monthlyIdle"] == base["monthlyIdle"]
    server = deployment("llm", "2", "8Gi", nodeSelector={"mlplatform.io/pool": "a10g"})
    server["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"] = {
        "nvidia.com/gpu": 1
    }
    busy = estimate_cost(dev_plan(manifests=[GPU_NODEPOOL, server]), assumptions=NO_LOGS)
    gpu = line(busy, "Always-on GPU pods in pool a10g")
    assert gpu["quantity"] == 1
    assert gpu["unitMonthly"] == pytest.approx(HOURS * ec2("g5.xlarge"), abs=0.01)


def test_unknown_instance_types_are_listed_not_guessed() -> None:
    cost = estimate_cost(dev_plan(instance="x9z.huge"), assumptions=NO_LOGS)
    assert [u["reason"] for u in cost["unpriced"]] == ["no price for instance type x9z.huge"]


def test_other_regions_fall_back_with_a_note() -> None:
    plan = dev_plan()
    plan["outputs"]["region"] = "eu-west-1"
    cost = estimate_cost(plan)
    assert any("no price table for eu-west-1" in a for a in cost["assumptions"])


def test_render_cost_table_shows_every_line_total_and_assumptions() -> None:
    cost = estimate_cost(dev_plan(manifests=[GPU_NODEPOOL]))
    text = render_cost_table(cost)
    for ln in cost["lines"]:
        assert ln["item"] in text
    total = [t for t in text.splitlines() if t.startswith("Total idle per month")]
    assert total == [total[0]] and total[0].endswith(f"{cost['monthlyIdle']:.2f}")
    assert "g5.xlarge" in text and "spot" in text
    assert cost["assumptions"][0] in text


def test_every_price_names_a_known_source_and_the_table_is_dated() -> None:
    import datetime

    datetime.date.fromisoformat(PRICES["asOf"])
    sources = PRICES["sources"]
    entries = [
        *PRICES["prices"].values(),
        *PRICES["ec2"].values(),
        *PRICES["spotFraction"].values(),
        *PRICES["rds"].values(),
    ]
    for entry in entries:
        assert entry["source"] in sources, entry
        assert sources[entry["source"]].startswith("https://")


@pytest.mark.parametrize(
    ("value", "expected"),
    [("500m", 0.5), ("2", 2.0), ("1Gi", 2**30), ("512Mi", 2**29), ("1G", 1e9), (3, 3.0)],
)
def test_parse_quantity(value: Any, expected: float) -> None:
    assert parse_quantity(value) == expected
