"""The platform program: what `pulumi up` runs, and what `mlplatform plan` runs under mocks."""

from __future__ import annotations

import pulumi

from mlplatform.config import ConfigError, StackSettings, config_from_runtime, parse_config


def build(settings: StackSettings) -> None:
    """Declare the platform for a validated stack config."""
    from mlplatform import platform

    platform.declare(settings)


def main() -> None:
    raw, secret_keys = config_from_runtime()
    try:
        settings = parse_config(pulumi.get_stack(), raw, secret_keys)
    except ConfigError as exc:
        # A RunError is reported by the engine as a plain message, without a Python traceback.
        raise pulumi.RunError(str(exc)) from None
    build(settings)
