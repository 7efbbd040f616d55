"""CostGuardrails under mocks: the budget, its thresholds and the encrypted alarm topic."""

from __future__ import annotations

import json
from typing import Any

import pytest

from components.cost_guardrails import CostGuardrails, CostGuardrailsArgs
from mlplatform.graph import Graph
from mlplatform.plan import run_program


def build(args: CostGuardrailsArgs) -> Graph:
    return run_program(lambda: CostGuardrails("mlp-dev", args, tags={"environment": "dev"}))


@pytest.fixture(scope="module")
def default() -> Graph:
    return build(CostGuardrailsArgs(alert_emails=["finops@example.com"]))


def test_budget_has_the_default_thresholds(default: Graph) -> None:
    budget = default.one("aws:budgets/budget:Budget").inputs
    assert budget["name"] == "mlp-dev-monthly"
    assert (budget["budgetType"], budget["timeUnit"], budget["limitUnit"]) == (
        "COST",
        "MONTHLY",
        "USD",
    )
    assert budget["limitAmount"] == "1000.00"
    got = {(n["notificationType"], n["threshold"]) for n in budget["notifications"]}
    assert got == {("FORECASTED", 80), ("ACTUAL", 100)}
    topic = default.one("aws:sns/topic:Topic")
    for n in budget["notifications"]:
        assert n["thresholdType"] == "PERCENTAGE"
        assert len(n["subscriberSnsTopicArns"]) == 1
    assert default.depends_on(default.one("aws:budgets/budget:Budget"), topic)


def test_budget_waits_for_the_topic_policy_that_admits_budgets(default: Graph) -> None:
    # Budgets checks that it may publish when the budget is created: the policy must exist.
    budget = default.one("aws:budgets/budget:Budget")
    policy = default.one("aws:sns/topicPolicy:TopicPolicy")
    assert "budgets.amazonaws.com" in policy.inputs["policy"]
    assert default.depends_on(budget, policy)


def test_thresholds_and_amount_come_from_args() -> None:
    args = CostGuardrailsArgs.model_validate(
        {
            "monthlyBudgetUsd": 25000,
            "thresholds": [
                {"percent": 50, "kind": "actual"},
                {"percent": 90, "kind": "forecasted"},
                {"percent": 120, "kind": "actual"},
            ],
            "costFilterTags": {"environment": "prod"},
        }
    )
    budget = build(args).one("aws:budgets/budget:Budget").inputs
    assert budget["limitAmount"] == "25000.00"
    got = sorted((n["threshold"], n["notificationType"]) for n in budget["notifications"])
    assert got == [(50, "ACTUAL"), (90, "FORECASTED"), (120, "ACTUAL")]
    assert budget["costFilters"] == [{"name": "TagKeyValue", "values": ["user:environment$prod"]}]


def policy(resource: Any) -> dict[str, Any]:
    return json.loads(resource.inputs["policy"])


def test_alarm_topic_is_encrypted_with_a_key_publishers_may_use(default: Graph) -> None:
    topic = default.one("aws:sns/topic:Topic")
    key = default.one("aws:kms/key:Key")
    assert topic.inputs["kmsMasterKeyId"]
    assert "alias/aws/sns" not in topic.inputs["kmsMasterKeyId"]
    assert default.depends_on(topic, key)
    assert key.inputs["enableKeyRotation"] is True
    statements = {s["Sid"]: s for s in policy(key)["Statement"]}
    publishers = statements["AlarmPublishers"]
    assert set(publishers["Principal"]["Service"]) == {
        "budgets.amazonaws.com",
        "cloudwatch.amazonaws.com",
    }
    assert "aws:SourceAccount" in publishers["Condition"]["StringEquals"]


def test_topic_policy_admits_publishers_and_refuses_plain_http(default: Graph) -> None:
    statements = {
        s["Sid"]: s for s in policy(default.one("aws:sns/topicPolicy:TopicPolicy"))["Statement"]
    }
    assert statements["AlarmPublishers"]["Action"] == "sns:Publish"
    deny = statements["DenyInsecureTransport"]
    assert deny["Effect"] == "Deny"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_email_subscribers(default: Graph) -> None:
    (sub,) = default.by_type("aws:sns/topicSubscription:TopicSubscription")
    assert (sub.inputs["protocol"], sub.inputs["endpoint"]) == ("email", "finops@example.com")
    assert build(CostGuardrailsArgs()).by_type("aws:sns/topicSubscription:TopicSubscription") == []


def test_resources_are_tagged(default: Graph) -> None:
    for token in ("aws:sns/topic:Topic", "aws:kms/key:Key", "aws:budgets/budget:Budget"):
        assert default.one(token).inputs["tags"]["environment"] == "dev"


def test_no_log_groups_here(default: Graph) -> None:
    # Control-plane log groups belong to the cluster component.
    assert default.by_type("aws:cloudwatch/logGroup:LogGroup") == []
