"""Builders and checkers shared by the storage tests."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping
from typing import Any

import kubernetes_validate
import pulumi
import pulumi_kubernetes as k8s

from components.common import KubeTarget, StorageBackend
from components.model_registry import ModelRegistry, ModelRegistryArgs, RegistryNetwork
from components.model_store import ModelStore, ModelStoreArgs, StoreNetwork
from components.project_access import ProjectAccess, ProjectAccessArgs
from mlplatform.graph import Graph
from mlplatform.mocks import SECRET_PLACEHOLDER
from tests.iam import BLOCKING, iam_findings  # noqa: F401 - re-exported for the storage tests

K8S_VERSION = "1.33"
CLUSTER = "ml-prod"
KMS_ARN = "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555"
CLUSTER_SG = "sg-0cluster"
# Namespace -> MLflow user (project) of the registry's clients.
CLIENTS = {"churn": "churn", "team-vision": "vision"}

# Stateful resource types that must be protected and retained in prod.
STATEFUL = (
    "aws:kms/key:Key",
    "aws:s3/bucket:Bucket",
    "aws:ecr/repository:Repository",
    "aws:fsx/lustreFileSystem:LustreFileSystem",
)

ACCESS: dict[str, Any] = {
    "projects": [{"name": "churn"}, {"name": "vision", "namespace": "team-vision"}],
    "grants": [
        {
            "project": "churn",
            "serviceAccount": "trainer",
            "access": "read-write",
            "ecrRepositories": ["training"],
        },
        {"project": "vision", "serviceAccount": "inference", "ecrRepositories": ["serving"]},
    ],
}


def merged(base: Mapping[str, Any], **overrides: Any) -> dict[str, Any]:
    data = copy.deepcopy(dict(base))
    data.update(overrides)
    return data


def store_program(
    data: Mapping[str, Any], *, access: Mapping[str, Any] | None = None
) -> Callable[[], None]:
    args = ModelStoreArgs.model_validate(data)

    def program() -> None:
        store = ModelStore(
            "models",
            args,
            cluster_name=CLUSTER,
            network=StoreNetwork(
                vpc_id="vpc-0abc", subnet_id="subnet-0a", client_security_group_ids=[CLUSTER_SG]
            ),
            tags={"mlplatform.io/stack": "test"},
        )
        if access is not None:
            ProjectAccess(
                "access",
                ProjectAccessArgs.model_validate(access),
                store=store.refs(),
                cluster_name=CLUSTER,
            )
        pulumi.export("modelBucket", store.bucket_name)
        pulumi.export("kmsKeyArn", store.kms_key_arn)
        pulumi.export("ecrRepositories", store.ecr_repository_urls)

    return program


def registry_program(data: Mapping[str, Any], *, on_aws: bool = True) -> Callable[[], None]:
    args = ModelRegistryArgs.model_validate(data)

    def program() -> None:
        provider = k8s.Provider("k8s", kubeconfig="{}")
        cluster = pulumi.CustomResource("test:index:Cluster", "cluster", {})
        if on_aws:
            target = KubeTarget(
                provider=provider, depends_on=(cluster,), cluster_name=CLUSTER, on_aws=True
            )
            storage = StorageBackend(kind="s3", bucket="ml-prod-models", region="us-east-1")
            network = RegistryNetwork(
                vpc_id="vpc-0abc",
                private_subnet_ids=["subnet-0a", "subnet-0b"],
                client_security_group_ids=[CLUSTER_SG],
            )
            reg = ModelRegistry(
                "registry",
                args,
                target=target,
                storage=storage,
                network=network,
                kms_key_arn=KMS_ARN,
                clients=CLIENTS,
            )
        else:
            reg = ModelRegistry(
                "registry",
                args,
                target=KubeTarget(provider=provider, on_aws=False),
                storage=StorageBackend(
                    kind="minio",
                    bucket="models",
                    endpoint_url="http://minio.model-store.svc.cluster.local:9000",
                    credentials_secret="model-store-credentials",
                ),
                clients=CLIENTS,
            )
        pulumi.export("mlflowTrackingUri", reg.tracking_uri)

    return program


def policy_docs(graph: Graph) -> list[tuple[str, dict[str, Any], bool]]:
    """Every IAM/resource policy document in the plan: (resource name, document, is_trust)."""
    docs: list[tuple[str, dict[str, Any], bool]] = []
    for r in graph.resources:
        if r.type == "aws:iam/role:Role":
            docs.append((r.name, json.loads(r.inputs["assumeRolePolicy"]), True))
        elif r.type in (
            "aws:iam/rolePolicy:RolePolicy",
            "aws:s3/bucketPolicy:BucketPolicy",
            "aws:kms/key:Key",
        ):
            docs.append((r.name, json.loads(r.inputs["policy"]), False))
    return docs


def validate_manifests(graph: Graph) -> list[str]:
    errors = []
    for m in graph.manifests():
        if m["kind"] == "Secret" and m.get("stringData") == SECRET_PLACEHOLDER:
            # The plan hides secret data wholesale; validate the rest of the object.
            m = {**m, "stringData": {"redacted": "x"}}
        try:
            kubernetes_validate.validate(m, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{m['kind']}/{m['metadata'].get('name')}: {exc.message}")
    return errors


def statements(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["Sid"]: s for s in doc["Statement"]}
