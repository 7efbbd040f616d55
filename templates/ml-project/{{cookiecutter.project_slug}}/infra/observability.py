"""What {{ cookiecutter.project_name }} is watched by: its alert rules and its Grafana dashboard.

Built as data here, declared by ``program.py`` (PrometheusRule and a dashboard ConfigMap). The
metric names are the serving app's and kube-state-metrics'; the promote workflow watches the
canary's alerts (``track: canary``) while a candidate bakes.
"""

from __future__ import annotations

from typing import Any

PROJECT = "{{ cookiecutter.project_slug.replace('_', '-') }}"


def selector(**labels: str) -> str:
    """A PromQL label selector, e.g. {namespace="x",handler="/predict"}."""
    return "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


def alert_template(expr: str) -> str:
    """Prometheus alert templating: the double braces are built here, not written literally."""
    return "{" * 2 + f" {expr} " + "}" * 2


def training_alert_rules(namespace: str) -> dict[str, Any]:
    # Every Job in the project's namespace is one of its runs (submitted or scheduled).
    failed = "kube_job_status_failed" + selector(namespace=namespace)
    return {
        "groups": [
            {
                "name": f"{PROJECT}-training",
                "rules": [
                    {
                        "alert": "ProjectTrainingJobFailed",
                        "expr": f"{failed} > 0",
                        "for": "1m",
                        "labels": {"severity": "warning", "project": PROJECT},
                        "annotations": {
                            "summary": f"{PROJECT} training job failed",
                            "description": (
                                f"Job {alert_template('$labels.job_name')} in {namespace} "
                                "failed; see `kubectl logs job/<name>`."
                            ),
                        },
                    }
                ],
            }
        ]
    }


{%- if cookiecutter.serving == 'yes' %}


def canary_alert_rules(namespace: str) -> dict[str, Any]:
    """The canary on its own: the platform's SLO alerts sum stable and canary traffic, so a bad
    canary at 10% shows there only slowly. The promote workflow watches these (track: canary)."""
    canary = selector(namespace=namespace, service=f"{PROJECT}-canary")
    errors = selector(namespace=namespace, service=f"{PROJECT}-canary", status="5..")
    errors = errors.replace('status="5.."', 'status=~"5.."')
    labels = {"severity": "critical", "project": PROJECT, "track": "canary", "endpoint": PROJECT}
    return {
        "groups": [
            {
                "name": f"{PROJECT}-canary",
                "rules": [
                    {
                        "alert": "ProjectCanaryErrors",
                        "expr": (
                            f"sum(rate(http_requests_total{errors}[5m]))\n/\n"
                            f"sum(rate(http_requests_total{canary}[5m])) > 0.01"
                        ),
                        "for": "2m",
                        "labels": labels,
                        "annotations": {
                            "summary": f"{PROJECT} canary answers more than 1% errors",
                        },
                    },
                    {
                        "alert": "ProjectCanarySlow",
                        "expr": (
                            "histogram_quantile(0.99, sum by (le) "
                            f"(rate(http_request_duration_seconds_bucket{canary}[5m]))) > 1"
                        ),
                        "for": "5m",
                        "labels": labels,
                        "annotations": {"summary": f"{PROJECT} canary p99 latency above 1s"},
                    },
                ],
            }
        ]
    }
{%- endif %}


def dashboard(namespace: str) -> dict[str, Any]:
    def panel(pid: int, title: str, expr: str, unit: str, x: int, y: int) -> dict[str, Any]:
        return {
            "id": pid,
            "type": "timeseries",
            "title": title,
            "datasource": {"type": "prometheus", "uid": "prometheus"},
            "gridPos": {"h": 8, "w": 12, "x": x, "y": y},
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "targets": [{"expr": expr, "refId": "A"}],
        }

    ns = selector(namespace=namespace)
{%- if cookiecutter.serving == 'yes' %}
    predict = selector(namespace=namespace, handler="/predict")
{%- endif %}
    panels = [
{%- if cookiecutter.serving == 'yes' %}
        panel(
            1,
            "Requests per second by status",
            f"sum by (status) (rate(http_requests_total{predict}[5m]))",
            "reqps",
            0,
            0,
        ),
        panel(
            2,
            "p99 latency",
            f"histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{predict}[5m])))",
            "s",
            12,
            0,
        ),
{%- endif %}
        panel(
            3,
            "Training jobs (succeeded - failed)",
            f"sum by (job_name) (kube_job_status_succeeded{ns} - kube_job_status_failed{ns})",
            "short",
            0,
            8,
        ),
        panel(4, "GPU utilisation", f"avg by (pod) (DCGM_FI_DEV_GPU_UTIL{ns})", "percent", 12, 8),
    ]
    return {
        "title": PROJECT,
        "uid": PROJECT[:40],
        "tags": ["mlplatform", PROJECT],
        "schemaVersion": 39,
        "time": {"from": "now-6h", "to": "now"},
        "panels": panels,
    }
