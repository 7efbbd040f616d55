"""EC2NodeClass specs: discovered subnets and security groups, IMDSv2 only, encrypted gp3 volumes,
and, for GPU pools, the volume that caches images and model files and SOCI parallel pull.

Image cache. containerd's images and the pods' ephemeral storage (an ``emptyDir`` model cache,
the Hugging Face cache) live on one EBS volume per node: the root volume on AL2023, the data
volume (``/dev/xvdb``) on Bottlerocket, whose root volume only holds the OS. Its size, IOPS and
throughput come from the pool's ``storage``; faster throughput than gp3's 125 MiB/s base is what
lets parallel pull unpack at network speed.

SOCI parallel pull/unpack. Large CUDA images pull layer by layer by default; SOCI's parallel mode
downloads layers in chunks and unpacks them concurrently. Both node images ship it, switched off:
AL2023 from v20250821 (a ``NodeConfig`` feature gate, ``FastImagePull``, that makes nodeadm wire
the snapshotter into containerd and the kubelet) and Bottlerocket from v1.44.0 (its settings
API). Karpenter merges the ``userData`` below with the NodeConfig it generates itself. The
images come from ECR, which serves the HTTP range requests chunked downloads need. Source for
both: aws-samples/karpenter-blueprints, blueprints/soci-snapshotter.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any

import yaml
from pydantic import Field

from components.common import ArgsModel, Issue
from components.network import DISCOVERY_TAG

# A pinned alias: `@latest` would roll every node whenever AWS publishes an AMI.
AMI_ALIAS = re.compile(r"^(al2023@v\d{8}|bottlerocket@v\d+\.\d+\.\d+)$")
# First releases whose node image carries SOCI's parallel mode.
SOCI_MIN_AL2023 = 20250821
SOCI_MIN_BOTTLEROCKET = (1, 44, 0)
# Bottlerocket's OS volume: its default size in Karpenter's Bottlerocket family.
BOTTLEROCKET_OS_GIB = 4
# Parallel pull settings for Bottlerocket (AL2023's defaults already parallelise: 20 downloads,
# 12 unpacks, 16 MB chunks): ECR serves range requests, and unpacked layers are not kept twice.
BOTTLEROCKET_SOCI = {
    "max-concurrent-downloads-per-image": 10,
    "concurrent-download-chunk-size": "16mb",
    "max-concurrent-unpacks-per-image": 10,
    "discard-unpacked-layers": True,
}


class ImagePull(StrEnum):
    SOCI_PARALLEL = "soci-parallel"  # SOCI snapshotter, parallel pull/unpack
    STANDARD = "standard"  # containerd's default snapshotter, one layer after another


class NodeStorageArgs(ArgsModel):
    """The EBS volume holding images and pod data (gp3, encrypted, deleted with the node)."""

    volume_gib: int = Field(default=200, ge=20, le=16384)
    iops: int = Field(default=3000, ge=3000, le=16000)
    # 600 MiB/s with the base 3000 IOPS: the blueprint's measured starting point for SOCI.
    throughput_mibps: int = Field(default=600, ge=125, le=1000)

    def issues(self) -> list[Issue]:
        found = super().issues()
        # gp3 allows at most 0.25 MiB/s of throughput per provisioned IOPS.
        if self.throughput_mibps > self.iops / 4:
            found.append(
                Issue(
                    ("throughputMibps",),
                    f"gp3 allows at most iops/4 = {self.iops // 4} MiB/s at {self.iops} IOPS, "
                    f"got {self.throughput_mibps}; raise iops to {self.throughput_mibps * 4}",
                )
            )
        return found


def ami_family(ami_alias: str) -> str:
    return ami_alias.split("@", 1)[0]


def image_pull_issues(image_pull: ImagePull, ami_alias: str) -> list[Issue]:
    """SOCI parallel pull needs a node image that ships it."""
    if image_pull is not ImagePull.SOCI_PARALLEL or not AMI_ALIAS.match(ami_alias):
        return []
    family, version = ami_alias.split("@v", 1)
    if family == "al2023" and int(version) < SOCI_MIN_AL2023:
        need = f"al2023@v{SOCI_MIN_AL2023}"
    elif family == "bottlerocket" and tuple(map(int, version.split("."))) < SOCI_MIN_BOTTLEROCKET:
        need = "bottlerocket@v" + ".".join(map(str, SOCI_MIN_BOTTLEROCKET))
    else:
        return []
    return [
        Issue(
            ("imagePull",),
            f"'soci-parallel' needs {need} or later (karpenter.amiAlias is {ami_alias}); "
            "raise the alias or set imagePull: standard",
        )
    ]


def _volume(size_gib: int, storage: NodeStorageArgs | None) -> dict[str, Any]:
    ebs: dict[str, Any] = {
        "volumeSize": f"{size_gib}Gi",
        "volumeType": "gp3",
        "encrypted": True,
        "deleteOnTermination": True,
    }
    if storage is not None:
        ebs["iops"] = storage.iops
        ebs["throughput"] = storage.throughput_mibps
    return ebs


def block_device_mappings(ami_alias: str, storage: NodeStorageArgs) -> list[dict[str, Any]]:
    if ami_family(ami_alias) == "bottlerocket":
        return [
            {"deviceName": "/dev/xvda", "ebs": _volume(BOTTLEROCKET_OS_GIB, None)},
            {"deviceName": "/dev/xvdb", "ebs": _volume(storage.volume_gib, storage)},
        ]
    return [{"deviceName": "/dev/xvda", "ebs": _volume(storage.volume_gib, storage)}]


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def soci_user_data(ami_alias: str) -> str:
    """The userData that switches SOCI parallel pull on, for the alias's node image."""
    if ami_family(ami_alias) == "bottlerocket":
        tables: dict[str, dict[str, Any]] = {
            "settings.container-runtime": {"snapshotter": "soci"},
            "settings.container-runtime-plugins.soci-snapshotter": {
                "pull-mode": "parallel-pull-unpack"
            },
            "settings.container-runtime-plugins.soci-snapshotter.parallel-pull-unpack": dict(
                BOTTLEROCKET_SOCI
            ),
        }
        lines: list[str] = []
        for table, values in tables.items():
            lines.append(f"[{table}]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in values.items()]
        return "\n".join(lines) + "\n"
    node_config = {
        "apiVersion": "node.eks.aws/v1alpha1",
        "kind": "NodeConfig",
        "spec": {"featureGates": {"FastImagePull": True}},
    }
    return yaml.safe_dump(node_config, sort_keys=False)


def node_class_spec(
    *,
    role: Any,
    cluster_name: str,
    ami_alias: str,
    storage: NodeStorageArgs,
    tags: dict[str, str],
    image_pull: ImagePull = ImagePull.STANDARD,
    capacity_reservation_terms: list[dict[str, Any]] | None = None,
    kms_key_id: Any = None,
) -> dict[str, Any]:
    """The spec of an EC2NodeClass. No placement group, ever (see components.gpu_capacity).
    With ``kms_key_id``, volumes use that customer-managed key instead of aws/ebs."""
    selector = [{"tags": {DISCOVERY_TAG: cluster_name}}]
    spec: dict[str, Any] = {
        "role": role,
        "amiSelectorTerms": [{"alias": ami_alias}],
        "subnetSelectorTerms": selector,
        "securityGroupSelectorTerms": selector,
        "metadataOptions": {
            "httpEndpoint": "enabled",
            "httpProtocolIPv6": "disabled",
            # Hop limit 1: pods cannot reach the node's credentials; they use Pod Identity.
            "httpPutResponseHopLimit": 1,
            "httpTokens": "required",
        },
        "blockDeviceMappings": block_device_mappings(ami_alias, storage),
        "tags": dict(tags),
    }
    if image_pull is ImagePull.SOCI_PARALLEL:
        spec["userData"] = soci_user_data(ami_alias)
    if capacity_reservation_terms:
        spec["capacityReservationSelectorTerms"] = capacity_reservation_terms
    if kms_key_id is not None:
        for mapping in spec["blockDeviceMappings"]:
            mapping["ebs"]["kmsKeyID"] = kms_key_id
    return spec
