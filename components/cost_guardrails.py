"""CostGuardrails: a monthly AWS Budget with alert thresholds, and an encrypted SNS alarm topic.

* **Budget:** a monthly ``COST`` budget in USD; each threshold notifies when the forecasted or
  the actual spend passes a percentage of it (80% forecast and 100% actual by default). It can be
  narrowed to resources carrying given cost-allocation tags (activate them in Billing first).
* **Alarm topic:** an SNS topic encrypted with its own customer-managed KMS key. AWS Budgets and
  CloudWatch cannot publish to a topic encrypted with the AWS-managed ``alias/aws/sns`` key, so
  the key's policy lets exactly those two services (from this account) use it. The topic policy
  admits the same publishers and refuses non-TLS access. Email subscribers are optional (each
  address must confirm the subscription AWS sends).

The CloudWatch log groups of the control plane belong to the cluster component, not here.
"""

from __future__ import annotations

import json
import re
from enum import StrEnum
from typing import Any

import pulumi
import pulumi_aws as aws
from pydantic import Field

from components.common import ArgsModel, Issue, merge_tags

PUBLISHERS = ("budgets.amazonaws.com", "cloudwatch.amazonaws.com")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_TAG_KEY = re.compile(r"^[\w.:/=+\-@ ]{1,128}$")


class ThresholdKind(StrEnum):
    FORECASTED = "forecasted"
    ACTUAL = "actual"


class BudgetThreshold(ArgsModel):
    percent: float
    kind: ThresholdKind


def _default_thresholds() -> list[BudgetThreshold]:
    return [
        BudgetThreshold(percent=80, kind=ThresholdKind.FORECASTED),
        BudgetThreshold(percent=100, kind=ThresholdKind.ACTUAL),
    ]


class CostGuardrailsArgs(ArgsModel):
    """Stack config section ``cost``."""

    monthly_budget_usd: float = 1000.0
    thresholds: list[BudgetThreshold] = Field(default_factory=_default_thresholds)
    alert_emails: list[str] = Field(default_factory=list)
    # Only count spend on resources with these cost-allocation tags (e.g. environment: prod).
    cost_filter_tags: dict[str, str] = Field(default_factory=dict)

    def issues(self) -> list[Issue]:
        found = super().issues()
        if self.monthly_budget_usd <= 0:
            found.append(
                Issue(
                    ("monthlyBudgetUsd",),
                    f"must be greater than 0 (USD per month), got {self.monthly_budget_usd:g}",
                )
            )
        if not self.thresholds:
            found.append(Issue(("thresholds",), "list at least one threshold, e.g. 80 forecasted"))
        seen: set[tuple[float, ThresholdKind]] = set()
        for i, t in enumerate(self.thresholds):
            if not 0 < t.percent <= 1000:
                found.append(
                    Issue(
                        ("thresholds", i, "percent"),
                        f"must be a percentage of the budget in (0, 1000], got {t.percent:g}",
                    )
                )
            if (t.percent, t.kind) in seen:
                found.append(
                    Issue(
                        ("thresholds", i),
                        f"duplicate threshold {t.percent:g}% {t.kind.value}",
                    )
                )
            seen.add((t.percent, t.kind))
        if len(self.thresholds) > 10:
            found.append(Issue(("thresholds",), "AWS Budgets allows at most 10 notifications"))
        for i, addr in enumerate(self.alert_emails):
            if not _EMAIL.match(addr):
                found.append(Issue(("alertEmails", i), f"not an email address: {addr!r}"))
        for key, value in self.cost_filter_tags.items():
            if not _TAG_KEY.match(key) or not value:
                found.append(
                    Issue(
                        ("costFilterTags", key), "tag keys are 1-128 characters, values non-empty"
                    )
                )
        return found


def key_policy(account_id: str, partition: str) -> str:
    """Account admins manage the key; Budgets and CloudWatch (this account only) may encrypt."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "AccountAdmin",
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:{partition}:iam::{account_id}:root"},
                    "Action": "kms:*",
                    "Resource": "*",
                },
                {
                    "Sid": "AlarmPublishers",
                    "Effect": "Allow",
                    "Principal": {"Service": list(PUBLISHERS)},
                    "Action": ["kms:GenerateDataKey*", "kms:Decrypt"],
                    "Resource": "*",
                    "Condition": {"StringEquals": {"aws:SourceAccount": account_id}},
                },
            ],
        },
        sort_keys=True,
    )


def topic_policy(topic_arn: str, account_id: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "AlarmPublishers",
                    "Effect": "Allow",
                    "Principal": {"Service": list(PUBLISHERS)},
                    "Action": "sns:Publish",
                    "Resource": topic_arn,
                    "Condition": {"StringEquals": {"aws:SourceAccount": account_id}},
                },
                {
                    "Sid": "DenyInsecureTransport",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "sns:Publish",
                    "Resource": topic_arn,
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                },
            ],
        },
        sort_keys=True,
    )


def budget_notifications(args: CostGuardrailsArgs, topic_arn: Any) -> list[Any]:
    return [
        {
            "comparison_operator": "GREATER_THAN",
            "threshold": t.percent,
            "threshold_type": "PERCENTAGE",
            "notification_type": t.kind.value.upper(),
            "subscriber_sns_topic_arns": [topic_arn],
        }
        for t in args.thresholds
    ]


def cost_filters(args: CostGuardrailsArgs) -> list[Any]:
    if not args.cost_filter_tags:
        return []
    # Budgets filter tags as "user:<key>$<value>".
    values = [f"user:{k}${v}" for k, v in sorted(args.cost_filter_tags.items())]
    return [{"name": "TagKeyValue", "values": values}]


class CostGuardrails(pulumi.ComponentResource):
    """A monthly budget that notifies an encrypted SNS alarm topic."""

    budget_name: pulumi.Output[str]
    alarm_topic_arn: pulumi.Output[str]
    alarm_key_arn: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        args: CostGuardrailsArgs,
        *,
        tags: dict[str, str] | None = None,
        protect: bool = False,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """``protect`` keeps the topic's KMS key (prod): deleting a key loses what it encrypted."""
        args.raise_if_invalid("CostGuardrails")
        super().__init__("mlplatform:cost:CostGuardrails", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = merge_tags(tags, {"mlplatform:component": "cost-guardrails"})
        identity = aws.get_caller_identity_output()
        partition = aws.get_partition_output().partition

        key = aws.kms.Key(
            f"{name}-alarms-key",
            description=f"{name}: encrypts the alarm SNS topic",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            policy=pulumi.Output.all(identity.account_id, partition).apply(
                lambda v: key_policy(v[0], v[1])
            ),
            tags=tags,
            opts=pulumi.ResourceOptions.merge(
                child, pulumi.ResourceOptions(protect=protect, retain_on_delete=protect)
            ),
        )
        aws.kms.Alias(
            f"{name}-alarms-key-alias",
            name=f"alias/{name}-alarms",
            target_key_id=key.key_id,
            opts=child,
        )
        topic = aws.sns.Topic(
            f"{name}-alarms",
            name=f"{name}-alarms",
            kms_master_key_id=key.arn,
            tags=tags,
            opts=child,
        )
        topic_policy_res = aws.sns.TopicPolicy(
            f"{name}-alarms-policy",
            arn=topic.arn,
            policy=pulumi.Output.all(topic.arn, identity.account_id).apply(
                lambda v: topic_policy(v[0], v[1])
            ),
            opts=child,
        )
        for i, address in enumerate(args.alert_emails):
            aws.sns.TopicSubscription(
                f"{name}-alarms-email-{i}",
                topic=topic.arn,
                protocol="email",
                endpoint=address,
                opts=child,
            )

        budget_name = f"{name}-monthly"
        aws.budgets.Budget(
            f"{name}-budget",
            name=budget_name,
            budget_type="COST",
            time_unit="MONTHLY",
            limit_amount=f"{args.monthly_budget_usd:.2f}",
            limit_unit="USD",
            cost_filters=cost_filters(args),
            notifications=budget_notifications(args, topic.arn),
            tags=tags,
            # The topic policy must admit Budgets before it validates the subscriber.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[topic, topic_policy_res]),
        )

        self.budget_name = pulumi.Output.from_input(budget_name)
        self.alarm_topic_arn = topic.arn
        self.alarm_key_arn = key.arn
        self.register_outputs(
            {
                "budgetName": self.budget_name,
                "alarmTopicArn": self.alarm_topic_arn,
                "alarmKeyArn": self.alarm_key_arn,
            }
        )
