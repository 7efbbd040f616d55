"""GPU nodes that repair themselves: the EKS node monitoring agent add-on, Karpenter's node
repair feature gates and IAM, and the ServiceMonitor that feeds the repair alert; each checked
against the upstream artifact it must agree with."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from components.common import GPU_TAINT, GPU_TOLERATION
from components.gpu_software import GpuSoftwareArgs, gpu_operator_values
from components.karpenter import (
    KARPENTER_VERSION,
    KarpenterArgs,
    NodeRepair,
    controller_policy,
    feature_gate_settings,
    service_monitor,
)
from components.training_cluster import node_monitoring_agent_values
from tests.compute.test_karpenter import KARPENTER_API_CALLS
from tests.upstream import go_module

ADDON = "aws:eks/addon:Addon"
SCHEMA = (
    Path(__file__).parent
    / "fixtures"
    / "eks-node-monitoring-agent-v1.7.0.configuration.schema.json"
)
MODULE = "github.com/aws/karpenter-provider-aws"


def _agent(graph):
    (addon,) = [
        a for a in graph.by_type(ADDON) if a.inputs["addonName"] == "eks-node-monitoring-agent"
    ]
    return addon


def test_agent_is_on_by_default_after_the_system_nodes(dev, prod):
    for graph in (dev, prod):
        addon = _agent(graph)
        assert addon.inputs["addonVersion"] == "v1.7.0-eksbuild.1"
        assert graph.depends_on(addon, graph.one("aws:eks/nodeGroup:NodeGroup"))


def test_agent_config_passes_the_addons_own_schema(dev):
    values = json.loads(_agent(dev).inputs["configurationValues"])
    jsonschema.validate(values, json.loads(SCHEMA.read_text()))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"dcgmAgent": {"toleration": []}}, json.loads(SCHEMA.read_text()))


def test_agent_dcgm_server_runs_on_tainted_gpu_nodes():
    # Its DaemonSet tolerates nothing by default; the GPU nodes carry the nvidia.com/gpu taint.
    tolerations = node_monitoring_agent_values()["dcgmAgent"]["tolerations"]
    assert GPU_TOLERATION in tolerations
    assert GPU_TOLERATION["key"] == GPU_TAINT["key"] and GPU_TOLERATION["operator"] == "Exists"


def test_one_standalone_dcgm_host_engine_per_node():
    # The agent's dcgm-server holds hostPort 5555; the GPU Operator's own host engine and
    # exporter stay off so nothing else binds it (and no DCGM series is doubled).
    values = gpu_operator_values(GpuSoftwareArgs(mode="gpu-operator"), time_slicing=False)
    assert values["dcgm"] == {"enabled": False}
    assert values["dcgmExporter"] == {"enabled": False}


@pytest.mark.parametrize(
    ("mode", "gates", "aws_gates"),
    [
        ("replace", {"nodeRepair": True, "terminateFirstRepair": True}, {"rebootForRepair": False}),
        ("reboot-or-replace", {"nodeRepair": True, "terminateFirstRepair": True}, {"rebootForRepair": True}),
        ("off", {"nodeRepair": False, "terminateFirstRepair": False}, {"rebootForRepair": False}),
    ],
)  # fmt: skip
def test_feature_gates_per_repair_mode(mode, gates, aws_gates):
    settings = feature_gate_settings(KarpenterArgs(node_repair=NodeRepair(mode)))
    assert settings["featureGates"] == {"reservedCapacity": True, **gates}
    assert settings["awsFeatureGates"] == aws_gates


def test_repair_is_on_by_default_in_the_plan(dev):
    release = next(h for h in dev.helm_releases() if h["name"] == "karpenter")
    assert release["values"]["settings"]["featureGates"]["nodeRepair"] is True


def _policy(reboot: bool) -> dict:
    return controller_policy(
        cluster_name="c",
        partition="aws",
        region="us-east-1",
        account="123456789012",
        queue_arn="arn:aws:sqs:us-east-1:123456789012:c",
        node_role_arn="arn:aws:iam::123456789012:role/c-karpenter-node",
        reboot=reboot,
    )


def _actions(doc: dict) -> set[str]:
    out: set[str] = set()
    for st in doc["Statement"]:
        out |= set(st["Action"] if isinstance(st["Action"], list) else [st["Action"]])
    return out - {"iam:PassRole"}


def test_reboot_permission_only_with_reboot_and_scoped_to_this_cluster():
    assert _actions(_policy(False)) == KARPENTER_API_CALLS
    assert _actions(_policy(True)) == KARPENTER_API_CALLS | {"ec2:RebootInstances"}
    (st,) = [s for s in _policy(True)["Statement"] if s["Action"] == "ec2:RebootInstances"]
    assert st["Resource"].endswith(":*:instance/*")
    assert st["Condition"]["StringEquals"] == {"aws:ResourceTag/kubernetes.io/cluster/c": "owned"}


# --- The release's chart and source ------------------------------------------------------------


@pytest.fixture(scope="module")
def release_dir() -> Path:
    return go_module(MODULE, f"v{KARPENTER_VERSION}")


def test_feature_gates_exist_in_the_charts_values(release_dir):
    chart_settings = yaml.safe_load((release_dir / "charts/karpenter/values.yaml").read_text())[
        "settings"
    ]
    for mode in NodeRepair:
        ours = feature_gate_settings(KarpenterArgs(node_repair=mode))
        for group, gates in ours.items():
            assert set(gates) <= set(chart_settings[group]), (group, set(gates))
    deployment = (release_dir / "charts/karpenter/templates/deployment.yaml").read_text()
    assert "NodeRepair={{ .Values.settings.featureGates.nodeRepair }}" in deployment
    assert "RebootForRepair={{ .Values.settings.awsFeatureGates.rebootForRepair }}" in deployment


def test_reboot_is_the_only_new_call_and_repair_is_its_caller(release_dir):
    source = (release_dir / "pkg/providers/instance/instance.go").read_text()
    assert "RebootInstances(" in source
    calls = set()
    for path in (release_dir / "pkg").rglob("*.go"):
        if not path.name.endswith("_test.go") and "/fake/" not in str(path):
            calls |= set(re.findall(r"\bec2\.(\w+)Input\{", path.read_text()))
    assert "RebootInstances" in calls


def test_service_monitor_selects_the_charts_service(release_dir):
    helpers = (release_dir / "charts/karpenter/templates/_helpers.tpl").read_text()
    service = (release_dir / "charts/karpenter/templates/service.yaml").read_text()
    # selectorLabels: app.kubernetes.io/name = chart name, instance = release name ("karpenter")
    assert 'app.kubernetes.io/name: {{ include "karpenter.name" . }}' in helpers
    assert "app.kubernetes.io/instance: {{ .Release.Name }}" in helpers
    assert "- name: http-metrics" in service
    monitor = service_monitor("kube-system", "monitoring")
    assert monitor["metadata"]["namespace"] == "monitoring"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["kube-system"]}
    assert monitor["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "karpenter",
        "app.kubernetes.io/instance": "karpenter",
    }
    assert monitor["spec"]["endpoints"][0]["port"] == "http-metrics"


def test_platform_scrapes_karpenter_after_the_monitoring_crds():
    from mlplatform.report import run_stack

    graph = run_stack("dev")[0]
    monitor = graph.one(
        "kubernetes:monitoring.coreos.com/v1:ServiceMonitor", "karpenter-service-monitor"
    )
    assert graph.depends_on(
        monitor, graph.one("kubernetes:helm.sh/v3:Release", "monitoring-prometheus-crds")
    )
    # beside the stack's other monitors, scraping kube-system (nothing of ours in kube-system)
    assert monitor.inputs["metadata"]["namespace"] == "monitoring"
    assert monitor.inputs["spec"]["namespaceSelector"] == {"matchNames": ["kube-system"]}
