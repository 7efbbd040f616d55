"""The ``monitoring`` stack config: Prometheus, Alertmanager receivers, Grafana, DCGM."""

from __future__ import annotations

import re
from collections.abc import Iterable
from enum import StrEnum
from typing import Any

from pydantic import Field

from components.common import (
    ArgsModel,
    Issue,
)

GP3_ENCRYPTED = "gp3-encrypted"

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
SNS_TOPIC_ARN = re.compile(
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


def resource_spec(cpu: str, mem: str, cpu_limit: str, mem_limit: str) -> ResourceSpec:
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
    resources: ResourceSpec = Field(
        default_factory=lambda: resource_spec("500m", "2Gi", "2", "8Gi")
    )

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
        default_factory=lambda: resource_spec("50m", "128Mi", "200m", "256Mi")
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
        default_factory=lambda: resource_spec("100m", "256Mi", "500m", "512Mi")
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
        default_factory=lambda: resource_spec("100m", "256Mi", "500m", "512Mi")
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
            elif isinstance(alarm_topic_arn, str) and not SNS_TOPIC_ARN.match(alarm_topic_arn):
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
