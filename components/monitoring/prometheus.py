"""kube-prometheus-stack: Prometheus, Alertmanager, Grafana and the node agents, as Helm values."""

from __future__ import annotations

from typing import Any

from components.common import (
    ACCELERATOR_LABEL,
    POOL_LABEL,
    TEAM_LABEL,
    container_security_context,
    pod_security_context,
)
from components.monitoring.args import MonitoringStackArgs, resource_spec
from components.monitoring.assets import DASHBOARD_FOLDER_ANNOTATION, DASHBOARD_LABEL, object_meta
from components.monitoring.karpenter import RESERVATION_ID_LABEL
from components.monitoring.karpenter import kube_state_metrics_values as karpenter_state_values

KPS_CHART = "kube-prometheus-stack"
# 88.5.3 (Prometheus Operator v0.93.1): release tag kube-prometheus-stack-88.5.3 of
# prometheus-community/helm-charts, the newest there, checked 2026-11.
KPS_VERSION = "88.5.3"
KPS_REPO = "https://prometheus-community.github.io/helm-charts"
# The operator's CRDs come from their own chart, as templates: Helm upgrades them with the chart
# (a chart's crds/ folder is installed once and never upgraded). 31.0.1 carries the CRDs of
# Prometheus Operator v0.93.1, the operator kube-prometheus-stack 88.5.3 runs (tag
# prometheus-operator-crds-31.0.1; keep the two in step, and the row in scripts/crd-sources.txt
# from which the tests validate monitors and rules).
PROMETHEUS_CRDS_CHART = "prometheus-operator-crds"
PROMETHEUS_CRDS_VERSION = "31.0.1"
PROMETHEUS_CRDS_RELEASE = "prometheus-operator-crds"
KPS_RELEASE = "kps"  # also the chart's fullnameOverride, so service names are predictable
# Set explicitly in the values (it is also the chart's default): the Pod Identity association
# names it.
ALERTMANAGER_SERVICE_ACCOUNT = f"{KPS_RELEASE}-alertmanager"
POD_IDENTITY_ANNOTATION = "mlplatform.io/pod-identity"
GRAFANA_USER_KEY = "admin-user"
GRAFANA_PASSWORD_KEY = "admin-password"  # noqa: S105 - a Secret key name, not a password

# The chart's own alerts that the platform's rule files replace (one page per problem).
REPLACED_DEFAULT_ALERTS = ("KubeNodeNotReady", "TargetDown", "KubePersistentVolumeFillingUp")

# Namespaces whose node-level agents need host access (node-exporter: hostNetwork/hostPID and
# host paths; DCGM exporter: the kubelet pod-resources socket). Everything else stays restricted.
PRIVILEGED_NAMESPACE_LABELS = {
    "pod-security.kubernetes.io/enforce": "privileged",
    "pod-security.kubernetes.io/audit": "baseline",
    "pod-security.kubernetes.io/warn": "baseline",
}

# DCGM fields exported: everything the rules and dashboards use, and nothing that needs the


def storage_class(name: str, kms_key_arn: Any = None) -> dict[str, Any]:
    params: dict[str, Any] = {"type": "gp3", "encrypted": "true", "fsType": "ext4"}
    if kms_key_arn is not None:
        params["kmsKeyId"] = kms_key_arn
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": name},
        "provisioner": "ebs.csi.aws.com",
        "parameters": params,
        # Delete: a destroyed stack must not leave orphaned EBS volumes behind.
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "WaitForFirstConsumer",
        "allowVolumeExpansion": True,
    }


def network_policies(namespace: str) -> list[dict[str, Any]]:
    """Ingress for the monitoring namespace: its own pods, Prometheus' API, the operator webhook."""

    def policy(name: str, pod_selector: dict[str, Any], ingress: list[Any]) -> dict[str, Any]:
        return {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": object_meta(name, namespace),
            "spec": {"podSelector": pod_selector, "policyTypes": ["Ingress"], "ingress": ingress},
        }

    return [
        # Everything else in the namespace (Grafana, Alertmanager, kube-state-metrics) is reached
        # from inside it only; people use kubectl port-forward.
        policy("same-namespace", {}, [{"from": [{"podSelector": {}}]}]),
        # Autoscalers and adapters in other namespaces query Prometheus.
        policy(
            "prometheus-api",
            {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
            [{"from": [{"namespaceSelector": {}}], "ports": [{"protocol": "TCP", "port": 9090}]}],
        ),
        # The API server calls the operator's admission webhook from outside the pod network.
        policy(
            "operator-webhook",
            {"matchLabels": {"app": "kube-prometheus-stack-operator"}},
            [{"ports": [{"protocol": "TCP", "port": 10250}]}],
        ),
    ]


# --- Helm values ---------------------------------------------------------------------------


def prometheus_crds_values() -> dict[str, Any]:
    # Kept on uninstall: removing (or replacing) the release must never delete every
    # ServiceMonitor, PrometheusRule and Prometheus on the cluster with their CRDs.
    return {"crds": {"annotations": {"helm.sh/resource-policy": "keep"}}}


def _volume_claim(size_gi: int, storage_class_name: str | None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": f"{size_gi}Gi"}},
    }
    if storage_class_name:
        spec["storageClassName"] = storage_class_name
    return {"volumeClaimTemplate": {"spec": spec}}


def kube_prometheus_stack_values(
    args: MonitoringStackArgs,
    *,
    storage_class_name: str | None,
    grafana_admin_secret: str,
    alertmanager_config_secret: str,
    alertmanager_receivers_secret: str,
    karpenter_state: bool = False,
) -> dict[str, Any]:
    """``karpenter_state``: also export Karpenter's reservations (components.monitoring.karpenter)."""
    node_labels = [ACCELERATOR_LABEL, POOL_LABEL]
    if karpenter_state:
        node_labels.append(RESERVATION_ID_LABEL)
    prom = args.prometheus
    am = args.alertmanager
    graf = args.grafana
    # Keep 10% of the volume free for compaction and WAL: size-based retention kicks in first.
    retention_size_gib = max(1, int(prom.volume_size_gi * 0.85))
    select_all: dict[str, Any] = {}
    grafana_persistence: dict[str, Any] = {
        "enabled": True,
        "type": "pvc",
        "accessModes": ["ReadWriteOnce"],
        "size": f"{graf.volume_size_gi}Gi",
    }
    if storage_class_name:
        grafana_persistence["storageClassName"] = storage_class_name
    am_pod: dict[str, Any] = {}
    if args.sns_receivers:
        # Pod Identity injects credentials only into pods started after the association: a
        # changed pod template restarts Alertmanager when sns receivers first appear.
        am_pod["podMetadata"] = {"annotations": {POD_IDENTITY_ANNOTATION: "alertmanager-sns"}}
    return {
        "fullnameOverride": KPS_RELEASE,
        # CRDs come from the prometheus-operator-crds release (upgraded with it), not from here.
        "crds": {"enabled": False},
        "defaultRules": {
            "create": True,
            "disabled": dict.fromkeys(REPLACED_DEFAULT_ALERTS, True),
            # Managed control planes (EKS) don't expose these components.
            "rules": {
                "etcd": False,
                "kubeControllerManager": False,
                "kubeSchedulerAlerting": False,
                "kubeSchedulerRecording": False,
                "kubeProxy": False,
            },
        },
        "kubeControllerManager": {"enabled": False},
        "kubeScheduler": {"enabled": False},
        "kubeEtcd": {"enabled": False},
        "kubeProxy": {"enabled": False},
        "prometheusOperator": {
            "resources": resource_spec("100m", "128Mi", "500m", "256Mi").to_k8s(),
            "securityContext": pod_security_context(uid=65534, fs_group=65534),
            "containerSecurityContext": container_security_context(uid=65534),
        },
        "prometheus": {
            "prometheusSpec": {
                "replicas": prom.replicas,
                "retention": f"{prom.retention_days}d",
                "retentionSize": f"{retention_size_gib}GB",
                "walCompression": True,
                "scrapeInterval": prom.scrape_interval,
                "evaluationInterval": prom.scrape_interval,
                "resources": prom.resources.to_k8s(),
                "storageSpec": _volume_claim(prom.volume_size_gi, storage_class_name),
                "securityContext": pod_security_context(uid=1000, fs_group=2000),
                # Pick up every monitor and rule on the cluster, not only the chart's own.
                "serviceMonitorSelectorNilUsesHelmValues": False,
                "podMonitorSelectorNilUsesHelmValues": False,
                "ruleSelectorNilUsesHelmValues": False,
                "probeSelectorNilUsesHelmValues": False,
                "scrapeConfigSelectorNilUsesHelmValues": False,
                "serviceMonitorSelector": select_all,
                "serviceMonitorNamespaceSelector": select_all,
                "podMonitorSelector": select_all,
                "podMonitorNamespaceSelector": select_all,
                "ruleSelector": select_all,
                "ruleNamespaceSelector": select_all,
            }
        },
        "alertmanager": {
            "enabled": True,
            # Named so the Pod Identity association (sns receivers) can name it too.
            "serviceAccount": {"create": True, "name": ALERTMANAGER_SERVICE_ACCOUNT},
            "alertmanagerSpec": {
                "replicas": am.replicas,
                "resources": am.resources.to_k8s(),
                "storage": _volume_claim(am.volume_size_gi, storage_class_name),
                "securityContext": pod_security_context(uid=1000, fs_group=2000),
                # Config and receiver secrets come from Secrets this component manages.
                "useExistingSecret": True,
                "configSecret": alertmanager_config_secret,
                "secrets": [alertmanager_receivers_secret],
                **am_pod,
            },
        },
        "grafana": {
            "enabled": True,
            "admin": {
                "existingSecret": grafana_admin_secret,
                "userKey": GRAFANA_USER_KEY,
                "passwordKey": GRAFANA_PASSWORD_KEY,
            },
            "persistence": grafana_persistence,
            # A ReadWriteOnce volume cannot be attached to the old and new pod at once.
            "deploymentStrategy": {"type": "Recreate"},
            # The chown init container runs as root; fsGroup already owns the volume.
            "initChownData": {"enabled": False},
            "resources": graf.resources.to_k8s(),
            "defaultDashboardsEnabled": True,
            "sidecar": {
                "dashboards": {
                    "enabled": True,
                    "label": DASHBOARD_LABEL,
                    "labelValue": "1",
                    "searchNamespace": "ALL",
                    "folderAnnotation": DASHBOARD_FOLDER_ANNOTATION,
                    "provider": {"foldersFromFilesStructure": True},
                },
            },
            "grafana.ini": {
                "analytics": {"check_for_updates": False, "reporting_enabled": False},
                "users": {"allow_sign_up": False},
                "auth.anonymous": {"enabled": False},
            },
        },
        "kube-state-metrics": {
            # Labels the GPU, cost, training and capacity rules join on.
            "metricLabelsAllowlist": [
                f"nodes=[{','.join(node_labels)}]",
                f"namespaces=[{TEAM_LABEL}]",
                "jobs=[kueue.x-k8s.io/queue-name,mlplatform.io/workload]",
            ],
            "resources": resource_spec("50m", "128Mi", "200m", "512Mi").to_k8s(),
            **(karpenter_state_values() if karpenter_state else {}),
        },
        "nodeExporter": {"enabled": True},
        "prometheus-node-exporter": {
            "namespaceOverride": args.agents_namespace,
            # Every node, GPU nodes included.
            "tolerations": [{"operator": "Exists", "effect": "NoSchedule"}],
            "resources": resource_spec("20m", "32Mi", "200m", "128Mi").to_k8s(),
        },
    }
