"""GpuNodePool: presets, capacity types, limits, scale to zero, labels, taint, disruption, EFA."""

from __future__ import annotations

import pytest

from components.common import ACCELERATOR_LABEL, GPU_TAINT, POOL_LABEL
from components.gpu_node_pool import PRESETS, Accelerator, GpuNodePoolArgs, node_pool_spec
from tests.compute.helpers import node_class, node_pool, requirements


def test_presets_cover_the_documented_families():
    assert {a.value: PRESETS[a].family for a in Accelerator} == {
        "nvidia-t4": "g4dn",
        "nvidia-a10g": "g5",
        "nvidia-l4": "g6",
        "nvidia-l40s": "g6e",
        "nvidia-a100": "p4d",
        "nvidia-h100": "p5",
    }
    assert {a.value for a in Accelerator if PRESETS[a].efa} == {"nvidia-a100", "nvidia-h100"}
    assert PRESETS[Accelerator.NVIDIA_H100].sizes == {"48xlarge": 8}


def test_dev_pool_spot_a10g_limited_to_four_gpus(dev):
    pool = node_pool(dev, "a10g-spot")
    reqs = requirements(pool)
    assert reqs["karpenter.sh/capacity-type"]["values"] == ["spot"]
    assert reqs["karpenter.k8s.aws/instance-family"]["values"] == ["g5"]
    types = reqs["node.kubernetes.io/instance-type"]["values"]
    # no node bigger than the pool's whole limit: g5.48xlarge (8 GPUs) can never launch
    assert types and all(
        PRESETS[Accelerator.NVIDIA_A10G].sizes[t.split(".")[1]] <= 4 for t in types
    )
    assert "g5.12xlarge" in types and "g5.48xlarge" not in types
    assert pool["spec"]["limits"] == {"nvidia.com/gpu": "4"}


def test_scale_to_zero_no_minimum(dev, prod):
    for graph in (dev, prod):
        for pool in [m for m in graph.manifests() if m["kind"] == "NodePool"]:
            spec = pool["spec"]
            # NodePools have no node floor; nothing else (replicas, static capacity) sets one
            assert "replicas" not in spec
            assert set(spec["limits"]) <= {"cpu", "memory", "nvidia.com/gpu"}


def test_labels_and_taint(dev):
    template = node_pool(dev, "a10g-spot")["spec"]["template"]
    assert template["metadata"]["labels"][POOL_LABEL] == "a10g-spot"
    assert template["metadata"]["labels"][ACCELERATOR_LABEL] == "nvidia-a10g"
    assert template["spec"]["taints"] == [GPU_TAINT]
    assert GPU_TAINT == {"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"}


def test_disruption_never_evicts_running_training(dev, prod):
    for graph, name in ((dev, "a10g-spot"), (prod, "h100-train"), (prod, "l4-spot")):
        spec = node_pool(graph, name)["spec"]
        d = spec["disruption"]
        assert d["consolidationPolicy"] == "WhenEmpty"
        assert d["consolidateAfter"] == "10m"
        blocked = [b for b in d["budgets"] if b["nodes"] == "0"]
        assert blocked and {"Drifted", "Underutilized"} <= set(blocked[0]["reasons"])
        # any budget that allows disruption is limited to empty nodes, or to one broken node
        # at a time (node repair: the node is lost anyway)
        for b in d["budgets"]:
            if b["nodes"] != "0":
                assert b.get("reasons") in (["Empty"], ["Unhealthy"])
        assert {"nodes": "1", "reasons": ["Unhealthy"]} in d["budgets"]
        assert spec["template"]["spec"]["expireAfter"] == "Never"


def test_prod_reserved_capacity_and_efa(prod):
    pool = node_pool(prod, "h100-train")
    reqs = requirements(pool)
    # reserved first (Karpenter prices it near zero), then on-demand when it is full
    assert reqs["karpenter.sh/capacity-type"]["values"] == ["reserved", "on-demand"]
    assert reqs["node.kubernetes.io/instance-type"]["values"] == ["p5.48xlarge"]
    assert pool["spec"]["template"]["metadata"]["labels"]["mlplatform.io/efa"] == "true"
    assert pool["spec"]["limits"] == {"nvidia.com/gpu": "32"}
    nc = node_class(prod, "gpu-h100-train")["spec"]
    assert nc["capacityReservationSelectorTerms"] == [{"id": "cr-0123456789abcdef0"}]
    # no forced placement group: capacity is not limited to one spine
    assert "placement" not in str(nc).lower() and "placement" not in str(pool).lower()
    assert pool["spec"]["template"]["spec"]["nodeClassRef"]["name"] == "gpu-h100-train"


def test_gpu_node_class_root_sized_for_large_images(dev):
    ebs = node_class(dev, "gpu-a10g-spot")["spec"]["blockDeviceMappings"][0]["ebs"]
    assert int(ebs["volumeSize"].removesuffix("Gi")) >= 200
    assert ebs["encrypted"] is True and ebs["volumeType"] == "gp3"
    tags = node_class(dev, "gpu-a10g-spot")["spec"]["tags"]
    assert tags[POOL_LABEL] == "a10g-spot" and tags[ACCELERATOR_LABEL] == "nvidia-a10g"


def test_time_slicing_label_only_on_pools_that_ask(dev, prod):
    labels = node_pool(dev, "a10g-spot")["spec"]["template"]["metadata"]["labels"]
    assert labels["nvidia.com/device-plugin.config"] == "a10g-spot"
    labels = node_pool(prod, "l4-spot")["spec"]["template"]["metadata"]["labels"]
    assert "nvidia.com/device-plugin.config" not in labels


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"minGpusPerNode": 4}, ["g6.12xlarge", "g6.24xlarge", "g6.48xlarge"]),
        ({"maxGpusPerNode": 1, "sizes": ["xlarge", "2xlarge"]}, ["g6.xlarge", "g6.2xlarge"]),
        ({"minGpusPerNode": 8}, ["g6.48xlarge"]),
    ],
)
def test_gpus_per_node_selects_sizes(extra, expected):
    args = GpuNodePoolArgs.model_validate(
        {"name": "p", "accelerator": "nvidia-l4", "maxGpus": 16, **extra}
    )
    assert args.issues() == []
    reqs = {r["key"]: r for r in node_pool_spec(args)["template"]["spec"]["requirements"]}
    assert reqs["node.kubernetes.io/instance-type"]["values"] == expected


def test_weight_only_when_set():
    base = {"name": "p", "accelerator": "nvidia-t4", "maxGpus": 2}
    assert "weight" not in node_pool_spec(GpuNodePoolArgs.model_validate(base))
    assert node_pool_spec(GpuNodePoolArgs.model_validate({**base, "weight": 50}))["weight"] == 50
