"""Hand-built pulumi_policy arguments for calling a rule's validate() directly."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pulumi_policy import (
    PolicyCustomTimeouts,
    PolicyProviderResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
)

TAGS = {"project": "ml-platform", "environment": "dev", "owner": "team", "cost-center": "ml"}


def args(
    resource_type: str,
    props: Mapping[str, Any],
    name: str = "res",
    *,
    protect: bool = False,
    provider_props: Mapping[str, Any] | None = None,
) -> ResourceValidationArgs:
    opts = PolicyResourceOptions(
        protect=protect,
        ignore_changes=[],
        delete_before_replace=None,
        aliases=[],
        custom_timeouts=PolicyCustomTimeouts(0, 0, 0),
        additional_secret_outputs=[],
    )
    provider = None
    if provider_props is not None:
        provider = PolicyProviderResource(
            "pulumi:providers:aws",
            provider_props,
            "urn:pulumi:dev::ml-platform::pulumi:providers:aws::default",
            "default",
        )
    return ResourceValidationArgs(
        resource_type,
        props,
        f"urn:pulumi:dev::ml-platform::{resource_type}::{name}",
        name,
        opts,
        provider,
    )


def violations(validate: Callable[..., None], a: Any) -> list[str]:
    found: list[str] = []
    validate(a, lambda message, urn=None: found.append(message))
    return found
