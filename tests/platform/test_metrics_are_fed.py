"""Every metric an alert, a recording rule or a dashboard reads is fed, in every shipped stack.

Fed: an exporter the plan deploys emits it (tests/platform/metric_catalogue.yaml), with it
switched on, and a monitor Prometheus picks up selects that exporter. Each check below also has
a case showing that it fails when one link of that chain is cut.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from components.monitoring_stack import (
    DASHBOARD_SOURCES,
    RULE_FILE_SOURCES,
    MetricSource,
    load_dashboards,
    load_rule_files,
)
from mlplatform.graph import Graph
from mlplatform.report import run_stack
from tests.platform.metrics import CATALOGUE, _dashboard_uses, metrics_of, unfed

STACKS = ("dev", "prod", "local")
SERVE_PY = next(Path(__file__).resolve().parents[2].glob("templates/ml-project/*/src/*/serve.py"))


@pytest.fixture(scope="module", params=STACKS)
def plan(request: pytest.FixtureRequest) -> Graph:
    return run_stack(request.param)[0]


@pytest.fixture(scope="module")
def dev() -> Graph:
    return run_stack("dev")[0]


def test_every_metric_read_is_fed(plan: Graph) -> None:
    assert unfed(plan) == []


def test_the_check_sees_what_the_plan_reads(dev: Graph) -> None:
    # Not vacuous: dev reads GPU, queue, operator, serving and kube-state-metrics series.
    from tests.platform.metrics import consumers

    uses, _ = consumers(dev)
    read = {u.metric for u in uses}
    assert {
        "DCGM_FI_DEV_THERMAL_VIOLATION",
        "kueue_pending_workloads",
        "training_operator_jobs_failed_total",
        "http_requests_total",
        "kube_namespace_labels",
        "karpenter_nodeclaims_disrupted_total",
        "kube_customresource_ec2nodeclass_capacity_reservation_end_time_seconds",
    } <= read


# --- The invariant fails when a link is cut ------------------------------------------------


def _cut(
    graph: Graph, match: Callable[[Any], bool], change: Callable[[dict[str, Any]], None]
) -> Graph:
    broken = copy.deepcopy(graph)
    hits = [r for r in broken.resources if match(r)]
    assert hits, "nothing to cut"
    for r in hits:
        change(r.inputs)
    return Graph(broken.stack, broken.resources, broken.outputs, broken.secret_outputs)


def _chart(name: str) -> Callable[[Any], bool]:
    return lambda r: (
        r.type == "kubernetes:helm.sh/v3:Release" and str(r.inputs.get("chart", "")).endswith(name)
    )


def test_fails_when_kueue_is_not_scraped(dev: Graph) -> None:
    broken = _cut(dev, _chart("kueue"), lambda i: i["values"].update(enablePrometheus=False))
    assert any("kueue_pending_workloads is not exported" in p for p in unfed(broken))


def test_fails_when_the_team_label_is_not_exported(dev: Graph) -> None:
    def drop(inputs: dict[str, Any]) -> None:
        ksm = inputs["values"]["kube-state-metrics"]
        ksm["metricLabelsAllowlist"] = [
            e for e in ksm["metricLabelsAllowlist"] if not e.startswith("namespaces=")
        ]

    problems = unfed(_cut(dev, _chart("kube-prometheus-stack"), drop))
    assert any("label_mlplatform_io_team" in p and "kube_namespace_labels" in p for p in problems)


def test_fails_when_a_dcgm_field_is_not_loaded(dev: Graph) -> None:
    def drop(inputs: dict[str, Any]) -> None:
        csv = inputs["values"]["customMetrics"]
        inputs["values"]["customMetrics"] = csv.replace(
            "DCGM_FI_DEV_THERMAL_VIOLATION", "# DCGM_FI_DEV_THERMAL_VIOLATION"
        )

    problems = unfed(_cut(dev, _chart("dcgm-exporter"), drop))
    assert any("GPUThermalThrottling: DCGM_FI_DEV_THERMAL_VIOLATION" in p for p in problems)


def test_fails_when_the_operators_monitor_misses_its_service(dev: Graph) -> None:
    def rename(inputs: dict[str, Any]) -> None:
        inputs["spec"]["endpoints"][0]["port"] = "metrics"  # the Service names it monitoring-port

    broken = _cut(dev, lambda r: r.name == "training-operator-service-monitor", rename)
    assert any("training_operator_jobs_failed_total" in p for p in unfed(broken))


def test_fails_when_prometheus_only_picks_up_its_own_monitors(dev: Graph) -> None:
    def narrow(inputs: dict[str, Any]) -> None:
        spec = inputs["values"]["prometheus"]["prometheusSpec"]
        spec["serviceMonitorSelectorNilUsesHelmValues"] = True

    problems = unfed(_cut(dev, _chart("kube-prometheus-stack"), narrow))
    assert any("does not pick up every ServiceMonitor" in p for p in problems)


def test_fails_when_karpenter_is_not_scraped(dev: Graph) -> None:
    def rename(inputs: dict[str, Any]) -> None:
        inputs["spec"]["endpoints"][0]["port"] = "metrics"  # the chart's Service: http-metrics

    broken = _cut(dev, lambda r: r.name == "karpenter-service-monitor", rename)
    assert any(
        "NodeRepairedOften: karpenter_nodeclaims_disrupted_total" in p for p in unfed(broken)
    )


def test_fails_when_kube_state_metrics_cannot_read_node_classes(dev: Graph) -> None:
    def drop(inputs: dict[str, Any]) -> None:
        inputs["values"]["kube-state-metrics"]["rbac"]["extraRules"] = []

    problems = unfed(_cut(dev, _chart("kube-prometheus-stack"), drop))
    assert any("may not list/watch ec2nodeclasses" in p for p in problems)
    assert any("CapacityBlockEndingSoon" in p for p in problems)


def test_fails_when_the_reservation_label_is_not_exported(dev: Graph) -> None:
    def drop(inputs: dict[str, Any]) -> None:
        ksm = inputs["values"]["kube-state-metrics"]
        ksm["metricLabelsAllowlist"] = [
            e.replace(",karpenter.k8s.aws/capacity-reservation-id", "")
            for e in ksm["metricLabelsAllowlist"]
        ]

    problems = unfed(_cut(dev, _chart("kube-prometheus-stack"), drop))
    assert any(
        "label_karpenter_k8s_aws_capacity_reservation_id" in p and "kube_node_labels" in p
        for p in problems
    )


def test_fails_on_a_metric_no_exporter_emits(dev: Graph) -> None:
    def typo(inputs: dict[str, Any]) -> None:
        rule = inputs["spec"]["groups"][0]["rules"][0]
        rule["expr"] = rule["expr"].replace("kube_node_status_condition", "kube_node_status_ready")

    broken = _cut(dev, lambda r: r.name == "monitoring-rules-cluster", typo)
    assert any("kube_node_status_ready is not exported" in p for p in unfed(broken))


# --- The catalogue and the shipping tables agree with their sources ------------------------


def test_serving_catalogue_matches_the_template_server() -> None:
    source = SERVE_PY.read_text()
    declared = set(re.findall(r'(?:Counter|Histogram|Gauge)\(\s*"([a-z_:]+)"', source))
    assert set(CATALOGUE["serving"]["metrics"]) <= declared
    histograms = set(re.findall(r'Histogram\(\s*"([a-z_:]+)"', source))
    assert set(CATALOGUE["serving"]["histograms"]) <= histograms


def _source_of(metric: str) -> MetricSource | None:
    for name, entry in CATALOGUE.items():
        names = set(entry.get("metrics", [])) | set(entry.get("known_fields", []))
        names |= set(entry.get("custom_resource_metrics", {}))
        names |= {h + s for h in entry.get("histograms", []) for s in ("_bucket", "_count", "_sum")}
        if metric in names:
            return MetricSource(name)
    return None


def _recorded_sources() -> dict[str, set[MetricSource]]:
    """Each recording rule's output, by the sources its inputs come from."""
    out: dict[str, set[Any]] = {"mlplatform:gpu_hourly_price_usd": set()}
    for doc in load_rule_files().values():
        for group in doc["groups"]:
            for rule in group["rules"]:
                if "record" in rule:
                    srcs = set()
                    for use in metrics_of("", rule["expr"]):
                        srcs |= _one(out, use.metric)
                    out[rule["record"]] = srcs
    return out


def _sources(uses: list[Any]) -> set[MetricSource | None]:
    recorded = _recorded_sources()
    found: set[MetricSource | None] = set()
    for use in uses:
        found |= _one(recorded, use.metric)
    return found


def _one(recorded: dict[str, set[Any]], metric: str) -> set[Any]:
    return recorded[metric] if metric in recorded else {_source_of(metric)}


def test_rule_files_declare_exactly_the_sources_they_read() -> None:
    # MonitoringStack ships a file only where these sources are fed: they must be the truth.
    for stem, doc in load_rule_files().items():
        uses = [u for g in doc["groups"] for r in g["rules"] for u in metrics_of(stem, r["expr"])]
        assert _sources(uses) == set(RULE_FILE_SOURCES[stem]), stem


def test_dashboards_declare_exactly_the_sources_they_read() -> None:
    for stem, board in load_dashboards().items():
        assert _sources(_dashboard_uses(board)) == set(DASHBOARD_SOURCES[stem]), stem


def test_dashboards_are_json_the_checker_reads() -> None:
    # Guards the helper above: every dashboard's panels and variables are seen.
    for board in load_dashboards().values():
        assert _dashboard_uses(json.loads(json.dumps(board)))
