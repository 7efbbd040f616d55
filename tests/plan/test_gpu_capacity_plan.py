"""A stack with every GPU capacity option on: reserved-first and reserved-only pools, a Capacity
Block with its queue, and a warm pool. Its whole plan passes kubectl-validate and the policy pack,
and its pieces are wired to each other."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlplatform.policy import evaluate_policies
from mlplatform.report import build_plan, run_stack
from tests.kube_validate import KubectlValidate

ROOT = Path(__file__).resolve().parents[2]
BLOCK = {
    "id": "cr-0aaaaaaaaaaaaaaaa",
    "instanceType": "p5.48xlarge",
    "instances": 2,
    # far in the future: the queue is held until the block starts, and both gates exist
    "start": "2036-12-10T11:30:00Z",
    "end": "2036-12-14T11:30:00Z",
    "maxRunTime": "36h",
    "teams": ["research"],
}


@functools.cache
def _stacks_dir(tmp: str) -> Path:
    doc = yaml.safe_load((ROOT / "stacks" / "Pulumi.prod.yaml").read_text())
    cfg = doc["config"]
    cfg["ml-platform:gpuPools"] += [
        {
            "name": "h100-block",
            "accelerator": "nvidia-h100",
            "maxGpus": 16,
            "efa": True,
            "reservations": {"priority": "only", "blocks": [BLOCK]},
        },
        {
            "name": "l4-odcr",
            "accelerator": "nvidia-l4",
            "maxGpus": 4,
            "reservations": {"priority": "only", "select": [{"id": "cr-0123456789abcdef0"}]},
            "warmPool": {"nodes": 2, "timeZone": "Europe/Berlin"},
        },
    ]
    cfg["ml-platform:trainingQueues"]["teams"][0]["quotas"].append({"pool": "l4-odcr", "gpus": 4})
    out = Path(tmp)
    (out / "Pulumi.capacity.yaml").write_text(yaml.safe_dump(doc))
    return out


@pytest.fixture(scope="module")
def stacks_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _stacks_dir(str(tmp_path_factory.mktemp("stacks")))


@pytest.fixture(scope="module")
def plan(stacks_dir: Path) -> dict[str, Any]:
    return build_plan("capacity", stacks_dir)


def test_every_object_passes_kubectl_validate(plan, kubectl_validate: KubectlValidate):
    kinds = {m["kind"] for m in plan["manifests"]}
    assert {"CronJob", "ValidatingAdmissionPolicy", "PriorityClass", "Deployment"} <= kinds
    kubectl_validate.assert_valid(plan["manifests"])


def test_policy_pack_passes(plan):
    assert evaluate_policies(plan, "prod") == []


def test_block_pool_queue_and_team_queues(stacks_dir):
    graph, _ = run_stack("capacity", stacks_dir)
    flavors = {m["metadata"]["name"] for m in graph.manifests() if m["kind"] == "ResourceFlavor"}
    # the block pool has no pool-wide flavor: its GPUs are reached through the block's queue
    assert "h100-block-cr-0aaaaaaaaaaaaaaaa" in flavors and "h100-block" not in flavors
    queues = {m["metadata"]["name"]: m for m in graph.manifests() if m["kind"] == "ClusterQueue"}
    block = queues["h100-block-cr-0aaaaaaaaaaaaaaaa"]
    assert block["spec"]["stopPolicy"] == "Hold"  # before the block starts
    local = [
        m["metadata"]["namespace"]
        for m in graph.manifests()
        if m["kind"] == "LocalQueue" and m["metadata"]["name"] == block["metadata"]["name"]
    ]
    assert local == ["churn"]
    cq = graph.one(
        "kubernetes:kueue.x-k8s.io/v1beta2:ClusterQueue",
        "capacity-blocks-clusterqueue-h100-block-cr-0aaaaaaaaaaaaaaaa",
    )
    assert graph.depends_on(cq, graph.one("kubernetes:helm.sh/v3:Release", "training-queues-kueue"))
    pool = next(
        m
        for m in graph.manifests()
        if m["kind"] == "NodePool" and m["metadata"]["name"] == "h100-block"
    )
    reqs = {r["key"]: r for r in pool["spec"]["template"]["spec"]["requirements"]}
    assert reqs["karpenter.sh/capacity-type"]["values"] == ["reserved"]


def test_warm_pool_waits_for_its_node_pool(stacks_dir):
    graph, _ = run_stack("capacity", stacks_dir)
    deploy = graph.one("kubernetes:apps/v1:Deployment", "warm-pools-deployment-warm-l4-odcr")
    assert graph.depends_on(
        deploy, graph.one("kubernetes:karpenter.sh/v1:NodePool", "pool-l4-odcr-nodepool")
    )
    placeholder = deploy.inputs["spec"]["template"]["spec"]
    assert placeholder["nodeSelector"] == {"mlplatform.io/pool": "l4-odcr"}


def test_policy_flags_a_reserved_only_pool_nobody_queues_for(stacks_dir, tmp_path):
    doc = yaml.safe_load((stacks_dir / "Pulumi.capacity.yaml").read_text())
    for team in doc["config"]["ml-platform:trainingQueues"]["teams"]:
        team["quotas"] = [q for q in team["quotas"] if q["pool"] != "l4-odcr"]
    (tmp_path / "Pulumi.unqueued.yaml").write_text(yaml.safe_dump(doc))
    found = evaluate_policies(build_plan("unqueued", tmp_path), "prod")
    assert [v["policy"] for v in found] == ["reserved-pools-queued"]
    assert "'l4-odcr' launches reserved capacity only" in found[0]["message"]
