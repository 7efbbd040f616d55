"""CapacityBlockQueues: one Kueue queue per Capacity Block, open only while a job still fits.

How a block maps onto the pool and onto Kueue
---------------------------------------------
A pool that lists ``reservations.blocks`` runs on its blocks only (priority ``only``), so every
node of the pool is a block node. Each block gets:

* a ``ResourceFlavor`` named ``<pool>-<block id>`` whose ``nodeLabels`` are the pool's labels
  plus ``karpenter.k8s.aws/capacity-reservation-id: <block id>``: Kueue puts that node selector
  on the pods it admits, and Karpenter launches them into exactly that block (it labels every
  reserved node with its reservation's id);
* a ``ClusterQueue`` of the same name, outside the teams' cohort (a block is neither lent nor
  borrowed), whose quota is the block: ``instances`` x the instance's GPUs, vCPUs and memory;
* a ``LocalQueue`` of the same name in each namespace of the teams the block is for;
* a ``ValidatingAdmissionPolicy`` that refuses a job sent to that queue unless it declares its
  run time in ``kueue.x-k8s.io/max-exec-time-seconds`` and that run time is at most the block's
  ``maxRunTime``. Kueue stops (deactivates) a workload that runs longer than it declared.

Time. A job's run time is bounded by ``maxRunTime``, so a job admitted by ``end - 40m -
maxRunTime`` ends before Karpenter starts draining the block (40 minutes before its end;
EC2 reclaims it 10 minutes later). The ClusterQueue is therefore held (``stopPolicy: Hold``:
no new admissions, running jobs continue) until the block starts and again from that closing
time on. Two CronJobs flip it at those instants (UTC), running ``kubectl patch`` as a service
account that may patch this one ClusterQueue; ``pulumi up`` sets the state the clock says
when it runs, so a missed CronJob is corrected by the next deployment.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pulumi

from components.common import (
    ACCELERATOR_LABEL,
    GPU_RESOURCE,
    GPU_TAINT,
    POOL_LABEL,
    Issue,
    KubeTarget,
    container_security_context,
    pod_security_context,
)
from components.gpu_capacity import BLOCK_NODE_SHAPES, CapacityBlock
from components.manifests import KINDS, declare_manifest
from components.training_queues import (
    COVERED_RESOURCES,
    KUEUE_API_VERSION,
    QUEUE_LABEL,
    ManifestResource,
)
from components.warm_pool import KUBECTL_HOME, KUBECTL_IMAGE

RESERVATION_ID_LABEL = "karpenter.k8s.aws/capacity-reservation-id"
MAX_EXEC_TIME_LABEL = "kueue.x-k8s.io/max-exec-time-seconds"
# Kueue integration name -> the API group and resource its jobs are created as.
FRAMEWORK_RESOURCES: dict[str, tuple[str, str]] = {
    "batch/job": ("batch", "jobs"),
    "kubeflow.org/pytorchjob": ("kubeflow.org", "pytorchjobs"),
}


@dataclass(frozen=True)
class BlockQueue:
    """One block, with the pool it belongs to and the namespaces that may submit to it."""

    pool: str
    accelerator: str
    block: CapacityBlock
    namespaces: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"{self.pool}-{self.block.id}"

    @property
    def quota(self) -> tuple[int, int, int]:
        gpus, cpus, mem = BLOCK_NODE_SHAPES[self.block.instance_type]
        n = self.block.instances
        return gpus * n, cpus * n, mem * n

    def stop_policy(self, now: datetime) -> str:
        """Hold before the block starts and once a maxRunTime job would outlast it."""
        return "None" if self.block.start <= now < self.block.admission_closes_at else "Hold"


# Manifest builders -------------------------------------------------------------------------
def block_flavor(q: BlockQueue) -> dict[str, Any]:
    return {
        "apiVersion": KUEUE_API_VERSION,
        "kind": "ResourceFlavor",
        "metadata": {"name": q.name},
        "spec": {
            "nodeLabels": {
                POOL_LABEL: q.pool,
                ACCELERATOR_LABEL: q.accelerator,
                RESERVATION_ID_LABEL: q.block.id,
            },
            "nodeTaints": [dict(GPU_TAINT)],
        },
    }


def block_cluster_queue(q: BlockQueue, now: datetime) -> dict[str, Any]:
    gpus, cpus, mem = q.quota
    quota = {"cpu": str(cpus), "memory": f"{mem}Gi", GPU_RESOURCE: str(gpus)}
    spec: dict[str, Any] = {
        # No cohort: the block is neither lent to the teams' queues nor borrowed from them.
        "namespaceSelector": {
            "matchExpressions": [
                {
                    "key": "kubernetes.io/metadata.name",
                    "operator": "In",
                    "values": list(q.namespaces),
                }
            ]
        },
        "queueingStrategy": "BestEffortFIFO",
        "preemption": {"withinClusterQueue": "LowerPriority"},
        "resourceGroups": [
            {
                "coveredResources": list(COVERED_RESOURCES),
                "flavors": [
                    {
                        "name": q.name,
                        "resources": [
                            {"name": r, "nominalQuota": quota[r]} for r in COVERED_RESOURCES
                        ],
                    }
                ],
            }
        ],
    }
    if q.stop_policy(now) == "Hold":
        spec["stopPolicy"] = "Hold"
    return {
        "apiVersion": KUEUE_API_VERSION,
        "kind": "ClusterQueue",
        "metadata": {"name": q.name, "annotations": _window_annotations(q)},
        "spec": spec,
    }


def _window_annotations(q: BlockQueue) -> dict[str, str]:
    b = q.block
    return {
        "mlplatform.io/capacity-block-start": b.start.astimezone(UTC).isoformat(),
        "mlplatform.io/capacity-block-end": b.end.astimezone(UTC).isoformat(),
        "mlplatform.io/admission-closes": b.admission_closes_at.astimezone(UTC).isoformat(),
        "mlplatform.io/max-run-time-seconds": str(int(b.run_time.total_seconds())),
    }


def block_local_queue(q: BlockQueue, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": KUEUE_API_VERSION,
        "kind": "LocalQueue",
        "metadata": {"name": q.name, "namespace": namespace},
        "spec": {"clusterQueue": q.name},
    }


def run_time_expression(max_seconds: int) -> str:
    """CEL: the job declares a run time of at most ``max_seconds``."""
    label = f"object.metadata.labels['{MAX_EXEC_TIME_LABEL}']"
    return (
        f"has(object.metadata.labels) && '{MAX_EXEC_TIME_LABEL}' in object.metadata.labels"
        f" && {label}.matches('^[0-9]{{1,9}}$') && int({label}) <= {max_seconds}"
    )


def run_time_policy(q: BlockQueue, frameworks: Sequence[str]) -> list[dict[str, Any]]:
    """A ValidatingAdmissionPolicy and its binding for the block's queue."""
    seconds = int(q.block.run_time.total_seconds())
    rules = []
    for fw in dict.fromkeys(frameworks):
        if fw in FRAMEWORK_RESOURCES:
            group, resource = FRAMEWORK_RESOURCES[fw]
            rules.append(
                {
                    "apiGroups": [group],
                    "apiVersions": ["*"],
                    "resources": [resource],
                    "operations": ["CREATE", "UPDATE"],
                }
            )
    name = f"capacity-block-{q.block.id}"
    message = (
        f"jobs sent to {q.name} must set the label {MAX_EXEC_TIME_LABEL} to at most {seconds} "
        f"(the block's maxRunTime): the block ends at {q.block.end.astimezone(UTC).isoformat()}"
    )
    return [
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": name},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {"resourceRules": rules},
                "validations": [{"expression": run_time_expression(seconds), "message": message}],
            },
        },
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": name},
            "spec": {
                "policyName": name,
                "validationActions": ["Deny"],
                "matchResources": {"objectSelector": {"matchLabels": {QUEUE_LABEL: q.name}}},
            },
        },
    ]


def gate_manifests(q: BlockQueue, namespace: str, now: datetime) -> list[dict[str, Any]]:
    """RBAC and the CronJobs that open the queue at the block's start and close it in time."""
    name = f"block-gate-{q.block.id}"
    out: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": name, "namespace": namespace},
            "automountServiceAccountToken": False,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": name},
            "rules": [
                {
                    "apiGroups": ["kueue.x-k8s.io"],
                    "resources": ["clusterqueues"],
                    "resourceNames": [q.name],
                    "verbs": ["get", "patch"],
                }
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": name},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": name,
            },
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
        },
    ]
    for action, at, policy in (
        ("open", q.block.start, "None"),
        ("close", q.block.admission_closes_at, "Hold"),
    ):
        if at > now:
            out.append(_gate_cronjob(q, namespace, name, action, at, policy))
    return out


def _gate_cronjob(
    q: BlockQueue, namespace: str, account: str, action: str, at: datetime, policy: str
) -> dict[str, Any]:
    at = at.astimezone(UTC)
    uid = 65532
    patch = json.dumps({"spec": {"stopPolicy": policy}}, separators=(",", ":"))
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": f"{action}-{q.block.id}", "namespace": namespace},
        "spec": {
            # That minute of that day (cron has no year: it would fire again a year later,
            # setting the same state on a queue that should be gone by then).
            "schedule": f"{at.minute} {at.hour} {at.day} {at.month} *",
            "timeZone": "Etc/UTC",
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": 3600,
            "successfulJobsHistoryLimit": 1,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {
                "spec": {
                    "backoffLimit": 5,
                    "activeDeadlineSeconds": 900,
                    "template": {
                        "spec": {
                            "serviceAccountName": account,
                            "automountServiceAccountToken": True,
                            "restartPolicy": "OnFailure",
                            "securityContext": pod_security_context(uid, fs_group=None),
                            "containers": [
                                {
                                    "name": "kubectl",
                                    "image": KUBECTL_IMAGE,
                                    "args": [
                                        "patch",
                                        "clusterqueue.kueue.x-k8s.io",
                                        q.name,
                                        "--type=merge",
                                        f"--patch={patch}",
                                    ],
                                    "env": [{"name": "HOME", "value": KUBECTL_HOME}],
                                    "volumeMounts": [{"name": "home", "mountPath": KUBECTL_HOME}],
                                    "resources": {
                                        "requests": {"cpu": "10m", "memory": "32Mi"},
                                        "limits": {"memory": "128Mi"},
                                    },
                                    "securityContext": container_security_context(uid),
                                }
                            ],
                            "volumes": [{"name": "home", "emptyDir": {"sizeLimit": "64Mi"}}],
                        }
                    },
                }
            },
        },
    }


def block_manifests(
    q: BlockQueue, *, frameworks: Sequence[str], namespace: str, now: datetime
) -> list[dict[str, Any]]:
    return [
        block_flavor(q),
        block_cluster_queue(q, now),
        *(block_local_queue(q, ns) for ns in q.namespaces),
        *run_time_policy(q, frameworks),
        *gate_manifests(q, namespace, now),
    ]


class CapacityBlockQueues(pulumi.ComponentResource):
    """The queues, flavors, run-time policies and gates of every capacity block."""

    queues: pulumi.Output[list[str]]

    def __init__(
        self,
        name: str,
        blocks: Sequence[BlockQueue],
        *,
        target: KubeTarget,
        frameworks: Sequence[str],
        namespace: str,
        depends_on: Sequence[pulumi.Resource] = (),
        namespace_resources: Mapping[str, pulumi.Resource] | None = None,
        now: datetime | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """``depends_on``: Kueue (its CRDs and webhooks); ``namespace_resources``: the project
        namespaces, which the LocalQueues wait for; ``now``: the clock (tests pin it)."""
        super().__init__("mlplatform:training:CapacityBlockQueues", name, None, opts)
        clock = now or datetime.now(UTC)
        namespaces = namespace_resources or {}
        for q in blocks:
            for m in block_manifests(q, frameworks=frameworks, namespace=namespace, now=clock):
                meta = m["metadata"]
                role = "-".join(
                    filter(None, [m["kind"].lower(), meta.get("namespace"), meta["name"]])
                )
                deps = [*target.depends_on, *depends_on]
                if "namespace" in meta and meta["namespace"] in namespaces:
                    deps.append(namespaces[meta["namespace"]])
                opts_ = pulumi.ResourceOptions(
                    parent=self, provider=target.provider, depends_on=deps
                )
                if m["kind"] in KINDS:
                    declare_manifest(f"{name}-{role}", m, opts_)
                else:
                    ManifestResource(f"{name}-{role}", m, opts=opts_)
        self.queues = pulumi.Output.from_input([q.name for q in blocks])
        self.register_outputs({"queues": self.queues})


def block_queues(pools: Sequence[Any], teams: Sequence[Any]) -> list[BlockQueue]:
    """Every block of the GPU pool args, with the namespaces of the teams it is for."""
    by_team = {t.name: tuple(t.namespaces) for t in teams}
    out = []
    for pool in pools:
        for block in pool.reservations.blocks if pool.reservations else []:
            namespaces = tuple(dict.fromkeys(ns for t in block.teams for ns in by_team.get(t, ())))
            out.append(BlockQueue(pool.name, pool.accelerator.value, block, namespaces))
    return out


def block_team_issues(pools: Sequence[Any], teams: Sequence[Any]) -> list[Issue]:
    """Stack-level checks (paths from the config root): blocks name known teams, and no team
    quota points at a block pool, whose capacity is reached through the blocks' queues only."""
    found: list[Issue] = []
    names = sorted(t.name for t in teams)
    block_pools: set[str] = set()
    for i, pool in enumerate(pools):
        for j, block in enumerate(pool.reservations.blocks if pool.reservations else []):
            block_pools.add(pool.name)
            for k, team in enumerate(block.teams):
                if team not in names:
                    found.append(
                        Issue(
                            ("gpuPools", i, "reservations", "blocks", j, "teams", k),
                            f"unknown team {team!r}; trainingQueues.teams: {names or '(none)'}",
                        )
                    )
    for i, team in enumerate(teams):
        for j, quota in enumerate(team.quotas):
            if quota.pool in block_pools:
                found.append(
                    Issue(
                        ("trainingQueues", "teams", i, "quotas", j, "pool"),
                        f"pool {quota.pool!r} runs on capacity blocks: its GPUs are reached "
                        "through each block's own queue (list the team under the block's "
                        "teams), not through a team quota",
                    )
                )
    return found
