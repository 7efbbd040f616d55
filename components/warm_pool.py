"""WarmPool: keep N GPU nodes of a pool up during working hours, for teams that cannot wait.

Karpenter 1.15 has two alpha ways to hold capacity (a static NodePool's ``replicas``, the
``StaticCapacity`` gate; and ``CapacityBuffer``, the ``CapacityBuffer`` gate). Neither takes a
schedule, and a static NodePool cannot become a dynamic one again. The warm pool uses the
classic overprovisioning pattern instead, which needs no feature gate:

* a Deployment of placeholder pods (``pause``) that request the pool's GPUs, one per node
  (pod anti-affinity on the hostname), so Karpenter keeps N nodes of the pool running;
* a PriorityClass below every workload (``-10``, ``preemptionPolicy: Never``): any real pod
  that needs a GPU preempts a placeholder, takes its warm node at once, and the evicted
  placeholder goes pending, so Karpenter starts the next warm node in the background;
* two CronJobs that scale the placeholders to N at ``start`` and to 0 at ``stop`` on the chosen
  days (``timeZone`` honoured by the CronJob controller). At 0 the nodes empty and the pool's
  ``consolidateAfter`` removes them.

The CronJobs run ``kubectl scale`` as a ServiceAccount that may only read and scale this one
Deployment.
"""

from __future__ import annotations

from datetime import time
from enum import StrEnum
from typing import Any
from zoneinfo import available_timezones

import pulumi
from pydantic import Field

from components.common import (
    GPU_RESOURCE,
    GPU_TOLERATION,
    POOL_LABEL,
    RESTRICTED_NAMESPACE_LABELS,
    ArgsModel,
    Issue,
    KubeTarget,
    container_security_context,
    pod_security_context,
)
from components.manifests import declare_manifest

WARM_POOL_NAMESPACE = "gpu-warm-pool"
PRIORITY_CLASS = "mlplatform-warm-pool-placeholder"
PLACEHOLDER_PRIORITY = -10
# registry.k8s.io/pause 3.10: the pause version of Kubernetes 1.33 (kubeadm constants.PauseVersion
# at k8s.io/kubernetes v1.33.13, Go module proxy). Runs as 65535, no shell, no network.
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
# registry.k8s.io/kubectl is published for every Kubernetes release; v1.33.13 is the newest 1.33
# patch the Go module proxy serves (k8s.io/kubernetes), the EKS version the stacks run.
KUBECTL_IMAGE = "registry.k8s.io/kubectl:v1.33.13"
# A writable home for kubectl's discovery cache (the root filesystem is read-only).
KUBECTL_HOME = "/home/kubectl"
_HHMM = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"


class Weekday(StrEnum):
    MON = "mon"
    TUE = "tue"
    WED = "wed"
    THU = "thu"
    FRI = "fri"
    SAT = "sat"
    SUN = "sun"


_CRON_DAY = {d: i for i, d in enumerate(Weekday, start=1)}
_CRON_DAY[Weekday.SUN] = 0


class WarmPoolArgs(ArgsModel):
    """How many nodes to keep warm, and when (times are local to ``timeZone``)."""

    nodes: int = Field(ge=1, le=20)
    # GPUs each placeholder asks for. None: the pool's minGpusPerNode (its smallest node).
    gpus_per_node: int | None = Field(default=None, ge=1, le=8)
    days: list[Weekday] = Field(
        default_factory=lambda: [Weekday.MON, Weekday.TUE, Weekday.WED, Weekday.THU, Weekday.FRI],
        min_length=1,
    )
    start: str = Field(default="08:00", pattern=_HHMM)
    stop: str = Field(default="19:00", pattern=_HHMM)
    time_zone: str = "Etc/UTC"

    def issues(self) -> list[Issue]:
        found = super().issues()
        if self.time_zone not in available_timezones():
            found.append(
                Issue(
                    ("timeZone",),
                    f"must be an IANA time zone like Europe/Berlin or America/New_York, got "
                    f"{self.time_zone!r}",
                )
            )
        if _parse(self.stop) <= _parse(self.start):
            found.append(
                Issue(
                    ("stop",),
                    f"must be after start ({self.start}) on the same day, got {self.stop}",
                )
            )
        if len(set(self.days)) != len(self.days):
            found.append(Issue(("days",), "lists a day twice"))
        return found

    def cron(self, at: str) -> str:
        t = _parse(at)
        days = ",".join(str(n) for n in sorted({_CRON_DAY[d] for d in self.days}))
        return f"{t.minute} {t.hour} * * {days}"

    @property
    def hours_per_week(self) -> float:
        start, stop = _parse(self.start), _parse(self.stop)
        hours = (stop.hour * 60 + stop.minute - start.hour * 60 - start.minute) / 60
        return hours * len(set(self.days))


def _parse(hhmm: str) -> time:
    try:
        hours, minutes = (int(p) for p in hhmm.split(":"))
        return time(hours, minutes)
    except ValueError:
        return time(0, 0)


# Manifest builders -------------------------------------------------------------------------
def placeholder_deployment(pool: str, gpus: int, namespace: str) -> dict[str, Any]:
    name = f"warm-{pool}"
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "mlplatform-warm-pool"}
    uid = 65535
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            # Scaled by the CronJobs; zero outside working hours (and until the first start).
            "replicas": 0,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "priorityClassName": PRIORITY_CLASS,
                    # A preempted placeholder leaves at once: the real pod is waiting for it.
                    "terminationGracePeriodSeconds": 0,
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "nodeSelector": {POOL_LABEL: pool},
                    "tolerations": [dict(GPU_TOLERATION)],
                    # One placeholder per node: N placeholders hold N nodes.
                    "affinity": {
                        "podAntiAffinity": {
                            "requiredDuringSchedulingIgnoredDuringExecution": [
                                {
                                    "labelSelector": {"matchLabels": labels},
                                    "topologyKey": "kubernetes.io/hostname",
                                }
                            ]
                        }
                    },
                    "securityContext": pod_security_context(uid, fs_group=None),
                    "containers": [
                        {
                            "name": "pause",
                            "image": PAUSE_IMAGE,
                            "resources": {
                                "requests": {
                                    "cpu": "10m",
                                    "memory": "16Mi",
                                    GPU_RESOURCE: str(gpus),
                                },
                                "limits": {"memory": "16Mi", GPU_RESOURCE: str(gpus)},
                            },
                            "securityContext": container_security_context(uid),
                        }
                    ],
                },
            },
        },
    }


def priority_class() -> dict[str, Any]:
    return {
        "apiVersion": "scheduling.k8s.io/v1",
        "kind": "PriorityClass",
        "metadata": {"name": PRIORITY_CLASS},
        "value": PLACEHOLDER_PRIORITY,
        "globalDefault": False,
        # Placeholders never evict anything; everything else may evict them.
        "preemptionPolicy": "Never",
        "description": "Warm-pool placeholders: preempted by any workload that needs their GPUs.",
    }


def scaler_rbac(pool: str, namespace: str) -> list[dict[str, Any]]:
    """A ServiceAccount that may read and scale the pool's placeholder Deployment, nothing else."""
    name = f"warm-{pool}-scaler"
    deployment = f"warm-{pool}"
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": name, "namespace": namespace},
            "automountServiceAccountToken": False,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": name, "namespace": namespace},
            "rules": [
                {
                    "apiGroups": ["apps"],
                    "resources": ["deployments"],
                    "resourceNames": [deployment],
                    "verbs": ["get"],
                },
                {
                    "apiGroups": ["apps"],
                    "resources": ["deployments/scale"],
                    "resourceNames": [deployment],
                    "verbs": ["get", "patch", "update"],
                },
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": name, "namespace": namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
        },
    ]


def scale_cronjob(
    pool: str, namespace: str, *, action: str, schedule: str, time_zone: str, replicas: int
) -> dict[str, Any]:
    uid = 65532
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": f"warm-{pool}-{action}", "namespace": namespace},
        "spec": {
            "schedule": schedule,
            "timeZone": time_zone,
            "concurrencyPolicy": "Replace",
            # A start missed by up to an hour (controller restart) still runs.
            "startingDeadlineSeconds": 3600,
            "successfulJobsHistoryLimit": 1,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {
                "spec": {
                    "backoffLimit": 3,
                    "activeDeadlineSeconds": 600,
                    "ttlSecondsAfterFinished": 86400,
                    "template": {
                        "spec": {
                            "serviceAccountName": f"warm-{pool}-scaler",
                            "automountServiceAccountToken": True,
                            "restartPolicy": "OnFailure",
                            "securityContext": pod_security_context(uid, fs_group=None),
                            "containers": [
                                {
                                    "name": "kubectl",
                                    "image": KUBECTL_IMAGE,
                                    "args": [
                                        "scale",
                                        f"deployment/warm-{pool}",
                                        f"--replicas={replicas}",
                                        f"--namespace={namespace}",
                                    ],
                                    # kubectl writes its discovery cache under $HOME.
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


def warm_pool_manifests(pool: str, gpus: int, args: WarmPoolArgs) -> list[dict[str, Any]]:
    """Everything one pool's warm pool declares, the namespace and PriorityClass excepted."""
    ns = WARM_POOL_NAMESPACE
    return [
        placeholder_deployment(pool, gpus, ns),
        *scaler_rbac(pool, ns),
        scale_cronjob(
            pool,
            ns,
            action="start",
            schedule=args.cron(args.start),
            time_zone=args.time_zone,
            replicas=args.nodes,
        ),
        scale_cronjob(
            pool,
            ns,
            action="stop",
            schedule=args.cron(args.stop),
            time_zone=args.time_zone,
            replicas=0,
        ),
    ]


def shared_manifests() -> list[dict[str, Any]]:
    """The namespace and PriorityClass every pool's warm pool shares."""
    return [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": WARM_POOL_NAMESPACE, "labels": dict(RESTRICTED_NAMESPACE_LABELS)},
        },
        priority_class(),
        {
            # Nothing talks to a placeholder or a scaler; only the scalers talk (to the API).
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "default-deny-ingress", "namespace": WARM_POOL_NAMESPACE},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
        },
    ]


class WarmPools(pulumi.ComponentResource):
    """The warm pools of every GPU pool that asks for one (one namespace, one PriorityClass)."""

    namespace: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        pools: list[tuple[str, int, WarmPoolArgs]],
        *,
        target: KubeTarget,
        depends_on: list[pulumi.Resource] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """``pools``: (pool name, GPUs per placeholder, schedule) for each warm pool."""
        for pool, _, args in pools:
            args.raise_if_invalid(f"WarmPools ({pool})")
        super().__init__("mlplatform:compute:WarmPools", name, None, opts)
        deps = [*target.depends_on, *(depends_on or [])]

        def k8s_opts(*extra: pulumi.Resource) -> pulumi.ResourceOptions:
            return pulumi.ResourceOptions(
                parent=self, provider=target.provider, depends_on=[*deps, *extra]
            )

        shared = [
            declare_manifest(f"{name}-{m['kind'].lower()}", m, k8s_opts())
            for m in shared_manifests()
        ]
        for pool, gpus, args in pools:
            for m in warm_pool_manifests(pool, gpus, args):
                role = f"{m['kind'].lower()}-{m['metadata']['name']}"
                declare_manifest(f"{name}-{role}", m, k8s_opts(*shared))
        self.namespace = pulumi.Output.from_input(WARM_POOL_NAMESPACE)
        self.register_outputs({"namespace": self.namespace, "pools": [p for p, _, _ in pools]})
