"""Shared fixtures for the training tests: pools, targets, and pod template validation."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pulumi_kubernetes as k8s
from kubernetes_validate.utils import latest_version

from components.common import KubeTarget, StorageBackend
from components.training_queues import GpuPoolCapacity

POOLS = (
    GpuPoolCapacity(name="a10g-spot", accelerator="nvidia-a10g", gpu_limit=4),
    GpuPoolCapacity(name="h100-od", accelerator="nvidia-h100", gpu_limit=16),
)
GPU_LIMITS = {p.name: p.gpu_limit for p in POOLS}
K8S_VERSION = latest_version()


def target() -> KubeTarget:
    return KubeTarget(provider=k8s.Provider("k8s"))


def s3() -> StorageBackend:
    return StorageBackend(kind="s3", bucket="ml-models", region="eu-west-1")


def minio() -> StorageBackend:
    return StorageBackend(
        kind="minio",
        bucket="models",
        endpoint_url="http://minio.minio.svc:9000",
        credentials_secret="minio-credentials",
    )


def validate_pod_template(template: dict[str, Any], name: str = "pod") -> None:
    """A PodTemplateSpec embedded in a CR, checked strictly as the Pod it will become."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, **template.get("metadata", {})},
        "spec": template["spec"],
    }
    _strict(pod)


def _strict(manifest: dict[str, Any]) -> None:
    try:
        kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:  # the full schema dump is unreadable
        where = "/".join(map(str, exc.absolute_path))
        name = manifest["metadata"].get("name")
        raise AssertionError(f"{manifest['kind']} {name}: {where}: {exc.message}") from None
