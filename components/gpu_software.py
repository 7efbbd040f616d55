"""GpuSoftware: what makes a GPU node's GPUs schedulable as `nvidia.com/gpu`.

The AL2023 NVIDIA AMI (which Karpenter's al2023 alias picks for GPU instances) ships the driver
and the container toolkit, so only the device plugin is needed. Two modes:

- `device-plugin`: NVIDIA's device plugin chart alone. Its chart-default node affinity waits for
  Node Feature Discovery labels that nothing here sets, the usual reason GPU nodes never show
  GPUs; we select nodes by Karpenter's `instance-gpu-manufacturer` label and our accelerator
  label instead, and tolerate the GPU taint.
- `gpu-operator`: the GPU Operator with its driver and toolkit off (the AMI has them), for
  MIG and GPU feature discovery. Its DCGM exporter stays off: MonitoringStack runs the one DCGM
  exporter per GPU node, in both modes.

Pools that ask for time-slicing get a named device-plugin config, picked per node by the
`nvidia.com/device-plugin.config` label the pool sets.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import yaml
from pydantic import Field

from components.common import (
    ACCELERATOR_LABEL,
    GPU_RESOURCE,
    GPU_TOLERATION,
    ArgsModel,
    Issue,
    KubeTarget,
)
from components.gpu_node_pool import EFA_LABEL, GpuNodePoolArgs

DEVICE_PLUGIN_REPO = "https://nvidia.github.io/k8s-device-plugin"
GPU_OPERATOR_REPO = "https://helm.ngc.nvidia.com/nvidia"
EKS_CHARTS_REPO = "https://aws.github.io/eks-charts"
DEFAULT_CONFIG = "default"
TIME_SLICING_CONFIGMAP = "device-plugin-config"
GPU_NODE_AFFINITY = {
    "nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {
            # Terms are ORed: a node from a GpuNodePool, or any node Karpenter knows has NVIDIA GPUs.
            "nodeSelectorTerms": [
                {"matchExpressions": [{"key": ACCELERATOR_LABEL, "operator": "Exists"}]},
                {
                    "matchExpressions": [
                        {
                            "key": "karpenter.k8s.aws/instance-gpu-manufacturer",
                            "operator": "In",
                            "values": ["nvidia"],
                        }
                    ]
                },
            ]
        }
    }
}
CRITICAL_TOLERATION = {"key": "CriticalAddonsOnly", "operator": "Exists"}


class GpuSoftwareMode(StrEnum):
    DEVICE_PLUGIN = "device-plugin"
    GPU_OPERATOR = "gpu-operator"


# Chart versions, each the newest release in its chart repository's index.yaml, checked 2026-11:
# - nvidia-device-plugin 0.20.0: NVIDIA/k8s-device-plugin gh-pages index.yaml, tag v0.20.0;
# - gpu-operator v26.7.0: NVIDIA/gpu-operator gh-pages stable/index.yaml, tag v26.7.0;
# - aws-efa-k8s-device-plugin v0.5.30 (app v0.5.20): aws/eks-charts gh-pages index.yaml.
DEVICE_PLUGIN_CHART_VERSION = "0.20.0"
GPU_OPERATOR_CHART_VERSION = "v26.7.0"
EFA_DEVICE_PLUGIN_CHART_VERSION = "v0.5.30"


class GpuSoftwareArgs(ArgsModel):
    mode: GpuSoftwareMode = GpuSoftwareMode.DEVICE_PLUGIN
    device_plugin_chart_version: str = Field(
        default=DEVICE_PLUGIN_CHART_VERSION, pattern=r"^\d+\.\d+\.\d+$"
    )
    gpu_operator_chart_version: str = Field(
        default=GPU_OPERATOR_CHART_VERSION, pattern=r"^v\d+\.\d+\.\d+$"
    )
    efa_device_plugin_chart_version: str = Field(
        default=EFA_DEVICE_PLUGIN_CHART_VERSION, pattern=r"^v\d+\.\d+\.\d+$"
    )
    # Installed only when a pool sets efa: true.
    efa_device_plugin: bool = True
    # The GPU Operator's own driver and toolkit, for AMIs without them (not the AL2023 NVIDIA AMI).
    operator_driver: bool = False
    namespace: str = "gpu-operator"

    def issues(self) -> list[Issue]:
        found = super().issues()
        if self.operator_driver and self.mode is not GpuSoftwareMode.GPU_OPERATOR:
            found.append(Issue(("operatorDriver",), "only applies with mode 'gpu-operator'"))
        return found


def plugin_configs(pools: Sequence[GpuNodePoolArgs]) -> dict[str, str]:
    """Named device-plugin configs: a plain default, plus one per time-sliced pool."""
    configs: dict[str, Any] = {DEFAULT_CONFIG: {"version": "v1"}}
    for pool in pools:
        if pool.time_slicing_replicas:
            configs[pool.name] = {
                "version": "v1",
                "sharing": {
                    "timeSlicing": {
                        # Keep the resource name: pods keep asking for nvidia.com/gpu.
                        "renameByDefault": False,
                        "failRequestsGreaterThanOne": True,
                        "resources": [
                            {"name": GPU_RESOURCE, "replicas": pool.time_slicing_replicas}
                        ],
                    }
                },
            }
    return {k: yaml.safe_dump(v, sort_keys=False) for k, v in configs.items()}


def device_plugin_values(pools: Sequence[GpuNodePoolArgs]) -> dict[str, Any]:
    values: dict[str, Any] = {
        "tolerations": [dict(GPU_TOLERATION), dict(CRITICAL_TOLERATION)],
        "affinity": GPU_NODE_AFFINITY,
        "priorityClassName": "system-node-critical",
        "resources": {
            "requests": {"cpu": "50m", "memory": "64Mi"},
            "limits": {"cpu": "200m", "memory": "256Mi"},
        },
        "gfd": {"enabled": False},
        "nfd": {"enabled": False},
    }
    configs = plugin_configs(pools)
    if len(configs) > 1:
        values["config"] = {"map": configs, "default": DEFAULT_CONFIG}
    return values


def gpu_operator_values(args: GpuSoftwareArgs, time_slicing: bool) -> dict[str, Any]:
    tolerations = [dict(GPU_TOLERATION), dict(CRITICAL_TOLERATION)]
    device_plugin: dict[str, Any] = {"enabled": True}
    if time_slicing:
        device_plugin["config"] = {"name": TIME_SLICING_CONFIGMAP, "default": DEFAULT_CONFIG}
    return {
        "driver": {"enabled": args.operator_driver},
        "toolkit": {"enabled": args.operator_driver},
        "devicePlugin": device_plugin,
        # GPU metrics come from MonitoringStack's DCGM exporter, in both modes: one exporter per
        # GPU node, with the platform's field list and its ServiceMonitor. A second one here
        # would double every DCGM series (and every alert on them).
        "dcgmExporter": {"enabled": False},
        "dcgm": {"enabled": False},
        "migManager": {"enabled": False},
        "daemonsets": {"tolerations": tolerations, "priorityClassName": "system-node-critical"},
        "node-feature-discovery": {"worker": {"tolerations": tolerations}},
        "operator": {
            # The operator itself belongs on system nodes, not on (costly) GPU nodes.
            "nodeSelector": {"mlplatform.io/role": "system"},
            "resources": {
                "requests": {"cpu": "100m", "memory": "128Mi"},
                "limits": {"cpu": "500m", "memory": "512Mi"},
            },
        },
    }


class GpuSoftware(pulumi.ComponentResource):
    releases: list[k8s.helm.v3.Release]

    def __init__(
        self,
        name: str,
        args: GpuSoftwareArgs,
        *,
        target: KubeTarget,
        pools: Sequence[GpuNodePoolArgs],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        args.raise_if_invalid("GpuSoftware")
        super().__init__("mlplatform:compute:GpuSoftware", name, None, opts)
        deps = list(target.depends_on)

        def k8s_opts(*extra: pulumi.Resource) -> pulumi.ResourceOptions:
            return pulumi.ResourceOptions(
                parent=self, provider=target.provider, depends_on=[*deps, *extra]
            )

        self.releases = []
        time_slicing = any(p.time_slicing_replicas for p in pools)
        if args.mode is GpuSoftwareMode.DEVICE_PLUGIN:
            self.releases.append(
                k8s.helm.v3.Release(
                    f"{name}-device-plugin",
                    name="nvidia-device-plugin",
                    chart="nvidia-device-plugin",
                    version=args.device_plugin_chart_version,
                    repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=DEVICE_PLUGIN_REPO),
                    namespace="kube-system",
                    values=device_plugin_values(pools),
                    max_history=5,
                    opts=k8s_opts(),
                )
            )
        else:
            # The operator's validator and toolkit pods need host access: the namespace cannot
            # enforce "restricted". Nothing else runs in it.
            ns = k8s.core.v1.Namespace(
                f"{name}-ns",
                metadata={
                    "name": args.namespace,
                    "labels": {
                        "pod-security.kubernetes.io/enforce": "privileged",
                        "pod-security.kubernetes.io/warn": "baseline",
                        "pod-security.kubernetes.io/audit": "baseline",
                    },
                },
                opts=k8s_opts(),
            )
            extra: list[pulumi.Resource] = [ns]
            if time_slicing:
                extra.append(
                    k8s.core.v1.ConfigMap(
                        f"{name}-plugin-config",
                        metadata={"name": TIME_SLICING_CONFIGMAP, "namespace": args.namespace},
                        data=plugin_configs(pools),
                        opts=k8s_opts(ns),
                    )
                )
            self.releases.append(
                k8s.helm.v3.Release(
                    f"{name}-gpu-operator",
                    name="gpu-operator",
                    chart="gpu-operator",
                    version=args.gpu_operator_chart_version,
                    repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=GPU_OPERATOR_REPO),
                    namespace=args.namespace,
                    values=gpu_operator_values(args, time_slicing),
                    max_history=5,
                    opts=k8s_opts(*extra),
                )
            )
        if args.efa_device_plugin and any(p.efa for p in pools):
            self.releases.append(
                k8s.helm.v3.Release(
                    f"{name}-efa-device-plugin",
                    name="aws-efa-k8s-device-plugin",
                    chart="aws-efa-k8s-device-plugin",
                    version=args.efa_device_plugin_chart_version,
                    repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=EKS_CHARTS_REPO),
                    namespace="kube-system",
                    values={
                        "tolerations": [dict(GPU_TOLERATION), dict(CRITICAL_TOLERATION)],
                        "nodeSelector": {EFA_LABEL: "true"},
                    },
                    max_history=5,
                    opts=k8s_opts(),
                )
            )
        self.register_outputs({"mode": args.mode.value})
