"""Is every metric the plan's alerts, recording rules and dashboards read fed by the plan?

A metric is fed when an exporter the plan deploys emits it (``metric_catalogue.yaml``, per
exporter and version), with it switched on (the DCGM field list, kube-state-metrics' label
allowlist), and a monitor that Prometheus picks up selects that exporter.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import promql_parser
import yaml

from components.serving_endpoint import ENDPOINT_LABEL
from mlplatform.graph import Graph

CATALOGUE = yaml.safe_load((Path(__file__).parent / "metric_catalogue.yaml").read_text())["sources"]
DASHBOARD_LABEL = "grafana_dashboard"
# Grafana's variables, replaced by something PromQL parses.
_GRAFANA_VARS = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1d"}
_VARIABLE = re.compile(r"\$\{?(\w+)\}?")
_LABEL_VALUES = re.compile(r"label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)")


@dataclass(frozen=True)
class Use:
    """One metric read by one rule or dashboard panel, and the ``label_*`` labels it needs."""

    where: str
    metric: str
    labels: frozenset[str] = frozenset()


def parse(expr: str) -> Any:
    for var, value in _GRAFANA_VARS.items():
        expr = expr.replace(var, value)
    return promql_parser.parse(_VARIABLE.sub("x", expr))


def _walk(node: Any) -> Iterator[Any]:
    yield node
    for attr in ("expr", "lhs", "rhs", "param", "vector_selector"):
        child = getattr(node, attr, None)
        if child is not None and not isinstance(child, (str, int, float)):
            yield from _walk(child)
    for arg in getattr(node, "args", None) or []:
        yield from _walk(arg)


def metrics_of(where: str, expr: str) -> list[Use]:
    """Every metric an expression reads, with the ``label_*`` labels it matches on or copies."""
    uses: list[Use] = []
    for node in _walk(parse(expr)):
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            labels = {m.name for m in node.matchers.matchers if m.name.startswith("label_")}
            uses.append(Use(where, node.name, frozenset(labels)))
        if isinstance(node, promql_parser.Call) and node.func.name == "label_replace":
            target, src = node.args[0], node.args[3]
            if isinstance(target, promql_parser.VectorSelector):
                uses.append(Use(where, target.name, frozenset({src.val})))
    return uses


def consumers(graph: Graph) -> tuple[list[Use], set[str]]:
    """(what the plan's rules and dashboards read, the series its recording rules write)."""
    uses: list[Use] = []
    recorded: set[str] = set()
    for m in graph.manifests():
        if m["kind"] == "PrometheusRule":
            for group in m["spec"]["groups"]:
                for rule in group["rules"]:
                    name = rule.get("alert") or rule.get("record")
                    if "record" in rule:
                        recorded.add(rule["record"])
                    where = f"PrometheusRule {m['metadata']['name']}: {name}"
                    uses += metrics_of(where, rule["expr"])
        labels = m.get("metadata", {}).get("labels") or {}
        if m["kind"] == "ConfigMap" and labels.get(DASHBOARD_LABEL) == "1":
            for body in m["data"].values():
                uses += _dashboard_uses(json.loads(body))
    return uses, recorded


def _dashboard_uses(board: dict[str, Any]) -> list[Use]:
    uses: list[Use] = []
    panels = [p for top in board["panels"] for p in (top, *top.get("panels", []))]
    for p in panels:
        for t in p.get("targets", []):
            uses += metrics_of(f"dashboard {board['uid']}: {p['title']}", t["expr"])
    for var in board.get("templating", {}).get("list", []):
        query = var.get("query")
        text = query.get("query", "") if isinstance(query, dict) else str(query or "")
        for metric in _LABEL_VALUES.findall(text):
            uses.append(Use(f"dashboard {board['uid']}: ${var['name']}", metric))
    return uses


# --- Producers -----------------------------------------------------------------------------


def _release(graph: Graph, chart_suffix: str) -> dict[str, Any] | None:
    found = [h for h in graph.helm_releases() if h["chart"].rsplit("/", 1)[-1] == chart_suffix]
    return found[0] if found else None


def _label_name(key: str) -> str:
    return "label_" + re.sub(r"[^a-zA-Z0-9_]", "_", key)


def _allowlist(values: dict[str, Any]) -> dict[str, set[str]]:
    """kube-state-metrics' metricLabelsAllowlist as {resource: {label_x_y, ...}}."""
    out: dict[str, set[str]] = {}
    for entry in values.get("kube-state-metrics", {}).get("metricLabelsAllowlist", []):
        resource, _, keys = entry.partition("=")
        out[resource] = {_label_name(k.strip()) for k in keys.strip("[]").split(",") if k}
    return out


def _selects_all(spec: dict[str, Any]) -> bool:
    """Prometheus picks up every ServiceMonitor and PodMonitor on the cluster."""
    return (
        all(
            spec.get(key) == {}
            for key in (
                "serviceMonitorSelector",
                "serviceMonitorNamespaceSelector",
                "podMonitorSelector",
                "podMonitorNamespaceSelector",
            )
        )
        and spec.get("serviceMonitorSelectorNilUsesHelmValues") is False
    )


def _monitor_selects(monitor: dict[str, Any], service: dict[str, Any]) -> bool:
    spec = monitor["spec"]
    wanted = spec["selector"].get("matchLabels", {})
    labels = service["metadata"].get("labels") or {}
    namespaces = spec.get("namespaceSelector", {}).get("matchNames")
    ns = service["metadata"].get("namespace", "default")
    ports = {p.get("name") for p in service["spec"].get("ports", [])}
    return (
        bool(wanted)
        and all(labels.get(k) == v for k, v in wanted.items())
        and (namespaces is None or ns in namespaces)
        and any(e.get("port") in ports for e in spec.get("endpoints", []))
    )


@dataclass
class Fed:
    """What the plan deploys and scrapes: metric name -> source, and allowed *_labels labels."""

    metrics: dict[str, str]
    label_allowlist: dict[str, set[str]]
    problems: list[str]


def producers(graph: Graph) -> Fed:
    fed: dict[str, str] = {}
    problems: list[str] = []
    allow: dict[str, set[str]] = {}

    def add(source: str, names: list[str]) -> None:
        for n in names:
            fed.setdefault(n, source)
        for h in CATALOGUE[source].get("histograms", []):
            for suffix in ("_bucket", "_count", "_sum"):
                fed.setdefault(h + suffix, source)

    kps = _release(graph, "kube-prometheus-stack")
    if kps is not None:
        values = kps["values"]
        if not _selects_all(values["prometheus"]["prometheusSpec"]):
            problems.append("Prometheus does not pick up every ServiceMonitor and PodMonitor")
        add("prometheus", CATALOGUE["prometheus"]["metrics"])
        if values.get("kubelet", {}).get("enabled", True):
            add("kubelet", CATALOGUE["kubelet"]["metrics"])
        if values.get("kubeStateMetrics", {}).get("enabled", True):
            add("kube-state-metrics", CATALOGUE["kube-state-metrics"]["metrics"])
            allow = _allowlist(values)

    dcgm = _release(graph, "dcgm-exporter")
    if dcgm is not None and dcgm["values"].get("serviceMonitor", {}).get("enabled"):
        loaded = [
            line.split(",")[0].strip()
            for line in dcgm["values"]["customMetrics"].splitlines()
            if line.strip() and not line.lstrip().startswith("#")
        ]
        unknown = set(loaded) - set(CATALOGUE["dcgm-exporter"]["known_fields"])
        if unknown:
            problems.append(f"DCGM exporter loads fields unknown at its version: {unknown}")
        add("dcgm-exporter", loaded)

    kueue = _release(graph, "kueue")
    if kueue is not None and kueue["values"].get("enablePrometheus") is True:
        add("kueue", CATALOGUE["kueue"]["metrics"])

    manifests = graph.manifests()
    monitors = [m for m in manifests if m["kind"] == "ServiceMonitor"]
    operator = CATALOGUE["training-operator"]["service"]
    operator_service = {
        "metadata": {"namespace": operator["namespace"], "labels": operator["labels"]},
        "spec": {"ports": [{"name": p} for p in operator["ports"]]},
    }
    if graph.by_type("kubernetes:kustomize/v2:Directory") and any(
        _monitor_selects(m, operator_service) for m in monitors
    ):
        add("training-operator", CATALOGUE["training-operator"]["metrics"])

    karpenter = CATALOGUE["karpenter"]["service"]
    karpenter_service = {
        "metadata": {"namespace": karpenter["namespace"], "labels": karpenter["labels"]},
        "spec": {"ports": [{"name": p} for p in karpenter["ports"]]},
    }
    if _release(graph, "karpenter") is not None and any(
        _monitor_selects(m, karpenter_service) for m in monitors
    ):
        add("karpenter", CATALOGUE["karpenter"]["metrics"])
    if kps is not None:
        add("karpenter-state", _custom_resource_metrics(kps["values"], problems))

    endpoints = [
        s
        for s in manifests
        if s["kind"] == "Service" and ENDPOINT_LABEL in (s["metadata"].get("labels") or {})
    ]
    if any(_monitor_selects(m, s) for m in monitors for s in endpoints):
        add("serving", CATALOGUE["serving"]["metrics"])
    return Fed(fed, allow, problems)


def _custom_resource_metrics(values: dict[str, Any], problems: list[str]) -> list[str]:
    """The catalogued custom-resource metrics kube-state-metrics' config defines and may read."""
    ksm = values.get("kube-state-metrics", {})
    state = ksm.get("customResourceState", {})
    if not state.get("enabled"):
        return []
    rules = ksm.get("rbac", {}).get("extraRules", [])
    out = []
    for resource in state.get("config", {}).get("spec", {}).get("resources", []):
        prefix = resource.get("metricNamePrefix", "kube_customresource")
        group = resource["groupVersionKind"]["group"]
        for metric in resource.get("metrics", []):
            name = f"{prefix}_{metric['name']}" if prefix else metric["name"]
            wanted = CATALOGUE["karpenter-state"]["custom_resource_metrics"].get(name)
            if wanted is None or wanted["group"] != group:
                continue
            readable = any(
                group in r.get("apiGroups", [])
                and wanted["resource"] in r.get("resources", [])
                and {"list", "watch"} <= set(r.get("verbs", []))
                for r in rules
            )
            if readable:
                out.append(name)
            else:
                problems.append(f"kube-state-metrics may not list/watch {wanted['resource']}")
    return out


def unfed(graph: Graph) -> list[str]:
    """Every metric read in the plan that nothing in the plan produces, scrapes and switches on."""
    uses, recorded = consumers(graph)
    fed = producers(graph)
    label_metrics = CATALOGUE["kube-state-metrics"]["label_metrics"]
    problems = list(fed.problems)
    for use in uses:
        if use.metric in recorded:
            continue
        if use.metric not in fed.metrics:
            problems.append(f"{use.where}: {use.metric} is not exported and scraped by the plan")
            continue
        resource = label_metrics.get(use.metric)
        if resource is not None:
            missing = use.labels - fed.label_allowlist.get(resource, set())
            if missing:
                problems.append(
                    f"{use.where}: {use.metric} lacks {sorted(missing)} (not in "
                    f"kube-state-metrics' metricLabelsAllowlist for {resource})"
                )
    return sorted(set(problems))
