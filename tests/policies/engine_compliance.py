"""Programs for the engine test of the compliance profiles (rendered, no cluster, no cloud)."""

from __future__ import annotations

import os

import pulumi
import pulumi_kubernetes as k8s

from tests.integration.engine_programs import RENDER_DIR_ENV


def _storage(*, public: bool, key: str | None) -> None:
    provider = k8s.Provider("render", render_yaml_to_directory=os.environ[RENDER_DIR_ENV])
    opts = pulumi.ResourceOptions(provider=provider)
    params = {"type": "gp3", "encrypted": "true", **({"kmsKeyId": key} if key else {})}
    k8s.storage.v1.StorageClass(
        "gp3",
        metadata={"name": "gp3"},
        provisioner="ebs.csi.aws.com",
        parameters=params,
        opts=opts,
    )
    k8s.core.v1.Service(
        "web",
        metadata={"name": "web", "namespace": "default"},
        spec={
            "type": "LoadBalancer" if public else "ClusterIP",
            "selector": {"app": "web"},
            "ports": [{"port": 443}],
        },
        opts=opts,
    )


class _Nothing(pulumi.ComponentResource):
    def __init__(self, name: str) -> None:
        super().__init__("mlplatform:test:Nothing", name)
        self.register_outputs({})


def component_only() -> None:
    """No provider plugin needed: the stack policies still run, and read the stack's config."""
    _Nothing("nothing")


def aws_managed_key_and_public_lb() -> None:
    """gp3 on the AWS-managed EBS key and an internet-facing load balancer."""
    _storage(public=True, key=None)


def cmk_and_no_lb() -> None:
    _storage(public=False, key="arn:aws:kms:us-east-1:123456789012:key/0a1b2c3d")
