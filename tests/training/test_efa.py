"""EFA pools (issue 16 item 5): jobs request the node's EFA devices and the queues count them.

Karpenter attaches EFA interfaces only to nodes launched for pods that request
``vpc.amazonaws.com/efa``, and Kueue admits no workload requesting a resource its ClusterQueue
does not cover: both ends must agree, or an EFA pool trains over plain TCP.
"""

from __future__ import annotations

from typing import Any

from components.common import EFA_RESOURCE, GPU_RESOURCE
from components.gpu_node_pool import GpuNodePoolArgs
from components.training_job import TrainingJob, TrainingJobArgs
from components.training_queues import GpuPoolCapacity, TrainingQueuesArgs, cluster_queue
from tests.kube_validate import KubectlValidate
from tests.training.helpers import s3, target

P4D = GpuNodePoolArgs(name="a100-efa", accelerator="nvidia-a100", maxGpus=16, efa=True)
EFA_POOL = GpuPoolCapacity("a100-efa", "nvidia-a100", 16, *P4D.efa_node())
PLAIN_POOL = GpuPoolCapacity("l4-spot", "nvidia-l4", 8)


def test_efa_pools_know_their_nodes_interfaces():
    # p4d.24xlarge: 8 A100 and 4 EFA interfaces; p5.48xlarge: 8 H100 and 32
    assert P4D.efa_node() == (8, 4)
    p5 = GpuNodePoolArgs(name="h100", accelerator="nvidia-h100", maxGpus=8, efa=True)
    assert p5.efa_node() == (8, 32)
    plain = GpuNodePoolArgs(name="l4", accelerator="nvidia-l4", maxGpus=8)
    assert plain.efa_node() == (0, 0)
    assert EFA_POOL.efa_for(8) == 4 and EFA_POOL.efa_for(4) == 2 and EFA_POOL.efa_for(1) == 1
    assert EFA_POOL.efa_for(0) == 0 and PLAIN_POOL.efa_for(8) == 0


def _job(run, pool: str, **extra: Any) -> dict[str, Any]:
    args = TrainingJobArgs.model_validate(
        {
            "name": "train",
            "project": "churn",
            "namespace": "churn",
            "queue": "research",
            "image": "registry.example.com/train:1.0",
            "command": ["torchrun", "train.py"],
            "serviceAccountName": "trainer",
            "pool": pool,
            **extra,
        }
    )
    graph = run(
        lambda: TrainingJob(
            "job", args, target=target(), storage=s3(), pools=[EFA_POOL, PLAIN_POOL]
        )
    )
    (manifest,) = graph.manifests()
    return manifest


def test_jobs_on_an_efa_pool_request_its_devices(run, kubectl_validate: KubectlValidate):
    job = _job(run, "a100-efa", nodes=2, gpusPerNode=8, cpu="90", memory="1000Gi")
    for replica in job["spec"]["pytorchReplicaSpecs"].values():
        resources = replica["template"]["spec"]["containers"][0]["resources"]
        assert resources["requests"][EFA_RESOURCE] == "4"
        assert resources["limits"][EFA_RESOURCE] == "4"
    kubectl_validate.assert_valid([job])


def test_jobs_elsewhere_request_no_efa(run):
    job = _job(run, "l4-spot", gpusPerNode=1)
    resources = job["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert EFA_RESOURCE not in resources["requests"]
    assert resources["requests"][GPU_RESOURCE] == "1"


def _flavors(cq: dict[str, Any]) -> dict[str, dict[str, Any]]:
    (group,) = cq["spec"]["resourceGroups"]
    return {f["name"]: {r["name"]: r for r in f["resources"]} for f in group["flavors"]}


def test_queues_cover_efa_and_give_an_efa_pool_quota_its_devices(
    kubectl_validate: KubectlValidate,
):
    team = TrainingQueuesArgs.model_validate(
        {
            "teams": [
                {
                    "name": "research",
                    "namespaces": ["churn"],
                    "quotas": [
                        {"pool": "a100-efa", "gpus": 8, "borrowingLimit": {"gpus": 8}},
                        {"pool": "l4-spot", "gpus": 4},
                    ],
                }
            ]
        }
    ).teams[0]
    cq = cluster_queue(team, "ml-platform", [EFA_POOL, PLAIN_POOL])
    (group,) = cq["spec"]["resourceGroups"]
    assert group["coveredResources"] == ["cpu", "memory", GPU_RESOURCE, EFA_RESOURCE]
    flavors = _flavors(cq)
    # every flavor lists every covered resource, in order (a Kueue admission rule)
    for resources in flavors.values():
        assert list(resources) == group["coveredResources"]
    assert flavors["a100-efa"][EFA_RESOURCE] == {
        "name": EFA_RESOURCE,
        "nominalQuota": "4",
        "borrowingLimit": "4",
    }
    assert flavors["l4-spot"][EFA_RESOURCE]["nominalQuota"] == "0"
    assert flavors["default-cpu"][EFA_RESOURCE] == {
        "name": EFA_RESOURCE,
        "nominalQuota": "0",
        "borrowingLimit": "0",
    }
    kubectl_validate.assert_valid([cq])


def test_without_efa_pools_the_queues_do_not_mention_it():
    team = TrainingQueuesArgs.model_validate(
        {"teams": [{"name": "t", "namespaces": ["n"], "quotas": [{"pool": "l4-spot", "gpus": 2}]}]}
    ).teams[0]
    (group,) = cluster_queue(team, "c", [PLAIN_POOL])["spec"]["resourceGroups"]
    assert EFA_RESOURCE not in group["coveredResources"]
