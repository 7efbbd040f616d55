"""Training runs of {{ cookiecutter.project_name }}: one manifest builder for every way a run starts.

A run is a uniquely named Job (a ``PyTorchJob`` with ``nodes > 1``) rendered by the platform's
``TrainingJob`` builders, so placement (queue, pool, architecture) and hardening (non-root,
read-only root filesystem, ``/tmp`` scratch) are the platform's. The platform declares the
registered project's namespace, queue and access; the infra program declares the schedule (a
CronJob whose job template is :func:`job_manifest`'s); ``submit.py`` creates one-off runs from the
same :class:`RunSpec`, which the program exports as ``trainingRun``.

Each run gets: ``RUN_ID`` (the Job's name), ``MODEL_DIR`` under the writable ``/tmp``, the data
(``--data s3://...``), the platform's ``MLFLOW_TRACKING_URI`` and the project's MLflow user from the
Secret the platform keeps in a registered project's namespace (``RunSpec.mlflow_secret``).
Finished Jobs are deleted after ``ttl_seconds``: the history is in MLflow and in the model bucket.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from components.common import InvalidArgsError, StorageBackend
from components.training_job import (
    JOB_CONTAINER,
    PYTORCH_CONTAINER,
    SCRATCH_DIR,
    TrainingJobArgs,
    batch_job,
    pytorch_job,
)

MODEL_DIR = f"{SCRATCH_DIR}/models"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"  # set on a Job's pods (Kubernetes >= 1.27)
DAY_S = 24 * 3600
_NAME_MAX = 52  # a CronJob's name + its 11-character suffix stays within 63


@dataclass(frozen=True)
class RunSpec:
    """What every run of this project shares (the program exports it as ``trainingRun``)."""

    project: str
    package: str
    namespace: str
    queue: str
    service_account: str
    image: str
    bucket: str
    region: str | None
    data: str
    # The quality gate's accuracy floor (``train --min-accuracy``); None: the gate's own default.
    min_accuracy: str | None
    nodes: int = 1
    gpus_per_node: int = 0
    pool: str | None = None
    cpu: str = "2"
    memory: str = "4Gi"
    shm_size: str | None = None
    mlflow_tracking_uri: str | None = None
    # The Secret with the project's MLflow user, as the platform registers it (its
    # ``projects.<project>.mlflowSecret`` output: name, usernameKey, passwordKey).
    mlflow_secret: dict[str, str] | None = None
    ttl_seconds: int = 7 * DAY_S
    extra_args: list[str] = field(default_factory=list)

    @classmethod
    def from_output(cls, value: dict[str, Any]) -> RunSpec:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"trainingRun has unknown keys {unknown}: redeploy the infra program")
        return cls(**value)

    def to_output(self) -> dict[str, Any]:
        return asdict(self)

    def data_uri(self) -> str:
        """``data`` as a URI: relative paths are under this project's prefix in the bucket."""
        if self.data.startswith("s3://") or not self.data:
            return self.data
        return f"s3://{self.bucket}/projects/{self.project}/{self.data.lstrip('/')}"


def training_command(nodes: int, gpus: int, package: str) -> list[str]:
    """The run's command: {% if cookiecutter.framework == 'pytorch' %}torchrun, one process per GPU (one on CPU). One node is
    standalone; on more, the PyTorchJob's operator gives each pod torchrun's rendezvous
    (PET_NNODES, PET_NODE_RANK, PET_MASTER_ADDR...).{% else %}one process (scikit-learn does not
    train across nodes: keep nodes at 1).{% endif %}"""
{%- if cookiecutter.framework == 'pytorch' %}
    if nodes > 1:
        return ["torchrun", "-m", f"{package}.train"]
    per_node = f"--nproc-per-node={max(gpus, 1)}"
    return ["torchrun", "--standalone", per_node, "-m", f"{package}.train"]
{%- else %}
    if nodes != 1:
        raise ValueError(f"nodes must be 1 for a scikit-learn model (got {nodes})")
    del gpus
    return ["python", "-m", f"{package}.train"]
{%- endif %}


def run_name(project: str, now: datetime | None = None, suffix: str | None = None) -> str:
    """``<project>-<UTC time>-<random>``: unique, sortable, a valid Job name."""
    when = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
    tail = suffix or secrets.token_hex(3)
    return f"{project[: _NAME_MAX - len(when) - len(tail) - 2]}-{when}-{tail}".replace("--", "-")


def train_args(
    spec: RunSpec, params: dict[str, str] | None = None, seed: int | None = None
) -> list[str]:
    args = ["--upload", "yes"]
    if spec.min_accuracy is not None:
        args = ["--min-accuracy", spec.min_accuracy, *args]
    if spec.data_uri():
        args = ["--data", spec.data_uri(), *args]
    if seed is not None:
        args += ["--seed", str(seed)]
    for key, value in sorted((params or {}).items()):
        args += ["--param", f"{key}={value}"]
    return [*args, *spec.extra_args]


def job_args(spec: RunSpec, name: str, args: list[str], *, ttl: bool = True) -> TrainingJobArgs:
    return TrainingJobArgs(
        name=name,
        project=spec.project,
        namespace=spec.namespace,
        queue=spec.queue,
        image=spec.image,
        command=training_command(spec.nodes, spec.gpus_per_node, spec.package),
        args=args,
        env={"MODEL_DIR": MODEL_DIR},
        service_account_name=spec.service_account,
        nodes=spec.nodes,
        gpus_per_node=spec.gpus_per_node,
        pool=spec.pool if spec.gpus_per_node > 0 else None,
        cpu=spec.cpu,
        memory=spec.memory,
        shm_size=spec.shm_size,
        ttl_seconds_after_finished=spec.ttl_seconds if ttl else None,
    )


def storage(spec: RunSpec) -> StorageBackend:
    return StorageBackend(kind="s3", bucket=spec.bucket, region=spec.region)


def _run_id(name: str, distributed: bool) -> dict[str, Any]:
    if distributed:  # the operator's pods carry no Job name label; the name is known here
        return {"name": "RUN_ID", "value": name}
    # The Job's own name: a CronJob's runs are named by the controller, not here.
    label = f"metadata.labels['{JOB_NAME_LABEL}']"
    return {"name": "RUN_ID", "valueFrom": {"fieldRef": {"fieldPath": label}}}


def _tracking_env(tracking_uri: Any, secret: dict[str, str] | None) -> list[dict]:
    env: list[dict[str, Any]] = []
    if tracking_uri:
        env.append({"name": "MLFLOW_TRACKING_URI", "value": tracking_uri})
    if tracking_uri and secret:
        # Not optional: a run without its MLflow user would log nothing and fail late.
        for var, key in (
            ("MLFLOW_TRACKING_USERNAME", secret["usernameKey"]),
            ("MLFLOW_TRACKING_PASSWORD", secret["passwordKey"]),
        ):
            ref = {"name": secret["name"], "key": key}
            env.append({"name": var, "valueFrom": {"secretKeyRef": ref}})
    return env


def job_manifest(
    spec: RunSpec,
    name: str,
    args: list[str],
    *,
    tracking_uri: Any = None,
    ttl: bool = True,
) -> dict[str, Any]:
    """The run's Job (or PyTorchJob), as the platform's TrainingJob renders it, plus the run's
    identity and tracking. ``tracking_uri``: defaults to the spec's (a program passes an Output)."""
    a = job_args(spec, name, args, ttl=ttl)
    found = a.issues()
    if found:
        raise InvalidArgsError("TrainingJob", found)
    backend = storage(spec)
    # StorageBackend.uri's layout, as a plain string: a run's checkpoints are its own.
    checkpoint = f"s3://{spec.bucket}/{backend.project_prefix(spec.project)}checkpoints/{name}"
    manifest = (pytorch_job if a.distributed else batch_job)(a, checkpoint, backend)
    run_id = _run_id(name, a.distributed)
    tracking = _tracking_env(tracking_uri or spec.mlflow_tracking_uri, spec.mlflow_secret)
    if a.distributed:
        for replica in manifest["spec"]["pytorchReplicaSpecs"].values():
            _add_env(replica["template"], PYTORCH_CONTAINER, run_id, tracking)
    else:
        _add_env(manifest["spec"]["template"], JOB_CONTAINER, run_id, tracking)
    return manifest


def _add_env(
    template: dict[str, Any], container: str, run_id: dict[str, Any], tracking: list[dict]
) -> None:
    """RUN_ID first, so CHECKPOINT_URI can name it: each run (a scheduled one too, whose name
    the CronJob controller picks) checkpoints under its own ``checkpoints/<run>``."""
    for c in template["spec"]["containers"]:
        if c["name"] != container:
            continue
        env = [dict(e) for e in c["env"]]
        for e in env:
            if e["name"] == "CHECKPOINT_URI":
                e["value"] = e["value"].rsplit("/", 1)[0] + "/$(RUN_ID)"
        c["env"] = [run_id, *env, *tracking]


_CRON_FIELD = re.compile(r"^[\d*/,\-A-Za-z?]+$")


def schedule_problem(schedule: str) -> str | None:
    """Why a cron expression is not one Kubernetes accepts (five fields, or a @macro)."""
    if schedule in ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@hourly"):
        return None
    fields = schedule.split()
    if len(fields) != 5 or not all(_CRON_FIELD.match(f) for f in fields):
        return (
            f"trainingSchedule: {schedule!r} is not a five-field cron expression (e.g. '0 3 * * 1')"
        )
    return None


def cron_job(spec: RunSpec, schedule: str, tracking_uri: Any = None) -> dict[str, Any]:
    """Scheduled retraining: a CronJob whose Jobs are this project's runs (Kueue admits each)."""
    name = f"{spec.project[: _NAME_MAX - len('-scheduled')]}-scheduled"
    job = job_manifest(spec, name, train_args(spec), tracking_uri=tracking_uri)
    if job["kind"] != "Job":
        raise ValueError("trainingSchedule: scheduled runs are single-node Jobs; set nodes: 1")
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {
            "name": name,
            "namespace": spec.namespace,
            "labels": job["metadata"]["labels"],
        },
        "spec": {
            "schedule": schedule,
            "timeZone": "Etc/UTC",
            # A run still queued or training when the next is due: skip the next, never stack.
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": 3600,
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {"metadata": {"labels": job["metadata"]["labels"]}, "spec": job["spec"]},
        },
    }
