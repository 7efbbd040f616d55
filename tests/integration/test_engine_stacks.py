"""`pulumi preview` of every shipped stack with the real engine (scripts/build-engine.sh): the
repository's own Pulumi.yaml and stack files, a `file://` backend, a passphrase, no plugin
downloads.

The engine checks a stack's config against Pulumi.yaml's typed `config:` block before the
program starts; that check used to stop every shipped stack ("Stack 'dev' is missing configuration
values 'kubeContext' and 'localObjectStore'"). The offline plan never sees it, so this runs the
engine itself. dev and prod then stop where this engine must stop: the AWS provider plugin, which
no module proxy serves, cannot be built here. The local stack runs to the end against a real
control plane in test_local_stack.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.integration.engine_support import StackProject, engine_search_path

pytestmark = pytest.mark.engine

DYNAMIC_PROVIDER = "pulumi-resource-pulumi-python"  # GeneratedSecret
CONFIG_REJECTED = re.compile(r"validating stack config|missing configuration value|config problems")
AWS_PLUGIN_MISSING = re.compile(r"no resource plugin 'pulumi-resource-aws' found")


def project(tmp_path: Path, stack: str) -> StackProject:
    empty = tmp_path / "kubeconfig"
    empty.write_text("apiVersion: v1\nkind: Config\n")
    return StackProject(
        tmp_path / "engine",
        engine_search_path((DYNAMIC_PROVIDER,)),
        stack,
        extra_env={"KUBECONFIG": str(empty)},
    )


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_aws_stack_passes_config_validation_and_stops_at_the_aws_plugin(
    stack: str, tmp_path: Path
) -> None:
    result = project(tmp_path, stack).pulumi("preview")
    assert not CONFIG_REJECTED.search(result.output), result.output
    # The program ran: the stack resource was registered and the typed config parsed (a bad
    # value would have been reported as "stack 'dev': N config problems").
    assert f"pulumi:pulumi:Stack  ml-platform-{stack}" in result.output or (
        f"ml-platform-{stack}" in result.output
    ), result.output
    # ... and stopped at the first AWS resource, for want of the provider plugin.
    assert result.returncode != 0
    assert AWS_PLUGIN_MISSING.search(result.output), result.output
    errors = [line for line in result.output.splitlines() if "error:" in line]
    assert errors and all(
        AWS_PLUGIN_MISSING.search(e) or "preview failed" in e or "update failed" in e
        for e in errors
    ), errors


def test_local_stack_passes_config_validation(tmp_path: Path) -> None:
    """Without a cluster the local stack gets past config validation and the program; the
    Kubernetes provider then finds no context named like the stack's kubeContext."""
    result = project(tmp_path, "local").pulumi("preview")
    assert not CONFIG_REJECTED.search(result.output), result.output
    assert result.returncode != 0
    assert "kind-mlplatform" in result.output, result.output


def test_a_declared_key_without_default_stops_the_engine(tmp_path: Path) -> None:
    """What Pulumi.yaml used to declare: the engine refuses the stack before the program runs."""
    proj = project(tmp_path, "dev")
    pulumi_yaml = proj.work / "Pulumi.yaml"
    doc = yaml.safe_load(pulumi_yaml.read_text())
    doc["config"]["kubeContext"] = {"type": "string", "description": "as it was"}
    doc["config"]["localObjectStore"] = {"description": "as it was", "default": None}
    pulumi_yaml.write_text(yaml.safe_dump(doc, sort_keys=False))
    result = proj.pulumi("preview")
    assert result.returncode != 0
    assert (
        "Stack 'dev' is missing configuration values 'kubeContext' and 'localObjectStore'"
        in result.output
    ), result.output
