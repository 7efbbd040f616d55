"""MonitoringStack: Prometheus, Alertmanager and Grafana that alert from day one, plus GPU metrics.

* **kube-prometheus-stack** (pinned chart): Prometheus keeps ``retentionDays`` of data on a
  persistent, encrypted gp3 volume (the default storage class on the local stack) and picks up
  *every* ServiceMonitor, PodMonitor and PrometheusRule on the cluster, not only the chart's own.
  Alertmanager is on, with Slack/webhook, PagerDuty, email and SNS receivers routed by severity.
  Grafana keeps its state on a volume, takes its admin password from a Kubernetes Secret (never the
  chart default) and loads dashboards through its sidecar. node-exporter and kube-state-metrics
  are on.
* **DCGM exporter** (pinned chart) on every GPU node: tolerates the GPU taint, exports a fixed
  field list (utilization, memory, temperature, power, XID, throttling) and is scraped through its
  ServiceMonitor with ``honorLabels`` so ``namespace``/``pod`` name the workload holding the GPU.
* **Rules and dashboards as files**: ``assets/alerts/*.yaml`` are plain Prometheus rule files
  (``promtool`` checks and tests them) wrapped here into PrometheusRule objects;
  ``assets/dashboards/*.json`` become ConfigMaps labelled ``grafana_dashboard: "1"``.

Receiver secrets (webhook URLs, PagerDuty routing keys, SMTP passwords) never enter the Helm
values: they go into their own Secret, mounted into Alertmanager, and the Alertmanager config only
names the files (``api_url_file``, ``routing_key_file``...). The Helm values stay plain data, so a
preview shows them in full and never depends on unknown outputs.

``sns`` receivers (AWS only) have no secret at all: Alertmanager publishes to the platform's
encrypted alarm topic (CostGuardrails) with SigV4, signing with short-lived credentials that EKS
Pod Identity hands its service account. The role may publish to that topic and use its key
through SNS, nothing else; teams subscribe to the topic (email, chat, paging tools).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import yaml
from pydantic import Field

from components.common import (
    ACCELERATOR_LABEL,
    GPU_TOLERATION,
    POOL_LABEL,
    RESTRICTED_NAMESPACE_LABELS,
    ArgsModel,
    InvalidArgsError,
    Issue,
    KubeTarget,
    container_security_context,
    merge_tags,
    pod_security_context,
)
from components.generated_secret import GeneratedSecret
from components.project_access import pod_identity_role

ASSETS = Path(__file__).parent / "assets"
ALERTS_DIR = ASSETS / "alerts"
DASHBOARDS_DIR = ASSETS / "dashboards"

KPS_CHART = "kube-prometheus-stack"
KPS_VERSION = "79.7.1"
KPS_REPO = "https://prometheus-community.github.io/helm-charts"
KPS_RELEASE = "kps"  # also the chart's fullnameOverride, so service names are predictable
# Set explicitly in the values (it is also the chart's default): the Pod Identity association
# names it.
ALERTMANAGER_SERVICE_ACCOUNT = f"{KPS_RELEASE}-alertmanager"
POD_IDENTITY_ANNOTATION = "mlplatform.io/pod-identity"
DCGM_CHART = "dcgm-exporter"
DCGM_VERSION = "4.7.1"
DCGM_REPO = "https://nvidia.github.io/dcgm-exporter/helm-charts"
DCGM_RELEASE = "dcgm-exporter"

GP3_ENCRYPTED = "gp3-encrypted"
DASHBOARD_LABEL = "grafana_dashboard"
DASHBOARD_FOLDER_ANNOTATION = "grafana_folder"
DASHBOARD_FOLDER = "ML Platform"
GRAFANA_USER_KEY = "admin-user"
GRAFANA_PASSWORD_KEY = "admin-password"  # noqa: S105 - a Secret key name, not a password
ALERTMANAGER_SECRETS_DIR = "/etc/alertmanager/secrets"

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
# profiling module (which would need CAP_SYS_ADMIN). (field, type, help)
DCGM_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("DCGM_FI_DEV_SM_CLOCK", "gauge", "SM clock frequency (in MHz)."),
    ("DCGM_FI_DEV_MEM_CLOCK", "gauge", "Memory clock frequency (in MHz)."),
    ("DCGM_FI_DEV_GPU_TEMP", "gauge", "GPU temperature (in C)."),
    ("DCGM_FI_DEV_MEMORY_TEMP", "gauge", "Memory temperature (in C)."),
    ("DCGM_FI_DEV_POWER_USAGE", "gauge", "Power draw (in W)."),
    ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "counter", "Energy since boot (in mJ)."),
    ("DCGM_FI_DEV_GPU_UTIL", "gauge", "GPU utilization (in %)."),
    ("DCGM_FI_DEV_MEM_COPY_UTIL", "gauge", "Memory utilization (in %)."),
    ("DCGM_FI_DEV_FB_FREE", "gauge", "Framebuffer memory free (in MiB)."),
    ("DCGM_FI_DEV_FB_USED", "gauge", "Framebuffer memory used (in MiB)."),
    ("DCGM_FI_DEV_XID_ERRORS", "gauge", "Value of the last XID error encountered."),
    ("DCGM_FI_DEV_POWER_VIOLATION", "counter", "Throttling due to power constraints (in us)."),
    ("DCGM_FI_DEV_THERMAL_VIOLATION", "counter", "Throttling due to thermal constraints (in us)."),
    ("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", "counter", "Total number of PCIe retries."),
    (
        "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS",
        "counter",
        "Rows remapped for uncorrectable errors.",
    ),
    ("DCGM_FI_DEV_ROW_REMAP_FAILURE", "gauge", "Whether remapping of rows has failed."),
)
DCGM_PROFILING_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("DCGM_FI_PROF_GR_ENGINE_ACTIVE", "gauge", "Ratio of time the graphics engine is active."),
    ("DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", "gauge", "Ratio of cycles the tensor pipe is active."),
    ("DCGM_FI_PROF_DRAM_ACTIVE", "gauge", "Ratio of cycles device memory is active."),
)

# Default on-demand list prices per GPU-hour in us-east-1 (instance price / GPUs per instance),
# used only for the cost dashboard's estimates. Override per stack.
DEFAULT_GPU_HOURLY_PRICES_USD: dict[str, float] = {
    "nvidia-t4": 0.526,  # g4dn.xlarge
    "nvidia-a10g": 1.006,  # g5.xlarge
    "nvidia-l4": 0.805,  # g6.xlarge
    "nvidia-l40s": 1.861,  # g6e.xlarge
    "nvidia-a100": 2.745,  # p4d.24xlarge / 8
    "nvidia-h100": 6.88,  # p5.48xlarge / 8
}

_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")
_DURATION = re.compile(r"^[1-9][0-9]*(s|m|h)$")
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_HOSTPORT = re.compile(r"^[^\s:]+:[0-9]{1,5}$")
_SNS_TOPIC_ARN = re.compile(
    r"^arn:aws[-a-z]*:sns:(?P<region>[a-z]{2}(-[a-z]+)+-[0-9]):[0-9]{12}:"
    r"[-_A-Za-z0-9]{1,256}(\.fifo)?$"
)


class Severity(StrEnum):
    CRITICAL = "critical"
    WARNING = "warning"
    INFO = "info"


class ReceiverKind(StrEnum):
    SLACK = "slack"
    WEBHOOK = "webhook"
    PAGERDUTY = "pagerduty"
    EMAIL = "email"
    SNS = "sns"  # AWS only: the alarm topic, signed with the Alertmanager pod's role


# What the receiver's secret holds, for error messages (sns has none).
_SECRET_MEANING = {
    ReceiverKind.SLACK: "the Slack incoming-webhook URL",
    ReceiverKind.WEBHOOK: "the webhook URL",
    ReceiverKind.PAGERDUTY: "the PagerDuty Events v2 routing key",
    ReceiverKind.EMAIL: "the SMTP password",
}


class ResourceSpec(ArgsModel):
    cpu_request: str
    memory_request: str
    cpu_limit: str
    memory_limit: str

    def to_k8s(self) -> dict[str, dict[str, str]]:
        return {
            "requests": {"cpu": self.cpu_request, "memory": self.memory_request},
            "limits": {"cpu": self.cpu_limit, "memory": self.memory_limit},
        }

    def issues(self) -> list[Issue]:
        found = super().issues()
        for key in ("cpuRequest", "memoryRequest", "cpuLimit", "memoryLimit"):
            value = getattr(self, _snake(key))
            if not _QUANTITY.match(value):
                found.append(
                    Issue(
                        (key,),
                        f"must be a Kubernetes quantity such as 500m, 2 or 4Gi, got {value!r}",
                    )
                )
        return found


def _resources(cpu: str, mem: str, cpu_limit: str, mem_limit: str) -> ResourceSpec:
    return ResourceSpec(
        cpu_request=cpu, memory_request=mem, cpu_limit=cpu_limit, memory_limit=mem_limit
    )


class AlertReceiver(ArgsModel):
    """Where alerts of the listed severities go. Its secret comes from secret stack config."""

    name: str
    kind: ReceiverKind
    severities: list[Severity] = Field(
        default_factory=lambda: [Severity.CRITICAL, Severity.WARNING]
    )
    # Name of the secret (a key of MonitoringStack's ``receiver_secrets``; by convention the
    # secret stack-config key). Defaults to the receiver's name.
    secret: str | None = None
    channel: str | None = None  # slack: overrides the webhook's default channel
    to: list[str] = Field(default_factory=list)  # email
    from_address: str | None = None  # email
    smarthost: str | None = None  # email: host:port
    smtp_username: str | None = None  # email: defaults to from_address

    @property
    def secret_key(self) -> str:
        return self.secret or self.name

    @property
    def needs_secret(self) -> bool:
        return self.kind in _SECRET_MEANING

    def issues(self) -> list[Issue]:
        found = super().issues()
        if not _NAME.match(self.name):
            found.append(
                Issue(("name",), f"must be a DNS-1123 label (a-z, 0-9, '-'), got {self.name!r}")
            )
        if not self.needs_secret:
            if self.secret is not None:
                found.append(
                    Issue(
                        ("secret",),
                        f"{self.kind.value} receivers have no secret (they sign with the "
                        "Alertmanager pod's AWS role); remove it",
                    )
                )
        elif not _SECRET_KEY.match(self.secret_key):
            found.append(
                Issue(
                    ("secret",),
                    f"must use only letters, digits, '-', '_' or '.', got {self.secret_key!r}",
                )
            )
        if not self.severities:
            allowed = ", ".join(s.value for s in Severity)
            found.append(Issue(("severities",), f"must list at least one of {allowed}"))
        if self.kind != ReceiverKind.SLACK and self.channel is not None:
            found.append(
                Issue(("channel",), f"only applies to slack receivers, not {self.kind.value}")
            )
        if self.kind == ReceiverKind.EMAIL:
            if not self.to:
                found.append(Issue(("to",), "an email receiver needs at least one address"))
            for i, addr in enumerate(self.to):
                if not _EMAIL.match(addr):
                    found.append(Issue(("to", i), f"not an email address: {addr!r}"))
            if not self.from_address or not _EMAIL.match(self.from_address):
                found.append(
                    Issue(
                        ("fromAddress",),
                        f"an email receiver needs a sender address, got {self.from_address!r}",
                    )
                )
            if not self.smarthost or not _HOSTPORT.match(self.smarthost):
                found.append(
                    Issue(
                        ("smarthost",),
                        f"an email receiver needs the SMTP server as host:port, got {self.smarthost!r}",
                    )
                )
        else:
            for key, value in (("to", self.to), ("fromAddress", self.from_address),
                               ("smarthost", self.smarthost), ("smtpUsername", self.smtp_username)):  # fmt: skip
                if value:
                    found.append(
                        Issue((key,), f"only applies to email receivers, not {self.kind.value}")
                    )
        return found


class PrometheusArgs(ArgsModel):
    retention_days: int = 15
    volume_size_gi: int = 100
    scrape_interval: str = "30s"
    replicas: int = 1
    resources: ResourceSpec = Field(default_factory=lambda: _resources("500m", "2Gi", "2", "8Gi"))

    def issues(self) -> list[Issue]:
        found = super().issues()
        if self.retention_days < 1:
            found.append(
                Issue(("retentionDays",), f"must be at least 1 (day), got {self.retention_days}")
            )
        if self.volume_size_gi < 5:
            found.append(Issue(("volumeSizeGi",), f"must be at least 5, got {self.volume_size_gi}"))
        if not _DURATION.match(self.scrape_interval):
            found.append(
                Issue(
                    ("scrapeInterval",),
                    f"must be a duration like 15s or 1m, got {self.scrape_interval!r}",
                )
            )
        if not 1 <= self.replicas <= 3:
            found.append(Issue(("replicas",), f"must be 1, 2 or 3, got {self.replicas}"))
        return found


class AlertmanagerArgs(ArgsModel):
    receivers: list[AlertReceiver] = Field(default_factory=list)
    replicas: int = 1
    volume_size_gi: int = 2
    group_wait: str = "30s"
    group_interval: str = "5m"
    repeat_interval: str = "4h"
    resources: ResourceSpec = Field(
        default_factory=lambda: _resources("50m", "128Mi", "200m", "256Mi")
    )

    def issues(self) -> list[Issue]:
        found = super().issues()
        seen: dict[str, int] = {}
        for i, receiver in enumerate(self.receivers):
            if receiver.name in seen:
                found.append(
                    Issue(
                        ("receivers", i, "name"),
                        f"duplicate receiver name {receiver.name!r} (also receivers[{seen[receiver.name]}])",
                    )
                )
            seen.setdefault(receiver.name, i)
        for key in ("groupWait", "groupInterval", "repeatInterval"):
            value = getattr(self, _snake(key))
            if not _DURATION.match(value):
                found.append(Issue((key,), f"must be a duration like 30s, 5m or 4h, got {value!r}"))
        if not 1 <= self.replicas <= 3:
            found.append(Issue(("replicas",), f"must be 1, 2 or 3, got {self.replicas}"))
        if self.volume_size_gi < 1:
            found.append(Issue(("volumeSizeGi",), f"must be at least 1, got {self.volume_size_gi}"))
        return found


class GrafanaArgs(ArgsModel):
    admin_user: str = "admin"
    volume_size_gi: int = 10
    resources: ResourceSpec = Field(
        default_factory=lambda: _resources("100m", "256Mi", "500m", "512Mi")
    )

    def issues(self) -> list[Issue]:
        found = super().issues()
        if self.volume_size_gi < 1:
            found.append(Issue(("volumeSizeGi",), f"must be at least 1, got {self.volume_size_gi}"))
        if not self.admin_user.strip():
            found.append(Issue(("adminUser",), "must not be empty"))
        return found


class DcgmExporterArgs(ArgsModel):
    enabled: bool = True
    scrape_interval: str = "15s"
    # Tensor-core/DRAM activity fields need the profiling module and CAP_SYS_ADMIN: off by default.
    profiling_metrics: bool = False
    resources: ResourceSpec = Field(
        default_factory=lambda: _resources("100m", "256Mi", "500m", "512Mi")
    )

    def issues(self) -> list[Issue]:
        found = super().issues()
        if not _DURATION.match(self.scrape_interval):
            found.append(
                Issue(
                    ("scrapeInterval",),
                    f"must be a duration like 15s, got {self.scrape_interval!r}",
                )
            )
        return found


class MonitoringStackArgs(ArgsModel):
    """Stack config section ``monitoring``."""

    namespace: str = "monitoring"
    # Node-level agents (node-exporter, DCGM exporter) need host access: their own namespace.
    agents_namespace: str = "monitoring-agents"
    # On AWS the component declares this StorageClass (gp3, encrypted) unless told not to.
    storage_class: str = GP3_ENCRYPTED
    create_storage_class: bool = True
    prometheus: PrometheusArgs = Field(default_factory=PrometheusArgs)
    alertmanager: AlertmanagerArgs = Field(default_factory=AlertmanagerArgs)
    grafana: GrafanaArgs = Field(default_factory=GrafanaArgs)
    dcgm_exporter: DcgmExporterArgs = Field(default_factory=DcgmExporterArgs)
    gpu_hourly_prices_usd: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_GPU_HOURLY_PRICES_USD)
    )

    def issues(self) -> list[Issue]:
        found = super().issues()
        for key in ("namespace", "agentsNamespace", "storageClass"):
            value = getattr(self, _snake(key))
            if not _NAME.match(value):
                found.append(Issue((key,), f"must be a DNS-1123 label, got {value!r}"))
        if self.namespace == self.agents_namespace:
            found.append(
                Issue(
                    ("agentsNamespace",), "must differ from namespace (it runs privileged agents)"
                )
            )
        for accel, price in self.gpu_hourly_prices_usd.items():
            if price < 0:
                found.append(
                    Issue(
                        ("gpuHourlyPricesUsd", accel), f"must be >= 0 USD per GPU-hour, got {price}"
                    )
                )
        return found

    def secret_issues(self, provided: Iterable[str]) -> list[Issue]:
        """Receivers whose secret is missing from the runtime ``receiver_secrets``."""
        have = set(provided)
        found = []
        for i, r in enumerate(self.alertmanager.receivers):
            if r.needs_secret and r.secret_key not in have:
                found.append(
                    Issue(
                        ("alertmanager", "receivers", i, "secret"),
                        f"{r.kind.value} receiver {r.name!r} needs {_SECRET_MEANING[r.kind]} as "
                        f"secret config {r.secret_key!r} "
                        f"(pulumi config set --secret --path 'secrets.{r.secret_key}' ...)",
                    )
                )
        return found

    @property
    def sns_receivers(self) -> list[AlertReceiver]:
        return [r for r in self.alertmanager.receivers if r.kind == ReceiverKind.SNS]

    def sns_issues(
        self, *, on_aws: bool, alarm_topic_arn: Any, alarm_key_arn: Any, cluster_name: Any
    ) -> list[Issue]:
        """``sns`` receivers need AWS and MonitoringStack's runtime inputs for the alarm topic."""
        found = []
        needed = {
            "alarm_topic_arn": alarm_topic_arn,
            "alarm_key_arn": alarm_key_arn,
            "cluster_name": cluster_name,
        }
        missing = [key for key, value in needed.items() if value is None]
        for i, r in enumerate(self.alertmanager.receivers):
            if r.kind != ReceiverKind.SNS:
                continue
            where = ("alertmanager", "receivers", i, "kind")
            if not on_aws:
                found.append(
                    Issue(
                        where,
                        f"sns receiver {r.name!r} publishes to an AWS SNS topic and only works on "
                        "AWS stacks; here use slack, webhook, pagerduty or email",
                    )
                )
            elif missing:
                found.append(
                    Issue(
                        where,
                        f"sns receiver {r.name!r} needs MonitoringStack's {', '.join(missing)} "
                        "(the CostGuardrails alarm topic and its KMS key; the EKS cluster)",
                    )
                )
            elif isinstance(alarm_topic_arn, str) and not _SNS_TOPIC_ARN.match(alarm_topic_arn):
                found.append(
                    Issue(
                        where,
                        f"sns receiver {r.name!r}: alarm_topic_arn must be an SNS topic ARN "
                        f"(arn:aws:sns:<region>:<account>:<name>), got {alarm_topic_arn!r}",
                    )
                )
        return found


def _snake(key: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()


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


def _meta(name: str, namespace: str, **labels: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": namespace,
        "labels": {"app.kubernetes.io/part-of": "mlplatform-monitoring", **labels},
    }


def _typed(manifest_part: dict[str, Any]) -> Any:
    """Manifest dicts go to typed resources as they are (pulumi-kubernetes accepts dicts)."""
    return manifest_part


def prometheus_rule(name: str, namespace: str, rule_file: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": _meta(name, namespace),
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
    meta = _meta(name, namespace, **{DASHBOARD_LABEL: "1"})
    meta["annotations"] = {DASHBOARD_FOLDER_ANNOTATION: DASHBOARD_FOLDER}
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": meta,
        "data": {f"{name}.json": json.dumps(dashboard, indent=1, sort_keys=True)},
    }


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
            "metadata": _meta(name, namespace),
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


# --- Alertmanager --------------------------------------------------------------------------


def secret_file(secret_name: str, key: str) -> str:
    return f"{ALERTMANAGER_SECRETS_DIR}/{secret_name}/{key}"


def sns_topic_region(topic_arn: str) -> str:
    """The region of an SNS topic ARN: Alertmanager must call SNS there, and SNS uses KMS there."""
    match = _SNS_TOPIC_ARN.match(topic_arn)
    if match is None:
        raise ValueError(f"not an SNS topic ARN: {topic_arn!r}")
    return match["region"]


# SNS subjects: at most 100 ASCII characters, one line. Alert names are short identifiers.
SNS_SUBJECT = "[{{ .Status | toUpper }}] {{ .CommonLabels.alertname }} (%s)"
SNS_MESSAGE = (
    "{{ range .Alerts }}[{{ .Status | toUpper }}] {{ .Labels.alertname }}"
    "{{ with .Labels.namespace }} in {{ . }}{{ end }}\n"
    "{{ with .Annotations.summary }}{{ . }}{{ else }}{{ .Annotations.description }}{{ end }}\n"
    "{{ with .Annotations.runbook }}Runbook: {{ . }}\n{{ end }}"
    "{{ with .Annotations.runbook_url }}Runbook: {{ . }}\n{{ end }}"
    'Since: {{ .StartsAt.UTC.Format "2006-01-02 15:04 MST" }}\n\n{{ end }}'
)


def _sns_config(sev: Severity, topic_arn: str) -> dict[str, Any]:
    return {
        "topic_arn": topic_arn,
        # Region only: no keys, so the SDK's default chain finds the Pod Identity credentials.
        "sigv4": {"region": sns_topic_region(topic_arn)},
        "subject": SNS_SUBJECT % sev.value,
        "message": SNS_MESSAGE,
        # Each receiver serves one severity: subscribers can filter on it (filter policies).
        "attributes": {"severity": sev.value},
        "send_resolved": True,
    }


def alertmanager_sns_policy(*, topic_arn: str, key_arn: str) -> dict[str, Any]:
    """Identity policy for Alertmanager: publish to the alarm topic, and nothing else.

    The topic is encrypted with a customer-managed key, so a publisher also needs the key, but
    only as SNS uses it on its behalf (``kms:ViaService``) in the topic's region. With
    ``sns:Publish`` limited to one topic, that is the only topic the key can serve for it.
    """
    region = sns_topic_region(topic_arn)
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "PublishAlerts",
                "Effect": "Allow",
                "Action": "sns:Publish",
                "Resource": topic_arn,
            },
            {
                "Sid": "UseTopicKeyThroughSns",
                "Effect": "Allow",
                # What AWS documents for publishers to an encrypted topic; through SNS only the
                # symmetric data keys SNS asks for can be generated.
                "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
                "Resource": key_arn,
                "Condition": {"StringEquals": {"kms:ViaService": f"sns.{region}.amazonaws.com"}},
            },
        ],
    }


def _receiver_config(
    r: AlertReceiver, secrets_name: str, sev: Severity, sns_topic_arn: str | None
) -> tuple[str, dict[str, Any]]:
    if r.kind == ReceiverKind.SNS:
        if sns_topic_arn is None:
            raise ValueError(f"sns receiver {r.name!r} needs the alarm topic ARN")
        return "sns_configs", _sns_config(sev, sns_topic_arn)
    path = secret_file(secrets_name, r.secret_key)
    if r.kind == ReceiverKind.SLACK:
        cfg: dict[str, Any] = {
            "api_url_file": path,
            "send_resolved": True,
            "title": '[{{ .Status | toUpper }}{{ if eq .Status "firing" }}:{{ .Alerts.Firing | len }}'
            "{{ end }}] {{ .CommonLabels.alertname }}",
            "text": "{{ range .Alerts }}*{{ .Annotations.summary }}*\n"
            "Runbook: {{ .Annotations.runbook }}\n{{ end }}",
        }
        if r.channel:
            cfg["channel"] = r.channel
        return "slack_configs", cfg
    if r.kind == ReceiverKind.WEBHOOK:
        return "webhook_configs", {"url_file": path, "send_resolved": True}
    if r.kind == ReceiverKind.PAGERDUTY:
        return "pagerduty_configs", {
            "routing_key_file": path,
            "send_resolved": True,
            "description": "{{ .CommonLabels.alertname }}: {{ .CommonAnnotations.summary }}",
        }
    return "email_configs", {
        "to": ", ".join(r.to),
        "from": r.from_address,
        "smarthost": r.smarthost,
        "auth_username": r.smtp_username or r.from_address,
        "auth_password_file": path,
        "require_tls": True,
        "send_resolved": True,
    }


def alertmanager_config(
    args: AlertmanagerArgs, secrets_name: str, sns_topic_arn: str | None = None
) -> dict[str, Any]:
    """Alertmanager's config: one receiver per severity, fanning out to every subscriber.

    It holds file paths and the alarm topic's ARN, never secret values, so it is plain data.
    """
    receivers: list[dict[str, Any]] = [{"name": "null"}]
    routes: list[dict[str, Any]] = [
        # The chart's always-firing heartbeat and its info-level inhibitor are not notifications.
        {"matchers": ['alertname =~ "Watchdog|InfoInhibitor"'], "receiver": "null"},
    ]
    repeat = {Severity.CRITICAL: "1h", Severity.WARNING: args.repeat_interval}
    for sev in Severity:
        configs: dict[str, list[dict[str, Any]]] = {}
        for r in args.receivers:
            if sev in r.severities:
                key, cfg = _receiver_config(r, secrets_name, sev, sns_topic_arn)
                configs.setdefault(key, []).append(cfg)
        if not configs:
            continue
        receivers.append({"name": f"severity-{sev.value}", **configs})
        route: dict[str, Any] = {
            "matchers": [f'severity = "{sev.value}"'],
            "receiver": f"severity-{sev.value}",
        }
        if sev in repeat:
            route["repeat_interval"] = repeat[sev]
        if sev == Severity.INFO:
            route["repeat_interval"] = "24h"
        routes.append(route)
    return {
        "global": {"resolve_timeout": "5m"},
        "route": {
            "receiver": "null",
            "group_by": ["alertname", "namespace", "severity"],
            "group_wait": args.group_wait,
            "group_interval": args.group_interval,
            "repeat_interval": args.repeat_interval,
            "routes": routes,
        },
        "inhibit_rules": [
            # A critical alert silences the warning of the same name and scope.
            {
                "source_matchers": ['severity = "critical"'],
                "target_matchers": ['severity = "warning"'],
                "equal": ["alertname", "namespace"],
            },
            {
                "source_matchers": ['alertname = "InfoInhibitor"'],
                "target_matchers": ['severity = "info"'],
                "equal": ["namespace"],
            },
        ],
        "receivers": receivers,
        "templates": [],
    }


# --- Helm values ---------------------------------------------------------------------------


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
) -> dict[str, Any]:
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
        "crds": {"enabled": True},
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
            "resources": _resources("100m", "128Mi", "500m", "256Mi").to_k8s(),
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
            # Labels the GPU, cost and training rules join on.
            "metricLabelsAllowlist": [
                f"nodes=[{ACCELERATOR_LABEL},{POOL_LABEL}]",
                "namespaces=[mlplatform.io/team]",
                "jobs=[kueue.x-k8s.io/queue-name,mlplatform.io/workload]",
            ],
            "resources": _resources("50m", "128Mi", "200m", "512Mi").to_k8s(),
        },
        "nodeExporter": {"enabled": True},
        "prometheus-node-exporter": {
            "namespaceOverride": args.agents_namespace,
            # Every node, GPU nodes included.
            "tolerations": [{"operator": "Exists", "effect": "NoSchedule"}],
            "resources": _resources("20m", "32Mi", "200m", "128Mi").to_k8s(),
        },
    }


def dcgm_metrics_csv(profiling: bool) -> str:
    fields = DCGM_FIELDS + (DCGM_PROFILING_FIELDS if profiling else ())
    lines = ["# DCGM FIELD, Prometheus metric type, help message"]
    lines += [f"{f}, {t}, {h}" for f, t, h in fields]
    return "\n".join(lines) + "\n"


def dcgm_exporter_values(args: DcgmExporterArgs) -> dict[str, Any]:
    security: dict[str, Any] = {
        # Root to reach the kubelet's pod-resources socket (maps GPUs to pods).
        "runAsNonRoot": False,
        "runAsUser": 0,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if args.profiling_metrics:
        security["capabilities"] = {"drop": ["ALL"], "add": ["SYS_ADMIN"]}
    gpu_node_terms = [
        {"matchExpressions": [{"key": ACCELERATOR_LABEL, "operator": "Exists"}]},
        # Nodes labelled by NVIDIA GPU feature discovery, for GPU nodes outside platform pools.
        {
            "matchExpressions": [
                {"key": "nvidia.com/gpu.present", "operator": "In", "values": ["true"]}
            ]
        },
    ]
    return {
        "serviceMonitor": {
            "enabled": True,
            "interval": args.scrape_interval,
            # Keep DCGM's namespace/pod labels: they name the workload holding the GPU.
            "honorLabels": True,
        },
        "tolerations": [dict(GPU_TOLERATION)],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": gpu_node_terms
                }
            }
        },
        "resources": args.resources.to_k8s(),
        "securityContext": security,
        "customMetrics": dcgm_metrics_csv(args.profiling_metrics),
        "arguments": ["-f", "/etc/dcgm-exporter/default-counters.csv"],
        "kubernetes": {"enablePodLabels": False},
    }


# --- Component -----------------------------------------------------------------------------


class _Manifest(k8s.apiextensions.CustomResource):
    """A custom resource (PrometheusRule) declared from its manifest dict."""

    def __init__(self, name: str, manifest: dict[str, Any], opts: pulumi.ResourceOptions):
        super().__init__(
            name,
            api_version=manifest["apiVersion"],
            kind=manifest["kind"],
            metadata=manifest["metadata"],
            spec=manifest["spec"],
            opts=opts,
        )


class MonitoringStack(pulumi.ComponentResource):
    """Prometheus, Alertmanager, Grafana, node/GPU exporters, alert rules and dashboards."""

    namespace: pulumi.Output[str]
    prometheus_url: pulumi.Output[str]
    alertmanager_url: pulumi.Output[str]
    grafana_url: pulumi.Output[str]
    grafana_admin_secret: pulumi.Output[str]
    grafana_admin_password: pulumi.Output[str]
    # The role Alertmanager publishes to the alarm topic with; None without sns receivers.
    alertmanager_role_arn: pulumi.Output[str | None]

    def __init__(
        self,
        name: str,
        args: MonitoringStackArgs,
        *,
        target: KubeTarget,
        receiver_secrets: Mapping[str, pulumi.Input[str]] | None = None,
        grafana_admin_password: pulumi.Input[str] | None = None,
        kms_key_arn: pulumi.Input[str] | None = None,
        alarm_topic_arn: pulumi.Input[str] | None = None,
        alarm_key_arn: pulumi.Input[str] | None = None,
        cluster_name: pulumi.Input[str] | None = None,
        tags: Mapping[str, str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """``receiver_secrets`` maps each receiver's ``secret`` key to its (secret) value.
        Without ``grafana_admin_password`` a random one is generated (read it from the
        ``grafanaAdminPassword`` output). ``kms_key_arn`` encrypts the gp3 volumes with that key
        instead of the account's default EBS key (the EBS CSI role then needs grants on it).

        ``sns`` receivers (AWS only) need ``alarm_topic_arn`` and ``alarm_key_arn`` (the
        CostGuardrails outputs of the same names) and the cluster, ``cluster_name`` or else
        ``target.cluster_name``, for Alertmanager's Pod Identity role. ``tags`` go on that role.
        """
        cluster = cluster_name if cluster_name is not None else target.cluster_name
        found = (
            args.issues()
            + args.secret_issues((receiver_secrets or {}).keys())
            + args.sns_issues(
                on_aws=target.on_aws,
                alarm_topic_arn=alarm_topic_arn,
                alarm_key_arn=alarm_key_arn,
                cluster_name=cluster,
            )
        )
        if found:
            raise InvalidArgsError("MonitoringStack", found)
        super().__init__("mlplatform:monitoring:MonitoringStack", name, None, opts)
        secrets = dict(receiver_secrets or {})
        ns_name = args.namespace

        def k8s_opts(*deps: Any) -> pulumi.ResourceOptions:
            return pulumi.ResourceOptions(
                parent=self,
                provider=target.provider,
                depends_on=[*target.depends_on, *[d for d in deps if d is not None]],
            )

        namespace = k8s.core.v1.Namespace(
            f"{name}-ns",
            metadata={"name": ns_name, "labels": dict(RESTRICTED_NAMESPACE_LABELS)},
            opts=k8s_opts(),
        )
        agents_ns = k8s.core.v1.Namespace(
            f"{name}-agents-ns",
            metadata={"name": args.agents_namespace, "labels": dict(PRIVILEGED_NAMESPACE_LABELS)},
            opts=k8s_opts(),
        )

        sc_name: str | None = None
        sc_res = None
        if target.on_aws:
            sc_name = args.storage_class
            if args.create_storage_class:
                manifest = storage_class(args.storage_class, kms_key_arn)
                sc_res = k8s.storage.v1.StorageClass(
                    f"{name}-storage-class",
                    metadata=manifest["metadata"],
                    provisioner=manifest["provisioner"],
                    parameters=manifest["parameters"],
                    reclaim_policy=manifest["reclaimPolicy"],
                    volume_binding_mode=manifest["volumeBindingMode"],
                    allow_volume_expansion=manifest["allowVolumeExpansion"],
                    opts=k8s_opts(),
                )

        # Grafana admin credentials: a Secret, never the chart's default password.
        if grafana_admin_password is None:
            generated = GeneratedSecret(
                f"{name}-grafana-password", length=32, opts=pulumi.ResourceOptions(parent=self)
            )
            password: pulumi.Input[str] = generated.result
        else:
            password = grafana_admin_password
        admin_secret_name = "grafana-admin"  # noqa: S105 - a Secret name
        admin_secret = k8s.core.v1.Secret(
            f"{name}-grafana-admin",
            metadata=_typed(_meta(admin_secret_name, ns_name)),
            type="Opaque",
            string_data={
                GRAFANA_USER_KEY: args.grafana.admin_user,
                GRAFANA_PASSWORD_KEY: pulumi.Output.secret(password),
            },
            opts=k8s_opts(namespace),
        )

        receivers_secret_name = "alertmanager-receivers"  # noqa: S105 - a Secret name
        receivers_secret = k8s.core.v1.Secret(
            f"{name}-alertmanager-receivers",
            metadata=_typed(_meta(receivers_secret_name, ns_name)),
            type="Opaque",
            # Only the secrets some receiver uses, mounted under ALERTMANAGER_SECRETS_DIR.
            string_data={
                r.secret_key: pulumi.Output.secret(secrets[r.secret_key])
                for r in args.alertmanager.receivers
                if r.needs_secret
            },
            opts=k8s_opts(namespace),
        )

        # sns receivers: Alertmanager's service account gets a role that may publish to the topic.
        self.alertmanager_role_arn = pulumi.Output.from_input(None)
        identity = None
        if args.sns_receivers:

            def policy_for(_region: pulumi.Output[str]) -> pulumi.Output[dict[str, Any]]:
                # The topic's own region, not the provider's: that is where SNS uses the key.
                return pulumi.Output.all(alarm_topic_arn, alarm_key_arn).apply(
                    lambda a: alertmanager_sns_policy(topic_arn=a[0], key_arn=a[1])
                )

            role_tags = merge_tags(
                tags,
                {"mlplatform.io/namespace": ns_name, "mlplatform:component": "monitoring"},
            )
            role, role_policy = pod_identity_role(
                self,
                f"{name}-alertmanager",
                cluster_name=cluster,
                policy_for=policy_for,
                description=f"Alertmanager ({ns_name}/{ALERTMANAGER_SERVICE_ACCOUNT}) "
                "publishes alerts to the alarm SNS topic",
                tags=role_tags,
            )
            identity = aws.eks.PodIdentityAssociation(
                f"{name}-alertmanager-pod-identity",
                cluster_name=cluster,
                namespace=ns_name,
                service_account=ALERTMANAGER_SERVICE_ACCOUNT,
                role_arn=role.arn,
                tags=role_tags,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[role_policy]),
            )
            self.alertmanager_role_arn = role.arn

        def render_config(topic: str | None) -> str:
            config = alertmanager_config(args.alertmanager, receivers_secret_name, topic)
            return yaml.safe_dump(config, sort_keys=False)

        am_config_name = "alertmanager-config"
        am_config = k8s.core.v1.Secret(
            f"{name}-alertmanager-config",
            metadata=_typed(_meta(am_config_name, ns_name)),
            type="Opaque",
            string_data={
                "alertmanager.yaml": (
                    pulumi.Output.from_input(alarm_topic_arn).apply(render_config)
                    if args.sns_receivers
                    else render_config(None)
                )
            },
            opts=k8s_opts(namespace),
        )

        for manifest in network_policies(ns_name):
            k8s.networking.v1.NetworkPolicy(
                f"{name}-netpol-{manifest['metadata']['name']}",
                metadata=manifest["metadata"],
                spec=manifest["spec"],
                opts=k8s_opts(namespace),
            )

        values = kube_prometheus_stack_values(
            args,
            storage_class_name=sc_name,
            grafana_admin_secret=admin_secret_name,
            alertmanager_config_secret=am_config_name,
            alertmanager_receivers_secret=receivers_secret_name,
        )
        release = k8s.helm.v3.Release(
            f"{name}-kps",
            name=KPS_RELEASE,
            chart=KPS_CHART,
            version=KPS_VERSION,
            repository_opts={"repo": KPS_REPO},
            namespace=ns_name,
            values=values,
            timeout=900,
            max_history=5,
            # Pod Identity credentials are injected when a pod starts: associate the role first.
            opts=k8s_opts(
                namespace, agents_ns, sc_res, admin_secret, receivers_secret, am_config, identity
            ),
        )

        if args.dcgm_exporter.enabled:
            k8s.helm.v3.Release(
                f"{name}-dcgm-exporter",
                name=DCGM_RELEASE,
                chart=DCGM_CHART,
                version=DCGM_VERSION,
                repository_opts={"repo": DCGM_REPO},
                namespace=args.agents_namespace,
                values=dcgm_exporter_values(args.dcgm_exporter),
                timeout=600,
                max_history=5,
                # After the stack: its ServiceMonitor needs the operator's CRDs.
                opts=k8s_opts(agents_ns, release),
            )

        for stem, rule_file in load_rule_files().items():
            manifest = prometheus_rule(f"mlplatform-{stem}", ns_name, rule_file)
            _Manifest(f"{name}-rules-{stem}", manifest, opts=k8s_opts(release))
        prices = prometheus_rule(
            "mlplatform-gpu-prices", ns_name, gpu_price_rule_file(args.gpu_hourly_prices_usd)
        )
        _Manifest(f"{name}-rules-gpu-prices", prices, opts=k8s_opts(release))

        for stem, dashboard in load_dashboards().items():
            cm = dashboard_configmap(f"dashboard-{stem}", ns_name, dashboard)
            k8s.core.v1.ConfigMap(
                f"{name}-dashboard-{stem}",
                metadata=cm["metadata"],
                data=cm["data"],
                opts=k8s_opts(namespace),
            )

        svc = f"{ns_name}.svc.cluster.local"
        self.namespace = pulumi.Output.from_input(ns_name)
        self.prometheus_url = pulumi.Output.from_input(
            f"http://{KPS_RELEASE}-prometheus.{svc}:9090"
        )
        self.alertmanager_url = pulumi.Output.from_input(
            f"http://{KPS_RELEASE}-alertmanager.{svc}:9093"
        )
        self.grafana_url = pulumi.Output.from_input(f"http://{KPS_RELEASE}-grafana.{svc}:80")
        self.grafana_admin_secret = pulumi.Output.from_input(admin_secret_name)
        self.grafana_admin_password = pulumi.Output.secret(password)
        self.register_outputs(
            {
                "namespace": self.namespace,
                "prometheusUrl": self.prometheus_url,
                "alertmanagerUrl": self.alertmanager_url,
                "grafanaUrl": self.grafana_url,
                "grafanaAdminSecret": self.grafana_admin_secret,
                "grafanaAdminPassword": self.grafana_admin_password,
                "alertmanagerRoleArn": self.alertmanager_role_arn,
            }
        )
