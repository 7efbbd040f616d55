"""The model-quality resources: the drift CronJob, the alert rules as tested, the dashboard."""

from __future__ import annotations

import json
from typing import Any

import pytest

pytest.importorskip("mlplatform.plan", reason="the platform library is not installed")

import program
import quality

from tests.test_program import NS, PLATFORM_OUTPUTS, TEAM, manifests, run, settings


@pytest.fixture(scope="module")
def graph() -> Any:
    return run(settings())


def is_drift_job(cron: dict[str, Any]) -> bool:
    """The model-quality drift CronJob of infra/quality.py (not a retraining schedule)."""
    labels = cron["metadata"].get("labels") or {}
    return labels.get("app.kubernetes.io/component") == "drift"


def test_drift_cronjob_runs_the_drift_job_on_the_team_queue(graph: Any) -> None:
    (job,) = [c for c in manifests(graph, "CronJob") if is_drift_job(c)]
    assert job["metadata"]["name"] == f"{NS}-drift"
    template = job["spec"]["jobTemplate"]
    assert template["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == TEAM
    assert template["spec"]["suspend"] is True
    assert job["spec"]["concurrencyPolicy"] == "Forbid"
    pod = template["spec"]["template"]["spec"]
    # Read-write on the project prefix: the job writes monitoring/drift/latest.json.
    assert pod["serviceAccountName"] == program.TRAINER_SA
    (container,) = pod["containers"]
    assert container["command"] == ["python", "-m", f"{program.PACKAGE}.drift"]
    assert container["image"] == settings().serving_image
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["MODEL_BUCKET"] == PLATFORM_OUTPUTS["modelBucket"]
    assert env["MODEL_PREFIX"] == f"projects/{NS}/"
    # The champion the endpoint serves, not the newest version (a retrained candidate).
    assert env["MODEL_VERSION"] == settings().model_version == "3"
    assert container["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert not any("AWS_SECRET_ACCESS_KEY" in e["name"] for e in container["env"])


def test_alert_rules_are_the_promtool_tested_file(graph: Any) -> None:
    (rule,) = [
        m
        for m in manifests(graph, "PrometheusRule")
        if m["metadata"]["name"] == f"{NS}-model-quality"
    ]
    assert rule["metadata"]["namespace"] == NS
    assert rule["spec"]["groups"] == quality.alert_rules()["groups"]
    alerts = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]}
    assert alerts == {
        "ModelFeatureDrift",
        "ModelPredictionDrift",
        "ModelLiveAccuracyBelowCard",
        "ModelCanaryAccuracyBelowCard",
        "ModelDriftJobStale",
    }


def test_model_quality_dashboard_is_picked_up_by_grafana(graph: Any) -> None:
    (board,) = [
        m for m in manifests(graph, "ConfigMap") if m["metadata"]["name"] == f"{NS}-model-quality"
    ]
    assert board["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert "grafana_folder" in board["metadata"]["annotations"]
    dash = json.loads(next(iter(board["data"].values())))
    exprs = " ".join(t["expr"] for p in dash["panels"] for t in p["targets"])
    for metric in (
        "model_feature_drift_psi",
        "model_prediction_drift_psi",
        "model_live_accuracy",
        "model_accuracy_threshold",
        "model_fairness_demographic_parity_difference",
    ):
        assert metric in exprs
