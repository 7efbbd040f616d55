"""An endpoint's workload: its namespace, service account, Deployment(s) and Service(s).

Part of :mod:`components.serving_endpoint`. :class:`PlanBase` holds the state every builder of
one endpoint's manifests shares (set by ``EndpointPlan``).
"""

from __future__ import annotations

import math
from typing import Any

from components.common import (
    ARCH_LABEL,
    GPU_RESOURCE,
    GPU_TOLERATION,
    POOL_LABEL,
    RESTRICTED_NAMESPACE_LABELS,
    container_security_context,
    pod_security_context,
)
from components.serving_args import (
    ENDPOINT_LABEL,
    PROJECT_LABEL,
    TRACK_LABEL,
    ZONE_KEY,
    LoadFormat,
    ModelSource,
    ResourcesArgs,
    Runtime,
    ServingEndpointArgs,
)

# Where a serving pod's HOME is (an emptyDir); MLflow's client reads $HOME/.mlflow/credentials.
HOME = "/tmp"  # noqa: S108 - the pod's own emptyDir
MLFLOW_CREDENTIALS = "mlflow-tracking"  # the Secret's name, as in project namespaces
LWS_API_VERSION = "leaderworkerset.x-k8s.io/v1"
WORKER_INDEX_LABEL = "leaderworkerset.sigs.k8s.io/worker-index"  # "0": a group's leader
# Where a ``download`` puts the weights (its own emptyDir), and the default size of that volume.
DOWNLOAD_DIR = "/models"
DEFAULT_DOWNLOAD_SIZE = "100Gi"
# runai_model_streamer.pull_files(model_path, dst) copies an S3 prefix (vLLM 0.11.0's
# transformers_utils/runai_utils.py calls it the same way); the package ships in the vLLM image.
_PULL = (
    "import sys; from runai_model_streamer import pull_files; pull_files(sys.argv[1], sys.argv[2])"
)


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


class PlanBase:
    """State shared by the builders of one endpoint's manifests."""

    name: str
    args: ServingEndpointArgs
    on_aws: bool
    namespace: str
    port: int
    image: str
    model_uri: Any
    canary_model_uri: Any
    service_account_name: str
    iam_role_arn: Any
    env_extra: dict[str, Any]
    env_from_secret: str | None
    mlflow_credentials: Any
    mlflow_credentials_secret: str | None
    network_policies: bool
    prometheus_url: str
    monitoring_namespace: str
    monitoring_labels: dict[str, str]
    ingress_ns: str
    alb_source_cidrs: Any
    tags: dict[str, str]
    service: str
    canary_service: str
    health_path: str

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

    def leader_selector(self, track: str) -> dict[str, str]:
        """Pods that serve: every pod of a Deployment, a group's leader for a LeaderWorkerSet."""
        out = self.selector(track)
        if self.args.multi_node is not None:
            out[WORKER_INDEX_LABEL] = "0"
        return out

    def workload_ref(self) -> dict[str, str]:
        """What the HPA (or KEDA) scales: the Deployment, or the LeaderWorkerSet's groups."""
        if self.args.multi_node is not None:
            return {"apiVersion": LWS_API_VERSION, "kind": "LeaderWorkerSet", "name": self.name}
        return {"apiVersion": "apps/v1", "kind": "Deployment", "name": self.name}

    def meta(self, name: str, track: str | None = None, **extra: Any) -> dict[str, Any]:
        return {"name": name, "namespace": self.namespace, "labels": self.labels(track), **extra}


class WorkloadBuilder(PlanBase):
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

    def mlflow_credentials_manifest(self) -> dict[str, Any]:
        """The project's registry credentials, for models loaded from an authenticated MLflow."""
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": self.meta(MLFLOW_CREDENTIALS),
            "type": "Opaque",
            "stringData": {"credentials": self.mlflow_credentials},
        }

    def source(self, track: str) -> ModelSource:
        a = self.args
        return a.canary.model if track == "canary" and a.canary else a.model

    def _env(self, model_uri: Any, track: str) -> list[dict[str, Any]]:
        a = self.args
        src = self.source(track)
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
        if a.inference_log_rate is not None:
            env.append({"name": "INFERENCE_LOG_SAMPLE_RATE", "value": str(a.inference_log_rate)})
        if a.runtime is Runtime.VLLM:
            env += [
                {"name": "HF_HOME", "value": "/tmp/hf"},  # noqa: S108
                {"name": "XDG_CACHE_HOME", "value": "/tmp/.cache"},  # noqa: S108
                {"name": "VLLM_NO_USAGE_STATS", "value": "1"},
            ]
            if src.streamer_concurrency is not None:
                # Read by the streamer itself (vLLM sets it from --model-loader-extra-config too).
                env.append(
                    {"name": "RUNAI_STREAMER_CONCURRENCY", "value": str(src.streamer_concurrency)}
                )
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
                "httpGet": {**probe_http, "path": a.probes.liveness_path or self.health_path},
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
            container["args"] = self.vllm_server_args(track)
            container["volumeMounts"].append(
                {"name": "dshm", "mountPath": "/dev/shm"}  # noqa: S108 - an emptyDir
            )
            if self.source(track).effective_load_format is LoadFormat.DOWNLOAD:
                container["volumeMounts"].append(
                    {"name": "model", "mountPath": DOWNLOAD_DIR, "readOnly": True}
                )
        return container

    def vllm_server_args(self, track: str) -> list[str]:
        """``vllm serve`` flags: the model, its load format and the parallel layout."""
        a = self.args
        streamed = self.source(track).effective_load_format is LoadFormat.RUNAI_STREAMER
        tp, pp = a.multi_node.sizes(a.resources.gpus) if a.multi_node else (a.resources.gpus, 1)
        args = [
            "--model",
            # Streamed: vLLM reads s3:// itself (vLLM >= 0.11 refuses any other format for it).
            "$(MODEL_URI)" if streamed else f"{DOWNLOAD_DIR}/weights",
            "--served-model-name",
            self.name,
            "--host",
            "0.0.0.0",  # noqa: S104 - inside the pod; the NetworkPolicy limits callers
            "--port",
            str(self.port),
            "--tensor-parallel-size",
            str(tp),
            "--load-format",
            "runai_streamer" if streamed else "auto",
        ]
        if a.multi_node:
            # The leader drives the group's GPUs through Ray (the workers join its cluster).
            args += ["--pipeline-parallel-size", str(pp), "--distributed-executor-backend", "ray"]
        return [*args, *a.vllm_args]

    def download_init_container(self, image: str, model_uri: Any, track: str) -> dict[str, Any]:
        """Copies the model's prefix to the pod's ``model`` volume before the server starts."""
        env = [e for e in self._env(model_uri, track) if e["name"] != "PORT"]
        container: dict[str, Any] = {
            "name": "download-model",
            "image": image,
            "imagePullPolicy": "IfNotPresent",
            "command": ["python3", "-c", _PULL],
            "args": ["$(MODEL_URI)/", f"{DOWNLOAD_DIR}/weights"],
            "env": env,
            "resources": {
                "requests": {"cpu": "1", "memory": "2Gi"},
                "limits": {"cpu": "4", "memory": "4Gi"},
            },
            "securityContext": container_security_context(),
            "volumeMounts": [
                {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108
                {"name": "model", "mountPath": DOWNLOAD_DIR},
            ],
        }
        if self.env_from_secret:
            container["envFrom"] = [{"secretRef": {"name": self.env_from_secret}}]
        return container

    def pod_spec(self, track: str) -> dict[str, Any]:
        """The server's pod (a Deployment's, or a LeaderWorkerSet leader's)."""
        a = self.args
        image = self.track_image(track)
        model_uri = self.canary_model_uri if track == "canary" else self.model_uri
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
        }
        src = self.source(track)
        if a.runtime is Runtime.VLLM and src.effective_load_format is LoadFormat.DOWNLOAD:
            size = src.download_size or DEFAULT_DOWNLOAD_SIZE
            volumes.append({"name": "model", "emptyDir": {"sizeLimit": size}})
            pod_spec["initContainers"] = [self.download_init_container(image, model_uri, track)]
        self.place(pod_spec, track)
        if self.mlflow_credentials_secret:
            # MLflow's client reads $HOME/.mlflow/credentials: the project's registry user.
            volumes.append(
                {
                    "name": "mlflow-credentials",
                    "secret": {
                        "secretName": self.mlflow_credentials_secret,
                        "items": [{"key": "credentials", "path": "credentials"}],
                        "defaultMode": 0o440,
                    },
                }
            )
            for c in pod_spec["containers"]:
                c["volumeMounts"].append(
                    {"name": "mlflow-credentials", "mountPath": f"{HOME}/.mlflow", "readOnly": True}
                )
        return pod_spec

    def place(self, pod_spec: dict[str, Any], track: str) -> None:
        """Zone/host spread, GPU toleration, pool and architecture selectors."""
        a = self.args
        pod_spec["topologySpreadConstraints"] = [
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
        ]
        if a.resources.gpus:
            pod_spec["tolerations"] = [dict(GPU_TOLERATION)]
        selector: dict[str, str] = {ARCH_LABEL: a.architecture} if a.architecture else {}
        if a.gpu_pool:
            selector[POOL_LABEL] = a.gpu_pool
        if selector:
            pod_spec["nodeSelector"] = selector

    def workload_annotations(self, image: str) -> dict[str, str]:
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
        return skips

    def track_image(self, track: str) -> str:
        a = self.args
        canary = track == "canary"
        return (a.canary.image if canary and a.canary and a.canary.image else None) or self.image

    def deployment(self, track: str = "stable") -> dict[str, Any]:
        a = self.args
        canary = track == "canary"
        name = self.canary_service if canary else self.name
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
                "spec": self.pod_spec(track),
            },
        }
        if canary and a.canary:
            spec["replicas"] = a.canary.replicas
        # The stable track's replica count is owned by the HPA or KEDA, not by this program.
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": self.meta(
                name, track, annotations=self.workload_annotations(self.track_image(track))
            ),
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
                "selector": self.leader_selector(track),
                "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
            },
        }
