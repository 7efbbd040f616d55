"""GpuNodePool: one Karpenter NodePool (and its EC2NodeClass) per GPU pool in config.

A pool costs nothing while idle: it has no minimum, and an empty node is removed after
`consolidateAfter`. It never evicts running training: consolidation only removes empty nodes,
drift replacement is blocked by a zero budget, and nodes do not expire by default. Jobs should
still carry the `karpenter.sh/do-not-disrupt: "true"` pod annotation (components.common.
DO_NOT_DISRUPT), which also protects them from voluntary disruption when a pool's policy is
loosened. Spot interruptions cannot be prevented, only announced: checkpoint.

Broken nodes are the exception. With Karpenter's node repair on (KarpenterArgs.node_repair), a
node whose GPU, kernel, network or storage conditions stay bad is replaced even under running
jobs, one node per pool at a time (the ``Unhealthy`` budget), after a bounded drain: a GPU with a
fatal XID is not going to finish the job. ``karpenter.sh/do-not-repair: "true"`` on a node keeps
repair away from it (while someone debugs it, say).

Reserved capacity (ODCRs, Capacity Blocks) is in components.gpu_capacity; the volume, image cache
and SOCI parallel pull in components.node_class; a working-hours warm pool in
components.warm_pool.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import pulumi
from pydantic import Field

from components.common import (
    ACCELERATOR_LABEL,
    GPU_RESOURCE,
    GPU_TAINT,
    POOL_LABEL,
    ArgsModel,
    Issue,
    check_min_max,
)
from components.gpu_capacity import ReservationPriority, ReservedCapacityArgs
from components.karpenter import DURATION, GENERAL_POOL, CapacityType, Karpenter
from components.node_class import ImagePull, NodeStorageArgs, image_pull_issues
from components.warm_pool import WarmPoolArgs

EFA_LABEL = "mlplatform.io/efa"
TIME_SLICING_LABEL = "nvidia.com/device-plugin.config"


class Accelerator(StrEnum):
    NVIDIA_T4 = "nvidia-t4"
    NVIDIA_A10G = "nvidia-a10g"
    NVIDIA_L4 = "nvidia-l4"
    NVIDIA_L40S = "nvidia-l40s"
    NVIDIA_A100 = "nvidia-a100"
    NVIDIA_H100 = "nvidia-h100"


@dataclass(frozen=True)
class AcceleratorPreset:
    family: str
    gpu_memory_gib: int
    sizes: dict[str, int]  # instance size -> GPUs per node
    # Size -> EFA interfaces it takes (EC2 DescribeInstanceTypes NetworkInfo.EfaInfo.
    # MaximumEfaInterfaces): the `vpc.amazonaws.com/efa` devices a node advertises.
    efa_interfaces: dict[str, int] = field(default_factory=dict)

    @property
    def max_gpus_per_node(self) -> int:
        return max(self.sizes.values())

    @property
    def efa_sizes(self) -> frozenset[str]:
        return frozenset(self.efa_interfaces)

    @property
    def efa(self) -> bool:
        return bool(self.efa_sizes)


_G_SIZES = {
    "xlarge": 1, "2xlarge": 1, "4xlarge": 1, "8xlarge": 1, "16xlarge": 1,
    "12xlarge": 4, "24xlarge": 4, "48xlarge": 8,
}  # fmt: skip

PRESETS: dict[Accelerator, AcceleratorPreset] = {
    Accelerator.NVIDIA_T4: AcceleratorPreset(
        "g4dn",
        16,
        {
            "xlarge": 1,
            "2xlarge": 1,
            "4xlarge": 1,
            "8xlarge": 1,
            "16xlarge": 1,
            "12xlarge": 4,
            "metal": 8,
        },
    ),
    Accelerator.NVIDIA_A10G: AcceleratorPreset("g5", 24, dict(_G_SIZES)),
    Accelerator.NVIDIA_L4: AcceleratorPreset("g6", 24, dict(_G_SIZES)),
    Accelerator.NVIDIA_L40S: AcceleratorPreset("g6e", 48, dict(_G_SIZES)),
    Accelerator.NVIDIA_A100: AcceleratorPreset(
        "p4d", 40, {"24xlarge": 8}, efa_interfaces={"24xlarge": 4}
    ),
    Accelerator.NVIDIA_H100: AcceleratorPreset(
        "p5", 80, {"48xlarge": 8}, efa_interfaces={"48xlarge": 32}
    ),
}


class GpuNodePoolArgs(ArgsModel):
    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]{0,40}[a-z0-9])?$")
    accelerator: Accelerator
    # Pool-wide hard limit on GPUs: Karpenter launches no node that would cross it.
    max_gpus: int = Field(ge=1)
    min_gpus_per_node: int = 1
    max_gpus_per_node: int | None = None  # None: the family's largest node
    sizes: list[str] | None = None  # e.g. ["xlarge", "2xlarge"]; None: every size in range
    # Where nodes come from when no reservation has room (or always, without reservations).
    capacity_types: list[CapacityType] = Field(
        default_factory=lambda: [CapacityType.ON_DEMAND], min_length=1
    )
    # ODCRs and Capacity Blocks used before capacityTypes (priority first), or alone (only).
    reservations: ReservedCapacityArgs | None = None
    efa: bool = False
    time_slicing_replicas: int | None = None
    consolidate_after: str = Field(default="10m", pattern=DURATION)
    # Never by default: expiry replaces nodes even under running jobs.
    expire_after: str = Field(default="Never", pattern=DURATION)
    storage: NodeStorageArgs = Field(default_factory=lambda: NodeStorageArgs())
    image_pull: ImagePull = ImagePull.SOCI_PARALLEL
    warm_pool: WarmPoolArgs | None = None
    weight: int | None = Field(default=None, ge=1, le=100)
    labels: dict[str, str] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)

    @property
    def preset(self) -> AcceleratorPreset:
        return PRESETS[self.accelerator]

    @property
    def effective_max_gpus_per_node(self) -> int:
        return self.max_gpus_per_node or self.preset.max_gpus_per_node

    def instance_types(self) -> list[str]:
        """Instance types this pool may launch, smallest first."""
        preset = self.preset
        # A node larger than the pool's whole GPU limit could never launch.
        low, high = self.min_gpus_per_node, min(self.effective_max_gpus_per_node, self.max_gpus)
        wanted = self.sizes or list(preset.sizes)
        chosen = [
            s
            for s in wanted
            if s in preset.sizes
            and low <= preset.sizes[s] <= high
            and (not self.efa or s in preset.efa_sizes)
        ]
        return [f"{preset.family}.{s}" for s in chosen]

    def efa_node(self) -> tuple[int, int]:
        """(GPUs, EFA interfaces) of this pool's nodes; (0, 0) without EFA. EFA pools launch
        one size per family (the only one with EFA), so every node is alike."""
        if not self.efa:
            return 0, 0
        preset = self.preset
        size = min(
            (t.split(".", 1)[1] for t in self.instance_types()),
            key=lambda s: preset.sizes[s],
            default=None,
        )
        if size is None:
            return 0, 0
        return preset.sizes[size], preset.efa_interfaces[size]

    @property
    def effective_capacity_types(self) -> list[str]:
        """The NodePool's karpenter.sh/capacity-type values: reserved first when it has any."""
        if self.reservations is None:
            return [c.value for c in self.capacity_types]
        if self.reservations.priority is ReservationPriority.ONLY:
            return [CapacityType.RESERVED.value]
        return [CapacityType.RESERVED.value, *(c.value for c in self.capacity_types)]

    @property
    def reserved_only(self) -> bool:
        return (
            self.reservations is not None and self.reservations.priority is ReservationPriority.ONLY
        )

    def _block_pool_issues(self, res: ReservedCapacityArgs) -> list[Issue]:
        """A pool with capacity blocks runs on them alone: every node is a block node, reached
        through the blocks' own Kueue queues, whose run-time check keeps jobs inside a block."""
        if CapacityType.SPOT in self.capacity_types:
            return [
                Issue(
                    ("reservations", "blocks"),
                    "a capacity block on a spot pool: block-sized jobs would land on "
                    "interruptible nodes whenever the block is full or over; a block pool uses "
                    "its blocks only (reservations.priority 'only', no capacityTypes)",
                )
            ]
        found = []
        if res.priority is not ReservationPriority.ONLY:
            found.append(
                Issue(
                    ("reservations", "priority"),
                    "must be 'only' on a pool with blocks: a pool that also launches on-demand "
                    "nodes would mix them with block nodes, and jobs admitted for one could be "
                    "placed on the other without the block's run-time check",
                )
            )
        if res.select:
            found.append(
                Issue(
                    ("reservations", "select"),
                    "a pool with blocks takes no other reservations; give the ODCRs a pool "
                    "of their own",
                )
            )
        return found

    def _reservation_issues(self) -> list[Issue]:
        found: list[Issue] = []
        if CapacityType.RESERVED in self.capacity_types:
            found.append(
                Issue(
                    ("capacityTypes",),
                    "list only spot and on-demand here; reserved capacity comes from "
                    "reservations (priority 'first' puts it before these, 'only' uses nothing "
                    "else)",
                )
            )
        res = self.reservations
        if res is None:
            return found
        if res.priority is ReservationPriority.ONLY and "capacity_types" in self.model_fields_set:
            found.append(
                Issue(
                    ("capacityTypes",),
                    "has no effect with reservations.priority 'only' (nothing but the "
                    "reservations is used); remove it or use priority 'first'",
                )
            )
        types = self.instance_types()
        if res.blocks:
            found += self._block_pool_issues(res)
        for i, block in enumerate(res.blocks):
            if types and block.instance_type not in types:
                found.append(
                    Issue(
                        ("reservations", "blocks", i, "instanceType"),
                        f"the pool launches {types}, got {block.instance_type!r}",
                    )
                )
        return found

    @property
    def warm_pool_gpus(self) -> int:
        """GPUs each warm-pool placeholder holds (one placeholder per node)."""
        if self.warm_pool is None:
            return 0
        return self.warm_pool.gpus_per_node or self.min_gpus_per_node

    def _warm_pool_issues(self) -> list[Issue]:
        warm = self.warm_pool
        if warm is None:
            return []
        found: list[Issue] = []
        gpus = self.warm_pool_gpus
        high = min(self.effective_max_gpus_per_node, self.preset.max_gpus_per_node)
        if warm.gpus_per_node is not None and not self.min_gpus_per_node <= gpus <= high:
            found.append(
                Issue(
                    ("warmPool", "gpusPerNode"),
                    f"must fit one node of the pool ({self.min_gpus_per_node} to {high} GPUs), "
                    f"got {gpus}",
                )
            )
        if warm.nodes * gpus > self.max_gpus:
            found.append(
                Issue(
                    ("warmPool", "nodes"),
                    f"{warm.nodes} warm nodes x {gpus} GPUs exceeds the pool's maxGpus "
                    f"({self.max_gpus}): Karpenter would never start them all",
                )
            )
        return found

    def issues(self) -> list[Issue]:
        found = super().issues()
        preset = self.preset
        label = f"{self.accelerator.value} ({preset.family})"
        found += check_min_max(
            "minGpusPerNode", self.min_gpus_per_node, "maxGpusPerNode", self.max_gpus_per_node
        )
        if self.min_gpus_per_node < 1:
            found.append(Issue(("minGpusPerNode",), f"must be >= 1, got {self.min_gpus_per_node}"))
        for key, value in (
            ("minGpusPerNode", self.min_gpus_per_node),
            ("maxGpusPerNode", self.max_gpus_per_node),
        ):
            if value is not None and value > preset.max_gpus_per_node:
                found.append(
                    Issue(
                        (key,),
                        f"{label} nodes have at most {preset.max_gpus_per_node} GPUs, got {value}",
                    )
                )
        if self.max_gpus < self.min_gpus_per_node:
            found.append(
                Issue(
                    ("maxGpus",),
                    f"must be >= minGpusPerNode ({self.min_gpus_per_node}) or no node fits, "
                    f"got {self.max_gpus}",
                )
            )
        if self.sizes is not None:
            for i, size in enumerate(self.sizes):
                if size not in preset.sizes:
                    found.append(
                        Issue(("sizes", i), f"{label} has sizes {list(preset.sizes)}, got {size!r}")
                    )
        if self.efa and not preset.efa:
            efa_ok = [a.value for a, p in PRESETS.items() if p.efa]
            found.append(Issue(("efa",), f"{label} has no EFA; accelerators with EFA: {efa_ok}"))
        if not found and not self.instance_types():
            found.append(
                Issue(
                    ("sizes",),
                    f"no {label} size has {self.min_gpus_per_node}-"
                    f"{self.effective_max_gpus_per_node} GPUs"
                    + (" and EFA" if self.efa else "")
                    + f"; sizes and GPUs: {preset.sizes}",
                )
            )
        found += self._reservation_issues()
        if self.time_slicing_replicas is not None:
            if not 2 <= self.time_slicing_replicas <= 16:
                found.append(
                    Issue(
                        ("timeSlicingReplicas",),
                        f"must be 2 to 16, got {self.time_slicing_replicas}",
                    )
                )
            if self.efa:
                found.append(
                    Issue(
                        ("timeSlicingReplicas",),
                        "time-slicing shares GPUs between pods; it makes no sense on an EFA "
                        "training pool",
                    )
                )
        found += self._warm_pool_issues()
        if self.name == GENERAL_POOL:
            found.append(Issue(("name",), f"{GENERAL_POOL!r} is the CPU pool's name"))
        for key in self.labels:
            if key in (POOL_LABEL, ACCELERATOR_LABEL, EFA_LABEL, TIME_SLICING_LABEL) or (
                key.startswith(("karpenter.sh/", "karpenter.k8s.aws/", "kubernetes.io/"))
            ):
                found.append(Issue(("labels", key), "is reserved; set by the platform"))
        return found


def node_pool_spec(args: GpuNodePoolArgs) -> dict[str, Any]:
    """The NodePool spec (without nodeClassRef, which Karpenter.node_pool adds)."""
    preset = args.preset
    labels = {
        **args.labels,
        POOL_LABEL: args.name,
        ACCELERATOR_LABEL: args.accelerator.value,
    }
    if args.efa:
        labels[EFA_LABEL] = "true"
    if args.time_slicing_replicas:
        # The device plugin picks its per-pool config by this label (see GpuSoftware).
        labels[TIME_SLICING_LABEL] = args.name
    requirements = [
        {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]},
        {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]},
        {
            "key": "karpenter.sh/capacity-type",
            "operator": "In",
            "values": args.effective_capacity_types,
        },
        {"key": "karpenter.k8s.aws/instance-family", "operator": "In", "values": [preset.family]},
        {
            "key": "node.kubernetes.io/instance-type",
            "operator": "In",
            "values": args.instance_types(),
        },
    ]
    return {
        "template": {
            "metadata": {"labels": labels},
            "spec": {
                "requirements": requirements,
                "taints": [dict(GPU_TAINT)],
                "expireAfter": args.expire_after,
            },
        },
        "disruption": {
            # Only empty nodes are removed; a node with a running pod is never consolidated.
            "consolidationPolicy": "WhenEmpty",
            "consolidateAfter": args.consolidate_after,
            "budgets": [
                # Drift (a new AMI or node class) waits for nodes to empty, never evicts.
                {"nodes": "0", "reasons": ["Drifted", "Underutilized"]},
                {"nodes": "100%", "reasons": ["Empty"]},
                # Node repair: one broken node per pool at a time (Karpenter also stops
                # repairing a pool with more than 20% of its nodes unhealthy).
                {"nodes": "1", "reasons": ["Unhealthy"]},
            ],
        },
        # No cpu/memory floor exists on a NodePool: with no pods, it scales to zero nodes.
        "limits": {GPU_RESOURCE: str(args.max_gpus)},
        **({"weight": args.weight} if args.weight else {}),
    }


class GpuNodePool(pulumi.ComponentResource):
    """A GPU NodePool and its EC2NodeClass, created after (and deleted before) Karpenter."""

    pool_name: str
    accelerator: Accelerator

    def __init__(
        self,
        name: str,
        args: GpuNodePoolArgs,
        *,
        karpenter: Karpenter,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        args.raise_if_invalid("GpuNodePool")
        super().__init__("mlplatform:compute:GpuNodePool", name, None, opts)
        self.args = args
        self.pool_name = args.name
        self.accelerator = args.accelerator
        class_name = f"gpu-{args.name}"
        self.node_class = karpenter.node_class(
            f"{name}-nodeclass",
            class_name,
            # The image and model cache: CUDA images run to tens of GB.
            storage=args.storage,
            image_pull=args.image_pull,
            tags={**args.tags, POOL_LABEL: args.name, ACCELERATOR_LABEL: args.accelerator.value},
            capacity_reservation_terms=args.reservations.terms() if args.reservations else None,
            parent=self,
        )
        self.node_pool = karpenter.node_pool(
            f"{name}-nodepool",
            args.name,
            node_class=class_name,
            node_class_resource=self.node_class,
            spec=node_pool_spec(args),
            parent=self,
        )
        self.register_outputs({"poolName": args.name, "accelerator": args.accelerator.value})


def pool_list_issues(pools: list[GpuNodePoolArgs], ami_alias: str | None = None) -> list[Issue]:
    """Checks across pools (NodePool names are cluster-wide): call on the config's pool list.

    ``ami_alias`` (Karpenter's node image) decides whether a pool's imagePull is available."""
    found: list[Issue] = []
    seen: dict[str, int] = {}
    blocks: dict[str, int] = {}
    for i, pool in enumerate(pools):
        if pool.name in seen:
            found.append(Issue((i, "name"), f"duplicates pool {seen[pool.name]} ({pool.name!r})"))
        seen.setdefault(pool.name, i)
        found += [issue.at(i) for issue in pool.issues()]
        if ami_alias is not None:
            found += [issue.at(i) for issue in image_pull_issues(pool.image_pull, ami_alias)]
        for j, block in enumerate(pool.reservations.blocks if pool.reservations else []):
            if block.id in blocks and blocks[block.id] != i:
                found.append(
                    Issue(
                        (i, "reservations", "blocks", j, "id"),
                        f"{block.id} is already a block of pool {blocks[block.id]}: one block "
                        "feeds one pool (and one Kueue queue)",
                    )
                )
            blocks.setdefault(block.id, i)
    return found
