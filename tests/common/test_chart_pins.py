"""One owner for two rules the controllers share: a chart pinned to one release, and a
controller namespace that admits its webhook and metrics ports only."""

from __future__ import annotations

import pytest

from components.common import ArgsModel, check_chart_version, ports_only_network_policy
from components.leader_worker_set import LeaderWorkerSetArgs
from components.load_balancer_controller import LoadBalancerControllerArgs
from components.local_object_store import LocalObjectStoreArgs
from components.training_queues import TrainingQueuesArgs

CHARTED: list[type[ArgsModel]] = [
    LeaderWorkerSetArgs,
    LoadBalancerControllerArgs,
    LocalObjectStoreArgs,
    TrainingQueuesArgs,
]


@pytest.mark.parametrize("version", ["0.10.0", "3.5.0", "10.20.30", "0.19.0-rc.1"])
def test_exact_chart_versions_pass(version: str) -> None:
    assert check_chart_version("chartVersion", version) == []


@pytest.mark.parametrize(
    "version", ["0.10", "1", "^1.2.0", "~1.2.0", ">=1.2.0", "v1.2.3", "latest", "1.2.x", "1.2.3\n"]
)
def test_ranges_and_loose_versions_are_reported(version: str) -> None:
    (issue,) = check_chart_version(("leaderWorkerSet", "chartVersion"), version)
    assert issue.path == ("leaderWorkerSet", "chartVersion")
    assert issue.message == f"must be an exact version X.Y.Z, got {version!r}"


@pytest.mark.parametrize("args", CHARTED, ids=lambda a: a.__name__)
def test_every_charted_component_pins_by_the_same_rule(args: type[ArgsModel]) -> None:
    assert args().issues() == []  # the shipped pin passes
    found = [i for i in args(chartVersion="0.10").issues() if i.path == ("chartVersion",)]
    assert [i.message for i in found] == ["must be an exact version X.Y.Z, got '0.10'"]


def test_a_controller_namespace_admits_only_its_ports() -> None:
    policy = ports_only_network_policy("lws-controller", "lws-system", (9443, 8443))
    assert policy["metadata"] == {"name": "lws-controller", "namespace": "lws-system"}
    spec = policy["spec"]
    assert spec["podSelector"] == {}  # every pod of the namespace
    assert spec["policyTypes"] == ["Ingress"]
    assert spec["ingress"] == [
        {"ports": [{"protocol": "TCP", "port": 9443}, {"protocol": "TCP", "port": 8443}]}
    ]
