"""LocalObjectStore: MinIO on any Kubernetes cluster, standing in for the S3 model store.

The local stack has no AWS account, so models and checkpoints go to an in-cluster MinIO with the
same bucket layout (``projects/<project>/...``). Workloads reach it through the S3 API with
``AWS_ENDPOINT_URL_S3`` and keys from a Secret, which ``storage`` (a ``StorageBackend``) carries.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import pulumi
import pulumi_kubernetes as k8s
from pydantic import Field

from components.common import (
    RESTRICTED_NAMESPACE_LABELS,
    ArgsModel,
    Issue,
    KubeTarget,
    StorageBackend,
    check_chart_version,
    check_quantity,
    container_security_context,
    pod_security_context,
)
from components.generated_secret import GeneratedSecret

MINIO_CHART = "minio"
MINIO_REPO = "https://charts.min.io/"
# The newest chart in minio/minio's helm/minio (Chart.yaml 5.4.0, "update helm release v5.4.0";
# no later chart since). Its image is the chart's appVersion.
MINIO_CHART_VERSION = "5.4.0"
CREDENTIALS_SECRET = "model-store-credentials"  # noqa: S105 - a Secret's name, not a secret
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


class LocalObjectStoreArgs(ArgsModel):
    """Stack config section ``localObjectStore`` (local platform only)."""

    bucket: str = Field(
        default="models", description="Bucket for models, checkpoints and datasets."
    )
    namespace: str = "model-store"
    chart_version: str = MINIO_CHART_VERSION
    volume_size: str = "20Gi"
    storage_class: str | None = None  # None: the cluster's default class
    # Namespaces whose workloads get the S3 credentials Secret (projects, MLflow).
    client_namespaces: list[str] = Field(default_factory=list)

    def issues(self) -> list[Issue]:
        found = super().issues()
        if not _BUCKET.match(self.bucket):
            found.append(
                Issue(("bucket",), f"invalid bucket name {self.bucket!r} (3-63 of a-z 0-9 . -)")
            )
        found += check_quantity("volumeSize", self.volume_size, units=("Mi", "Gi", "Ti"))
        found += check_chart_version("chartVersion", self.chart_version)
        return found


class LocalObjectStore(pulumi.ComponentResource):
    """MinIO (pinned chart) with one versioned bucket and credentials for its clients."""

    bucket_name: pulumi.Output[str]
    endpoint_url: pulumi.Output[str]
    storage: StorageBackend

    def __init__(
        self,
        name: str,
        args: LocalObjectStoreArgs,
        *,
        target: KubeTarget,
        namespace_resources: Mapping[str, pulumi.Resource] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """``namespace_resources``: the client namespaces' resources, so each Secret waits for its
        namespace (and is deleted before it)."""
        args.raise_if_invalid("LocalObjectStore")
        super().__init__("mlplatform:storage:LocalObjectStore", name, None, opts)
        k8s_opts = pulumi.ResourceOptions(
            parent=self, provider=target.provider, depends_on=list(target.depends_on)
        )
        root_user = GeneratedSecret(
            f"{name}-root-user", length=20, opts=pulumi.ResourceOptions(parent=self)
        )
        root_password = GeneratedSecret(
            f"{name}-root-password", length=40, opts=pulumi.ResourceOptions(parent=self)
        )
        namespace = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata={"name": args.namespace, "labels": dict(RESTRICTED_NAMESPACE_LABELS)},
            opts=k8s_opts,
        )
        in_ns = pulumi.ResourceOptions.merge(
            k8s_opts, pulumi.ResourceOptions(depends_on=[namespace])
        )
        root_secret = k8s.core.v1.Secret(
            f"{name}-root",
            metadata={"name": "minio-root", "namespace": args.namespace},
            string_data={"rootUser": root_user.result, "rootPassword": root_password.result},
            opts=in_ns,
        )
        values = {
            "mode": "standalone",
            "existingSecret": "minio-root",
            "replicas": 1,
            "persistence": {
                "enabled": True,
                "size": args.volume_size,
                **({"storageClass": args.storage_class} if args.storage_class else {}),
            },
            "resources": {
                "requests": {"cpu": "100m", "memory": "512Mi"},
                "limits": {"memory": "1Gi"},
            },
            "securityContext": {**pod_security_context(uid=1000, fs_group=1000)},
            "containerSecurityContext": container_security_context(uid=1000),
            "buckets": [
                {"name": args.bucket, "policy": "none", "purge": False, "versioning": True}
            ],
            "consoleService": {"type": "ClusterIP"},
            "service": {"type": "ClusterIP"},
            "users": [],
            "policies": [],
            "makeBucketJob": {
                "securityContext": {
                    "enabled": True,
                    "runAsUser": 1000,
                    "runAsGroup": 1000,
                    "fsGroup": 1000,
                },
                "containerSecurityContext": {
                    "enabled": True,
                    **container_security_context(uid=1000),
                },
                "resources": {"requests": {"memory": "128Mi"}},
            },
        }
        release = k8s.helm.v3.Release(
            f"{name}-minio",
            name="minio",
            chart=MINIO_CHART,
            version=args.chart_version,
            repository_opts={"repo": MINIO_REPO},
            namespace=args.namespace,
            values=values,
            opts=pulumi.ResourceOptions.merge(
                in_ns, pulumi.ResourceOptions(depends_on=[root_secret])
            ),
        )
        endpoint = f"http://minio.{args.namespace}.svc.cluster.local:9000"
        namespaces = dict(namespace_resources or {})
        # Clients get the keys in their own namespace: a Secret cannot be read across namespaces.
        for ns in args.client_namespaces:
            k8s.core.v1.Secret(
                f"{name}-credentials-{ns}",
                metadata={"name": CREDENTIALS_SECRET, "namespace": ns},
                string_data={
                    "AWS_ACCESS_KEY_ID": root_user.result,
                    "AWS_SECRET_ACCESS_KEY": root_password.result,
                    "AWS_ENDPOINT_URL_S3": endpoint,
                },
                opts=pulumi.ResourceOptions.merge(
                    k8s_opts,
                    pulumi.ResourceOptions(
                        depends_on=[release, *([namespaces[ns]] if ns in namespaces else [])]
                    ),
                ),
            )
        self.bucket_name = pulumi.Output.from_input(args.bucket)
        self.endpoint_url = pulumi.Output.from_input(endpoint)
        self.release = release
        self.storage = StorageBackend(
            kind="minio",
            bucket=args.bucket,
            endpoint_url=endpoint,
            credentials_secret=CREDENTIALS_SECRET,
        )
        self.register_outputs({"bucketName": self.bucket_name, "endpointUrl": self.endpoint_url})
