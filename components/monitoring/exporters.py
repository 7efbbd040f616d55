"""The DCGM exporter: which GPU fields it exports, and how it runs on GPU nodes."""

from __future__ import annotations

from typing import Any

from components.common import (
    ACCELERATOR_LABEL,
    GPU_TOLERATION,
)
from components.monitoring.args import DcgmExporterArgs

DCGM_CHART = "dcgm-exporter"
DCGM_VERSION = "4.7.1"
DCGM_REPO = "https://nvidia.github.io/dcgm-exporter/helm-charts"
DCGM_RELEASE = "dcgm-exporter"

# DCGM fields exported: everything the rules and dashboards use, and nothing that needs the
# profiling module (which would need CAP_SYS_ADMIN). (field, type, help)
DCGM_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("DCGM_FI_DEV_SM_CLOCK", "gauge", "SM clock frequency (in MHz)."),
    ("DCGM_FI_DEV_MEM_CLOCK", "gauge", "Memory clock frequency (in MHz)."),
    ("DCGM_FI_DEV_GPU_TEMP", "gauge", "GPU temperature (in C)."),
    ("DCGM_FI_DEV_MEMORY_TEMP", "gauge", "Memory temperature (in C)."),
    ("DCGM_FI_DEV_POWER_USAGE", "gauge", "Power draw (in W)."),
    ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "counter", "Energy since boot (in mJ)."),
    ("DCGM_FI_DEV_GPU_UTIL", "gauge", "GPU utilization (in %)."),
    ("DCGM_FI_DEV_MEM_COPY_UTIL", "gauge", "Memory utilization (in %)."),
    ("DCGM_FI_DEV_FB_FREE", "gauge", "Framebuffer memory free (in MiB)."),
    ("DCGM_FI_DEV_FB_USED", "gauge", "Framebuffer memory used (in MiB)."),
    ("DCGM_FI_DEV_XID_ERRORS", "gauge", "Value of the last XID error encountered."),
    ("DCGM_FI_DEV_POWER_VIOLATION", "counter", "Throttling due to power constraints (in us)."),
    ("DCGM_FI_DEV_THERMAL_VIOLATION", "counter", "Throttling due to thermal constraints (in us)."),
    ("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", "counter", "Total number of PCIe retries."),
    (
        "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS",
        "counter",
        "Rows remapped for uncorrectable errors.",
    ),
    ("DCGM_FI_DEV_ROW_REMAP_FAILURE", "gauge", "Whether remapping of rows has failed."),
)
DCGM_PROFILING_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("DCGM_FI_PROF_GR_ENGINE_ACTIVE", "gauge", "Ratio of time the graphics engine is active."),
    ("DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", "gauge", "Ratio of cycles the tensor pipe is active."),
    ("DCGM_FI_PROF_DRAM_ACTIVE", "gauge", "Ratio of cycles device memory is active."),
)


# Default on-demand list prices per GPU-hour in us-east-1 (instance price / GPUs per instance),
def dcgm_metrics_csv(profiling: bool) -> str:
    fields = DCGM_FIELDS + (DCGM_PROFILING_FIELDS if profiling else ())
    lines = ["# DCGM FIELD, Prometheus metric type, help message"]
    lines += [f"{f}, {t}, {h}" for f, t, h in fields]
    return "\n".join(lines) + "\n"


def dcgm_exporter_values(args: DcgmExporterArgs) -> dict[str, Any]:
    security: dict[str, Any] = {
        # Root to reach the kubelet's pod-resources socket (maps GPUs to pods).
        "runAsNonRoot": False,
        "runAsUser": 0,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if args.profiling_metrics:
        security["capabilities"] = {"drop": ["ALL"], "add": ["SYS_ADMIN"]}
    gpu_node_terms = [
        {"matchExpressions": [{"key": ACCELERATOR_LABEL, "operator": "Exists"}]},
        # Nodes labelled by NVIDIA GPU feature discovery, for GPU nodes outside platform pools.
        {
            "matchExpressions": [
                {"key": "nvidia.com/gpu.present", "operator": "In", "values": ["true"]}
            ]
        },
    ]
    return {
        "serviceMonitor": {
            "enabled": True,
            "interval": args.scrape_interval,
            # Keep DCGM's namespace/pod labels: they name the workload holding the GPU.
            "honorLabels": True,
        },
        "tolerations": [dict(GPU_TOLERATION)],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": gpu_node_terms
                }
            }
        },
        "resources": args.resources.to_k8s(),
        "securityContext": security,
        "customMetrics": dcgm_metrics_csv(args.profiling_metrics),
        "arguments": ["-f", "/etc/dcgm-exporter/default-counters.csv"],
        "kubernetes": {"enablePodLabels": False},
    }
