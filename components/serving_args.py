"""What a serving endpoint takes: typed args and the checks across them (pure).

Part of :mod:`components.serving_endpoint`, which re-exports every name here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Literal

from pydantic import Field

from components.common import (
    ArgsModel,
    Issue,
    check_dns_label,
    check_image,
    check_min_max,
    check_quantity,
)

PROJECT_LABEL = "mlplatform.io/project"
ENDPOINT_LABEL = "mlplatform.io/endpoint"
TRACK_LABEL = "mlplatform.io/track"
# vLLM 0.11.0's OpenAI server image ships the Run:ai streamer: its docker/Dockerfile (sdist
# vllm-0.11.0 on PyPI) installs `boto3 runai-model-streamer runai-model-streamer[s3]` into the
# vllm-openai-base stage, and its config refuses any load format but runai_streamer for s3://.
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


class LoadFormat(StrEnum):
    """How a ``vllm`` endpoint gets its weights from the model store.

    ``runai_streamer`` (default): vLLM's Run:ai model streamer reads the safetensors straight
    from S3 into GPU memory, many ranges at once; nothing is written to disk (safetensors only).
    ``download``: an init container copies the model's prefix to a pod-local volume first, then
    vLLM loads it from disk (any weight format vLLM reads; slower: the weights pass the disk).
    """

    RUNAI_STREAMER = "runai_streamer"
    DOWNLOAD = "download"


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
    # vllm only (see LoadFormat); None: the runtime's default (runai_streamer for vllm).
    load_format: LoadFormat | None = None
    # RUNAI_STREAMER_CONCURRENCY: parallel S3 readers (the streamer's default is 16).
    streamer_concurrency: int | None = Field(default=None, ge=1, le=256)
    # The pod-local volume a ``download`` copies the weights to (an emptyDir on the node's disk).
    download_size: str | None = None

    @property
    def effective_load_format(self) -> LoadFormat:
        return self.load_format or LoadFormat.RUNAI_STREAMER

    def issues(self) -> list[Issue]:
        found = super().issues()
        found += check_quantity("downloadSize", self.download_size)
        if self.effective_load_format is LoadFormat.DOWNLOAD:
            if self.streamer_concurrency is not None:
                found.append(
                    Issue(("streamerConcurrency",), "only applies to loadFormat runai_streamer")
                )
        elif self.download_size is not None:
            found.append(Issue(("downloadSize",), "only applies to loadFormat download"))
        if self.store is not ModelStore.S3 and self.load_format is not None:
            found.append(Issue(("loadFormat",), "only applies to models in the s3 model store"))
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
    # Liveness path when the server has one apart from readiness (the project template's
    # ``/livez``): a pod without a model is then kept out of traffic, not restarted in a loop.
    liveness_path: str | None = Field(default=None, pattern=r"^/[A-Za-z0-9._~/-]*$")


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


class MultiNodeArgs(ArgsModel):
    """A ``vllm`` model larger than one node: each replica is a LeaderWorkerSet group of
    ``nodes`` pods (one per node, ``resources.gpus`` GPUs each) joined by Ray; the leader serves.

    Parallelism defaults to tensor parallel inside a node and pipeline parallel across nodes
    (vLLM's advice for nodes without NVLink between them); their product must be every GPU of
    the group.
    """

    nodes: int = Field(ge=1, le=64)
    tensor_parallel_size: int | None = Field(default=None, ge=1)
    pipeline_parallel_size: int | None = Field(default=None, ge=1)

    def issues(self) -> list[Issue]:
        found = super().issues()
        if self.nodes < 2:
            found.append(
                Issue(
                    ("nodes",),
                    f"must be >= 2, got {self.nodes}: a one-node model runs as a Deployment "
                    "(leave multiNode out)",
                )
            )
        return found

    def sizes(self, gpus: int) -> tuple[int, int]:
        """(tensor, pipeline) parallel sizes for ``gpus`` GPUs per node."""
        return (
            self.tensor_parallel_size or max(gpus, 1),
            self.pipeline_parallel_size or self.nodes,
        )


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


# Share of requests the http server (the project template's) writes to its sampled inference log
# under projects/<project>/inference-logs/; the one default, passed as INFERENCE_LOG_SAMPLE_RATE.
DEFAULT_INFERENCE_LOG_SAMPLE_RATE = 0.01


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
    multi_node: MultiNodeArgs | None = None  # vllm only: one replica spans several nodes
    slo: SloArgs = SloArgs()
    env: dict[str, str] = {}
    # http only, 0..1 (0: no log); None: DEFAULT_INFERENCE_LOG_SAMPLE_RATE. See inference_log_rate.
    inference_log_sample_rate: float | None = Field(default=None, ge=0, le=1, allow_inf_nan=False)
    vllm_args: list[str] = []  # extra `vllm serve` flags, e.g. ["--max-model-len", "8192"]
    zone_spread: Literal["required", "preferred"] = "preferred"
    # The architecture the image is built for (the project template builds amd64): pods stay on
    # those nodes. None only for a multi-arch image, which may run anywhere.
    architecture: Literal["amd64", "arm64"] | None = "amd64"

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
            if self.inference_log_sample_rate is not None:
                found.append(
                    Issue(
                        ("inferenceLogSampleRate",),
                        "only applies to the http runtime (vLLM writes no inference log)",
                    )
                )
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
            found += self._multi_node_issues()
        else:
            if self.vllm_args:
                found.append(Issue(("vllmArgs",), "only applies to the vllm runtime"))
            if self.multi_node is not None:
                found.append(
                    Issue(
                        ("multiNode",),
                        "only the vllm runtime runs across nodes (a LeaderWorkerSet); "
                        f"runtime is {self.runtime.value!r}",
                    )
                )
            sources = [("model",)] + ([("canary", "model")] if self.canary else [])
            for path in sources:
                src = self.model if path == ("model",) else self.canary.model  # type: ignore[union-attr]
                for key, value in (
                    ("loadFormat", src.load_format),
                    ("streamerConcurrency", src.streamer_concurrency),
                    ("downloadSize", src.download_size),
                ):
                    if value is not None:
                        found.append(Issue((*path, key), "only applies to the vllm runtime"))
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

    def _multi_node_issues(self) -> list[Issue]:
        mn = self.multi_node
        if mn is None or mn.nodes < 2:
            return []
        found = []
        tp, pp = mn.sizes(self.resources.gpus)
        total = mn.nodes * self.resources.gpus
        if tp * pp != total:
            found.append(
                Issue(
                    ("multiNode",),
                    f"tensorParallelSize x pipelineParallelSize ({tp} x {pp}) must equal every "
                    f"GPU of a group: nodes x resources.gpus = {total}",
                )
            )
        return found

    @property
    def inference_log_rate(self) -> float | None:
        """The share of requests the server logs (http), None where no server logs (vllm)."""
        if self.runtime is not Runtime.HTTP:
            return None
        rate = self.inference_log_sample_rate
        return DEFAULT_INFERENCE_LOG_SAMPLE_RATE if rate is None else rate

    @property
    def gpus_per_replica(self) -> int:
        return self.resources.gpus * (self.multi_node.nodes if self.multi_node else 1)


_RESERVED_ENV = frozenset(
    {
        "MODEL_URI",
        "MODEL_DIR",
        "MODEL_BUCKET",
        "MODEL_PREFIX",
        "MODEL_VERSION",
        "MLFLOW_TRACKING_URI",
        "INFERENCE_LOG_SAMPLE_RATE",
        "PORT",
        "HOME",
        "TMPDIR",
        "RUNAI_STREAMER_CONCURRENCY",
        "RUNAI_STREAMER_S3_ENDPOINT",
        "RUNAI_STREAMER_S3_USE_VIRTUAL_ADDRESSING",
    }
)


def check_endpoint(
    args: ServingEndpointArgs,
    known_pools: Sequence[str] | Mapping[str, int],
    *,
    name: str | None = None,
    on_aws: bool | None = None,
) -> list[Issue]:
    """Every problem with an endpoint's args, given the platform's GPU pools (pure).

    ``known_pools``: the pools' names, or each pool's GPU limit (checked against a multi-node
    group's GPUs)."""
    known_limits = dict(known_pools) if isinstance(known_pools, Mapping) else {}
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
    if args.multi_node is not None and args.gpu_pool is not None:
        limit = known_limits.get(args.gpu_pool)
        if limit is not None and args.gpus_per_replica > limit:
            found.append(
                Issue(
                    ("multiNode", "nodes"),
                    f"{args.multi_node.nodes} nodes x {args.resources.gpus} GPUs = "
                    f"{args.gpus_per_replica} GPUs, more than pool {args.gpu_pool!r} can hold "
                    f"({limit})",
                )
            )
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
