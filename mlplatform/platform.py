"""Compose the platform's components from a validated stack config."""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from components.common import merge_tags
from mlplatform.config import Platform, StackSettings


def declare(settings: StackSettings) -> None:
    cfg = settings.config
    tags = merge_tags(settings.base_tags, cfg.tags)
    pulumi.export("environment", cfg.environment.value)
    pulumi.export("platform", cfg.platform.value)
    if cfg.platform is Platform.aws:
        aws_provider = aws.Provider(
            "aws",
            region=settings.region,
            default_tags=aws.ProviderDefaultTagsArgs(tags=tags),
        )
        pulumi.export("region", settings.region)
        _declare_aws(settings, aws_provider, tags)
    else:
        pulumi.export("kubeContext", cfg.kube_context)


def _declare_aws(settings: StackSettings, provider: aws.Provider, tags: dict[str, str]) -> None:
    del settings, provider, tags
