"""The shipped stacks' cost goals and NAT choices, on their real offline plans."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mlplatform.policy import evaluate_policies
from mlplatform.report import build_plan

DEV_GOAL_USD = 120.0
STACKS = Path(__file__).resolve().parents[2] / "stacks"


@pytest.fixture(scope="module")
def dev() -> dict[str, Any]:
    return build_plan("dev")


@pytest.fixture(scope="module")
def prod() -> dict[str, Any]:
    return build_plan("prod")


def _names(plan: dict[str, Any], kind: str) -> set[str]:
    return {m["metadata"]["name"] for m in plan["manifests"] if m["kind"] == kind}


def test_dev_idles_under_its_goal_with_everything_it_ships_running(dev: dict[str, Any]) -> None:
    releases = {h["name"] for h in dev["helmReleases"]}
    assert {"kps", "kueue"} <= releases  # monitoring (Prometheus, Alertmanager, Grafana), Kueue
    assert {"mlflow", "churn-scorer"} <= _names(dev, "Deployment")  # MLflow, the example endpoint
    assert "mlflow-postgres" in _names(dev, "StatefulSet")
    cost = dev["cost"]
    assert cost["monthlyIdle"] <= DEV_GOAL_USD, [
        (ln["item"], ln["monthly"]) for ln in cost["lines"]
    ]
    assert cost["unpriced"] == [] and cost["capacity"]["unschedulable"] == []


def test_the_goal_fails_with_a_nat_gateway_instead(tmp_path: Path) -> None:
    stack = (STACKS / "Pulumi.dev.yaml").read_text()
    assert "    nat: instance\n" in stack
    (tmp_path / "Pulumi.dev.yaml").write_text(stack.replace("nat: instance", "nat: single-gateway"))
    assert build_plan("dev", tmp_path)["cost"]["monthlyIdle"] > DEV_GOAL_USD


def test_dev_egress_is_a_nat_instance_without_interface_endpoints(dev: dict[str, Any]) -> None:
    items = {ln["item"]: ln for ln in dev["cost"]["lines"]}
    assert "NAT instance: network-nat-asg" in items
    assert "NAT gateways" not in items and "Interface VPC endpoints" not in items
    assert items["Public IPv4 addresses"]["quantity"] == 1  # the NAT instance's


def test_prod_keeps_a_gateway_and_an_address_per_az(prod: dict[str, Any]) -> None:
    items = {ln["item"]: ln for ln in prod["cost"]["lines"]}
    assert items["NAT gateways"]["quantity"] == 3
    assert items["Public IPv4 addresses"]["quantity"] == 3
    assert items["Interface VPC endpoints"]["quantity"] == 9
    assert not [i for i in items if i.startswith("NAT instance")]


def _nat_instance_violations(plan: dict[str, Any], environment: str) -> list[dict[str, str]]:
    return [
        v for v in evaluate_policies(plan, environment) if v["policy"] == "no-nat-instance-in-prod"
    ]


def test_policy_pack_refuses_the_dev_nat_instance_in_prod(dev: dict[str, Any]) -> None:
    (found,) = _nat_instance_violations(dev, "prod")
    assert found["enforcementLevel"] == "mandatory"
    assert found["urn"].endswith("aws:ec2/networkInterface:NetworkInterface::network-nat-eni")
    # Dev runs the pack without the prod-only rules: the instance is fine there.
    assert _nat_instance_violations(dev, "dev") == []


def test_policy_pack_passes_prods_gateways(prod: dict[str, Any]) -> None:
    assert _nat_instance_violations(prod, "prod") == []
