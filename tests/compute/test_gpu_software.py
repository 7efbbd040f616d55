"""GpuSoftware: the device plugin (or GPU Operator) lands on GPU nodes; time-slicing; EFA."""

from __future__ import annotations

import json

import yaml

from components.common import GPU_TOLERATION
from components.gpu_node_pool import GpuNodePoolArgs
from components.gpu_software import (
    GpuSoftwareArgs,
    device_plugin_values,
    plugin_configs,
)
from tests.compute.helpers import node_pool


def _release(graph, name):
    return next(h for h in graph.helm_releases() if h["name"] == name)


def _matches(affinity, labels):
    terms = affinity["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    for term in terms["nodeSelectorTerms"]:
        ok = True
        for e in term["matchExpressions"]:
            if e["operator"] == "Exists":
                ok &= e["key"] in labels
            elif e["operator"] == "In":
                ok &= labels.get(e["key"]) in e["values"]
            else:
                raise AssertionError(f"unhandled operator {e['operator']}")
        if ok:
            return True
    return False


def _tolerates(tolerations, taint):
    return any(
        t["key"] == taint["key"]
        and t.get("effect") in (None, taint["effect"])
        and (t["operator"] == "Exists" or t.get("value") == taint["value"])
        for t in tolerations
    )


def test_device_plugin_pinned_and_schedulable_on_gpu_nodes(dev):
    rel = _release(dev, "nvidia-device-plugin")
    assert rel["version"].count(".") == 2 and rel["repository"].startswith("https://")
    values = rel["values"]
    pool = node_pool(dev, "a10g-spot")["spec"]["template"]
    # what a GPU node from this pool carries: pool labels plus Karpenter's well-known ones
    labels = {
        **pool["metadata"]["labels"],
        "karpenter.k8s.aws/instance-gpu-manufacturer": "nvidia",
    }
    assert _matches(values["affinity"], labels)
    assert _matches(values["affinity"], pool["metadata"]["labels"])
    for taint in pool["spec"]["taints"]:
        assert _tolerates(values["tolerations"], taint)
    # and never on system nodes
    assert not _matches(values["affinity"], {"mlplatform.io/role": "system"})
    assert values["nfd"]["enabled"] is False and values["gfd"]["enabled"] is False


def test_time_slicing_config_per_pool(dev):
    config = _release(dev, "nvidia-device-plugin")["values"]["config"]
    assert config["default"] == "default"
    sliced = yaml.safe_load(config["map"]["a10g-spot"])
    assert sliced["sharing"]["timeSlicing"]["resources"] == [
        {"name": "nvidia.com/gpu", "replicas": 4}
    ]
    assert "sharing" not in yaml.safe_load(config["map"]["default"])
    # the label the pool puts on its nodes names this config
    labels = node_pool(dev, "a10g-spot")["spec"]["template"]["metadata"]["labels"]
    assert labels["nvidia.com/device-plugin.config"] in config["map"]


def test_no_config_map_without_time_slicing():
    pool = GpuNodePoolArgs.model_validate({"name": "p", "accelerator": "nvidia-l4", "maxGpus": 4})
    assert "config" not in device_plugin_values([pool])
    assert list(plugin_configs([pool])) == ["default"]


def test_gpu_operator_mode_driver_and_toolkit_off(prod):
    names = {h["name"] for h in prod.helm_releases()}
    assert "gpu-operator" in names and "nvidia-device-plugin" not in names
    values = _release(prod, "gpu-operator")["values"]
    assert values["driver"]["enabled"] is False
    assert values["toolkit"]["enabled"] is False
    assert GPU_TOLERATION in values["daemonsets"]["tolerations"]
    ns = [
        m
        for m in prod.manifests()
        if m["kind"] == "Namespace" and m["metadata"]["name"] == "gpu-operator"
    ]
    assert ns and ns[0]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"


def test_gpu_operator_leaves_gpu_metrics_to_the_monitoring_stack(prod):
    # One DCGM exporter per GPU node: MonitoringStack's (tests/platform checks the whole plan).
    values = _release(prod, "gpu-operator")["values"]
    assert values["dcgmExporter"]["enabled"] is False
    assert values["dcgm"]["enabled"] is False


def test_efa_device_plugin_only_with_efa_pools(dev, prod):
    assert "aws-efa-k8s-device-plugin" not in {h["name"] for h in dev.helm_releases()}
    efa = _release(prod, "aws-efa-k8s-device-plugin")
    assert efa["values"]["nodeSelector"] == {"mlplatform.io/efa": "true"}
    assert GPU_TOLERATION in efa["values"]["tolerations"]


def test_operator_time_slicing_uses_a_configmap():
    from mlplatform.plan import run_program
    from tests.compute.stacks import PROD, program

    cfg = json.loads(json.dumps(PROD))
    cfg["gpuPools"][1]["timeSlicingReplicas"] = 2
    graph = run_program(program(cfg))
    (cm,) = [m for m in graph.manifests() if m["kind"] == "ConfigMap"]
    assert cm["metadata"]["namespace"] == "gpu-operator"
    values = _release(graph, "gpu-operator")["values"]
    assert values["devicePlugin"]["config"]["name"] == cm["metadata"]["name"]
    assert "l4-spot" in cm["data"] and "default" in cm["data"]


def test_defaults_are_device_plugin():
    assert GpuSoftwareArgs().mode.value == "device-plugin"
