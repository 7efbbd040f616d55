"""Continuous training under mocks: the trigger CronJob, its identity, and the run it starts."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

pytest.importorskip("mlplatform.plan", reason="the platform library is not installed")

import program
import retraining
import runs

from tests.test_program import (
    NS,
    PLATFORM_OUTPUTS,
    TEAM,
    _EmptyConfig,
    manifests,
    run,
    settings,
)


@pytest.fixture(scope="module")
def graph() -> Any:
    return run(settings())


def package_retrain() -> ModuleType:
    """The project's retrain.py, whose pure trigger code loads without the package's numpy."""
    path = Path(__file__).resolve().parents[2] / "src" / program.PACKAGE / "retrain.py"
    spec = importlib.util.spec_from_file_location(f"{program.PACKAGE}_retrain", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def trigger(graph: Any) -> dict[str, Any]:
    (cron,) = [c for c in manifests(graph, "CronJob") if c["metadata"]["name"] == f"{NS}-retrain"]
    return cron


def test_the_trigger_checks_hourly_on_the_team_queue_as_the_retrainer(graph: Any) -> None:
    cron = trigger(graph)
    assert cron["spec"]["schedule"] == retraining.RETRAIN_CHECK_SCHEDULE == "47 * * * *"
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    job = cron["spec"]["jobTemplate"]
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == TEAM
    assert job["spec"]["suspend"] is True
    pod = job["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == program.RETRAINER_SA
    assert pod["automountServiceAccountToken"] is True  # it calls the API server
    (container,) = pod["containers"]
    assert container["image"] == settings().serving_image  # the package, CPU only
    assert container["command"] == [
        "python", "-m", f"{program.PACKAGE}.retrain", "--submit", "/etc/retrain/job.json",
    ]  # fmt: skip
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env == {
        "MODEL_BUCKET": PLATFORM_OUTPUTS["modelBucket"],
        "MODEL_PREFIX": f"projects/{NS}/",
        "MODEL_DIR": "/tmp/models",
        "MODEL_VERSION": "3",  # the champion: its card and age are what the check reads
    }
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/etc/retrain"]["readOnly"] is True
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["run"]["configMap"]["name"] == f"{NS}-retrain-run"


def test_the_run_it_starts_is_the_platforms_training_job(graph: Any) -> None:
    (cm,) = [
        m for m in manifests(graph, "ConfigMap") if m["metadata"]["name"] == f"{NS}-retrain-run"
    ]
    template = json.loads(cm["data"]["job.json"])
    spec = runs.RunSpec.from_output(graph.outputs["trainingRun"])
    # Exactly what `make submit` would render for a run of that name.
    assert template == runs.job_manifest(spec, f"{NS}-retrain", runs.train_args(spec))
    assert template["metadata"]["namespace"] == NS
    pod = template["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == program.TRAINER_SA  # trains (and uploads) as the trainer
    assert "--upload" in pod["containers"][0]["args"]
    # What the trigger does to it (src/<package>/retrain.py): a fresh name; Kueue's label kept.
    job = package_retrain().triggered_job(template)
    name = job["metadata"]["name"]
    assert name.startswith(f"{NS}-retrain-")
    assert len(name) <= 63
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == TEAM
    assert job["metadata"]["labels"]["mlplatform.io/trigger"] == "retrain"
    # The run id is the Job's own name (the label the Job controller sets), so it follows.
    env = {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["RUN_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == (
        "metadata.labels['batch.kubernetes.io/job-name']"
    )


def test_the_retrainer_may_create_and_list_jobs_and_read_only(graph: Any) -> None:
    (role,) = [r for r in manifests(graph, "Role") if r["metadata"]["name"] == program.RETRAINER_SA]
    assert role["metadata"]["namespace"] == NS
    assert role["rules"] == [
        {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create", "list"]}
    ]
    (binding,) = manifests(graph, "RoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": program.RETRAINER_SA,
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": program.RETRAINER_SA, "namespace": NS}
    ]
    # Its account and S3 role are the platform's (registration): read-only on the project prefix.
    assert program.service_accounts()[program.RETRAINER_SA] == "read"
    trigger_res = graph.by_name(f"{NS}-retrain")
    for dep in (
        f"{NS}-retrain-run",
        f"{program.RETRAINER_SA}-role",
        f"{program.RETRAINER_SA}-binding",
    ):
        assert graph.depends_on(trigger_res, graph.by_name(dep)), dep


def test_the_trigger_can_be_turned_off_and_waits_for_a_champion() -> None:
    for off in (run(settings(retrain_on_drift=False)), run(settings(model_version=None))):
        assert [
            c for c in manifests(off, "CronJob") if c["metadata"]["name"] == f"{NS}-retrain"
        ] == []
        assert manifests(off, "Role") == []
        accounts = {
            a.inputs["serviceAccount"]
            for a in off.by_type("aws:eks/podIdentityAssociation:PodIdentityAssociation")
        }
        assert program.RETRAINER_SA not in accounts


def test_the_max_age_reaches_the_check() -> None:
    g = run(settings(retrain_max_age_days=7.0))
    (container,) = trigger(g)["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert {"name": "RETRAIN_MAX_AGE_DAYS", "value": "7.0"} in container["env"]


def test_config_problems_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    import pulumi

    values = {
        "trainingImage": "r.example/t@sha256:" + "a" * 64,
        "servingImage": "r.example/s@sha256:" + "b" * 64,
        "modelVersion": "3",
        "nodes": "2",
        "retrainMaxAgeDays": "-1",
    }
    monkeypatch.setattr(pulumi, "Config", lambda *_a, **_k: _EmptyConfig(values))
    with pytest.raises(ValueError, match="invalid config") as err:
        program.Settings.from_config()
    message = str(err.value)
    assert "retrainOnDrift: triggered runs are single-node Jobs" in message
    assert "retrainMaxAgeDays: '-1' is not a positive number of days" in message


def _alerts(graph: Any) -> dict[str, dict[str, Any]]:
    return {
        r["alert"]: r
        for m in manifests(graph, "PrometheusRule")
        for g in m["spec"]["groups"]
        for r in g["rules"]
        if "alert" in r
    }


def test_the_bake_waits_on_alerts_the_deployed_rules_define() -> None:
    """promote.py's ROLLBACK_ALERTS against what `pulumi up` deploys with a canary: the
    platform's SLO rules, infra/observability.py's canary rules, monitoring/model-alerts.yml."""
    g = run(settings(canary_version="4"))
    deployed = _alerts(g)
    promote = _constants("promote.py")
    assert set(promote["ROLLBACK_ALERTS"]) <= set(deployed)
    # Every alert that judges the canary (track: canary) or the endpoint's SLO is waited on.
    judging = {
        name
        for name, r in deployed.items()
        if r["labels"].get("track") == "canary" or "slo" in r["labels"]
    }
    assert judging == set(promote["ROLLBACK_ALERTS"])
    assert {name for name in judging if deployed[name]["labels"].get("track") == "canary"} == set(
        promote["CANARY_ALERTS"]
    )
    # The drift job scores the canary while it bakes (the accuracy alert's input).
    (drift,) = [c for c in manifests(g, "CronJob") if c["metadata"]["name"] == f"{NS}-drift"]
    (container,) = drift["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert {"name": "CANARY_MODEL_VERSION", "value": "4"} in container["env"]


def _constants(module: str) -> dict[str, Any]:
    """The literal module-level constants of the package's ``module`` (read, not imported)."""
    import ast

    path = Path(__file__).resolve().parents[2] / "src" / program.PACKAGE / module
    found: dict[str, Any] = {}
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if isinstance(node.value, ast.BinOp) and isinstance(node.value.op, ast.Add):
                left, right = node.value.left, node.value.right
                if isinstance(left, ast.Name) and isinstance(right, ast.Name):
                    found[name] = found[left.id] + found[right.id]
                continue
            try:
                found[name] = ast.literal_eval(node.value)
            except ValueError:
                continue
    return found
