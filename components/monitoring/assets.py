"""Rule files and dashboards: plain files under ``components/assets``, wrapped as objects."""

from __future__ import annotations

import json
from collections.abc import Mapping
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
