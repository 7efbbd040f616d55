"""ModelStore expires each project's raw inference log (projects/<p>/inference-logs/)."""

from __future__ import annotations

import pulumi
import pytest

from components.model_store import ModelStore, ModelStoreArgs, inference_log_rules
from mlplatform.plan import run_program
from policies.compliance_resources import inference_log_prefix


def _rules(data: dict, projects: list[str]) -> dict[str, dict]:
    def program() -> None:
        store = ModelStore(
            "models", ModelStoreArgs.model_validate(data), projects=projects, cluster_name="c"
        )
        pulumi.export("bucket", store.bucket_name)

    graph = run_program(program, stack="prod")
    return {r["id"]: r for r in graph.by_name("models-lifecycle").inputs["rules"]}


def test_one_rule_per_project_expires_current_and_noncurrent_copies() -> None:
    rules = _rules(
        {"protect": True, "lifecycle": {"inferenceLogDays": 7}}, ["recsys", "churn", "churn"]
    )
    assert [k for k in rules if k.startswith("inference-logs-")] == [
        "inference-logs-churn",
        "inference-logs-recsys",
    ]
    churn = rules["inference-logs-churn"]
    assert churn == {
        "id": "inference-logs-churn",
        "status": "Enabled",
        "filter": {"prefix": "projects/churn/inference-logs/"},
        "expiration": {"days": 7},
        "noncurrentVersionExpiration": {"noncurrentDays": 1},
    }
    # the prefix the policy pack checks is the one the store expires
    assert churn["filter"]["prefix"] == inference_log_prefix("churn")
    # the store's other rules are untouched
    assert {"abort-incomplete-multipart", "noncurrent-versions"} <= set(rules)


def test_default_is_two_weeks_and_no_projects_means_no_rule() -> None:
    assert ModelStoreArgs(protect=False).lifecycle.inference_log_days == 14
    assert not [k for k in _rules({"protect": False}, []) if k.startswith("inference-logs-")]


def test_an_unversioned_store_needs_no_noncurrent_expiry() -> None:
    (rule,) = inference_log_rules(["churn"], 14, versioned=False)
    assert "noncurrent_version_expiration" not in rule


def test_inference_log_days_must_be_positive() -> None:
    with pytest.raises(ValueError, match=r"inferenceLogDays|inference_log_days"):
        ModelStoreArgs.model_validate({"protect": False, "lifecycle": {"inferenceLogDays": 0}})
