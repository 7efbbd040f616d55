"""Model quality in production (issue #20): the drift CronJob, its alert rules and a dashboard.

- ``<project>-drift``: an hourly CronJob running ``python -m <package>.drift`` from the serving
  image (it has the package and the model's dependencies). It reads the server's sampled
  inference logs and any labelled rows under the project's S3 prefix and writes
  ``monitoring/drift/latest.json``, which the server exports as gauges (Prometheus cannot scrape
  a finished Job's pod, and the platform runs no Pushgateway). It runs as the trainer's service
  account (Pod Identity, read-write on the project prefix only), on the team's Kueue queue.
- ``<project>-model-quality``: ``monitoring/model-alerts.yml`` as a PrometheusRule, unchanged, so
  the rules promtool tests are the rules deployed.
- ``<project>-model-quality`` dashboard: drift scores, live accuracy against the card's floor and
  fairness over time, in the platform's Grafana folder.

Retraining on drift: a second CronJob, or the train workflow, runs
``python -m <package>.retrain --check`` (exit 0: retrain) before submitting the training job.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import yaml
from components.monitoring_stack import dashboard_configmap, prometheus_rule

RULES = Path(__file__).resolve().parent.parent / "monitoring" / "model-alerts.yml"
DRIFT_SCHEDULE = "17 * * * *"  # hourly, off the hour when everyone else's jobs start
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
RESTRICTED_CONTAINER = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def alert_rules() -> dict[str, Any]:
    return yaml.safe_load(RULES.read_text(encoding="utf-8"))


def drift_cronjob(
    *,
    project: str,
    package: str,
    namespace: str,
    image: str,
    queue: str,
    service_account: str,
    bucket: Any,
    model_version: str | None = None,
    canary_version: str | None = None,
) -> dict[str, Any]:
    labels = {"app.kubernetes.io/name": project, "app.kubernetes.io/component": "drift"}
    # The served champion's reference and card, not the newest (perhaps unpromoted) version;
    # while a canary bakes, its accuracy on the same labelled rows too.
    pinned = [{"name": "MODEL_VERSION", "value": model_version}] if model_version else []
    if canary_version:
        pinned.append({"name": "CANARY_MODEL_VERSION", "value": canary_version})
    container = {
        "name": "drift",
        "image": image,
        "command": ["python", "-m", f"{package}.drift"],
        "env": [
            {"name": "MODEL_BUCKET", "value": bucket},
            {"name": "MODEL_PREFIX", "value": f"projects/{project}/"},
            {"name": "MODEL_DIR", "value": "/tmp/models"},  # noqa: S108 - an emptyDir
            *pinned,
        ],
        "resources": {
            "requests": {"cpu": "500m", "memory": "1Gi"},
            "limits": {"cpu": "1", "memory": "2Gi"},
        },
        "securityContext": RESTRICTED_CONTAINER,
        "volumeMounts": [{"name": "scratch", "mountPath": "/tmp"}],  # noqa: S108
    }
    return {
        "metadata": {"name": f"{project}-drift", "namespace": namespace, "labels": labels},
        "spec": {
            "schedule": DRIFT_SCHEDULE,
            "concurrencyPolicy": "Forbid",
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {
                "metadata": {"labels": {**labels, KUEUE_QUEUE_LABEL: queue}},
                "spec": {
                    "backoffLimit": 2,
                    "activeDeadlineSeconds": 1800,
                    "suspend": True,  # Kueue unsuspends the Job when the queue admits it
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {
                            "serviceAccountName": service_account,
                            "restartPolicy": "Never",
                            "securityContext": {
                                "runAsNonRoot": True,
                                "seccompProfile": {"type": "RuntimeDefault"},
                            },
                            "containers": [container],
                            "volumes": [{"name": "scratch", "emptyDir": {"sizeLimit": "2Gi"}}],
                        },
                    },
                },
            },
        },
    }


def _selector(**labels: str) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


def _legend(label: str) -> str:
    """Grafana's legend template; the double braces are built, not written (cookiecutter)."""
    return "{" * 2 + label + "}" * 2


def model_dashboard(project: str, package: str, namespace: str) -> dict[str, Any]:
    sel = _selector(namespace=namespace, model=package)

    def panel(
        pid: int, title: str, exprs: dict[str, str], unit: str, x: int, y: int
    ) -> dict[str, Any]:
        return {
            "id": pid,
            "type": "timeseries",
            "title": title,
            "datasource": {"type": "prometheus", "uid": "prometheus"},
            "gridPos": {"h": 8, "w": 12, "x": x, "y": y},
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "targets": [
                {"expr": expr, "legendFormat": legend, "refId": chr(65 + i)}
                for i, (legend, expr) in enumerate(exprs.items())
            ],
        }

    ns = _selector(namespace=namespace)
    return {
        "title": f"{project} model quality",
        "uid": f"{project[:31]}-quality",
        "tags": ["mlplatform", project, "model-quality"],
        "schemaVersion": 39,
        "time": {"from": "now-7d", "to": "now"},
        "panels": [
            panel(
                1,
                "Feature drift (PSI; > 0.2 alerts)",
                {_legend("feature"): f"max by (feature) (model_feature_drift_psi{sel})"},
                "short",
                0,
                0,
            ),
            panel(
                2,
                "Prediction drift (PSI)",
                {"prediction": f"max(model_prediction_drift_psi{sel})"},
                "short",
                12,
                0,
            ),
            panel(
                3,
                "Live accuracy vs the card's floor",
                {
                    "live accuracy": f"max(model_live_accuracy{sel})",
                    "floor": f"max(model_accuracy_threshold{sel})",
                },
                "percentunit",
                0,
                8,
            ),
            panel(
                4,
                "Fairness: demographic parity difference",
                {"live": f"max(model_fairness_demographic_parity_difference{sel})"},
                "short",
                12,
                8,
            ),
            panel(
                5,
                "Served rows per feature bin",
                {
                    f"{_legend('feature')} bin {_legend('bin')}": f"sum by (feature, bin) (rate(model_feature_bin_total{ns}[1h]))"
                },
                "short",
                0,
                16,
            ),
            panel(
                6,
                "Predicted score (median, p90)",
                {
                    "p50": f"histogram_quantile(0.5, sum by (le) (rate(model_prediction_score_bucket{ns}[1h])))",
                    "p90": f"histogram_quantile(0.9, sum by (le) (rate(model_prediction_score_bucket{ns}[1h])))",
                },
                "short",
                12,
                16,
            ),
        ],
    }


def deploy(
    *,
    project: str,
    package: str,
    namespace: str,
    image: str,
    queue: str,
    service_account: str,
    bucket: Any,
    provider: k8s.Provider,
    depends_on: list[pulumi.Resource],
    model_version: str | None = None,
    canary_version: str | None = None,
) -> None:
    """Declare the drift CronJob, the model-quality alerts and the dashboard (called by program.py)."""
    opts = pulumi.ResourceOptions(provider=provider, depends_on=depends_on)
    job = drift_cronjob(
        project=project,
        package=package,
        namespace=namespace,
        image=image,
        queue=queue,
        service_account=service_account,
        bucket=bucket,
        model_version=model_version,
        canary_version=canary_version,
    )
    k8s.batch.v1.CronJob(f"{project}-drift", metadata=job["metadata"], spec=job["spec"], opts=opts)
    rule = prometheus_rule(f"{project}-model-quality", namespace, alert_rules())
    k8s.apiextensions.CustomResource(
        f"{project}-model-quality-alerts",
        api_version=rule["apiVersion"],
        kind=rule["kind"],
        metadata=rule["metadata"],
        spec=rule["spec"],
        opts=opts,
    )
    board = dashboard_configmap(
        f"{project}-model-quality", namespace, model_dashboard(project, package, namespace)
    )
    k8s.core.v1.ConfigMap(
        f"{project}-model-quality-dashboard",
        metadata=board["metadata"],
        data=board["data"],
        opts=opts,
    )
