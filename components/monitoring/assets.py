"""Rule files and dashboards: plain files under ``components/assets``, wrapped as objects."""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ASSETS = Path(__file__).parent.parent / "assets"
ALERTS_DIR = ASSETS / "alerts"
DASHBOARDS_DIR = ASSETS / "dashboards"
DASHBOARD_LABEL = "grafana_dashboard"
DASHBOARD_FOLDER_ANNOTATION = "grafana_folder"
DASHBOARD_FOLDER = "ML Platform"


class MetricSource(StrEnum):
    """What produces the metrics a rule file or dashboard reads (tests/platform holds the
    catalogue of what each one emits, and checks these tables against every stack's plan)."""

    PROMETHEUS = "prometheus"  # series Prometheus makes itself: up, scrape_*
    KUBELET = "kubelet"  # kubelet and cAdvisor, scraped through kube-prometheus-stack
    KUBE_STATE_METRICS = "kube-state-metrics"
    NODE_EXPORTER = "node-exporter"
    DCGM = "dcgm-exporter"
    KUEUE = "kueue"
    TRAINING_OPERATOR = "training-operator"
    SERVING = "serving"  # the platform's serving runtime (the project template's server)
    KARPENTER = "karpenter"  # the Karpenter controller's metrics endpoint
    # EC2NodeClass status (reservations and their end dates) through kube-state-metrics' custom
    # resource state, which MonitoringStack configures when this source is fed.
    KARPENTER_STATE = "karpenter-state"


# What MonitoringStack always deploys and scrapes; the rest comes from other components.
STACK_SOURCES = frozenset(
    {
        MetricSource.PROMETHEUS,
        MetricSource.KUBELET,
        MetricSource.KUBE_STATE_METRICS,
        MetricSource.NODE_EXPORTER,
    }
)

_S = MetricSource
# The sources each rule file (by stem) and dashboard reads, recording rules' inputs included.
# A file ships only where all of them are fed: no alert that can never fire, no empty panel.
RULE_FILE_SOURCES: dict[str, frozenset[MetricSource]] = {
    "capacity": frozenset({_S.KARPENTER, _S.KARPENTER_STATE, _S.KUBE_STATE_METRICS}),
    "cluster": frozenset({_S.PROMETHEUS, _S.KUBELET, _S.KUBE_STATE_METRICS}),
    "cost": frozenset({_S.KUBE_STATE_METRICS}),
    "gpu": frozenset({_S.DCGM, _S.KUBE_STATE_METRICS}),
    "serving-slo": frozenset({_S.SERVING}),
    "training": frozenset({_S.KUBE_STATE_METRICS, _S.TRAINING_OPERATOR}),
}
DASHBOARD_SOURCES: dict[str, frozenset[MetricSource]] = {
    "cost": frozenset({_S.KUBE_STATE_METRICS, _S.DCGM}),
    "gpu-fleet": frozenset({_S.DCGM, _S.KUBE_STATE_METRICS}),
    "serving": frozenset({_S.SERVING, _S.KUBE_STATE_METRICS, _S.DCGM}),
    "training": frozenset({_S.KUBE_STATE_METRICS, _S.KUEUE, _S.TRAINING_OPERATOR}),
}


def fed_rule_files(sources: Collection[MetricSource]) -> dict[str, dict[str, Any]]:
    """The rule files whose every metric source is in ``sources``."""
    return {
        stem: doc
        for stem, doc in load_rule_files().items()
        if RULE_FILE_SOURCES[stem] <= frozenset(sources)
    }


def fed_dashboards(sources: Collection[MetricSource]) -> dict[str, dict[str, Any]]:
    """The dashboards whose every metric source is in ``sources``."""
    return {
        stem: doc
        for stem, doc in load_dashboards().items()
        if DASHBOARD_SOURCES[stem] <= frozenset(sources)
    }


# --- Files ---------------------------------------------------------------------------------


@cache
def load_rule_files() -> dict[str, dict[str, Any]]:
    """Each ``assets/alerts/*.yaml`` rule file, parsed, by file stem."""
    return {p.stem: yaml.safe_load(p.read_text()) for p in sorted(ALERTS_DIR.glob("*.yaml"))}


@cache
def load_dashboards() -> dict[str, dict[str, Any]]:
    """Each ``assets/dashboards/*.json`` dashboard, parsed, by file stem."""
    return {p.stem: json.loads(p.read_text()) for p in sorted(DASHBOARDS_DIR.glob("*.json"))}


# --- Manifests -----------------------------------------------------------------------------


def object_meta(name: str, namespace: str, **labels: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": namespace,
        "labels": {"app.kubernetes.io/part-of": "mlplatform-monitoring", **labels},
    }


def prometheus_rule(name: str, namespace: str, rule_file: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": object_meta(name, namespace),
        "spec": {"groups": list(rule_file["groups"])},
    }


def gpu_price_rule_file(prices: Mapping[str, float]) -> dict[str, Any]:
    """Recording rules publishing ``mlplatform:gpu_hourly_price_usd{accelerator}``."""
    rules = [
        {
            "record": "mlplatform:gpu_hourly_price_usd",
            "expr": f"vector({price:g})",
            "labels": {"accelerator": accel},
        }
        for accel, price in sorted(prices.items())
    ]
    return {"groups": [{"name": "mlplatform-gpu-prices", "interval": "5m", "rules": rules}]}


def dashboard_configmap(name: str, namespace: str, dashboard: Mapping[str, Any]) -> dict[str, Any]:
    meta = object_meta(name, namespace, **{DASHBOARD_LABEL: "1"})
    meta["annotations"] = {DASHBOARD_FOLDER_ANNOTATION: DASHBOARD_FOLDER}
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": meta,
        "data": {f"{name}.json": json.dumps(dashboard, indent=1, sort_keys=True)},
    }
