"""MonitoringStack under mocks: the Helm values and objects a user relies on."""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterator
from pathlib import PurePosixPath
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pytest
import yaml

from components.common import GPU_TOLERATION, InvalidArgsError, KubeTarget
from components.monitoring_stack import (
    DASHBOARD_LABEL,
    DCGM_CHART,
    GP3_ENCRYPTED,
    KPS_CHART,
    KPS_REPO,
    PROMETHEUS_CRDS_CHART,
    PROMETHEUS_CRDS_VERSION,
    REPLACED_DEFAULT_ALERTS,
    MetricSource,
    MonitoringStack,
    MonitoringStackArgs,
    alertmanager_config,
    load_dashboards,
    load_rule_files,
)
from mlplatform.graph import Graph
from mlplatform.mocks import SECRET_PLACEHOLDER
from mlplatform.plan import run_program
from tests.kube_validate import KubectlValidate

SLACK_URL = "https://hooks.slack.com/services/T000/B000/very-secret-token"
PD_KEY = "pd-routing-key-0123456789abcdef"  # not a real key
SMTP_PASSWORD = "smtp-password-do-not-leak"
GRAFANA_PASSWORD = "grafana-password-do-not-leak"

RECEIVERS = [
    {"name": "oncall", "kind": "pagerduty", "severities": ["critical"]},
    {"name": "ml-alerts", "kind": "slack", "channel": "#ml-alerts", "secret": "slackWebhookUrl"},
    {
        "name": "ops-mail",
        "kind": "email",
        "severities": ["warning", "info"],
        "to": ["ops@example.com"],
        "fromAddress": "alerts@example.com",
        "smarthost": "smtp.example.com:587",
    },
]
SECRETS = {"oncall": PD_KEY, "slackWebhookUrl": SLACK_URL, "ops-mail": SMTP_PASSWORD}


def program(
    args: MonitoringStackArgs,
    *,
    on_aws: bool = True,
    secrets: dict[str, str] | None = None,
    grafana_password: str | None = GRAFANA_PASSWORD,
    workload_sources: Collection[MetricSource] = tuple(MetricSource),
) -> Callable[[], None]:
    def fn() -> None:
        target = KubeTarget(provider=k8s.Provider("k8s"), on_aws=on_aws)
        MonitoringStack(
            "mon",
            args,
            target=target,
            workload_sources=workload_sources,
            receiver_secrets={k: pulumi.Output.secret(v) for k, v in (secrets or {}).items()},
            grafana_admin_password=(
                pulumi.Output.secret(grafana_password) if grafana_password else None
            ),
        )

    return fn


def make_args(**overrides: Any) -> MonitoringStackArgs:
    body: dict[str, Any] = {"alertmanager": {"receivers": RECEIVERS}, **overrides}
    return MonitoringStackArgs.model_validate(body)


@pytest.fixture(scope="module")
def aws() -> Graph:
    return run_program(program(make_args(), secrets=SECRETS))


@pytest.fixture(scope="module")
def local() -> Graph:
    return run_program(program(make_args(), on_aws=False, secrets=SECRETS, grafana_password=None))


def release(graph: Graph, chart: str) -> dict[str, Any]:
    (found,) = [r for r in graph.helm_releases() if r["chart"] == chart]
    return found


def kps(graph: Graph) -> dict[str, Any]:
    return release(graph, KPS_CHART)["values"]


def manifests(graph: Graph, kind: str) -> list[dict[str, Any]]:
    return [m for m in graph.manifests() if m["kind"] == kind]


def strings(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)
    else:
        yield str(value)


def test_charts_are_pinned(aws: Graph) -> None:
    for r in aws.helm_releases():
        assert r["version"] and r["version"][0].isdigit(), r
    assert release(aws, KPS_CHART)["repository"] == KPS_REPO
    assert release(aws, DCGM_CHART)["namespace"] != release(aws, KPS_CHART)["namespace"]


def test_alertmanager_is_on(aws: Graph) -> None:
    am = kps(aws)["alertmanager"]
    assert am["enabled"] is True
    spec = am["alertmanagerSpec"]
    assert spec["useExistingSecret"] is True
    assert spec["configSecret"] == "alertmanager-config"
    assert spec["storage"]["volumeClaimTemplate"]["spec"]["storageClassName"] == GP3_ENCRYPTED


def test_retention_is_in_days_from_args(aws: Graph) -> None:
    graph = run_program(
        program(make_args(prometheus={"retentionDays": 30, "volumeSizeGi": 200}), secrets=SECRETS)
    )
    spec = kps(graph)["prometheus"]["prometheusSpec"]
    assert spec["retention"] == "30d"
    # size-based retention keeps the volume from filling before time-based retention acts
    assert spec["retentionSize"] == "170GB"
    assert kps(aws)["prometheus"]["prometheusSpec"]["retention"] == "15d"


def test_prometheus_has_an_encrypted_persistent_volume_on_aws(aws: Graph) -> None:
    spec = kps(aws)["prometheus"]["prometheusSpec"]
    claim = spec["storageSpec"]["volumeClaimTemplate"]["spec"]
    assert claim["storageClassName"] == GP3_ENCRYPTED
    assert claim["resources"]["requests"]["storage"] == "100Gi"
    (sc,) = manifests(aws, "StorageClass")
    assert sc["metadata"]["name"] == GP3_ENCRYPTED
    assert sc["parameters"]["type"] == "gp3"
    assert sc["parameters"]["encrypted"] == "true"
    assert sc["provisioner"] == "ebs.csi.aws.com"
    assert spec["resources"]["limits"]["memory"] and spec["resources"]["requests"]["cpu"]


def test_local_stack_uses_the_default_storage_class(local: Graph) -> None:
    values = kps(local)
    claim = values["prometheus"]["prometheusSpec"]["storageSpec"]["volumeClaimTemplate"]["spec"]
    assert "storageClassName" not in claim
    assert claim["resources"]["requests"]["storage"] == "100Gi"
    assert "storageClassName" not in values["grafana"]["persistence"]
    assert values["grafana"]["persistence"]["enabled"] is True
    assert manifests(local, "StorageClass") == []


def test_selectors_pick_up_every_monitor_and_rule(aws: Graph) -> None:
    spec = kps(aws)["prometheus"]["prometheusSpec"]
    for kind in ("serviceMonitor", "podMonitor", "rule", "probe", "scrapeConfig"):
        assert spec[f"{kind}SelectorNilUsesHelmValues"] is False


def test_grafana_has_no_default_password(aws: Graph, local: Graph) -> None:
    for graph in (aws, local):
        grafana = kps(graph)["grafana"]
        assert "adminPassword" not in grafana
        assert grafana["admin"]["existingSecret"] == "grafana-admin"
        (secret,) = [
            s for s in manifests(graph, "Secret") if s["metadata"]["name"] == "grafana-admin"
        ]
        # the provider keeps a Secret's whole stringData secret
        assert secret["stringData"] == SECRET_PLACEHOLDER
        assert "prom-operator" not in json.dumps(graph.helm_releases())
    # no password given: one is generated, never a fixed default
    assert local.by_type("pulumi-python:dynamic/mlplatform:GeneratedSecret")
    assert not aws.by_type("pulumi-python:dynamic/mlplatform:GeneratedSecret")


def test_grafana_persists_and_loads_dashboards(aws: Graph) -> None:
    grafana = kps(aws)["grafana"]
    assert grafana["persistence"]["enabled"] is True
    assert grafana["persistence"]["storageClassName"] == GP3_ENCRYPTED
    sidecar = grafana["sidecar"]["dashboards"]
    assert sidecar["enabled"] is True
    assert (sidecar["label"], sidecar["labelValue"]) == (DASHBOARD_LABEL, "1")
    cms = [m for m in manifests(aws, "ConfigMap") if m["metadata"]["labels"].get(DASHBOARD_LABEL)]
    assert len(cms) == len(load_dashboards())
    uids = {json.loads(next(iter(cm["data"].values())))["uid"] for cm in cms}
    assert uids == {d["uid"] for d in load_dashboards().values()}


def test_exporters_are_on_and_dcgm_runs_on_gpu_nodes(aws: Graph) -> None:
    values = kps(aws)
    assert values["nodeExporter"]["enabled"] is True
    assert values["kube-state-metrics"]["metricLabelsAllowlist"]
    dcgm = release(aws, DCGM_CHART)["values"]
    assert GPU_TOLERATION in dcgm["tolerations"]
    assert dcgm["serviceMonitor"]["enabled"] is True
    terms = dcgm["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms["nodeSelectorTerms"]
    assert "DCGM_FI_DEV_XID_ERRORS" in dcgm["customMetrics"]
    assert "SYS_ADMIN" not in json.dumps(dcgm["securityContext"])


def test_dcgm_exporter_loads_the_platforms_field_list(aws: Graph) -> None:
    """The chart renders ``customMetrics`` into ConfigMap ``exporter-metrics-config-map`` (key
    ``metrics``; templates/metrics-configmap.yaml of chart 4.8.2); the exporter reads only the
    file ``-f`` names. That file must be this ConfigMap, mounted, or the image's built-in list
    (throttling counters commented out) is what runs."""
    dcgm = release(aws, DCGM_CHART)["values"]
    args = dcgm["arguments"]
    path = PurePosixPath(args[args.index("-f") + 1])
    volumes = {v["name"]: v for v in dcgm["extraConfigMapVolumes"]}
    (mount,) = [
        m for m in dcgm["extraVolumeMounts"] if PurePosixPath(m["mountPath"]) == path.parent
    ]
    cm = volumes[mount["name"]]["configMap"]
    assert cm["name"] == "exporter-metrics-config-map"
    assert cm["items"] == [{"key": "metrics", "path": path.name}]
    # Not the image's own file: a lost mount must fail loudly, not load the built-in list.
    assert str(path) != "/etc/dcgm-exporter/default-counters.csv"
    loaded = {
        line.split(",")[0].strip()
        for line in dcgm["customMetrics"].splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {"DCGM_FI_DEV_POWER_VIOLATION", "DCGM_FI_DEV_THERMAL_VIOLATION"} <= loaded
    # A changed list restarts the exporter (it reads the file once).
    assert dcgm["podAnnotations"]["mlplatform.io/dcgm-fields-sha256"]


def test_every_rule_file_becomes_a_prometheus_rule_after_the_chart(aws: Graph) -> None:
    rules = aws.by_type("kubernetes:monitoring.coreos.com/v1:PrometheusRule")
    names = {r.inputs["metadata"]["name"] for r in rules}
    assert names == {f"mlplatform-{stem}" for stem in load_rule_files()} | {"mlplatform-gpu-prices"}
    chart = aws.one("kubernetes:helm.sh/v3:Release", "kps")
    for r in rules:
        assert aws.depends_on(r, chart)


def test_rules_and_dashboards_ship_only_where_their_metrics_are_fed() -> None:
    # No workloads and no DCGM: serving, training and GPU content would never see a sample.
    graph = run_program(
        program(make_args(dcgmExporter={"enabled": False}), secrets=SECRETS, workload_sources=())
    )
    rules = {
        r.inputs["metadata"]["name"]
        for r in graph.by_type("kubernetes:monitoring.coreos.com/v1:PrometheusRule")
    }
    assert rules == {"mlplatform-cluster", "mlplatform-cost", "mlplatform-gpu-prices"}
    boards = {m["metadata"]["name"] for m in manifests(graph, "ConfigMap")}
    assert not {b for b in boards if b.startswith("dashboard-")}
    assert not [r for r in graph.helm_releases() if r["chart"] == DCGM_CHART]
    # Kueue and the Training Operator, without serving: the training dashboard and alerts.
    graph = run_program(
        program(
            make_args(dcgmExporter={"enabled": False}),
            secrets=SECRETS,
            workload_sources=(MetricSource.KUEUE, MetricSource.TRAINING_OPERATOR),
        )
    )
    boards = {m["metadata"]["name"] for m in manifests(graph, "ConfigMap")}
    assert {b for b in boards if b.startswith("dashboard-")} == {"dashboard-training"}


def test_prometheus_operator_crds_come_from_their_own_chart(aws: Graph) -> None:
    # A chart's crds/ folder is installed once and never upgraded: the CRDs are templates of
    # their own release, which the stack and every monitor wait for.
    assert kps(aws)["crds"]["enabled"] is False
    stack = aws.one("kubernetes:helm.sh/v3:Release", "kps")
    assert stack.inputs["skipCrds"] is True
    crds = release(aws, PROMETHEUS_CRDS_CHART)
    assert crds["version"] == PROMETHEUS_CRDS_VERSION
    assert crds["repository"] == KPS_REPO
    # Uninstalling the CRD release must not delete every monitor and rule with it.
    assert crds["values"]["crds"]["annotations"]["helm.sh/resource-policy"] == "keep"
    crd_release = aws.one("kubernetes:helm.sh/v3:Release", "prometheus-crds")
    assert aws.depends_on(stack, crd_release)
    for r in aws.by_type("kubernetes:monitoring.coreos.com/v1:PrometheusRule"):
        assert aws.depends_on(r, crd_release)


def test_replaced_chart_alerts_are_disabled(aws: Graph) -> None:
    disabled = kps(aws)["defaultRules"]["disabled"]
    assert all(disabled[name] for name in REPLACED_DEFAULT_ALERTS)


def test_alertmanager_routes_by_severity_to_the_receivers(aws: Graph) -> None:
    # The config Secret's data is hidden in the plan; it is built from this function alone.
    assert [s for s in manifests(aws, "Secret") if s["metadata"]["name"] == "alertmanager-config"]
    cfg = yaml.safe_load(
        yaml.safe_dump(alertmanager_config(make_args().alertmanager, "alertmanager-receivers"))
    )
    routes = {r["receiver"]: r["matchers"] for r in cfg["route"]["routes"]}
    assert routes["severity-critical"] == ['severity = "critical"']
    receivers = {r["name"]: r for r in cfg["receivers"]}
    critical = receivers["severity-critical"]
    assert {c["routing_key_file"] for c in critical["pagerduty_configs"]} == {
        "/etc/alertmanager/secrets/alertmanager-receivers/oncall"
    }
    assert critical["slack_configs"][0]["channel"] == "#ml-alerts"
    assert "pagerduty_configs" not in receivers["severity-warning"]
    assert receivers["severity-info"]["email_configs"][0]["to"] == "ops@example.com"
    assert "severity" in cfg["route"]["group_by"]


def test_receiver_secrets_never_reach_values_or_config(aws: Graph) -> None:
    plain = json.dumps([r.inputs for r in aws.resources])
    for value in (SLACK_URL, PD_KEY, SMTP_PASSWORD, GRAFANA_PASSWORD):
        assert value not in plain
    (secret,) = [
        s for s in manifests(aws, "Secret") if s["metadata"]["name"] == "alertmanager-receivers"
    ]
    assert secret["stringData"] == SECRET_PLACEHOLDER


def test_alertmanager_without_receivers_sends_nothing_anywhere() -> None:
    cfg = alertmanager_config(MonitoringStackArgs().alertmanager, "alertmanager-receivers")
    assert [r["name"] for r in cfg["receivers"]] == ["null"]
    assert cfg["route"]["receiver"] == "null"


def test_a_receiver_without_its_secret_is_a_clear_error() -> None:
    missing = {k: v for k, v in SECRETS.items() if k != "slackWebhookUrl"}
    with pytest.raises(InvalidArgsError, match=r"receivers\[1\]\.secret.*slackWebhookUrl"):
        run_program(program(make_args(), secrets=missing))


def test_monitoring_namespace_is_restricted_and_agents_are_separate(aws: Graph) -> None:
    namespaces = {m["metadata"]["name"]: m for m in manifests(aws, "Namespace")}
    labels = namespaces["monitoring"]["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    assert "monitoring-agents" in namespaces
    values = kps(aws)
    assert values["prometheus-node-exporter"]["namespaceOverride"] == "monitoring-agents"
    assert release(aws, DCGM_CHART)["namespace"] == "monitoring-agents"
    assert manifests(aws, "NetworkPolicy")


def test_everything_waits_for_the_cluster() -> None:
    def fn() -> None:
        cluster = pulumi.CustomResource("test:index:Cluster", "cluster")
        target = KubeTarget(provider=k8s.Provider("k8s"), depends_on=(cluster,))
        MonitoringStack(
            "mon",
            make_args(),
            target=target,
            receiver_secrets=SECRETS,
            grafana_admin_password=GRAFANA_PASSWORD,
        )

    graph = run_program(fn)
    cluster = graph.by_name("cluster")
    for r in graph.resources:
        if r.custom and r.type.startswith("kubernetes:") and "providers" not in r.type:
            assert graph.depends_on(r, cluster), r.name


def test_outputs_name_the_services(aws: Graph) -> None:
    comp = aws.one("mlplatform:monitoring:MonitoringStack")
    assert comp.name == "mon"
    kube = [r for r in aws.resources if r.type == "kubernetes:core/v1:Service"]
    assert kube == []  # services come from the chart; URLs follow its fullnameOverride
    assert kps(aws)["fullnameOverride"] == "kps"


BUILT_IN = ("Namespace", "StorageClass", "NetworkPolicy", "ConfigMap")


@pytest.mark.parametrize("k8s_version", ["1.31.0", "1.34.0"])
def test_built_in_manifests_match_the_kubernetes_schema(aws: Graph, k8s_version: str) -> None:
    import kubernetes_validate

    checked = 0
    for manifest in aws.manifests():
        if manifest["kind"] in BUILT_IN:
            try:
                kubernetes_validate.validate(manifest, k8s_version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                where = "/".join(map(str, exc.absolute_path))
                pytest.fail(
                    f"{manifest['kind']} {manifest['metadata']['name']}: {where}: {exc.message}"
                )
            checked += 1
    assert checked >= 8


def test_every_manifest_passes_kubectl_validate(
    aws: Graph, local: Graph, kubectl_validate: KubectlValidate
) -> None:
    """PrometheusRules against prometheus-operator v0.85.0's CRD (the nearest the module proxy
    serves to kube-prometheus-stack 79.7.1's v0.86.2); built-in kinds against Kubernetes 1.33."""
    checked = aws.manifests() + local.manifests()
    assert {m["kind"] for m in checked} >= {"PrometheusRule", "ConfigMap", "NetworkPolicy"}
    kubectl_validate.assert_valid(checked)
