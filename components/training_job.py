"""TrainingJob: a project's training workload, queued through Kueue onto a GPU pool.

``nodes: 1`` declares a ``batch/v1`` Job; ``nodes > 1`` a Kubeflow ``PyTorchJob`` with one
``Master`` and ``nodes - 1`` ``Worker`` replicas (the engine sets the torchrun rendezvous). Either
way the job:

* carries ``kueue.x-k8s.io/queue-name`` (the team's LocalQueue in the project namespace) and is
  created suspended, so nothing starts until Kueue admits the whole job against the team's quota;
* requests ``nvidia.com/gpu`` (requests = limits), tolerates the GPU taint and selects the pool by
  its ``mlplatform.io/pool`` label;
* is annotated ``karpenter.sh/do-not-disrupt: "true"`` on its pods, so consolidation and drift never
  evict a running job (spot interruptions still can: hence checkpoints);
* gets ``CHECKPOINT_URI`` = ``s3://<model bucket>/projects/<project>/checkpoints/<job>`` (plus the
  MinIO endpoint and keys on the local stack) and a grace period to write a last checkpoint;
* runs non-root with a read-only root filesystem, a writable ``/tmp`` scratch volume, and optional
  memory-backed ``/dev/shm`` for data-loader workers;
* on an EFA pool, requests the node's ``vpc.amazonaws.com/efa`` devices for its GPUs (Karpenter
  attaches EFA interfaces only for pods that ask; the queues account for them);
* is bounded by ``activeDeadlineSeconds`` and ``backoffLimit``.

A job this component declares is Pulumi state: it stays after it finishes (no
``ttlSecondsAfterFinished``, which the component refuses), so ``pulumi up --refresh`` finds it and
does not train again; a changed spec replaces it, which is a new run. ``pulumi up`` does not wait
for the training to finish (``pulumi.com/skipAwait``): Kueue may hold it for hours. Runs
submitted outside Pulumi may set a TTL (the manifest builders take one).

S3 access comes from the service account (EKS Pod Identity, granted elsewhere); the pod mounts no
Kubernetes API token.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import pulumi
import pulumi_kubernetes as k8s

from components.common import (
    ARCH_LABEL,
    DO_NOT_DISRUPT,
    EFA_RESOURCE,
    GPU_RESOURCE,
    GPU_TOLERATION,
    POOL_LABEL,
    ArgsModel,
    InvalidArgsError,
    Issue,
    KubeTarget,
    StorageBackend,
    check_dns_label,
    check_image,
    check_quantity,
    container_security_context,
    pod_security_context,
)
from components.training_operator import PYTORCHJOB_API_VERSION
from components.training_queues import (
    PRIORITY_LABEL,
    QUEUE_LABEL,
    GpuPoolCapacity,
    ManifestResource,
    check_count,
)

PYTORCH_CONTAINER = "pytorch"  # the Training Operator configures the container of this name
JOB_CONTAINER = "trainer"
SCRATCH_DIR = "/tmp"  # noqa: S108 - a private emptyDir mounted in the pod, not a host path
# The provider would otherwise wait for the Job to complete (10 minutes, then fail the update).
SKIP_AWAIT = {"pulumi.com/skipAwait": "true"}


class TrainingJobArgs(ArgsModel):
    """What a project declares for one training run."""

    name: str
    project: str
    namespace: str
    # The team's LocalQueue in that namespace (TrainingQueues names it after the team).
    queue: str
    image: str
    command: list[str]
    args: list[str] = []
    env: dict[str, str] = {}
    service_account_name: str
    nodes: int = 1
    gpus_per_node: int = 1
    # GPU pool to run on (a ResourceFlavor of TrainingQueues); required when gpusPerNode > 0.
    pool: str | None = None
    cpu: str = "4"
    memory: str = "16Gi"
    shm_size: str | None = None
    scratch_size: str = "20Gi"
    priority_class: str | None = None
    active_deadline_seconds: int = 24 * 3600
    backoff_limit: int = 2
    # Only for runs submitted outside Pulumi: the TTL controller deletes the finished job.
    ttl_seconds_after_finished: int | None = None
    # Spot interruption notices give two minutes: time for a final checkpoint.
    termination_grace_period_seconds: int = 120
    uid: int = 10001
    # The architecture the image is built for (the project template builds amd64; GPU pools are
    # amd64): pods stay on those nodes. None only for a multi-arch image.
    architecture: Literal["amd64", "arm64"] | None = "amd64"

    def issues(self) -> list[Issue]:
        found = [
            *super().issues(),
            *check_dns_label(("name",), self.name),
            *check_dns_label(("project",), self.project),
            *check_dns_label(("namespace",), self.namespace),
            *check_dns_label(("queue",), self.queue),
            *check_count(("nodes",), self.nodes, minimum=1),
            *check_count(("gpusPerNode",), self.gpus_per_node),
            *check_quantity(("cpu",), self.cpu),
            *check_quantity(("memory",), self.memory),
            *check_quantity(("shmSize",), self.shm_size),
            *check_quantity(("scratchSize",), self.scratch_size),
            *check_count(("activeDeadlineSeconds",), self.active_deadline_seconds, minimum=1),
            *check_count(("backoffLimit",), self.backoff_limit),
            *check_count(("ttlSecondsAfterFinished",), self.ttl_seconds_after_finished),
            *check_count(("terminationGracePeriodSeconds",), self.termination_grace_period_seconds),
            *check_count(("uid",), self.uid, minimum=1),
        ]
        if not self.command:
            found.append(Issue(("command",), "must name the program to run"))
        found += check_image("image", self.image)
        if self.gpus_per_node > 0 and not self.pool:
            found.append(Issue(("pool",), "required when gpusPerNode > 0: the GPU pool to run on"))
        if self.pool and self.gpus_per_node == 0:
            found.append(
                Issue(("pool",), "GPU pools only take GPU jobs; set gpusPerNode or drop pool")
            )
        for key in self.env:
            if key in _RESERVED_ENV:
                found.append(
                    Issue(
                        ("env", key), f"is set by the platform; reserved: {sorted(_RESERVED_ENV)}"
                    )
                )
        return found

    @property
    def distributed(self) -> bool:
        return self.nodes > 1


_RESERVED_ENV = frozenset(
    {"CHECKPOINT_URI", "AWS_REGION", "AWS_ENDPOINT_URL_S3", "HOME", "XDG_CACHE_HOME"}
)


def check_job_pool(args: TrainingJobArgs, gpu_limits: Mapping[str, int]) -> list[Issue]:
    """The job's pool exists and can hold the whole job (pure; takes pool name -> GPU limit)."""
    if not args.pool:
        return []
    if args.pool not in gpu_limits:
        known = ", ".join(sorted(gpu_limits)) or "(none)"
        return [Issue(("pool",), f"unknown GPU pool {args.pool!r}; known pools: {known}")]
    total = args.nodes * args.gpus_per_node
    if total > gpu_limits[args.pool]:
        return [
            Issue(
                ("gpusPerNode",),
                f"the job needs {total} GPUs ({args.nodes} x {args.gpus_per_node}), more than "
                f"pool {args.pool!r}'s limit of {gpu_limits[args.pool]}: it could never be admitted",
            )
        ]
    return []


def job_env(args: TrainingJobArgs, checkpoint_uri: Any, storage: StorageBackend) -> list[dict]:
    env: list[dict[str, Any]] = [
        {"name": "CHECKPOINT_URI", "value": checkpoint_uri},
        # Libraries write caches under $HOME; the root filesystem is read-only.
        {"name": "HOME", "value": SCRATCH_DIR},
        {"name": "XDG_CACHE_HOME", "value": f"{SCRATCH_DIR}/.cache"},
    ]
    if storage.region:
        env.append({"name": "AWS_REGION", "value": storage.region})
    if storage.endpoint_url is not None:
        env.append({"name": "AWS_ENDPOINT_URL_S3", "value": storage.endpoint_url})
    env.extend({"name": k, "value": v} for k, v in sorted(args.env.items()))
    return env


def pod_template(
    args: TrainingJobArgs,
    container_name: str,
    restart_policy: str,
    checkpoint_uri: Any,
    storage: StorageBackend,
    efa: int = 0,
) -> dict[str, Any]:
    """``efa``: EFA devices per pod (its share of the node's interfaces on an EFA pool)."""
    resources: dict[str, Any] = {"cpu": args.cpu, "memory": args.memory}
    if args.gpus_per_node > 0:
        resources[GPU_RESOURCE] = str(args.gpus_per_node)
    if efa > 0:
        resources[EFA_RESOURCE] = str(efa)
    mounts: list[dict[str, Any]] = [{"name": "scratch", "mountPath": SCRATCH_DIR}]
    volumes: list[dict[str, Any]] = [
        {"name": "scratch", "emptyDir": {"sizeLimit": args.scratch_size}}
    ]
    if args.shm_size:
        # Memory-backed: counts against the container's memory limit.
        mounts.append({"name": "dshm", "mountPath": "/dev/shm"})  # noqa: S108 - pod-private
        volumes.append(
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": args.shm_size}}
        )
    container: dict[str, Any] = {
        "name": container_name,
        "image": args.image,
        "imagePullPolicy": "IfNotPresent",
        "command": list(args.command),
        "env": job_env(args, checkpoint_uri, storage),
        "resources": {"requests": dict(resources), "limits": dict(resources)},
        "securityContext": container_security_context(uid=args.uid),
        "volumeMounts": mounts,
    }
    if args.args:
        container["args"] = list(args.args)
    if storage.credentials_secret:
        # MinIO keys (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY) on the local stack.
        container["envFrom"] = [{"secretRef": {"name": storage.credentials_secret}}]
    spec: dict[str, Any] = {
        "serviceAccountName": args.service_account_name,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "restartPolicy": restart_policy,
        "terminationGracePeriodSeconds": args.termination_grace_period_seconds,
        "securityContext": pod_security_context(uid=args.uid, fs_group=args.uid),
        "containers": [container],
        "volumes": volumes,
    }
    selector: dict[str, str] = {ARCH_LABEL: args.architecture} if args.architecture else {}
    if args.pool:
        selector[POOL_LABEL] = args.pool
    if selector:
        spec["nodeSelector"] = selector
    if args.gpus_per_node > 0:
        spec["tolerations"] = [dict(GPU_TOLERATION)]
    return {
        "metadata": {
            "labels": _labels(args),
            "annotations": dict(DO_NOT_DISRUPT),
        },
        "spec": spec,
    }


def _labels(args: TrainingJobArgs) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": args.name,
        "app.kubernetes.io/component": "training",
        "app.kubernetes.io/part-of": args.project,
        "app.kubernetes.io/managed-by": "pulumi",
    }


def _job_labels(args: TrainingJobArgs) -> dict[str, str]:
    labels = {**_labels(args), QUEUE_LABEL: args.queue}
    if args.priority_class:
        labels[PRIORITY_LABEL] = args.priority_class
    return labels


def _ttl(args: TrainingJobArgs) -> dict[str, int]:
    ttl = args.ttl_seconds_after_finished
    return {} if ttl is None else {"ttlSecondsAfterFinished": ttl}


def batch_job(
    args: TrainingJobArgs, checkpoint_uri: Any, storage: StorageBackend, efa: int = 0
) -> dict:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": args.name, "namespace": args.namespace, "labels": _job_labels(args)},
        "spec": {
            # Kueue unsuspends the Job when it admits it.
            "suspend": True,
            "parallelism": 1,
            "completions": 1,
            "backoffLimit": args.backoff_limit,
            "activeDeadlineSeconds": args.active_deadline_seconds,
            **_ttl(args),
            # A preempted or evicted pod is not the program's failure: don't spend a retry on it.
            "podFailurePolicy": {
                "rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]
            },
            "template": pod_template(args, JOB_CONTAINER, "Never", checkpoint_uri, storage, efa),
        },
    }


def pytorch_job(
    args: TrainingJobArgs, checkpoint_uri: Any, storage: StorageBackend, efa: int = 0
) -> dict:
    def replica(count: int) -> dict[str, Any]:
        return {
            "replicas": count,
            "restartPolicy": "OnFailure",
            "template": pod_template(
                args, PYTORCH_CONTAINER, "OnFailure", checkpoint_uri, storage, efa
            ),
        }

    return {
        "apiVersion": PYTORCHJOB_API_VERSION,
        "kind": "PyTorchJob",
        "metadata": {"name": args.name, "namespace": args.namespace, "labels": _job_labels(args)},
        "spec": {
            "runPolicy": {
                "suspend": True,
                "backoffLimit": args.backoff_limit,
                "activeDeadlineSeconds": args.active_deadline_seconds,
                **_ttl(args),
                "cleanPodPolicy": "None",
            },
            # One torchrun process per GPU (or one per node on CPU).
            "nprocPerNode": str(max(args.gpus_per_node, 1)),
            "pytorchReplicaSpecs": {
                "Master": replica(1),
                "Worker": replica(args.nodes - 1),
            },
        },
    }


class TrainingJob(pulumi.ComponentResource):
    """One training run of a project: a queued Job or PyTorchJob on a GPU pool."""

    job_name: pulumi.Output[str]
    kind: pulumi.Output[str]
    checkpoint_uri: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        args: TrainingJobArgs,
        *,
        target: KubeTarget,
        storage: StorageBackend,
        gpu_limits: Mapping[str, int] | None = None,
        pools: Sequence[GpuPoolCapacity] | None = None,
        depends_on: list[pulumi.Resource] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """``pools`` (the platform's GPU pools) checks the job fits its pool and gives it the
        pool's EFA devices; ``gpu_limits`` (pool name -> GPUs) only checks the fit."""
        by_name = {p.name: p for p in pools or ()}
        if pools is not None and gpu_limits is None:
            gpu_limits = {p.name: p.gpu_limit for p in pools}
        found = args.issues()
        if args.ttl_seconds_after_finished is not None:
            found.append(
                Issue(
                    ("ttlSecondsAfterFinished",),
                    "must be unset for a job Pulumi manages: the TTL controller deletes the "
                    "finished job, and the next `pulumi up --refresh` creates it again and "
                    "trains again (a TTL suits runs submitted outside Pulumi)",
                )
            )
        if gpu_limits is not None and not found:
            found += check_job_pool(args, gpu_limits)
        if found:
            raise InvalidArgsError("TrainingJob", found)
        super().__init__("mlplatform:training:TrainingJob", name, None, opts)
        pool = by_name.get(args.pool or "")
        efa = pool.efa_for(args.gpus_per_node) if pool is not None else 0

        checkpoint_uri = storage.uri(args.project, "checkpoints", args.name)
        child = pulumi.ResourceOptions(
            parent=self,
            provider=target.provider,
            depends_on=list(target.depends_on) + list(depends_on or []),
            # Kueue flips suspend when it admits the job; the next `up` must not suspend it
            # again. Any other change replaces the job (a Job's pod template is immutable).
            ignore_changes=["spec.suspend", "spec.runPolicy.suspend"],
            replace_on_changes=["spec"],
            delete_before_replace=True,
        )
        self.job: pulumi.CustomResource
        if args.distributed:
            manifest = pytorch_job(args, checkpoint_uri, storage, efa)
        else:
            manifest = batch_job(args, checkpoint_uri, storage, efa)
        manifest["metadata"]["annotations"] = dict(SKIP_AWAIT)
        if args.distributed:
            self.job = ManifestResource(f"{name}-pytorchjob", manifest, opts=child)
        else:
            self.job = k8s.batch.v1.Job(
                f"{name}-job",
                metadata=manifest["metadata"],
                spec=manifest["spec"],
                opts=child,
            )
        self.job_name = pulumi.Output.from_input(args.name)
        self.kind = pulumi.Output.from_input(manifest["kind"])
        self.checkpoint_uri = pulumi.Output.from_input(checkpoint_uri)
        self.register_outputs(
            {"jobName": self.job_name, "kind": self.kind, "checkpointUri": self.checkpoint_uri}
        )
