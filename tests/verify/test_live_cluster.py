"""Checks against a real cluster, when one is reachable (kind, minikube, a deployed stack).

* KUBECONFIG / MLPLATFORM_KUBE_CONTEXT pick the cluster (default: the current context).
* MLPLATFORM_VERIFY_OUTPUTS, a `pulumi stack output --json --show-secrets` file of a deployed
  stack, turns on the full `mlplatform verify` run; without it only cluster-generic checks run."""

from __future__ import annotations

import os
from typing import Any

import pytest

from mlplatform import verify
from mlplatform.cli import main as cli_main


@pytest.fixture(scope="module")
def live_client() -> Any:
    from kubernetes import client, config

    context = os.environ.get("MLPLATFORM_KUBE_CONTEXT")
    try:
        api_client = config.new_client_from_config(context=context)
    except Exception as exc:
        pytest.skip(f"no usable kubeconfig{f' context {context}' if context else ''}: {exc}")
    try:
        client.VersionApi(api_client).get_code(_request_timeout=5)
    except Exception as exc:
        pytest.skip(f"no cluster reachable at {api_client.configuration.host}: {exc}")
    return api_client


def test_live_cluster_generic_checks(live_client: Any) -> None:
    kube = verify.Kube(live_client)
    nodes = kube.core.list_node(_request_timeout=verify.TIMEOUT_S).items
    ready = verify.check_nodes_ready(nodes)
    assert ready.ok, ready.detail
    gpu = verify.check_gpu_allocatable(nodes)
    assert gpu.ok, gpu.detail
    sets = kube.apps.list_daemon_set_for_all_namespaces(_request_timeout=verify.TIMEOUT_S).items
    plugin = verify.check_device_plugin(sets, gpu_expected=not gpu.skipped)
    assert plugin.ok, plugin.detail


def test_live_stack_verifies(live_client: Any, capsys: pytest.CaptureFixture[str]) -> None:
    outputs = os.environ.get("MLPLATFORM_VERIFY_OUTPUTS")
    if not outputs:
        pytest.skip("MLPLATFORM_VERIFY_OUTPUTS (stack outputs JSON of a deployed stack) is not set")
    code = cli_main(["verify", "--outputs", outputs, "--format", "json"])
    assert code == 0, capsys.readouterr().out
