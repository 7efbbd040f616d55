"""Builders shared by the serving tests: args, a mocked target, and one-endpoint programs."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.common import KubeTarget, StorageBackend
from components.serving_endpoint import ServingEndpoint, ServingEndpointArgs

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/serving:1.4.2"
CERT = "arn:aws:acm:us-east-1:123456789012:certificate/0f1e2d3c-aaaa-bbbb-cccc-112233445566"
POOLS = ("gpu-a10g", "gpu-h100")
PRIVATE_SUBNETS = ["10.0.0.0/19", "10.0.32.0/19"]

HTTP_ENDPOINT: dict[str, Any] = {
    "project": "fraud",
    "image": IMAGE,
    "model": {"path": "models/fraud-scorer", "version": "7"},
    "ingress": {"host": "fraud.ml.example.com", "certificateArn": CERT},
}

VLLM_ENDPOINT: dict[str, Any] = {
    "project": "chat",
    "runtime": "vllm",
    "model": {"path": "models/llama-3.1-8b-instruct"},
    "gpuPool": "gpu-a10g",
    "resources": {"cpu": "4", "memory": "32Gi", "gpus": 1},
    "ingress": {"host": "chat.ml.example.com", "certificateArn": CERT},
    "vllmArgs": ["--max-model-len", "8192"],
}


def endpoint_args(base: Mapping[str, Any], **overrides: Any) -> ServingEndpointArgs:
    data = copy.deepcopy(dict(base))
    data.update(overrides)
    return ServingEndpointArgs.model_validate(data)


def endpoint_program(
    name: str,
    args: ServingEndpointArgs,
    *,
    on_aws: bool = True,
    storage_kind: str = "s3",
    with_controller: bool = True,
    network_policy: bool = True,
    **kwargs: Any,
) -> Callable[[], None]:
    """A program with a provider, a stand-in cluster and controller, and one endpoint."""

    def program() -> None:
        provider = k8s.Provider("k8s", kubeconfig="{}")
        cluster = pulumi.CustomResource("test:index:Cluster", "cluster", {})
        controller = (
            pulumi.CustomResource("test:index:Controller", "alb-controller", {})
            if with_controller and on_aws
            else None
        )
        target = KubeTarget(
            provider=provider,
            depends_on=(cluster,) if on_aws else (),
            cluster_name="ml-dev" if on_aws else None,
            on_aws=on_aws,
            network_policy=network_policy,
        )
        if storage_kind == "s3":
            storage = StorageBackend(kind="s3", bucket="ml-dev-models", region="us-east-1")
        else:
            storage = StorageBackend(
                kind="minio",
                bucket="models",
                endpoint_url="http://minio.minio.svc:9000",
                credentials_secret="minio-credentials",
            )
        kwargs.setdefault("known_pools", POOLS)
        # the private (internal ALB) subnets of a 10.0.0.0/16 VPC in two zones
        kwargs.setdefault("alb_source_cidrs", PRIVATE_SUBNETS if on_aws else [])
        ep = ServingEndpoint(
            name,
            args,
            target=target,
            storage=storage,
            service_account_name=f"{name}-server",
            ingress_controller=controller,
            **kwargs,
        )
        pulumi.export("url", ep.url)
        pulumi.export("internalUrl", ep.internal_url)
        pulumi.export("namespace", ep.namespace)

    return program


def by_kind(manifests: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [m for m in manifests if m["kind"] == kind]


def one(manifests: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [m for m in by_kind(manifests, kind) if name is None or m["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value") for e in container.get("env", [])}
