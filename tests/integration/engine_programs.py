"""Programs run both by the real engine (from a generated ``__main__.py``) and by the offline plan.

Every program renders through a Kubernetes provider with ``render_yaml_to_directory`` set, so
``pulumi up`` writes manifests instead of needing a cluster. The render folder comes from
``MLPLATFORM_RENDER_DIR`` so that the same function runs unchanged under both.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import yaml

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


STUB_CHARTS_ENV = "MLPLATFORM_STUB_CHARTS_DIR"
HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
KUSTOMIZE_DIRECTORY = "kubernetes:kustomize/v2:Directory"


def _stub_chart(root: Path, chart: str, version: str) -> Path:
    """An empty chart with the name and version of ``chart`` (a repository chart or an OCI
    reference): Helm installs it as a release that holds no objects."""
    name = chart.rstrip("/").rsplit("/", 1)[-1]
    folder = root / f"{name}-{version}"
    folder.mkdir(parents=True, exist_ok=True)
    chart_yaml = {
        "apiVersion": "v2",
        "name": name,
        "version": version,
        "description": f"Stand-in for {chart} {version}: chart repositories are out of reach",
    }
    (folder / "Chart.yaml").write_text(yaml.safe_dump(chart_yaml, sort_keys=False))
    return folder


def _stub_kustomization(root: Path) -> Path:
    """The Training Operator overlay's stand-in: only the namespace the real overlay creates (the
    platform's ServiceMonitor for the operator goes there)."""
    from components.training_operator import TRAINING_OPERATOR_NAMESPACE

    folder = root / "training-operator-kustomization"
    folder.mkdir(parents=True, exist_ok=True)
    namespace = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": TRAINING_OPERATOR_NAMESPACE},
    }
    (folder / "namespace.yaml").write_text(yaml.safe_dump(namespace))
    doc = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": ["namespace.yaml"],
    }
    (folder / "kustomization.yaml").write_text(yaml.safe_dump(doc))
    return folder


def stub_remote_sources(
    args: pulumi.ResourceTransformArgs,
) -> pulumi.ResourceTransformResult | None:
    """Point every Helm release and kustomize overlay at an empty local stand-in of the same name
    and version (no chart repository or Git host is reachable here). Every object the platform
    declares itself is left as it is; the CRDs the charts would bring are installed beforehand."""
    root = Path(os.environ[STUB_CHARTS_ENV])
    props = dict(args.props)
    if args.type_ == HELM_RELEASE:
        props["chart"] = str(_stub_chart(root, str(props["chart"]), str(props.get("version"))))
        for key in ("repositoryOpts", "repository_opts"):
            props.pop(key, None)
    elif args.type_ == KUSTOMIZE_DIRECTORY:
        props["directory"] = str(_stub_kustomization(root))
    else:
        return None
    return pulumi.ResourceTransformResult(props=props, opts=args.opts)


def platform_without_remote_sources() -> None:
    """The platform program (``mlplatform.program.main``) with :func:`stub_remote_sources`."""
    from mlplatform import program

    pulumi.runtime.register_resource_transform(stub_remote_sources)
    program.main()


PROGRAMS["platform_without_remote_sources"] = platform_without_remote_sources
