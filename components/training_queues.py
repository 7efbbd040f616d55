"""Kueue: queues, quotas and fair sharing of the platform's GPU pools between teams.

What this module declares:

* the Kueue controller, from its pinned Helm chart, with the job integrations the platform uses
  (plain ``batch/v1`` Jobs plus the distributed engine's jobs, see
  ``components.training_operator``);
* one ``ResourceFlavor`` per GPU pool whose ``nodeLabels`` are the pool's own labels
  (``mlplatform.io/pool``, ``mlplatform.io/accelerator``) and whose ``nodeTaints`` carry the
  ``nvidia.com/gpu=true:NoSchedule`` taint, plus a ``default-cpu`` flavor for CPU-only work;
* one ``ClusterQueue`` per team, all in one cohort, with ``cpu``/``memory``/``nvidia.com/gpu``
  nominal quotas per flavor and optional borrowing limits;
* one ``LocalQueue`` per namespace the stack lists for a team (named after the team), which is
  what a job's ``kueue.x-k8s.io/queue-name`` label points at.

Admission: which namespaces reach a team's queue
------------------------------------------------
A team's ``ClusterQueue`` admits workloads from every namespace labelled
``mlplatform.io/team: <team>`` (its ``namespaceSelector``), and a namespace's ``LocalQueue`` is
declared by whoever declares the namespace: the platform, for every namespace a stack lists under
a team (it labels them and gives each a LocalQueue). A project generated with ``mlplatform
new-project`` is registered on the stack with its namespace under its team, so its namespace is
one of these; its program reads the queue's name from the ``trainingQueues`` output
(``team_contract``).

Borrowing, preemption and fair sharing
--------------------------------------
A team's nominal quota is what it is guaranteed. While other teams of the cohort leave quota
unused, a team may borrow it, up to its ``borrowingLimit`` (unset: no limit). Preemption decides
what happens when the owner wants its quota back or a more important job arrives:

* ``withinClusterQueue: LowerPriority`` - a pending job that does not fit in its team's nominal
  quota may evict the team's own *lower-priority* jobs (see the ``WorkloadPriorityClass`` objects;
  a job picks one with the ``kueue.x-k8s.io/priority-class`` label). Equal priority never evicts.
* ``reclaimWithinCohort: Any`` - a job that fits in its team's nominal quota may evict any job
  of another team that is running on *borrowed* quota, whatever its priority. Lending is safe:
  lent GPUs always come back. Jobs that run on borrowed quota must therefore checkpoint
  (``TrainingJob`` passes the checkpoint URI) and expect to be requeued.
* Fair sharing (``fairSharing: true``, the default) changes how *unused* quota is handed out:
  instead of first-come-first-served, Kueue admits from the team with the lowest weighted share
  of borrowed resources (share = dominant resource usage above nominal quota / ``weight``), and
  preemption between borrowers follows the ``LessThanOrEqualToFinalShare`` then
  ``LessThanInitialShare`` strategies, so a team far above its fair share loses borrowed
  workloads first. ``borrowWithinCohort`` is left unset because Kueue does not support it
  together with fair sharing.

``waitForPodsReady`` makes admission all-or-nothing in practice: a job whose pods are not all
running within ``podsReadyTimeout`` after admission (a missing node, a failed image pull) is
evicted and requeued instead of holding half a gang's GPUs forever.

API version
-----------
The objects use ``kueue.x-k8s.io/v1beta2``. ``v1beta1`` has been deprecated since Kueue 0.16, is
no longer served from 0.20 on and is removed in 0.21, so a platform pinned to a current chart must
not be built on it. The only field of these objects renamed in ``v1beta2`` is
``ClusterQueue.spec.cohort`` -> ``spec.cohortName``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import yaml
from pulumi_kubernetes import _utilities as k8s_utilities
from pydantic import Field

from components.common import (
    ACCELERATOR_LABEL,
    EFA_RESOURCE,
    GPU_RESOURCE,
    GPU_TAINT,
    POOL_LABEL,
    RESTRICTED_NAMESPACE_LABELS,
    TEAM_LABEL,
    ArgsModel,
    InvalidArgsError,
    Issue,
    KubeTarget,
    check_chart_version,
    check_dns_label,
    check_quantity,
    ports_only_network_policy,
)

KUEUE_CHART = "oci://registry.k8s.io/kueue/charts/kueue"
# v0.19.3, the newest Kueue release confirmed here (kubernetes-sigs/kueue#14693, published
# 2026-09-03; chart oci://registry.k8s.io/kueue/charts/kueue, same version as the app). Tests
# validate the queues against v0.19.2's CRDs, the nearest release the Go module proxy serves
# (scripts/crd-sources.txt; keep the two in step).
KUEUE_CHART_VERSION = "0.19.3"
# The controller's webhook (called by the API server) and its metrics port (scraped by Prometheus).
WEBHOOK_PORT, METRICS_PORT = 9443, 8443
KUEUE_API_VERSION = "kueue.x-k8s.io/v1beta2"
KUEUE_CONFIG_API_VERSION = "config.kueue.x-k8s.io/v1beta2"
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
PRIORITY_LABEL = "kueue.x-k8s.io/priority-class"
CPU_FLAVOR = "default-cpu"
BATCH_JOB_FRAMEWORK = "batch/job"
# Order matters in a ResourceGroup: every flavor lists its quotas in this order.
COVERED_RESOURCES = ("cpu", "memory", GPU_RESOURCE)
FAIR_SHARING_STRATEGIES = ["LessThanOrEqualToFinalShare", "LessThanInitialShare"]
# When a pool quota leaves cpu/memory unset, size it per GPU (a g5.12xlarge has 12 vCPU and
# 48 GiB per GPU; 8 and 32Gi leave room for system daemons on smaller shapes).
CPU_PER_GPU = 8
MEMORY_GIB_PER_GPU = 32


def check_count(path: tuple[str | int, ...], value: int | None, minimum: int = 0) -> list[Issue]:
    if value is None or value >= minimum:
        return []
    return [Issue(path, f"must be >= {minimum}, got {value}")]


class BorrowingLimit(ArgsModel):
    """How much a team may borrow above its nominal quota from the cohort; unset = no limit."""

    gpus: int | None = None
    cpu: str | None = None
    memory: str | None = None

    def issues(self) -> list[Issue]:
        return [
            *check_count(("gpus",), self.gpus),
            *check_quantity(("cpu",), self.cpu),
            *check_quantity(("memory",), self.memory),
        ]


class PoolQuota(ArgsModel):
    """A team's guaranteed share of one GPU pool."""

    pool: str
    gpus: int
    # None: CPU_PER_GPU / MEMORY_GIB_PER_GPU per GPU of the quota.
    cpu: str | None = None
    memory: str | None = None
    borrowing_limit: BorrowingLimit | None = None

    def issues(self) -> list[Issue]:
        return [
            *super().issues(),
            *check_count(("gpus",), self.gpus),
            *check_quantity(("cpu",), self.cpu),
            *check_quantity(("memory",), self.memory),
        ]

    def cpu_quota(self) -> str:
        return self.cpu if self.cpu is not None else str(max(self.gpus, 0) * CPU_PER_GPU)

    def memory_quota(self) -> str:
        if self.memory is not None:
            return self.memory
        return f"{max(self.gpus, 0) * MEMORY_GIB_PER_GPU}Gi"


class TeamQueue(ArgsModel):
    """One team: a ClusterQueue with its quotas, and a LocalQueue in each project namespace."""

    name: str
    namespaces: list[str]
    quotas: list[PoolQuota] = []
    # Quota of the default-cpu flavor, for CPU-only jobs (data prep, evaluation).
    cpu: str = "16"
    memory: str = "64Gi"
    # Fair-sharing weight: a team with weight 2 may hold twice the borrowed share of weight 1.
    weight: str = "1"

    def issues(self) -> list[Issue]:
        found = [
            *super().issues(),
            *check_dns_label(("name",), self.name),
            *check_quantity(("cpu",), self.cpu),
            *check_quantity(("memory",), self.memory),
            *check_quantity(("weight",), self.weight),
        ]
        if not self.namespaces:
            found.append(Issue(("namespaces",), "must list at least one project namespace"))
        for i, ns in enumerate(self.namespaces):
            found.extend(check_dns_label(("namespaces", i), ns))
        seen: set[str] = set()
        for i, quota in enumerate(self.quotas):
            if quota.pool in seen:
                found.append(Issue(("quotas", i, "pool"), f"pool {quota.pool!r} is listed twice"))
            seen.add(quota.pool)
        return found


class PriorityClass(ArgsModel):
    name: str
    value: int
    description: str = ""


class TrainingQueuesArgs(ArgsModel):
    """Stack config section ``trainingQueues``."""

    chart_version: str = Field(
        default=KUEUE_CHART_VERSION, description="Kueue Helm chart version (pinned)."
    )
    namespace: str = Field(default="kueue-system", description="Namespace of the Kueue controller.")
    cohort: str = Field(
        default="ml-platform", description="Cohort of all team ClusterQueues (borrowing scope)."
    )
    teams: list[TeamQueue] = Field(
        default_factory=list,
        description="Teams: project namespaces, per-pool GPU/CPU/memory quotas, borrowing limits.",
    )
    fair_sharing: bool = Field(
        default=True, description="Share unused quota by weighted share instead of FIFO."
    )
    pods_ready_timeout: str = Field(
        default="20m",
        description="Admitted jobs whose pods are not all ready by then are evicted and requeued.",
    )
    priority_classes: list[PriorityClass] = Field(
        default_factory=lambda: [
            PriorityClass(name="batch", value=100, description="Default for training jobs"),
            PriorityClass(
                name="urgent", value=1000, description="May preempt batch jobs of its team"
            ),
        ],
        description="Kueue WorkloadPriorityClasses jobs can pick (kueue.x-k8s.io/priority-class).",
    )
    controller_replicas: int = Field(
        default=1, description="Kueue controller replicas (2+ adds a PodDisruptionBudget)."
    )
    create_namespaces: bool = Field(
        default=True,
        description="Create the teams' project namespaces (off when another component owns them).",
    )

    def issues(self) -> list[Issue]:
        found = [
            *super().issues(),
            *check_dns_label(("namespace",), self.namespace),
            *check_dns_label(("cohort",), self.cohort),
            *check_count(("controllerReplicas",), self.controller_replicas, minimum=1),
        ]
        found += check_chart_version("chartVersion", self.chart_version)
        if not re.fullmatch(r"\d+(s|m|h)", self.pods_ready_timeout):
            found.append(
                Issue(
                    ("podsReadyTimeout",),
                    f"must be a duration such as 600s, 20m or 1h, got {self.pods_ready_timeout!r}",
                )
            )
        names: dict[str, int] = {}
        owners: dict[str, str] = {}
        for i, team in enumerate(self.teams):
            if team.name in names:
                found.append(Issue(("teams", i, "name"), f"team {team.name!r} is listed twice"))
            names.setdefault(team.name, i)
            for j, ns in enumerate(team.namespaces):
                if ns in owners and owners[ns] != team.name:
                    found.append(
                        Issue(
                            ("teams", i, "namespaces", j),
                            f"namespace {ns!r} already belongs to team {owners[ns]!r}; a "
                            f"namespace has one LocalQueue",
                        )
                    )
                owners.setdefault(ns, team.name)
        pc_names = [p.name for p in self.priority_classes]
        for i, pc in enumerate(self.priority_classes):
            found.extend(check_dns_label(("priorityClasses", i, "name"), pc.name))
            if pc_names.count(pc.name) > 1 and pc_names.index(pc.name) != i:
                found.append(Issue(("priorityClasses", i, "name"), f"{pc.name!r} is listed twice"))
        return found


@dataclass(frozen=True)
class GpuPoolCapacity:
    """What the queues and jobs need to know about a GPU pool: its name, preset, GPU limit and,
    for EFA pools, the GPUs and EFA interfaces of one node.

    ``gpu_limit`` is the most GPUs the pool can scale to (its Karpenter NodePool limit).
    """

    name: str
    accelerator: str
    gpu_limit: int
    gpus_per_node: int = 0
    efa_per_node: int = 0

    def efa_for(self, gpus: int) -> int:
        """EFA devices that go with ``gpus`` GPUs: the node's interfaces, shared per GPU."""
        if self.efa_per_node <= 0 or gpus <= 0 or self.gpus_per_node <= 0:
            return 0
        return max(1, self.efa_per_node * gpus // self.gpus_per_node)


def check_pool_quotas(args: TrainingQueuesArgs, gpu_limits: Mapping[str, int]) -> list[Issue]:
    """Check the teams' GPU quotas against the pools that exist and their GPU limits.

    Pure: takes the pools' GPU limits (pool name -> max GPUs) so stack config validation can run
    it before any resource is declared. Paths are relative to the ``trainingQueues`` section.
    """
    found: list[Issue] = []
    known = ", ".join(sorted(gpu_limits)) or "(none)"
    totals: dict[str, int] = {}
    for i, team in enumerate(args.teams):
        for j, quota in enumerate(team.quotas):
            path: tuple[str | int, ...] = ("teams", i, "quotas", j)
            if quota.pool not in gpu_limits:
                found.append(
                    Issue((*path, "pool"), f"unknown GPU pool {quota.pool!r}; known pools: {known}")
                )
                continue
            limit = gpu_limits[quota.pool]
            if quota.gpus > limit:
                found.append(
                    Issue(
                        (*path, "gpus"),
                        f"{quota.gpus} GPUs exceeds pool {quota.pool!r}'s limit of {limit} GPUs",
                    )
                )
                continue
            before = totals.get(quota.pool, 0)
            totals[quota.pool] = before + max(quota.gpus, 0)
            if before <= limit < totals[quota.pool]:
                found.append(
                    Issue(
                        (*path, "gpus"),
                        f"the teams' nominal quotas on pool {quota.pool!r} add "
                        f"up to {totals[quota.pool]} GPUs, more than its limit "
                        f"of {limit}: guaranteed quota the pool cannot supply",
                    )
                )
            bl = quota.borrowing_limit.gpus if quota.borrowing_limit else None
            if bl is not None and bl >= 0 and quota.gpus + bl > limit:
                found.append(
                    Issue(
                        (*path, "borrowingLimit", "gpus"),
                        f"nominal {quota.gpus} + borrowing {bl} GPUs exceeds pool "
                        f"{quota.pool!r}'s limit of {limit} GPUs",
                    )
                )
    return found


# Manifest builders (pure: used by the component and by tests) ------------------------------
def resource_flavor(pool: GpuPoolCapacity) -> dict[str, Any]:
    return {
        "apiVersion": KUEUE_API_VERSION,
        "kind": "ResourceFlavor",
        "metadata": {"name": pool.name},
        "spec": {
            "nodeLabels": {POOL_LABEL: pool.name, ACCELERATOR_LABEL: pool.accelerator},
            # Taints, not flavor tolerations: CPU-only pods must never be admitted onto GPU
            # nodes; GPU jobs bring their own toleration (TrainingJob adds it).
            "nodeTaints": [dict(GPU_TAINT)],
        },
    }


def cpu_flavor() -> dict[str, Any]:
    # No node labels: CPU-only pods go wherever the scheduler puts them, never on GPU nodes.
    return {
        "apiVersion": KUEUE_API_VERSION,
        "kind": "ResourceFlavor",
        "metadata": {"name": CPU_FLAVOR},
        "spec": {},
    }


def _resource(name: str, nominal: str | int, borrowing: str | int | None) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "nominalQuota": str(nominal)}
    if borrowing is not None:
        out["borrowingLimit"] = str(borrowing)
    return out


def covered_resources(pools: Sequence[GpuPoolCapacity] = ()) -> list[str]:
    """What the ClusterQueues account for. Kueue admits no workload that requests a resource
    its ClusterQueue does not cover, so EFA is covered as soon as a pool has it."""
    extra = [EFA_RESOURCE] if any(p.efa_per_node for p in pools) else []
    return [*COVERED_RESOURCES, *extra]


def cluster_queue(
    team: TeamQueue, cohort: str, pools: Sequence[GpuPoolCapacity] = ()
) -> dict[str, Any]:
    by_name = {p.name: p for p in pools}
    covered = covered_resources(pools)
    efa = EFA_RESOURCE in covered
    # default-cpu comes first: Kueue tries flavors in order, so CPU-only jobs use CPU quota and
    # GPU jobs (which get no GPU quota there) fall through to their pool's flavor.
    cpu_resources = [
        _resource("cpu", team.cpu, None),
        _resource("memory", team.memory, None),
        _resource(GPU_RESOURCE, 0, 0),
    ]
    if efa:
        cpu_resources.append(_resource(EFA_RESOURCE, 0, 0))
    flavors = [{"name": CPU_FLAVOR, "resources": cpu_resources}]
    for quota in team.quotas:
        bl = quota.borrowing_limit or BorrowingLimit()
        resources = [
            _resource("cpu", quota.cpu_quota(), bl.cpu),
            _resource("memory", quota.memory_quota(), bl.memory),
            _resource(GPU_RESOURCE, quota.gpus, bl.gpus),
        ]
        if efa:
            # An EFA pool's quota carries the EFA devices of its GPUs; elsewhere there are none.
            pool = by_name.get(quota.pool)
            per = pool.efa_for if pool is not None else (lambda _gpus: 0)
            borrow = per(bl.gpus) if bl.gpus is not None else None
            resources.append(_resource(EFA_RESOURCE, per(quota.gpus), borrow))
        flavors.append({"name": quota.pool, "resources": resources})
    return {
        "apiVersion": KUEUE_API_VERSION,
        "kind": "ClusterQueue",
        "metadata": {"name": team.name},
        "spec": {
            "cohortName": cohort,
            "namespaceSelector": {"matchLabels": team_namespace_labels(team.name)},
            "queueingStrategy": "BestEffortFIFO",
            "preemption": {
                "withinClusterQueue": "LowerPriority",
                "reclaimWithinCohort": "Any",
            },
            "fairSharing": {"weight": team.weight},
            "resourceGroups": [{"coveredResources": covered, "flavors": flavors}],
        },
    }


def team_namespace_labels(team: str) -> dict[str, str]:
    """The labels that make a namespace admissible to ``team``'s ClusterQueue (and charge its
    cost to the team: kube-state-metrics exports the label for the cost rules)."""
    return {TEAM_LABEL: team}


def team_contract(team: TeamQueue, pools: Mapping[str, GpuPoolCapacity]) -> dict[str, Any]:
    """What a project needs to run on ``team``'s queue: the platform's ``trainingQueues[team]``.

    ``clusterQueue`` is the team's queue; ``namespaceLabels`` are the labels a namespace must
    carry to be admitted; ``namespaces`` are the platform's namespaces for the team, registered
    projects' included (each with the LocalQueue ``localQueue``, which a project's runs name);
    ``gpuPools`` are the pools the team has quota on (a pool without quota is never admitted),
    with each pool's accelerator and the team's nominal GPUs there.
    """
    return {
        "clusterQueue": team.name,
        "localQueue": team.name,
        "namespaceLabels": team_namespace_labels(team.name),
        "namespaces": list(team.namespaces),
        "gpuPools": {
            q.pool: {"accelerator": pools[q.pool].accelerator, "gpus": q.gpus}
            for q in team.quotas
            if q.pool in pools
        },
    }


def local_queue(team: TeamQueue, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": KUEUE_API_VERSION,
        "kind": "LocalQueue",
        "metadata": {"name": team.name, "namespace": namespace},
        "spec": {"clusterQueue": team.name},
    }


def priority_class(pc: PriorityClass) -> dict[str, Any]:
    out: dict[str, Any] = {
        "apiVersion": KUEUE_API_VERSION,
        "kind": "WorkloadPriorityClass",
        "metadata": {"name": pc.name},
        "value": pc.value,
    }
    if pc.description:
        out["description"] = pc.description
    return out


def kueue_config(args: TrainingQueuesArgs, frameworks: Sequence[str]) -> dict[str, Any]:
    """The controller's Configuration; replaces the chart's default wholesale."""
    config: dict[str, Any] = {
        "apiVersion": KUEUE_CONFIG_API_VERSION,
        "kind": "Configuration",
        # Ports match the chart's Services and probes.
        "health": {"healthProbeBindAddress": ":8081"},
        "metrics": {"bindAddress": ":8443"},
        "webhook": {"port": 9443},
        "leaderElection": {"leaderElect": True, "resourceName": "c1f6bfd2.kueue.x-k8s.io"},
        "clientConnection": {"qps": 50, "burst": 100},
        # Only jobs that name a queue are Kueue's; system jobs keep running unmanaged.
        "manageJobsWithoutQueueName": False,
        "waitForPodsReady": {"timeout": args.pods_ready_timeout, "blockAdmission": False},
        "integrations": {"frameworks": list(dict.fromkeys(frameworks))},
    }
    if args.fair_sharing:
        config["fairSharing"] = {"preemptionStrategies": list(FAIR_SHARING_STRATEGIES)}
    return config


def kueue_values(args: TrainingQueuesArgs, frameworks: Sequence[str]) -> dict[str, Any]:
    return {
        "controllerManager": {
            "replicas": args.controller_replicas,
            "manager": {
                "resources": {
                    "requests": {"cpu": "500m", "memory": "512Mi"},
                    "limits": {"cpu": "2", "memory": "1Gi"},
                },
                "podSecurityContext": {
                    "runAsNonRoot": True,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "containerSecurityContext": {
                    "readOnlyRootFilesystem": True,
                    "allowPrivilegeEscalation": False,
                    "capabilities": {"drop": ["ALL"]},
                },
            },
            "podDisruptionBudget": {
                "enabled": args.controller_replicas > 1,
                "minAvailable": 1,
            },
        },
        "managerConfig": {
            "controllerManagerConfigYaml": yaml.safe_dump(
                kueue_config(args, frameworks), sort_keys=False
            )
        },
        # The chart's ServiceMonitor (https :8443, the scraper's token checked by Kueue's
        # authorization filter; kube-prometheus-stack's Prometheus may GET /metrics). Installing
        # it needs the Prometheus Operator CRDs: pass the monitoring stack in depends_on.
        "enablePrometheus": True,
        "enableKueueViz": False,
    }


class TrainingQueues(pulumi.ComponentResource):
    """Kueue and the flavors, cluster queues and local queues of the platform's teams."""

    namespace: pulumi.Output[str]
    local_queues: pulumi.Output[dict[str, str]]
    teams: pulumi.Output[dict[str, dict[str, Any]]]
    cluster_queues: pulumi.Output[list[str]]
    flavors: pulumi.Output[list[str]]

    def __init__(
        self,
        name: str,
        args: TrainingQueuesArgs,
        *,
        target: KubeTarget,
        pools: Sequence[GpuPoolCapacity] = (),
        frameworks: Sequence[str] = (BATCH_JOB_FRAMEWORK,),
        depends_on: Sequence[pulumi.Resource] = (),
        namespace_resources: Mapping[str, pulumi.Resource] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        args.raise_if_invalid("TrainingQueues")
        pool_issues = check_pool_quotas(args, {p.name: p.gpu_limit for p in pools})
        if pool_issues:
            raise InvalidArgsError("TrainingQueues", pool_issues)
        super().__init__("mlplatform:training:TrainingQueues", name, None, opts)

        base_deps = list(target.depends_on) + list(depends_on)

        def k8s_opts(*deps: Any, **kw: Any) -> pulumi.ResourceOptions:
            return pulumi.ResourceOptions(
                parent=self,
                provider=target.provider,
                depends_on=base_deps + [d for d in deps if d is not None],
                **kw,
            )

        ns = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata={"name": args.namespace, "labels": dict(RESTRICTED_NAMESPACE_LABELS)},
            opts=k8s_opts(),
        )
        if target.network_policy:
            k8s.networking.v1.NetworkPolicy(
                f"{name}-controller-netpol",
                **_body(
                    ports_only_network_policy(
                        "kueue-controller", args.namespace, (WEBHOOK_PORT, METRICS_PORT)
                    )
                ),
                opts=k8s_opts(ns),
            )
        release = k8s.helm.v3.Release(
            f"{name}-kueue",
            name="kueue",
            chart=KUEUE_CHART,
            version=args.chart_version,
            namespace=args.namespace,
            values=kueue_values(args, frameworks),
            # The CRs below need the CRDs and the webhooks: wait for the controller to be ready.
            skip_await=False,
            atomic=True,
            timeout=600,
            opts=k8s_opts(ns),
        )

        def cr(role: str, manifest: dict[str, Any], *deps: Any) -> ManifestResource:
            return ManifestResource(f"{name}-{role}", manifest, opts=k8s_opts(release, *deps))

        flavor_names = [CPU_FLAVOR]
        cr("flavor-default-cpu", cpu_flavor())
        for pool in pools:
            cr(f"flavor-{pool.name}", resource_flavor(pool))
            flavor_names.append(pool.name)
        for pc in args.priority_classes:
            cr(f"priority-{pc.name}", priority_class(pc))

        namespaces: dict[str, Any] = dict(namespace_resources or {})
        local: dict[str, str] = {}
        for team in args.teams:
            cq = cr(f"cq-{team.name}", cluster_queue(team, args.cohort, pools))
            for ns_name in team.namespaces:
                if ns_name not in namespaces and args.create_namespaces:
                    labels = {**RESTRICTED_NAMESPACE_LABELS, TEAM_LABEL: team.name}
                    namespaces[ns_name] = k8s.core.v1.Namespace(
                        f"{name}-ns-{ns_name}",
                        metadata={"name": ns_name, "labels": labels},
                        opts=k8s_opts(),
                    )
                cr(
                    f"lq-{team.name}-{ns_name}",
                    local_queue(team, ns_name),
                    cq,
                    namespaces.get(ns_name),
                )
            local[team.name] = team.name

        self.namespace = pulumi.Output.from_input(args.namespace)
        self.local_queues = pulumi.Output.from_input(local)
        by_name = {p.name: p for p in pools}
        self.teams = pulumi.Output.from_input(
            {t.name: team_contract(t, by_name) for t in args.teams}
        )
        self.cluster_queues = pulumi.Output.from_input([t.name for t in args.teams])
        self.flavors = pulumi.Output.from_input(flavor_names)
        self.release = release
        self.register_outputs(
            {
                "namespace": self.namespace,
                "localQueues": self.local_queues,
                "teams": self.teams,
                "clusterQueues": self.cluster_queues,
                "flavors": self.flavors,
            }
        )


class ManifestResource(k8s.apiextensions.CustomResource):
    """A CustomResource declared from a whole manifest.

    ``CustomResource`` only carries ``spec``; some Kueue kinds (``WorkloadPriorityClass``) have
    other top-level fields, so this sends every top-level field of the manifest as it is.
    """

    def __init__(
        self, resource_name: str, manifest: dict[str, Any], opts: pulumi.ResourceOptions
    ) -> None:
        opts = pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(version=k8s_utilities.get_version())
        )
        props = {k: v for k, v in manifest.items() if k != "status"}
        pulumi.CustomResource.__init__(
            self,
            f"kubernetes:{manifest['apiVersion']}:{manifest['kind']}",
            resource_name,
            props,
            opts,
        )


def _body(manifest: dict[str, Any]) -> dict[str, Any]:
    """A manifest as keyword arguments for a typed pulumi_kubernetes resource."""
    return {k: v for k, v in manifest.items() if k not in ("apiVersion", "kind")}
