"""Node root volumes, persistent volumes and the interruption queue use customer-managed keys.

Checked on the shipped prod stack, as the platform wires it (the compliance profiles need it).
"""

from __future__ import annotations

import json

import pytest

from components.karpenter import interruption_key_policy
from components.training_cluster import ebs_key_policy
from mlplatform.graph import Graph
from mlplatform.mocks import RecordedResource
from mlplatform.report import run_stack


@pytest.fixture(scope="module")
def prod() -> Graph:
    return run_stack("prod")[0]


def _ebs_key(graph: Graph) -> RecordedResource:
    return graph.one("aws:kms/key:Key", "cluster-ebs-key")


def _from_key(res: RecordedResource, prop: str, key: RecordedResource) -> None:
    deps = res.property_dependencies.get(prop, [])
    assert key.urn in deps, f"{res.name}.{prop} is not computed from {key.name}"


def test_the_ebs_key_rotates_is_kept_in_prod_and_is_usable_only_through_ec2(prod: Graph) -> None:
    key = _ebs_key(prod)
    assert key.inputs["enableKeyRotation"] is True
    assert key.protect and key.retain_on_delete
    policy = json.loads(key.inputs["policy"])
    assert policy == ebs_key_policy(partition="aws", account_id="123456789012", region="us-east-1")
    (via_ebs,) = [s for s in policy["Statement"] if s["Sid"] == "AccountUsesKeyThroughEbs"]
    assert via_ebs["Condition"]["StringEquals"] == {
        "kms:ViaService": "ec2.us-east-1.amazonaws.com",
        "kms:CallerAccount": "123456789012",
    }
    assert "kms:CreateGrant" in via_ebs["Action"]


def test_system_nodes_karpenter_nodes_and_volumes_use_the_ebs_key(prod: Graph) -> None:
    key = _ebs_key(prod)
    lt = prod.one("aws:ec2/launchTemplate:LaunchTemplate", "system")
    _from_key(lt, "blockDeviceMappings", key)
    arn = lt.inputs["blockDeviceMappings"][0]["ebs"]["kmsKeyId"]
    assert arn.startswith("arn:aws:kms:us-east-1:123456789012:key/")
    classes = prod.by_type("kubernetes:karpenter.k8s.aws/v1:EC2NodeClass")
    assert len(classes) == 3  # the default class and one per GPU pool
    for nc in classes:
        _from_key(nc, "spec", key)
        (bdm,) = nc.inputs["spec"]["blockDeviceMappings"]
        assert bdm["ebs"]["kmsKeyID"] == arn and bdm["ebs"]["encrypted"] is True
    sc = prod.one("kubernetes:storage.k8s.io/v1:StorageClass")
    _from_key(sc, "parameters", key)
    assert sc.inputs["parameters"] == {
        "type": "gp3",
        "encrypted": "true",
        "fsType": "ext4",
        "kmsKeyId": arn,
    }


def test_the_interruption_queue_uses_its_own_key(prod: Graph) -> None:
    key = prod.one("aws:kms/key:Key", "karpenter-interruptions-key")
    queue = prod.one("aws:sqs/queue:Queue")
    _from_key(queue, "kmsMasterKeyId", key)
    assert "sqsManagedSseEnabled" not in queue.inputs
    assert key.inputs["enableKeyRotation"] is True and key.protect
    policy = json.loads(key.inputs["policy"])
    assert policy == interruption_key_policy(
        partition="aws", account_id="123456789012", region="us-east-1"
    )
    sids = {s["Sid"]: s for s in policy["Statement"]}
    assert sids["EventBridgeSendsToQueue"]["Principal"] == {"Service": "events.amazonaws.com"}
    assert sids["AccountReadsThroughSqs"]["Condition"]["StringEquals"]["kms:ViaService"] == (
        "sqs.us-east-1.amazonaws.com"
    )
