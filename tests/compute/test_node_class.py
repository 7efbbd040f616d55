"""EC2NodeClasses: the image-cache volume per node image, SOCI parallel pull, and both Karpenter
CRs checked against the v1.15.2 CRDs of the release the platform pins."""

from __future__ import annotations

import json
import tomllib

import pytest
import yaml

from components.gpu_node_pool import GpuNodePoolArgs, node_pool_spec
from components.karpenter import KARPENTER_VERSION
from components.node_class import (
    ImagePull,
    NodeStorageArgs,
    block_device_mappings,
    image_pull_issues,
    node_class_spec,
    soci_user_data,
)
from tests.compute.helpers import crs, node_class
from tests.upstream import crd_errors, crd_validator, go_module

MODULE = "github.com/aws/karpenter-provider-aws"


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


# --- Against the release's CRDs ------------------------------------------------------------------


@pytest.fixture(scope="module")
def karpenter_crds():
    crds = go_module(MODULE, f"v{KARPENTER_VERSION}") / "pkg" / "apis" / "crds"
    return {
        "EC2NodeClass": crd_validator(crds / "karpenter.k8s.aws_ec2nodeclasses.yaml", "v1"),
        "NodePool": crd_validator(crds / "karpenter.sh_nodepools.yaml", "v1"),
    }


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


def test_plan_crs_fit_the_release_crds(dev, prod, karpenter_crds):
    checked = 0
    for graph in (dev, prod):
        for kind, validator in karpenter_crds.items():
            for m in crs(graph, kind):
                assert crd_errors(validator, m) == [], (kind, m["metadata"]["name"])
                checked += 1
    assert checked >= 6


def test_reserved_bottlerocket_class_and_pool_fit_the_crds(karpenter_crds):
    args = _reserved_pool()
    spec = node_class_spec(
        role="r",
        cluster_name="c",
        ami_alias="bottlerocket@v1.50.0",
        storage=args.storage,
        tags={},
        image_pull=args.image_pull,
        capacity_reservation_terms=args.reservations.terms(),
    )
    nc = {
        "apiVersion": "karpenter.k8s.aws/v1",
        "kind": "EC2NodeClass",
        "metadata": {"name": "x"},
        "spec": spec,
    }
    assert crd_errors(karpenter_crds["EC2NodeClass"], nc) == []
    pool_spec = node_pool_spec(args)
    pool_spec["template"]["spec"]["nodeClassRef"] = {
        "group": "karpenter.k8s.aws",
        "kind": "EC2NodeClass",
        "name": "x",
    }
    np = {
        "apiVersion": "karpenter.sh/v1",
        "kind": "NodePool",
        "metadata": {"name": "x"},
        "spec": pool_spec,
    }
    assert crd_errors(karpenter_crds["NodePool"], np) == []


def test_the_crd_check_catches_what_the_api_server_would(karpenter_crds):
    args = _reserved_pool()
    spec = node_class_spec(
        role="r", cluster_name="c", ami_alias="al2023@v20251112", storage=args.storage, tags={},
        capacity_reservation_terms=[{"id": "cr-0123456789abcdef0", "owner": "x"}],
    )  # fmt: skip
    nc = {
        "apiVersion": "karpenter.k8s.aws/v1",
        "kind": "EC2NodeClass",
        "metadata": {"name": "x"},
        "spec": spec,
    }
    assert any("owner" in e for e in crd_errors(karpenter_crds["EC2NodeClass"], nc))
    pool_spec = json.loads(json.dumps(node_pool_spec(args)))
    pool_spec["disruption"]["budgets"].append({"nodes": "1", "reasons": ["Broken"]})
    pool_spec["template"]["spec"]["nodeClassRef"] = {
        "group": "karpenter.k8s.aws",
        "kind": "EC2NodeClass",
        "name": "x",
    }
    np = {
        "apiVersion": "karpenter.sh/v1",
        "kind": "NodePool",
        "metadata": {"name": "x"},
        "spec": pool_spec,
    }
    assert any("Broken" in e for e in crd_errors(karpenter_crds["NodePool"], np))
