"""Bad monitoring and cost input: every problem reported at once, located by its config path."""

from __future__ import annotations

from typing import Any

import pytest

from components.common import InvalidArgsError, format_path
from components.cost_guardrails import CostGuardrailsArgs
from components.monitoring_stack import MonitoringStackArgs


def problems(model: Any) -> dict[str, str]:
    return {format_path(i.path): i.message for i in model.issues()}


def test_defaults_are_valid() -> None:
    assert problems(MonitoringStackArgs()) == {}
    assert problems(CostGuardrailsArgs()) == {}
    assert MonitoringStackArgs().secret_issues([]) == []


def test_config_keys_are_camel_case() -> None:
    args = MonitoringStackArgs.model_validate(
        {
            "prometheus": {"retentionDays": 30, "volumeSizeGi": 50},
            "dcgmExporter": {"enabled": False},
        }
    )
    assert args.prometheus.retention_days == 30
    assert args.dcgm_exporter.enabled is False


@pytest.mark.parametrize("days", [0, -3])
def test_retention_below_one_day(days: int) -> None:
    args = MonitoringStackArgs.model_validate({"prometheus": {"retentionDays": days}})
    found = problems(args)
    assert "at least 1 (day)" in found["prometheus.retentionDays"]


def test_receiver_without_its_secret() -> None:
    args = MonitoringStackArgs.model_validate(
        {
            "alertmanager": {
                "receivers": [
                    {"name": "oncall", "kind": "pagerduty"},
                    {"name": "team", "kind": "slack", "secret": "slackUrl"},
                ]
            }
        }
    )
    found = {format_path(i.path): i.message for i in args.secret_issues(["oncall"])}
    assert list(found) == ["alertmanager.receivers[1].secret"]
    assert "Slack incoming-webhook URL" in found["alertmanager.receivers[1].secret"]
    assert "slackUrl" in found["alertmanager.receivers[1].secret"]


def test_receiver_problems_are_all_reported() -> None:
    args = MonitoringStackArgs.model_validate(
        {
            "prometheus": {"retentionDays": 0, "scrapeInterval": "often"},
            "alertmanager": {
                "receivers": [
                    {"name": "mail", "kind": "email", "to": ["not-an-address"]},
                    {"name": "mail", "kind": "webhook", "channel": "#x"},
                    {"name": "Bad_Name", "kind": "slack", "severities": []},
                ]
            },
        }
    )
    found = problems(args)
    assert set(found) >= {
        "prometheus.retentionDays",
        "prometheus.scrapeInterval",
        "alertmanager.receivers[0].to[0]",
        "alertmanager.receivers[0].fromAddress",
        "alertmanager.receivers[0].smarthost",
        "alertmanager.receivers[1].name",
        "alertmanager.receivers[1].channel",
        "alertmanager.receivers[2].name",
        "alertmanager.receivers[2].severities",
    }
    assert "duplicate" in found["alertmanager.receivers[1].name"]


def test_unknown_receiver_kind_is_rejected_by_the_schema() -> None:
    with pytest.raises(ValueError, match="slack"):
        MonitoringStackArgs.model_validate(
            {"alertmanager": {"receivers": [{"name": "x", "kind": "carrier-pigeon"}]}}
        )


def test_bad_resource_quantities() -> None:
    args = MonitoringStackArgs.model_validate(
        {
            "prometheus": {
                "resources": {
                    "cpuRequest": "lots",
                    "memoryRequest": "2Gi",
                    "cpuLimit": "2",
                    "memoryLimit": "8GB",
                }
            }
        }
    )
    assert set(problems(args)) == {
        "prometheus.resources.cpuRequest",
        "prometheus.resources.memoryLimit",
    }


def test_negative_gpu_price() -> None:
    args = MonitoringStackArgs.model_validate({"gpuHourlyPricesUsd": {"nvidia-h100": -1}})
    assert "gpuHourlyPricesUsd.nvidia-h100" in problems(args)


@pytest.mark.parametrize("budget", [0, -100])
def test_budget_of_zero_or_less(budget: float) -> None:
    found = problems(CostGuardrailsArgs(monthly_budget_usd=budget))
    assert "greater than 0" in found["monthlyBudgetUsd"]


@pytest.mark.parametrize("percent", [0, -5, 1001])
def test_threshold_out_of_range(percent: float) -> None:
    args = CostGuardrailsArgs.model_validate(
        {
            "thresholds": [
                {"percent": 80, "kind": "forecasted"},
                {"percent": percent, "kind": "actual"},
            ]
        }
    )
    assert set(problems(args)) == {"thresholds[1].percent"}


def test_cost_problems_are_all_reported_and_raised_together() -> None:
    args = CostGuardrailsArgs.model_validate(
        {
            "monthlyBudgetUsd": 0,
            "thresholds": [{"percent": 80, "kind": "actual"}, {"percent": 80, "kind": "actual"}],
            "alertEmails": ["finops"],
        }
    )
    with pytest.raises(InvalidArgsError) as err:
        args.raise_if_invalid("CostGuardrails")
    text = str(err.value)
    for path in ("monthlyBudgetUsd", "thresholds[1]", "alertEmails[0]"):
        assert path in text


def test_threshold_kind_must_be_known() -> None:
    with pytest.raises(ValueError, match="forecasted"):
        CostGuardrailsArgs.model_validate({"thresholds": [{"percent": 80, "kind": "maybe"}]})
