"""Programs run both by the real engine (from a generated ``__main__.py``) and by the offline plan.

Every program renders through a Kubernetes provider with ``render_yaml_to_directory`` set, so
``pulumi up`` writes manifests instead of needing a cluster. The render folder comes from
``MLPLATFORM_RENDER_DIR`` so that the same function runs unchanged under both.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.common import KubeTarget, StorageBackend
from components.project_namespaces import ProjectNamespaces
from components.serving_endpoint import ServingEndpoint, ServingEndpointArgs

RENDER_DIR_ENV = "MLPLATFORM_RENDER_DIR"
POD_LABELS = {"app": "web"}


def _render_provider() -> k8s.Provider:
    return k8s.Provider("render", render_yaml_to_directory=os.environ[RENDER_DIR_ENV])


def _deployment(container: dict[str, Any], pod_security: dict[str, Any]) -> None:
    spec: Any = {
        "replicas": 1,
        "selector": {"matchLabels": POD_LABELS},
        "template": {
            "metadata": {"labels": POD_LABELS},
            "spec": {"securityContext": pod_security, "containers": [container]},
        },
    }
    k8s.apps.v1.Deployment(
        "web",
        metadata={"name": "web", "namespace": "default"},
        spec=spec,
        opts=pulumi.ResourceOptions(provider=_render_provider()),
    )


def unsafe_deployment() -> None:
    """`:latest`, root allowed, no requests or limits: three policy violations."""
    _deployment({"name": "web", "image": "nginx:latest"}, {})


def hardened_deployment() -> None:
    """The same Deployment as the platform's rules want it."""
    _deployment(
        {
            "name": "web",
            "image": "nginxinc/nginx-unprivileged:1.27.3",
            "securityContext": {
                "allowPrivilegeEscalation": False,
                "readOnlyRootFilesystem": True,
                "capabilities": {"drop": ["ALL"]},
            },
            "resources": {
                "requests": {"cpu": "100m", "memory": "64Mi"},
                "limits": {"memory": "64Mi"},
            },
        },
        {"runAsNonRoot": True, "runAsUser": 101, "seccompProfile": {"type": "RuntimeDefault"}},
    )


def project_namespaces() -> None:
    """A real component of ours that declares only plain Kubernetes objects."""
    ProjectNamespaces(
        "projects",
        ["fraud", "chat"],
        target=KubeTarget(provider=_render_provider(), on_aws=False),
    )


PROGRAMS: dict[str, Callable[[], None]] = {
    "unsafe_deployment": unsafe_deployment,
    "hardened_deployment": hardened_deployment,
    "project_namespaces": project_namespaces,
}


def serving_endpoint() -> None:
    """The serving component as the local stack declares it: no AWS, models in MinIO."""
    endpoint = ServingEndpointArgs.model_validate(
        {
            "project": "fraud",
            "image": "registry.local/serving:1.4.2",
            "model": {"path": "models/fraud-scorer", "version": "7"},
            "ingress": {"host": "fraud.ml.localtest.me", "className": "nginx"},
        }
    )
    ServingEndpoint(
        "fraud",
        endpoint,
        target=KubeTarget(provider=_render_provider(), on_aws=False),
        storage=StorageBackend(
            kind="minio",
            bucket="models",
            endpoint_url="http://minio.minio.svc:9000",
            credentials_secret="minio-credentials",
        ),
        service_account_name="fraud-server",
        alb_source_cidrs=[],
    )


PROGRAMS["serving_endpoint"] = serving_endpoint
