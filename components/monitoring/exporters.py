"""The DCGM exporter: which GPU fields it exports, and how it runs on GPU nodes."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from components.common import (
    ACCELERATOR_LABEL,
    GPU_TOLERATION,
)
from components.monitoring.args import DcgmExporterArgs

DCGM_CHART = "dcgm-exporter"
# Chart 4.8.2 (image 4.5.3-4.8.2): the newest in the chart repository's index.yaml (gh-pages of
# NVIDIA/dcgm-exporter, helm-charts/) and its release tag 4.5.3-4.8.2, checked 2026-11.
DCGM_VERSION = "4.8.2"
DCGM_REPO = "https://nvidia.github.io/dcgm-exporter/helm-charts"
DCGM_RELEASE = "dcgm-exporter"
# The chart renders ``customMetrics`` into this ConfigMap (key ``metrics``); the exporter reads a
# field list only from the file ``-f`` names (or, with ``-m``, from the API, which needs a token
# the chart does not mount here). We mount it at a path of our own: were the mount ever lost, the
# exporter fails to start instead of silently loading the image's built-in list, where the
# throttling counters are commented out.
DCGM_FIELDS_CONFIGMAP = "exporter-metrics-config-map"
DCGM_FIELDS_FILE = "/etc/dcgm-exporter/mlplatform/counters.csv"

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
    # Nanoseconds, as DCGM's dcgm_fields.h and field-ID docs define them (dcgm-exporter#589 fixed
    # the "us" in its own CSV comments).
    ("DCGM_FI_DEV_POWER_VIOLATION", "counter", "Throttling due to power constraints (in ns)."),
    ("DCGM_FI_DEV_THERMAL_VIOLATION", "counter", "Throttling due to thermal constraints (in ns)."),
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


def dcgm_metrics_csv(profiling: bool) -> str:
    fields = DCGM_FIELDS + (DCGM_PROFILING_FIELDS if profiling else ())
    lines = ["# DCGM FIELD, Prometheus metric type, help message"]
    lines += [f"{f}, {t}, {h}" for f, t, h in fields]
    return "\n".join(lines) + "\n"


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def dcgm_exporter_values(args: DcgmExporterArgs) -> dict[str, Any]:
    csv = dcgm_metrics_csv(args.profiling_metrics)
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
        "customMetrics": csv,
        "extraConfigMapVolumes": [
            {
                "name": "mlplatform-counters",
                "configMap": {
                    "name": DCGM_FIELDS_CONFIGMAP,
                    "items": [{"key": "metrics", "path": Path(DCGM_FIELDS_FILE).name}],
                },
            }
        ],
        "extraVolumeMounts": [
            {
                "name": "mlplatform-counters",
                "mountPath": str(Path(DCGM_FIELDS_FILE).parent),
                "readOnly": True,
            }
        ],
        "arguments": ["-f", DCGM_FIELDS_FILE],
        # The exporter reads its field list once, at start: a new list rolls the pods.
        "podAnnotations": {"mlplatform.io/dcgm-fields-sha256": _sha256(csv)},
        "kubernetes": {"enablePodLabels": False},
    }
