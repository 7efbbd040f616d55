"""Dev and prod compute stacks, built from the same args the stack config carries."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from components.gpu_node_pool import GpuNodePool, GpuNodePoolArgs
from components.gpu_software import GpuSoftware, GpuSoftwareArgs
from components.karpenter import Karpenter, KarpenterArgs
from components.network import Network, NetworkArgs
from components.training_cluster import TrainingCluster, TrainingClusterArgs

DEV: dict[str, Any] = {
    "network": {"environment": "dev", "azCount": 2, "nat": "single-gateway"},
    "cluster": {
        "environment": "dev",
        "clusterName": "mlp-dev",
        "publicEndpoint": True,
        "publicAccessCidrs": ["198.51.100.0/24"],
        "adminRoleArns": ["arn:aws:iam::123456789012:role/platform-admin"],
        "systemNodes": {"minSize": 1, "desiredSize": 1, "maxSize": 2},
    },
    "karpenter": {"environment": "dev"},
    "gpuPools": [
        {
            "name": "a10g-spot",
            "accelerator": "nvidia-a10g",
            "maxGpus": 4,
            "capacityTypes": ["spot"],
            "timeSlicingReplicas": 4,
        }
    ],
    "gpuSoftware": {"mode": "device-plugin"},
}

PROD: dict[str, Any] = {
    "network": {
        "environment": "prod",
        "azCount": 3,
        "nat": "gateway-per-az",
        "interfaceEndpoints": ["ecr.api", "ecr.dkr", "sts"],
    },
    "cluster": {
        "environment": "prod",
        "clusterName": "mlp-prod",
        "publicEndpoint": False,
        "adminRoleArns": [
            "arn:aws:iam::123456789012:role/platform-admin",
            "arn:aws:iam::123456789012:role/break-glass",
        ],
        "logRetentionDays": 365,
        "systemNodes": {"minSize": 2, "desiredSize": 2, "maxSize": 3},
    },
    "karpenter": {"environment": "prod"},
    "gpuPools": [
        {
            "name": "h100-train",
            "accelerator": "nvidia-h100",
            "maxGpus": 32,
            "capacityTypes": ["on-demand"],
            "reservations": {"select": [{"id": "cr-0123456789abcdef0"}]},
            "efa": True,
        },
        {"name": "l4-spot", "accelerator": "nvidia-l4", "maxGpus": 8, "capacityTypes": ["spot"]},
    ],
    "gpuSoftware": {"mode": "gpu-operator"},
}


def program(cfg: dict[str, Any], out: dict[str, Any] | None = None) -> Callable[[], None]:
    """A program that builds the compute layer; ``out`` receives the component objects."""

    def fn() -> None:
        cluster_args = TrainingClusterArgs.model_validate(cfg["cluster"])
        name = cluster_args.cluster_name or "mlp"
        network = Network("net", NetworkArgs.model_validate(cfg["network"]), cluster_name=name)
        cluster = TrainingCluster("mlp", cluster_args, network=network)
        karpenter = Karpenter(
            "karpenter",
            KarpenterArgs.model_validate(cfg["karpenter"]),
            target=cluster.target,
            cluster_name=cluster.name,
        )
        pools_args = [GpuNodePoolArgs.model_validate(p) for p in cfg["gpuPools"]]
        pools = [GpuNodePool(f"pool-{p.name}", p, karpenter=karpenter) for p in pools_args]
        software = GpuSoftware(
            "gpu",
            GpuSoftwareArgs.model_validate(cfg["gpuSoftware"]),
            target=cluster.target,
            pools=pools_args,
        )
        if out is not None:
            out.update(
                network=network,
                cluster=cluster,
                karpenter=karpenter,
                pools=pools,
                software=software,
            )

    return fn
