"""ServingEndpoint: one model served on the cluster, production-grade by default.

What one endpoint declares (all in its namespace):

* a Namespace with Pod Security "restricted" labels (or the project's existing namespace);
* a ServiceAccount that the project's ``ProjectAccess`` binds to its IAM role through Pod Identity;
* a hardened Deployment (pinned image, non-root, read-only root FS, no capabilities,
  RuntimeDefault seccomp, requests and limits, startup/readiness/liveness probes, zone spread,
  graceful drain) that reads its model from the model store at start;
* a Service, a HorizontalPodAutoscaler (or a KEDA ScaledObject for scale to zero), a
  PodDisruptionBudget and a NetworkPolicy;
* an Ingress on the shared internal ALB (AWS) or on a plain ingress class (local);
* optionally a canary: a second Deployment + Service and a weighted ALB forward action;
* a ServiceMonitor and a PrometheusRule with multi-window, multi-burn-rate SLO alerts.

Scale to zero and cold start
----------------------------
With ``keda.enabled`` the endpoint is scaled by a KEDA ``ScaledObject`` on a Prometheus query
instead of an HPA (KEDA owns the HPA it creates; two HPAs on one Deployment fight). With
``keda.minReplicas: 0`` the Deployment goes to zero replicas after ``cooldownSeconds`` without
demand. Scaling back from zero happens only when the query returns more than
``activationThreshold``, so the query must measure demand that exists while no pod runs (a queue
depth, or request counts at a gateway); metrics scraped from the endpoint's own pods vanish at
zero. The first request after idling waits for: the KEDA polling interval (``pollingSeconds``),
pod scheduling, a node if none is free (a GPU node from Karpenter typically takes 1-3 minutes),
the image pull (the vLLM image is ~10 GB unless cached on the node), and the model load (S3
streaming with the Run:ai streamer for vLLM; size / throughput) until the startup probe passes.
While no target is healthy the ALB answers 503, so clients must retry with backoff. Keep
``keda.minReplicas >= 1`` for latency-sensitive endpoints.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any, Literal

import pulumi
from pydantic import Field

from components.common import (
    GPU_RESOURCE,
    GPU_TOLERATION,
    POOL_LABEL,
    RESTRICTED_NAMESPACE_LABELS,
    ArgsModel,
    InvalidArgsError,
    Issue,
    KubeTarget,
    StorageBackend,
    check_dns_label,
    check_image,
    check_min_max,
    check_quantity,
    container_security_context,
    pod_security_context,
)

PROJECT_LABEL = "mlplatform.io/project"
ENDPOINT_LABEL = "mlplatform.io/endpoint"
TRACK_LABEL = "mlplatform.io/track"
VLLM_IMAGE = "vllm/vllm-openai:v0.11.0"
DEFAULT_ALB_GROUP = "mlplatform-serving"
ZONE_KEY = "topology.kubernetes.io/zone"

_HOST = re.compile(r"^(\*\.)?([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
_ACM_ARN = re.compile(r"^arn:aws[a-z-]*:acm:[a-z0-9-]+:[0-9]{12}:certificate/[A-Za-z0-9-]+$")
_MLFLOW_URI = re.compile(r"^models:/[A-Za-z0-9_.-]+(/[0-9]+|@[A-Za-z0-9_-]+)$")


class Runtime(StrEnum):
    """What the container speaks: ``http`` (/predict, /healthz, /metrics) or ``vllm``."""

    HTTP = "http"
    VLLM = "vllm"


class ModelStore(StrEnum):
    S3 = "s3"
    MLFLOW = "mlflow"


class ScaleMetric(StrEnum):
    CPU = "cpu"
    REQUESTS = "requests"


class ModelSource(ArgsModel):
    """Where the model comes from at start.

    ``s3``: ``path`` is relative to the project's prefix in the model store
    (``s3://<bucket>/projects/<project>/<path>``), which is what ProjectAccess grants.
    ``mlflow``: ``path`` is a registry URI, ``models:/<name>/<version>`` or ``models:/<name>@<alias>``.
    """

    store: ModelStore = ModelStore.S3
    path: str
    # Exported as MODEL_VERSION: the project template's server loads this version from the
    # project's prefix (MODEL_BUCKET + MODEL_PREFIX, also set) into MODEL_DIR.
    version: str | None = None

    def issues(self) -> list[Issue]:
        found = super().issues()
        if self.store is ModelStore.MLFLOW:
            if not _MLFLOW_URI.match(self.path):
                found.append(
                    Issue(
                        ("path",),
                        f"{self.path!r} must be models:/<name>/<version> or models:/<name>@<alias>",
                    )
                )
        elif (
            not self.path
            or "://" in self.path
            or self.path.startswith("/")
            or ".." in self.path.split("/")
        ):
            found.append(
                Issue(("path",), f"{self.path!r} must be a relative path under the project prefix")
            )
        return found


class ResourcesArgs(ArgsModel):
    cpu: str = "1"
    memory: str = "2Gi"
    cpu_limit: str | None = None  # defaults to cpu
    memory_limit: str | None = None  # defaults to memory: memory is not compressible
    gpus: int = Field(default=0, ge=0, le=8)
    tmp_size: str = "2Gi"  # the writable /tmp emptyDir
    shm_size: str = "2Gi"  # /dev/shm for vLLM tensor parallel workers

    def issues(self) -> list[Issue]:
        found = super().issues()
        for key in ("cpu", "memory", "cpu_limit", "memory_limit", "tmp_size", "shm_size"):
            alias = type(self).model_fields[key].alias or key
            found += check_quantity(alias, getattr(self, key))
        return found


class AutoscalingArgs(ArgsModel):
    """HPA bounds and metric. ``requests`` scales on a per-pod custom metric
    (``requestMetric``, served through the custom metrics API, e.g. prometheus-adapter)."""

    min_replicas: int = Field(default=2, ge=1)
    max_replicas: int = Field(default=4, ge=1)
    metric: ScaleMetric = ScaleMetric.CPU
    target_cpu_percent: int = Field(default=70, ge=1, le=100)
    request_metric: str = "http_requests_in_flight"
    target_requests_per_pod: str = "10"
    scale_down_stabilization_seconds: int = Field(default=300, ge=0, le=3600)

    def issues(self) -> list[Issue]:
        found = super().issues()
        if self.max_replicas < self.min_replicas:
            found.append(
                Issue(
                    ("maxReplicas",),
                    f"must be >= minReplicas ({self.min_replicas}), got {self.max_replicas}",
                )
            )
        found += check_quantity("targetRequestsPerPod", self.target_requests_per_pod)
        return found


class KedaArgs(ArgsModel):
    """KEDA scaling on a Prometheus query; replaces the HPA and allows scale to zero."""

    enabled: bool = False
    query: str | None = None
    threshold: float = Field(default=10.0, gt=0)
    activation_threshold: float = Field(default=0.0, ge=0)
    min_replicas: int = Field(default=0, ge=0)
    polling_seconds: int = Field(default=15, ge=5)
    cooldown_seconds: int = Field(default=300, ge=30)

    def issues(self) -> list[Issue]:
        found = super().issues()
        if self.enabled and not (self.query or "").strip():
            found.append(
                Issue(
                    ("query",),
                    "is required when KEDA is enabled: a PromQL query measuring demand "
                    "(requests in flight or queue depth)",
                )
            )
        return found


class ProbeArgs(ArgsModel):
    startup_timeout_seconds: int = Field(default=600, ge=10)  # model download/load budget
    period_seconds: int = Field(default=10, ge=1)
    failure_threshold: int = Field(default=3, ge=1)


class ShutdownArgs(ArgsModel):
    # The pod keeps serving this long after it is marked terminating, so the ALB deregisters it
    # (same value as the target group's deregistration delay) before the server stops.
    drain_seconds: int = Field(default=30, ge=0, le=600)
    # Time the server gets after SIGTERM to finish in-flight requests.
    shutdown_seconds: int = Field(default=30, ge=1, le=3600)


class IngressArgs(ArgsModel):
    """Ingress on the shared ALB (AWS) or on ``className`` (local; none when unset)."""

    enabled: bool = True
    host: str | None = None
    path: str = "/"
    scheme: Literal["internal", "internet-facing"] = "internal"
    certificate_arn: str | None = None
    allow_plain_http: bool = False  # only for sandboxes: an ALB without TLS
    group_name: str = DEFAULT_ALB_GROUP
    class_name: str | None = None  # default "alb" on AWS
    ssl_policy: str = "ELBSecurityPolicy-TLS13-1-2-2021-06"
    tls_secret_name: str | None = None  # local ingress classes only

    def issues(self) -> list[Issue]:
        found = super().issues()
        if not self.enabled:
            return found
        if not self.host:
            found.append(
                Issue(("host",), "is required: endpoints share one ALB and are routed by host")
            )
        elif not _HOST.match(self.host):
            found.append(Issue(("host",), f"{self.host!r} is not a valid DNS host name"))
        if not self.path.startswith("/"):
            found.append(Issue(("path",), f"{self.path!r} must start with '/'"))
        if self.certificate_arn is not None and not _ACM_ARN.match(self.certificate_arn):
            found.append(
                Issue(
                    ("certificateArn",), f"{self.certificate_arn!r} is not an ACM certificate ARN"
                )
            )
        found += check_dns_label("groupName", self.group_name, leading_letter=True)
        return found


class CanaryArgs(ArgsModel):
    """A second model version that receives ``weight`` percent of the ALB traffic."""

    model: ModelSource
    weight: int = 10
    image: str | None = None  # defaults to the stable image
    replicas: int = Field(default=1, ge=1)

    def issues(self) -> list[Issue]:
        found = super().issues()
        if not 0 <= self.weight <= 100:
            found.append(Issue(("weight",), f"must be between 0 and 100, got {self.weight}"))
        if self.image is not None:
            found += check_image("image", self.image)
        return found


class SloArgs(ArgsModel):
    """SLO targets. Metric names default per runtime (see :func:`slo_metrics`)."""

    availability_target: float = 0.999  # good (non-5xx) requests / all, and targets up
    latency_target: float = 0.99  # fraction of requests faster than the threshold (p99)
    latency_threshold_seconds: float | None = None  # http: 1s, vllm: 30s
    requests_metric: str | None = None
    latency_metric: str | None = None
    status_label: str = "status"

    def issues(self) -> list[Issue]:
        found = super().issues()
        for key, value in (
            ("availabilityTarget", self.availability_target),
            ("latencyTarget", self.latency_target),
        ):
            if not 0.9 <= value < 1:
                found.append(Issue((key,), f"must be in [0.9, 1), got {value}"))
        if self.latency_threshold_seconds is not None and self.latency_threshold_seconds <= 0:
            found.append(Issue(("latencyThresholdSeconds",), "must be > 0"))
        return found


class ServingEndpointArgs(ArgsModel):
    """One model endpoint. The component's name is the endpoint's name (a DNS label)."""

    project: str
    runtime: Runtime = Runtime.HTTP
    image: str | None = None  # required for http; vllm defaults to VLLM_IMAGE
    model: ModelSource
    namespace: str | None = None  # default: the endpoint's own namespace, named after it
    create_namespace: bool = True  # False: deploy into an existing (project) namespace
    port: int | None = Field(default=None, ge=1024, le=65535)  # http: 8080, vllm: 8000
    gpu_pool: str | None = None
    resources: ResourcesArgs = ResourcesArgs()
    autoscaling: AutoscalingArgs = AutoscalingArgs()
    keda: KedaArgs = KedaArgs()
    probes: ProbeArgs = ProbeArgs()
    shutdown: ShutdownArgs = ShutdownArgs()
    ingress: IngressArgs = IngressArgs()
    canary: CanaryArgs | None = None
    slo: SloArgs = SloArgs()
    env: dict[str, str] = {}
    vllm_args: list[str] = []  # extra `vllm serve` flags, e.g. ["--max-model-len", "8192"]
    zone_spread: Literal["required", "preferred"] = "preferred"

    def issues(self) -> list[Issue]:
        found = super().issues()
        found += check_dns_label("project", self.project, leading_letter=True)
        found += check_dns_label("namespace", self.namespace, leading_letter=True)
        if not self.create_namespace and self.namespace is None:
            found.append(
                Issue(("namespace",), "is required when createNamespace is false (the project's)")
            )
        if self.image is None:
            if self.runtime is Runtime.HTTP:
                found.append(Issue(("image",), "is required for the http runtime"))
        else:
            found += check_image("image", self.image)
        if self.runtime is Runtime.VLLM:
            if self.resources.gpus < 1:
                found.append(Issue(("resources", "gpus"), "vllm needs at least 1 GPU"))
            if self.model.store is not ModelStore.S3:
                found.append(
                    Issue(
                        ("model", "store"),
                        "vllm loads weights from s3 (streamed); register the model's "
                        "artifacts path instead of an MLflow URI",
                    )
                )
            if self.canary is not None and self.canary.model.store is not ModelStore.S3:
                found.append(Issue(("canary", "model", "store"), "vllm loads weights from s3"))
        elif self.vllm_args:
            found.append(Issue(("vllmArgs",), "only applies to the vllm runtime"))
        if self.keda.enabled:
            found += [
                i.at("keda")
                for i in check_min_max(
                    "minReplicas",
                    self.keda.min_replicas,
                    "autoscaling.maxReplicas",
                    self.autoscaling.max_replicas,
                )
            ]
        for key in self.env:
            if key in _RESERVED_ENV:
                found.append(Issue(("env", key), "is set by the platform"))
        return found


_RESERVED_ENV = frozenset(
    {
        "MODEL_URI",
        "MODEL_DIR",
        "MODEL_BUCKET",
        "MODEL_PREFIX",
        "MODEL_VERSION",
        "MLFLOW_TRACKING_URI",
        "PORT",
        "HOME",
        "TMPDIR",
    }
)


def check_endpoint(
    args: ServingEndpointArgs,
    known_pools: Sequence[str],
    *,
    name: str | None = None,
    on_aws: bool | None = None,
) -> list[Issue]:
    """Every problem with an endpoint's args, given the platform's GPU pools (pure)."""
    found = args.issues()
    # The name is also the Service's, and Service names must start with a letter (DNS-1035).
    found += check_dns_label("name", name, leading_letter=True)
    pools = sorted(known_pools)
    if args.resources.gpus > 0 and args.gpu_pool is None:
        allowed = ", ".join(pools) or "none are configured"
        found.append(Issue(("gpuPool",), f"is required for a GPU model; known pools: {allowed}"))
    if args.gpu_pool is not None and args.gpu_pool not in pools:
        allowed = ", ".join(pools) or "none are configured"
        found.append(Issue(("gpuPool",), f"unknown pool {args.gpu_pool!r}; known pools: {allowed}"))
    ing = args.ingress
    if on_aws and ing.enabled and ing.certificate_arn is None and not ing.allow_plain_http:
        found.append(
            Issue(
                ("ingress", "certificateArn"),
                "is required on AWS (TLS on the ALB); set allowPlainHttp only for sandboxes",
            )
        )
    if on_aws is False and args.canary is not None and ing.enabled and ing.class_name:
        found.append(Issue(("canary",), "weighted canaries need the ALB; the local stack has none"))
    return found


# ------------------------------------------------------------------------------------------
# Monitoring: SLO rules as data (so tests can feed them to promtool).

BURN_WINDOWS = (
    # (severity, burn rate, long window, short window, for)
    ("critical", 14.4, "1h", "5m", "2m"),
    ("critical", 6.0, "6h", "30m", "15m"),
    ("warning", 3.0, "1d", "2h", "1h"),
    ("warning", 1.0, "3d", "6h", "3h"),
)
_WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")


def slo_metrics(runtime: Runtime, slo: SloArgs) -> tuple[str, str, float]:
    """(requests counter, latency histogram, latency threshold) for a runtime."""
    if runtime is Runtime.VLLM:
        # vLLM's API server exports http_requests_total{status="2xx"|"5xx"} and its own
        # end-to-end latency histogram.
        defaults = ("http_requests_total", "vllm:e2e_request_latency_seconds", 30.0)
    else:
        defaults = ("http_requests_total", "http_request_duration_seconds", 1.0)
    return (
        slo.requests_metric or defaults[0],
        slo.latency_metric or defaults[1],
        slo.latency_threshold_seconds or defaults[2],
    )


def _regex_literal(text: str) -> str:
    """``text`` as an RE2 literal inside a double-quoted PromQL string (``.`` becomes ``\\\\.``)."""
    meta = ".+*?()[]{}|^$" + "\\"
    return "".join("\\\\" + c if c in meta else c for c in text)


def _le_matcher(threshold: float) -> str:
    # Go clients write le="1", Python clients le="1.0": match both spellings of the bucket.
    spellings = sorted({format(threshold, "g"), repr(float(threshold))})
    return "|".join(_regex_literal(s) for s in spellings)


def _num(x: float) -> str:
    return format(round(x, 10), "g")


def slo_rule_groups(
    endpoint: str,
    namespace: str,
    services: Sequence[str],
    runtime: Runtime,
    slo: SloArgs,
) -> list[dict[str, Any]]:
    """Recording and alerting rule groups (Prometheus rule-file format) for one endpoint.

    Three SLIs, each alerted with multi-window multi-burn-rate (Google SRE workbook, ch. 5):
    error ratio (5xx / all), latency (share of requests slower than the p99 threshold) and
    availability (share of scrape targets down). An alert fires when both the long and the
    short window burn the error budget faster than the rate.
    """
    requests, latency, threshold = slo_metrics(runtime, slo)
    svc = "|".join(_regex_literal(s) for s in services)
    sel = f'namespace="{namespace}",service=~"{svc}"'
    status = slo.status_label
    rec_labels = {"endpoint": endpoint}
    le = _le_matcher(threshold)
    sli_exprs = {
        "errors": lambda w: (
            f'sum by (namespace) (rate({requests}{{{sel},{status}=~"5.."}}[{w}]))\n'
            f"/\nsum by (namespace) (rate({requests}{{{sel}}}[{w}]))"
        ),
        "latency": lambda w: (
            f'1 - (\n  sum by (namespace) (rate({latency}_bucket{{{sel},le=~"{le}"}}[{w}]))\n'
            f"  /\n  sum by (namespace) (rate({latency}_count{{{sel}}}[{w}]))\n)"
        ),
        "availability": lambda w: f"1 - avg by (namespace) (avg_over_time(up{{{sel}}}[{w}]))",
    }
    budgets = {
        "errors": 1 - slo.availability_target,
        "latency": 1 - slo.latency_target,
        "availability": 1 - slo.availability_target,
    }
    summaries = {
        "errors": "error-ratio SLO",
        "latency": f"p{_num(slo.latency_target * 100)}-latency SLO ({_num(threshold)}s)",
        "availability": "availability SLO (scrape targets up)",
    }
    record_rules: list[dict[str, Any]] = []
    alert_rules: list[dict[str, Any]] = []
    for sli, expr in sli_exprs.items():
        for w in _WINDOWS:
            record_rules.append(
                {"record": _record_name(sli, w), "expr": expr(w), "labels": dict(rec_labels)}
            )
        for severity in ("critical", "warning"):
            pairs = [b for b in BURN_WINDOWS if b[0] == severity]
            clauses = []
            for _, rate, long_w, short_w, _for in pairs:
                limit = _num(rate * budgets[sli])
                match = f'{{endpoint="{endpoint}",namespace="{namespace}"}}'
                clauses.append(
                    f"(\n  {_record_name(sli, long_w)}{match} > {limit}\n"
                    f"and\n  {_record_name(sli, short_w)}{match} > {limit}\n)"
                )
            alert_rules.append(
                {
                    "alert": f"ServingSLO{_ALERT_SUFFIX[sli]}BudgetBurn",
                    "expr": "\nor\n".join(clauses),
                    "for": pairs[0][4],
                    "labels": {"severity": severity, "slo": sli},
                    "annotations": {
                        "summary": (
                            f"Endpoint {endpoint} in {namespace} burns its {summaries[sli]} "
                            f"budget too fast ({severity})."
                        ),
                        "description": (
                            f"SLO budget {_num(budgets[sli])}; burn-rate windows "
                            + ", ".join(f"{r}x over {lw}/{sw}" for _, r, lw, sw, _ in pairs)
                            + "."
                        ),
                    },
                }
            )
    prefix = f"mlplatform-serving-{namespace}-{endpoint}"
    return [
        {"name": f"{prefix}-sli", "rules": record_rules},
        {"name": f"{prefix}-slo-alerts", "rules": alert_rules},
    ]


_ALERT_SUFFIX = {"errors": "ErrorRatio", "latency": "Latency", "availability": "Availability"}


def _record_name(sli: str, window: str) -> str:
    return f"mlplatform:serving_{sli}_budget_spend:ratio_{window}"


# ------------------------------------------------------------------------------------------
# Manifests as data.


def _quantity_limits(r: ResourcesArgs) -> tuple[dict[str, str], dict[str, str]]:
    requests = {"cpu": r.cpu, "memory": r.memory, "ephemeral-storage": "1Gi"}
    limits = {
        "cpu": r.cpu_limit or r.cpu,
        "memory": r.memory_limit or r.memory,
        "ephemeral-storage": "4Gi",
    }
    if r.gpus:
        requests[GPU_RESOURCE] = str(r.gpus)
        limits[GPU_RESOURCE] = str(r.gpus)
    return requests, limits


class EndpointPlan:
    """Plain-data manifests of one endpoint, before they are declared as resources.

    ``model_uri``/``canary_model_uri`` and ``env_extra`` values may be pulumi Inputs.
    """

    def __init__(
        self,
        name: str,
        args: ServingEndpointArgs,
        *,
        on_aws: bool,
        model_uri: Any,
        canary_model_uri: Any = None,
        service_account_name: str,
        iam_role_arn: Any = None,
        env_extra: Mapping[str, Any] | None = None,
        env_from_secret: str | None = None,
        prometheus_url: str = "http://prometheus-operated.monitoring.svc:9090",
        monitoring_namespace: str = "monitoring",
        monitoring_labels: Mapping[str, str] | None = None,
        ingress_controller_namespace: str = "kube-system",
        alb_source_cidrs: Sequence[Any] = (),
        tags: Mapping[str, str] | None = None,
    ):
        self.name = name
        self.args = args
        self.on_aws = on_aws
        self.namespace = args.namespace or name
        self.port = args.port or (8000 if args.runtime is Runtime.VLLM else 8080)
        self.image = args.image or VLLM_IMAGE
        self.model_uri = model_uri
        self.canary_model_uri = canary_model_uri
        self.service_account_name = service_account_name
        self.iam_role_arn = iam_role_arn
        self.env_extra = dict(env_extra or {})
        self.env_from_secret = env_from_secret
        self.prometheus_url = prometheus_url
        self.monitoring_namespace = monitoring_namespace
        self.monitoring_labels = dict(monitoring_labels or {})
        self.ingress_ns = ingress_controller_namespace
        self.alb_source_cidrs = list(alb_source_cidrs)
        self.tags = dict(tags or {})
        self.service = name
        self.canary_service = f"{name}-canary"
        self.health_path = "/health" if args.runtime is Runtime.VLLM else "/healthz"

    # -- labels -------------------------------------------------------------------------
    def labels(self, track: str | None = None) -> dict[str, str]:
        out = {
            "app.kubernetes.io/name": self.name,
            "app.kubernetes.io/component": "model-server",
            "app.kubernetes.io/part-of": "mlplatform",
            "app.kubernetes.io/managed-by": "pulumi",
            PROJECT_LABEL: self.args.project,
            ENDPOINT_LABEL: self.name,
        }
        if track:
            out[TRACK_LABEL] = track
        return out

    def selector(self, track: str) -> dict[str, str]:
        return {ENDPOINT_LABEL: self.name, TRACK_LABEL: track}

    def meta(self, name: str, track: str | None = None, **extra: Any) -> dict[str, Any]:
        return {"name": name, "namespace": self.namespace, "labels": self.labels(track), **extra}

    # -- objects ------------------------------------------------------------------------
    def namespace_manifest(self) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": self.namespace,
                "labels": {
                    **RESTRICTED_NAMESPACE_LABELS,
                    PROJECT_LABEL: self.args.project,
                    "app.kubernetes.io/part-of": "mlplatform",
                },
            },
        }

    def service_account(self) -> dict[str, Any]:
        annotations = {}
        if self.iam_role_arn is not None:
            # Informational: Pod Identity binds the role; nothing reads this annotation.
            annotations["mlplatform.io/iam-role-arn"] = self.iam_role_arn
        return {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {
                **self.meta(self.service_account_name),
                **({"annotations": annotations} if annotations else {}),
            },
            # The server needs no Kubernetes API access; Pod Identity mounts its own token.
            "automountServiceAccountToken": False,
        }

    def _env(self, model_uri: Any, track: str) -> list[dict[str, Any]]:
        a = self.args
        src = a.canary.model if track == "canary" and a.canary else a.model
        env: list[dict[str, Any]] = [
            {"name": "MODEL_URI", "value": model_uri},
            {"name": "MODEL_DIR", "value": "/tmp/models"},  # noqa: S108 - the writable emptyDir
            {"name": "MODEL_NAME", "value": self.name},
            {"name": "MODEL_TRACK", "value": track},
            {"name": "PORT", "value": str(self.port)},
            {"name": "HOME", "value": "/tmp"},  # noqa: S108 - the writable emptyDir
            {"name": "TMPDIR", "value": "/tmp"},  # noqa: S108
        ]
        if src.version:
            env.append({"name": "MODEL_VERSION", "value": src.version})
        if a.runtime is Runtime.VLLM:
            env += [
                {"name": "HF_HOME", "value": "/tmp/hf"},  # noqa: S108
                {"name": "XDG_CACHE_HOME", "value": "/tmp/.cache"},  # noqa: S108
                {"name": "VLLM_NO_USAGE_STATS", "value": "1"},
            ]
        env += [{"name": k, "value": v} for k, v in sorted(self.env_extra.items())]
        env += [{"name": k, "value": v} for k, v in sorted(self.args.env.items())]
        return env

    def _container(self, image: str, model_uri: Any, track: str) -> dict[str, Any]:
        a = self.args
        requests, limits = _quantity_limits(a.resources)
        probe_http = {"path": self.health_path, "port": "http"}
        period = a.probes.period_seconds
        container: dict[str, Any] = {
            "name": "server",
            "image": image,
            "imagePullPolicy": "IfNotPresent",
            "ports": [{"name": "http", "containerPort": self.port, "protocol": "TCP"}],
            "env": self._env(model_uri, track),
            "resources": {"requests": requests, "limits": limits},
            "securityContext": container_security_context(),
            "startupProbe": {
                "httpGet": probe_http,
                "periodSeconds": period,
                "failureThreshold": math.ceil(a.probes.startup_timeout_seconds / period),
            },
            "readinessProbe": {
                "httpGet": probe_http,
                "periodSeconds": period,
                "failureThreshold": a.probes.failure_threshold,
                "timeoutSeconds": 5,
            },
            "livenessProbe": {
                "httpGet": probe_http,
                "periodSeconds": period * 2,
                "failureThreshold": a.probes.failure_threshold,
                "timeoutSeconds": 5,
            },
            "lifecycle": {"preStop": {"sleep": {"seconds": max(a.shutdown.drain_seconds, 1)}}},
            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],  # noqa: S108
        }
        if self.env_from_secret:
            container["envFrom"] = [{"secretRef": {"name": self.env_from_secret}}]
        if a.runtime is Runtime.VLLM:
            container["command"] = ["python3", "-m", "vllm.entrypoints.openai.api_server"]
            container["args"] = [
                "--model",
                "$(MODEL_URI)",
                "--served-model-name",
                self.name,
                "--host",
                "0.0.0.0",  # noqa: S104 - inside the pod; the NetworkPolicy limits callers
                "--port",
                str(self.port),
                "--tensor-parallel-size",
                str(a.resources.gpus),
                # Streams safetensors from S3 straight into GPU memory: no local copy.
                "--load-format",
                "runai_streamer",
                *a.vllm_args,
            ]
            container["volumeMounts"].append(
                {"name": "dshm", "mountPath": "/dev/shm"}  # noqa: S108 - an emptyDir
            )
        return container

    def deployment(self, track: str = "stable") -> dict[str, Any]:
        a = self.args
        canary = track == "canary"
        image = (a.canary.image if canary and a.canary and a.canary.image else None) or self.image
        model_uri = self.canary_model_uri if canary else self.model_uri
        name = self.canary_service if canary else self.name
        volumes: list[dict[str, Any]] = [
            {"name": "tmp", "emptyDir": {"sizeLimit": a.resources.tmp_size}},
        ]
        if a.runtime is Runtime.VLLM:
            volumes.append(
                {
                    "name": "dshm",
                    "emptyDir": {"medium": "Memory", "sizeLimit": a.resources.shm_size},
                }
            )
        pod_spec: dict[str, Any] = {
            "serviceAccountName": self.service_account_name,
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "securityContext": pod_security_context(),
            "terminationGracePeriodSeconds": a.shutdown.drain_seconds + a.shutdown.shutdown_seconds,
            "containers": [self._container(image, model_uri, track)],
            "volumes": volumes,
            "topologySpreadConstraints": [
                {
                    "maxSkew": 1,
                    "topologyKey": ZONE_KEY,
                    "whenUnsatisfiable": (
                        "DoNotSchedule" if a.zone_spread == "required" else "ScheduleAnyway"
                    ),
                    "labelSelector": {"matchLabels": self.selector(track)},
                },
                {
                    "maxSkew": 1,
                    "topologyKey": "kubernetes.io/hostname",
                    "whenUnsatisfiable": "ScheduleAnyway",
                    "labelSelector": {"matchLabels": self.selector(track)},
                },
            ],
        }
        if a.resources.gpus:
            pod_spec["tolerations"] = [dict(GPU_TOLERATION)]
        if a.gpu_pool:
            pod_spec["nodeSelector"] = {POOL_LABEL: a.gpu_pool}
        spec: dict[str, Any] = {
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": self.selector(track)},
            # New pods must be ready before old ones go: no capacity dip during rollouts.
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
            },
            "template": {
                "metadata": {
                    "labels": self.labels(track),
                    "annotations": {"kubectl.kubernetes.io/default-container": "server"},
                },
                "spec": pod_spec,
            },
        }
        if canary and a.canary:
            spec["replicas"] = a.canary.replicas
        # The stable track's replica count is owned by the HPA or KEDA, not by this program.
        skips = {
            # In-line checkov skips, each with its reason.
            "checkov.io/skip1": (
                "CKV_K8S_15=IfNotPresent: tags are pinned and never move, and multi-GB "
                "model-server images must not be pulled again on every start"
            ),
        }
        if "@sha256:" not in image:
            skips["checkov.io/skip2"] = (
                "CKV_K8S_43=tags are pinned and validated (never latest); digests are optional"
            )
        if self.env_from_secret:
            skips["checkov.io/skip3"] = (
                "CKV_K8S_35=local stack only: the MinIO keys reach boto3 and the model "
                "streamer through the environment, which both read"
            )
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": self.meta(name, track, annotations=skips),
            "spec": spec,
        }

    def service_manifest(self, track: str = "stable") -> dict[str, Any]:
        name = self.canary_service if track == "canary" else self.service
        return {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": self.meta(name, track),
            "spec": {
                "type": "ClusterIP",
                "selector": self.selector(track),
                "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
            },
        }

    def hpa(self) -> dict[str, Any]:
        a = self.args.autoscaling
        if a.metric is ScaleMetric.CPU:
            metric: dict[str, Any] = {
                "type": "Resource",
                "resource": {
                    "name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": a.target_cpu_percent},
                },
            }
        else:
            metric = {
                "type": "Pods",
                "pods": {
                    "metric": {"name": a.request_metric},
                    "target": {"type": "AverageValue", "averageValue": a.target_requests_per_pod},
                },
            }
        return {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": self.meta(self.name),
            "spec": {
                "scaleTargetRef": {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": self.name,
                },
                "minReplicas": a.min_replicas,
                "maxReplicas": a.max_replicas,
                "metrics": [metric],
                "behavior": self._behavior(),
            },
        }

    def _behavior(self) -> dict[str, Any]:
        a = self.args.autoscaling
        return {
            "scaleUp": {
                "stabilizationWindowSeconds": 0,
                "policies": [{"type": "Percent", "value": 100, "periodSeconds": 30}],
            },
            "scaleDown": {
                "stabilizationWindowSeconds": a.scale_down_stabilization_seconds,
                "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}],
            },
        }

    def scaled_object(self) -> dict[str, Any]:
        k = self.args.keda
        return {
            "apiVersion": "keda.sh/v1alpha1",
            "kind": "ScaledObject",
            "metadata": self.meta(self.name),
            "spec": {
                "scaleTargetRef": {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": self.name,
                },
                "minReplicaCount": k.min_replicas,
                "maxReplicaCount": self.args.autoscaling.max_replicas,
                "pollingInterval": k.polling_seconds,
                "cooldownPeriod": k.cooldown_seconds,
                "advanced": {"horizontalPodAutoscalerConfig": {"behavior": self._behavior()}},
                "triggers": [
                    {
                        "type": "prometheus",
                        "metadata": {
                            "serverAddress": self.prometheus_url,
                            "query": k.query,
                            "threshold": _num(k.threshold),
                            "activationThreshold": _num(k.activation_threshold),
                        },
                    }
                ],
            },
        }

    def pdb(self) -> dict[str, Any]:
        # maxUnavailable (not minAvailable) keeps node drains possible at any replica count,
        # including 1 and KEDA's 0.
        return {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": self.meta(self.name),
            "spec": {
                "maxUnavailable": 1,
                "selector": {"matchLabels": {ENDPOINT_LABEL: self.name}},
                "unhealthyPodEvictionPolicy": "AlwaysAllow",
            },
        }

    def network_policy(self) -> dict[str, Any]:
        port = [{"protocol": "TCP", "port": self.port}]

        def ns(label: str, value: str) -> dict[str, Any]:
            return {"namespaceSelector": {"matchLabels": {label: value}}}

        rules: list[dict[str, Any]] = [
            {"from": [ns("kubernetes.io/metadata.name", self.ingress_ns)], "ports": port},
            {"from": [ns("kubernetes.io/metadata.name", self.monitoring_namespace)], "ports": port},
            {"from": [ns(PROJECT_LABEL, self.args.project)], "ports": port},
        ]
        if self.on_aws and self.args.ingress.enabled and self.alb_source_cidrs:
            # ALB targets are pod IPs (target-type ip): traffic comes from the ALB's ENIs in the
            # VPC subnets, not from a pod, so it is admitted by address.
            rules.append(
                {"from": [{"ipBlock": {"cidr": c}} for c in self.alb_source_cidrs], "ports": port}
            )
        return {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": self.meta(f"{self.name}-ingress"),
            "spec": {
                "podSelector": {"matchLabels": {ENDPOINT_LABEL: self.name}},
                "policyTypes": ["Ingress"],
                "ingress": rules,
            },
        }

    def ingress_class(self) -> str | None:
        ing = self.args.ingress
        if not ing.enabled:
            return None
        return ing.class_name or ("alb" if self.on_aws else None)

    def ingress(self) -> dict[str, Any] | None:
        ing = self.args.ingress
        cls = self.ingress_class()
        if cls is None:
            return None
        backend_service = self.service
        port: dict[str, Any] = {"name": "http"}
        annotations: dict[str, Any] = {}
        tls: list[dict[str, Any]] = []
        alb = self.on_aws and cls == "alb"
        if alb:
            prefix = "alb.ingress.kubernetes.io"
            annotations.update(
                {
                    f"{prefix}/scheme": ing.scheme,
                    f"{prefix}/target-type": "ip",
                    f"{prefix}/group.name": ing.group_name,
                    f"{prefix}/healthcheck-path": self.health_path,
                    f"{prefix}/success-codes": "200",
                    f"{prefix}/target-group-attributes": (
                        f"deregistration_delay.timeout_seconds={self.args.shutdown.drain_seconds}"
                    ),
                }
            )
            if ing.certificate_arn:
                annotations.update(
                    {
                        f"{prefix}/listen-ports": json.dumps([{"HTTPS": 443}]),
                        f"{prefix}/certificate-arn": ing.certificate_arn,
                        f"{prefix}/ssl-policy": ing.ssl_policy,
                    }
                )
            else:
                annotations[f"{prefix}/listen-ports"] = json.dumps([{"HTTP": 80}])
            if self.tags:
                annotations[f"{prefix}/tags"] = ",".join(
                    f"{k}={v}" for k, v in sorted(self.tags.items())
                )
            if self.args.canary is not None:
                action = f"{self.name}-weighted"
                weight = self.args.canary.weight
                annotations[f"{prefix}/actions.{action}"] = json.dumps(
                    {
                        "type": "forward",
                        "forwardConfig": {
                            "targetGroups": [
                                {
                                    "serviceName": self.service,
                                    "servicePort": "http",
                                    "weight": 100 - weight,
                                },
                                {
                                    "serviceName": self.canary_service,
                                    "servicePort": "http",
                                    "weight": weight,
                                },
                            ],
                            "targetGroupStickinessConfig": {"enabled": False},
                        },
                    },
                    sort_keys=True,
                )
                backend_service = action
                port = {"name": "use-annotation"}
        elif ing.tls_secret_name and ing.host:
            tls = [{"hosts": [ing.host], "secretName": ing.tls_secret_name}]
        rule: dict[str, Any] = {
            "http": {
                "paths": [
                    {
                        "path": ing.path,
                        "pathType": "Prefix",
                        "backend": {"service": {"name": backend_service, "port": port}},
                    }
                ]
            }
        }
        if ing.host:
            rule["host"] = ing.host
        spec: dict[str, Any] = {"ingressClassName": cls, "rules": [rule]}
        if tls:
            spec["tls"] = tls
        metadata = self.meta(self.name)
        if annotations:
            metadata["annotations"] = annotations
        return {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": metadata,
            "spec": spec,
        }

    def url(self) -> str:
        ing = self.args.ingress
        if self.ingress_class() and ing.host:
            secure = (self.on_aws and ing.certificate_arn) or (
                not self.on_aws and ing.tls_secret_name
            )
            path = "" if ing.path == "/" else ing.path
            return f"{'https' if secure else 'http'}://{ing.host}{path}"
        return self.internal_url()

    def internal_url(self) -> str:
        return f"http://{self.service}.{self.namespace}.svc.cluster.local"

    def services(self) -> list[str]:
        return [self.service] + ([self.canary_service] if self.args.canary else [])

    def rule_groups(self) -> list[dict[str, Any]]:
        return slo_rule_groups(
            self.name, self.namespace, self.services(), self.args.runtime, self.args.slo
        )

    def service_monitor(self) -> dict[str, Any]:
        return {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "ServiceMonitor",
            "metadata": {
                **self.meta(self.name),
                "labels": {**self.labels(), **self.monitoring_labels},
            },
            "spec": {
                "selector": {"matchLabels": {ENDPOINT_LABEL: self.name}},
                "namespaceSelector": {"matchNames": [self.namespace]},
                "endpoints": [
                    {"port": "http", "path": "/metrics", "interval": "30s", "scheme": "http"}
                ],
            },
        }

    def prometheus_rule(self) -> dict[str, Any]:
        return {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "PrometheusRule",
            "metadata": {
                **self.meta(f"{self.name}-slo"),
                "labels": {**self.labels(), **self.monitoring_labels},
            },
            "spec": {"groups": self.rule_groups()},
        }

    def manifests(self) -> list[dict[str, Any]]:
        """Every object, in apply order (the namespace first)."""
        a = self.args
        out: list[dict[str, Any]] = []
        if a.create_namespace:
            out.append(self.namespace_manifest())
        out += [self.service_account(), self.deployment(), self.service_manifest()]
        if a.canary is not None:
            out += [self.deployment("canary"), self.service_manifest("canary")]
        out.append(self.scaled_object() if a.keda.enabled else self.hpa())
        out += [self.pdb(), self.network_policy()]
        ingress = self.ingress()
        if ingress is not None:
            out.append(ingress)
        out += [self.service_monitor(), self.prometheus_rule()]
        return out


# ------------------------------------------------------------------------------------------
# The component.

_ROLE = {
    "Namespace": "ns",
    "ServiceAccount": "sa",
    "Service": "svc",
    "HorizontalPodAutoscaler": "hpa",
    "ScaledObject": "scaledobject",
    "PodDisruptionBudget": "pdb",
    "NetworkPolicy": "netpol",
    "Ingress": "ingress",
    "ServiceMonitor": "servicemonitor",
    "PrometheusRule": "slo",
}


class ServingEndpoint(pulumi.ComponentResource):
    """One model served on the cluster (see the module docstring for what it declares)."""

    namespace: pulumi.Output[str]
    service_name: pulumi.Output[str]
    url: pulumi.Output[str]
    internal_url: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        args: ServingEndpointArgs,
        *,
        target: KubeTarget,
        service_account_name: str,
        storage: StorageBackend | None = None,
        iam_role_arn: pulumi.Input[str] | None = None,
        known_pools: Sequence[str] = (),
        mlflow_tracking_uri: pulumi.Input[str] | None = None,
        prometheus_url: str = "http://prometheus-operated.monitoring.svc:9090",
        monitoring_namespace: str = "monitoring",
        monitoring_labels: Mapping[str, str] | None = None,
        ingress_controller_namespace: str = "kube-system",
        alb_source_cidrs: Sequence[pulumi.Input[str]] = (),
        ingress_controller: pulumi.Resource | None = None,
        depends_on: Sequence[pulumi.Resource] = (),
        tags: Mapping[str, str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ):
        found = check_endpoint(args, known_pools, name=name, on_aws=target.on_aws)
        uses_s3 = args.model.store is ModelStore.S3 or (
            args.canary is not None and args.canary.model.store is ModelStore.S3
        )
        uses_mlflow = args.model.store is ModelStore.MLFLOW or (
            args.canary is not None and args.canary.model.store is ModelStore.MLFLOW
        )
        if uses_s3 and storage is None:
            found.append(Issue(("model", "store"), "s3 needs the platform's model store"))
        if uses_mlflow and mlflow_tracking_uri is None:
            found.append(Issue(("model", "store"), "mlflow needs the platform's tracking URI"))
        if found:
            raise InvalidArgsError("ServingEndpoint", found)
        super().__init__("mlplatform:serving:ServingEndpoint", name, None, opts)

        def model_uri(src: ModelSource) -> Any:
            if src.store is ModelStore.MLFLOW:
                return src.path
            assert storage is not None  # checked above
            return storage.uri(args.project, src.path)

        env_extra: dict[str, Any] = {}
        if uses_mlflow:
            env_extra["MLFLOW_TRACKING_URI"] = mlflow_tracking_uri
        if storage is not None and uses_s3:
            env_extra["MODEL_BUCKET"] = storage.bucket
            env_extra["MODEL_PREFIX"] = storage.project_prefix(args.project)
        if storage is not None:
            if storage.region:
                env_extra["AWS_REGION"] = storage.region
            if storage.endpoint_url is not None:
                # MinIO on the local stack: boto3 and the Run:ai streamer read this.
                env_extra["AWS_ENDPOINT_URL"] = storage.endpoint_url
                env_extra["AWS_ENDPOINT_URL_S3"] = storage.endpoint_url
        plan = EndpointPlan(
            name,
            args,
            on_aws=target.on_aws,
            model_uri=model_uri(args.model),
            canary_model_uri=model_uri(args.canary.model) if args.canary else None,
            service_account_name=service_account_name,
            iam_role_arn=iam_role_arn,
            env_extra=env_extra,
            env_from_secret=storage.credentials_secret if storage is not None else None,
            prometheus_url=prometheus_url,
            monitoring_namespace=monitoring_namespace,
            monitoring_labels=monitoring_labels,
            ingress_controller_namespace=ingress_controller_namespace,
            alb_source_cidrs=alb_source_cidrs,
            tags=tags,
        )
        self.plan = plan
        # The SLO rules as data, for promtool and for dashboards.
        self.rule_groups: list[dict[str, Any]] = plan.rule_groups()

        import pulumi_kubernetes as k8s

        base_deps = [*target.depends_on, *depends_on]
        created: list[pulumi.Resource] = []

        def child_opts(*extra: pulumi.Resource) -> pulumi.ResourceOptions:
            return pulumi.ResourceOptions(
                parent=self, provider=target.provider, depends_on=[*base_deps, *created, *extra]
            )

        ns_res: list[pulumi.Resource] = []
        for manifest in plan.manifests():
            kind = manifest["kind"]
            obj_name = manifest["metadata"]["name"]
            role = _ROLE.get(kind, kind.lower())
            if kind in ("Deployment", "Service"):
                role = ("canary-" if obj_name != name else "") + (
                    "deploy" if kind == "Deployment" else "svc"
                )
            res_name = f"{name}-{role}"
            extra: list[pulumi.Resource] = list(ns_res)
            if kind == "Ingress" and ingress_controller is not None:
                # Destroyed before the controller, so the controller deletes the ALB first.
                extra.append(ingress_controller)
            body = {k: v for k, v in manifest.items() if k not in ("apiVersion", "kind")}
            res: pulumi.Resource
            if kind == "Namespace":
                res = k8s.core.v1.Namespace(res_name, **body, opts=child_opts())
                ns_res.append(res)
                continue
            if kind == "ServiceAccount":
                res = k8s.core.v1.ServiceAccount(res_name, **_snake(body), opts=child_opts(*extra))
            elif kind == "Deployment":
                res = k8s.apps.v1.Deployment(res_name, **body, opts=child_opts(*extra))
            elif kind == "Service":
                res = k8s.core.v1.Service(res_name, **body, opts=child_opts(*extra))
            elif kind == "HorizontalPodAutoscaler":
                res = k8s.autoscaling.v2.HorizontalPodAutoscaler(
                    res_name, **body, opts=child_opts(*extra)
                )
            elif kind == "PodDisruptionBudget":
                res = k8s.policy.v1.PodDisruptionBudget(res_name, **body, opts=child_opts(*extra))
            elif kind == "NetworkPolicy":
                res = k8s.networking.v1.NetworkPolicy(res_name, **body, opts=child_opts(*extra))
            elif kind == "Ingress":
                res = k8s.networking.v1.Ingress(res_name, **body, opts=child_opts(*extra))
            else:  # custom resources: ScaledObject, ServiceMonitor, PrometheusRule
                res = k8s.apiextensions.CustomResource(
                    res_name,
                    api_version=manifest["apiVersion"],
                    kind=kind,
                    metadata=manifest["metadata"],
                    spec=manifest["spec"],
                    opts=child_opts(*extra),
                )
            if kind == "ServiceAccount":
                created.append(res)  # pods must not start before their identity exists

        self.namespace = pulumi.Output.from_input(plan.namespace)
        self.service_name = pulumi.Output.from_input(plan.service)
        self.url = pulumi.Output.from_input(plan.url())
        self.internal_url = pulumi.Output.from_input(plan.internal_url())
        self.register_outputs(
            {
                "namespace": self.namespace,
                "serviceName": self.service_name,
                "url": self.url,
                "internalUrl": self.internal_url,
            }
        )


def _snake(body: dict[str, Any]) -> dict[str, Any]:
    """Top-level camelCase keys to the snake_case keyword names of typed resources."""
    return {re.sub(r"(?<!^)(?=[A-Z])", "_", k).lower(): v for k, v in body.items()}
