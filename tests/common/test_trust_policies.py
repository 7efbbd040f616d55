"""IAM trust policies: one implementation in components.common, the confused-deputy guard on every
Pod Identity role of the shipped dev and prod plans."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

import components.project_access as project_access
from components.common import (
    POD_IDENTITY_PRINCIPAL,
    cluster_arn,
    pod_identity_trust_policy,
    service_trust_policy,
)
from mlplatform.config import load_stack
from mlplatform.graph import Graph
from mlplatform.mocks import ACCOUNT_ID
from mlplatform.report import run_stack
from tests.storage.helpers import iam_findings

ROLE = "aws:iam/role:Role"
ASSOCIATION = "aws:eks/podIdentityAssociation:PodIdentityAssociation"
ADDON = "aws:eks/addon:Addon"
COMPONENTS = Path(__file__).resolve().parents[2] / "components"


# --- The builders -----------------------------------------------------------------------------


def test_service_trust_is_plain_unless_asked() -> None:
    assert service_trust_policy("ec2.amazonaws.com") == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "ec2.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    (s,) = service_trust_policy("eks.amazonaws.com", tag_session=True)["Statement"]
    assert s["Action"] == ["sts:AssumeRole", "sts:TagSession"]
    assert "Condition" not in s


def test_service_trust_with_source_account() -> None:
    (s,) = service_trust_policy("vpc-flow-logs.amazonaws.com", source_account=ACCOUNT_ID)[
        "Statement"
    ]
    assert s["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT_ID}}


def test_pod_identity_trust_pins_account_and_cluster() -> None:
    arn = cluster_arn("aws", "eu-west-1", ACCOUNT_ID, "ml")
    assert arn == f"arn:aws:eks:eu-west-1:{ACCOUNT_ID}:cluster/ml"
    (s,) = pod_identity_trust_policy(account_id=ACCOUNT_ID, cluster_arn=arn)["Statement"]
    assert s["Principal"] == {"Service": POD_IDENTITY_PRINCIPAL}
    assert s["Action"] == ["sts:AssumeRole", "sts:TagSession"]
    assert s["Condition"] == {
        "StringEquals": {"aws:SourceAccount": ACCOUNT_ID},
        "ArnEquals": {"aws:SourceArn": arn},
    }


@pytest.mark.parametrize(
    "doc",
    [
        service_trust_policy("ec2.amazonaws.com"),
        service_trust_policy("eks.amazonaws.com", tag_session=True),
        service_trust_policy("vpc-flow-logs.amazonaws.com", source_account=ACCOUNT_ID),
        pod_identity_trust_policy(
            account_id=ACCOUNT_ID, cluster_arn=cluster_arn("aws", "us-east-1", ACCOUNT_ID, "c")
        ),
    ],
    ids=["ec2", "eks", "vpc-flow-logs", "pod-identity"],
)
def test_trust_builders_pass_parliament(doc: dict[str, Any]) -> None:
    assert iam_findings(doc, trust=True) == []


def test_project_access_reexports_the_common_builders() -> None:
    assert project_access.pod_identity_trust_policy is pod_identity_trust_policy
    assert project_access.cluster_arn is cluster_arn
    assert project_access.POD_IDENTITY_PRINCIPAL == POD_IDENTITY_PRINCIPAL


def test_no_component_writes_its_own_trust_policy() -> None:
    # A trust document anywhere else is a copy that can miss the guard.
    copies = [
        path.name
        for path in sorted(COMPONENTS.glob("*.py"))
        if path.name != "common.py" and re.search(r"[\"']sts:AssumeRole[\"']", path.read_text())
    ]
    assert copies == []


# --- The shipped plans ------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["dev", "prod"])
def plan(request: pytest.FixtureRequest) -> tuple[str, Graph]:
    return request.param, run_stack(request.param)[0]


def trust_statements(role: Any) -> list[dict[str, Any]]:
    return list(json.loads(role.inputs["assumeRolePolicy"])["Statement"])


def principals(role: Any) -> set[str]:
    out: set[str] = set()
    for s in trust_statements(role):
        service = s.get("Principal", {}).get("Service", [])
        out |= {service} if isinstance(service, str) else set(service)
    return out


def pod_identity_roles(graph: Graph) -> list[Any]:
    return [r for r in graph.by_type(ROLE) if POD_IDENTITY_PRINCIPAL in principals(r)]


def test_every_pod_identity_role_is_guarded(plan: tuple[str, Graph]) -> None:
    stack, graph = plan
    (cluster,) = graph.by_type("aws:eks/cluster:Cluster")
    region = load_stack(stack).region or "us-east-1"
    expected = cluster_arn("aws", region, ACCOUNT_ID, cluster.inputs["name"])
    roles = pod_identity_roles(graph)
    names = {r.name for r in roles}
    # The platform's own controllers are among them, not only the project roles.
    for part in ("ebs-csi", "karpenter-controller", "load-balancer-controller"):
        assert any(part in n for n in names), (part, sorted(names))
    for role in roles:
        for s in trust_statements(role):
            cond = s.get("Condition", {})
            assert cond.get("StringEquals", {}).get("aws:SourceAccount") == ACCOUNT_ID, role.name
            assert cond.get("ArnEquals", {}).get("aws:SourceArn") == expected, role.name


def test_every_associated_role_is_a_guarded_pod_identity_role(plan: tuple[str, Graph]) -> None:
    # Catches a role handed out by Pod Identity whose trust names the principal some other way.
    _, graph = plan
    arns = [a.inputs["roleArn"] for a in graph.by_type(ASSOCIATION)]
    for addon in graph.by_type(ADDON):
        arns += [p["roleArn"] for p in addon.inputs.get("podIdentityAssociations") or []]
    guarded = pod_identity_roles(graph)
    assert arns
    for arn in arns:
        role_part = arn.split(":role/", 1)[1]
        # Mock ARNs end in the role's explicit name, or in its resource name plus a suffix.
        matches = [
            r
            for r in guarded
            if role_part == r.inputs.get("name")
            or re.fullmatch(re.escape(r.name) + r"-[0-9a-f]{8}", role_part)
        ]
        assert len(matches) == 1, (arn, [r.name for r in guarded])


def test_service_roles_carry_source_account_only_where_aws_sends_it(
    plan: tuple[str, Graph],
) -> None:
    _, graph = plan
    seen: set[str] = set()
    for role in graph.by_type(ROLE):
        services = principals(role)
        seen |= services
        conditions = [s.get("Condition") for s in trust_statements(role)]
        if services & {"ec2.amazonaws.com", "eks.amazonaws.com"}:
            assert conditions == [None], role.name
        elif "vpc-flow-logs.amazonaws.com" in services:
            assert conditions == [{"StringEquals": {"aws:SourceAccount": ACCOUNT_ID}}], role.name
    assert {"ec2.amazonaws.com", "eks.amazonaws.com", "vpc-flow-logs.amazonaws.com"} <= seen
