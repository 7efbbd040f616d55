"""EC2NodeClasses: the image-cache volume per node image, SOCI parallel pull, and both Karpenter
CRs checked against the v1.15.2 CRDs of the release the platform pins."""

from __future__ import annotations

import json
import tomllib

import pytest
import yaml

from components.gpu_node_pool import GpuNodePoolArgs, node_pool_spec
from components.node_class import (
    ImagePull,
    NodeStorageArgs,
    block_device_mappings,
    image_pull_issues,
    node_class_spec,
    soci_user_data,
)
from tests.compute.helpers import node_class
from tests.kube_validate import KubectlValidate


def test_al2023_soci_is_a_nodeadm_feature_gate(dev):
    spec = node_class(dev, "gpu-a10g-spot")["spec"]
    config = yaml.safe_load(spec["userData"])
    assert config == {
        "apiVersion": "node.eks.aws/v1alpha1",
        "kind": "NodeConfig",
        "spec": {"featureGates": {"FastImagePull": True}},
    }


def test_bottlerocket_soci_is_settings_toml():
    settings = tomllib.loads(soci_user_data("bottlerocket@v1.50.0"))["settings"]
    assert settings["container-runtime"] == {"snapshotter": "soci"}
    soci = settings["container-runtime-plugins"]["soci-snapshotter"]
    assert soci["pull-mode"] == "parallel-pull-unpack"
    assert soci["parallel-pull-unpack"]["concurrent-download-chunk-size"] == "16mb"
    assert soci["parallel-pull-unpack"]["discard-unpacked-layers"] is True


def test_cache_volume_is_the_one_that_holds_images():
    storage = NodeStorageArgs(volume_gib=500, iops=4000, throughput_mibps=1000)
    (root,) = block_device_mappings("al2023@v20251112", storage)
    assert root["deviceName"] == "/dev/xvda" and root["ebs"]["volumeSize"] == "500Gi"
    assert root["ebs"]["throughput"] == 1000 and root["ebs"]["iops"] == 4000
    os_volume, data = block_device_mappings("bottlerocket@v1.50.0", storage)
    # Bottlerocket keeps images on its data volume; its root volume is the OS only
    assert os_volume["deviceName"] == "/dev/xvda" and os_volume["ebs"]["volumeSize"] == "4Gi"
    assert data["deviceName"] == "/dev/xvdb" and data["ebs"]["volumeSize"] == "500Gi"
    assert all(m["ebs"]["encrypted"] for m in (root, os_volume, data))


def test_gpu_pool_storage_from_config_and_cpu_class_untouched(dev):
    (bdm,) = node_class(dev, "gpu-a10g-spot")["spec"]["blockDeviceMappings"]
    assert bdm["ebs"]["volumeSize"] == "200Gi" and bdm["ebs"]["throughput"] == 600
    default = node_class(dev, "default")["spec"]
    assert "userData" not in default
    assert default["blockDeviceMappings"][0]["ebs"]["throughput"] == 125


def test_standard_pull_leaves_user_data_alone():
    spec = node_class_spec(
        role="r",
        cluster_name="c",
        ami_alias="al2023@v20251112",
        storage=NodeStorageArgs(),
        tags={},
        image_pull=ImagePull.STANDARD,
    )
    assert "userData" not in spec


def test_gp3_throughput_needs_iops():
    issues = NodeStorageArgs(throughput_mibps=1000).issues()
    assert issues and "raise iops to 4000" in issues[0].message


def test_soci_needs_a_node_image_that_ships_it():
    assert image_pull_issues(ImagePull.SOCI_PARALLEL, "al2023@v20251112") == []
    assert image_pull_issues(ImagePull.SOCI_PARALLEL, "bottlerocket@v1.44.0") == []
    (old,) = image_pull_issues(ImagePull.SOCI_PARALLEL, "al2023@v20250715")
    assert "al2023@v20250821" in old.message and old.path == ("imagePull",)
    assert image_pull_issues(ImagePull.SOCI_PARALLEL, "bottlerocket@v1.43.2")
    assert image_pull_issues(ImagePull.STANDARD, "al2023@v20250715") == []


# --- Against the release's CRDs (kubectl-validate: schemas and CEL rules) ---------------------


def _reserved_pool() -> GpuNodePoolArgs:
    return GpuNodePoolArgs.model_validate(
        {
            "name": "h100",
            "accelerator": "nvidia-h100",
            "maxGpus": 16,
            "efa": True,
            "reservations": {
                "select": [
                    {"tags": {"mlplatform.io/pool": "h100"}, "ownerId": "123456789012"},
                    {"id": "cr-0123456789abcdef0"},
                ]
            },
            "warmPool": {"nodes": 1},
        }
    )


def _cr(kind: str, spec: dict) -> dict:
    api = "karpenter.k8s.aws/v1" if kind == "EC2NodeClass" else "karpenter.sh/v1"
    return {"apiVersion": api, "kind": kind, "metadata": {"name": "x"}, "spec": spec}


def _pool_spec(args: GpuNodePoolArgs) -> dict:
    spec = json.loads(json.dumps(node_pool_spec(args)))
    spec["template"]["spec"]["nodeClassRef"] = {
        "group": "karpenter.k8s.aws",
        "kind": "EC2NodeClass",
        "name": "x",
    }
    return spec


@pytest.mark.parametrize("alias", ["al2023@v20251112", "bottlerocket@v1.50.0"])
def test_reserved_soci_class_and_pool_pass_the_crds(alias, kubectl_validate: KubectlValidate):
    args = _reserved_pool()
    spec = node_class_spec(
        role="r",
        cluster_name="c",
        ami_alias=alias,
        storage=args.storage,
        tags={},
        image_pull=args.image_pull,
        capacity_reservation_terms=args.reservations.terms(),
    )
    blocks = GpuNodePoolArgs.model_validate(
        {
            "name": "h100-block",
            "accelerator": "nvidia-h100",
            "maxGpus": 16,
            "reservations": {
                "priority": "only",
                "blocks": [
                    {
                        "id": "cr-0aaaaaaaaaaaaaaaa",
                        "instanceType": "p5.48xlarge",
                        "instances": 2,
                        "start": "2026-12-10T11:30:00Z",
                        "end": "2026-12-14T11:30:00Z",
                        "teams": ["research"],
                    }
                ],
            },
        }
    )
    kubectl_validate.assert_valid(
        [
            _cr("EC2NodeClass", spec),
            _cr("NodePool", _pool_spec(args)),
            _cr("NodePool", _pool_spec(blocks)),
        ]
    )


def test_the_crds_refuse_what_the_api_server_would(kubectl_validate: KubectlValidate):
    args = _reserved_pool()
    mixed = node_class_spec(
        role="r", cluster_name="c", ami_alias="al2023@v20251112", storage=args.storage, tags={},
        capacity_reservation_terms=[{"id": "cr-0123456789abcdef0", "ownerID": "123456789012"}],
    )  # fmt: skip
    spec = _pool_spec(args)
    spec["disruption"]["budgets"].append({"nodes": "1", "reasons": ["Broken"]})
    term_problems, budget_problems = kubectl_validate.problems(
        [_cr("EC2NodeClass", mixed), _cr("NodePool", spec)]
    )
    assert any("mutually exclusive" in p for p in term_problems), term_problems
    assert any("Broken" in p for p in budget_problems), budget_problems
