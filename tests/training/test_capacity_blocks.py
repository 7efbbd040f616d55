"""Capacity Blocks in Kueue: a queue per block pinned to it, sized to it, open only while a job
of the block's maxRunTime still ends before Karpenter drains it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import celpy
import kubernetes_validate
import pytest

from components.capacity_blocks import (
    MAX_EXEC_TIME_LABEL,
    BlockQueue,
    block_manifests,
    block_queues,
    block_team_issues,
    run_time_expression,
)
from components.common import format_path
from components.gpu_capacity import CapacityBlock
from components.gpu_node_pool import GpuNodePoolArgs
from components.training_operator import KUEUE_FRAMEWORKS
from components.training_queues import QUEUE_LABEL, TrainingQueuesArgs
from tests.kube_validate import KubectlValidate

BLOCK = {
    "id": "cr-0aaaaaaaaaaaaaaaa",
    "instanceType": "p5.48xlarge",
    "instances": 2,
    "start": "2026-12-10T11:30:00Z",
    "end": "2026-12-14T11:30:00Z",
    "maxRunTime": "36h",
    "teams": ["research"],
}
POOL = {
    "name": "h100-block",
    "accelerator": "nvidia-h100",
    "maxGpus": 16,
    "efa": True,
    "reservations": {"priority": "only", "blocks": [BLOCK]},
}
QUEUES = TrainingQueuesArgs.model_validate(
    {
        "teams": [
            {"name": "research", "namespaces": ["churn", "vision"]},
            {"name": "applied", "namespaces": ["recsys"], "quotas": []},
        ]
    }
)
BEFORE = datetime(2026, 12, 1, tzinfo=UTC)
DURING = datetime(2026, 12, 11, tzinfo=UTC)
# drain at 14 Dec 10:50; a 36h job must be admitted by 12 Dec 22:50
CLOSES = datetime(2026, 12, 12, 22, 50, tzinfo=UTC)


@pytest.fixture
def queue() -> BlockQueue:
    pools = [GpuNodePoolArgs.model_validate(POOL)]
    (q,) = block_queues(pools, QUEUES.teams)
    return q


def _by_kind(manifests):
    out: dict[str, list] = {}
    for m in manifests:
        out.setdefault(m["kind"], []).append(m)
    return out


def test_flavor_pins_admitted_pods_to_the_block(queue):
    m = _by_kind(
        block_manifests(queue, frameworks=KUEUE_FRAMEWORKS, namespace="kueue-system", now=DURING)
    )
    (flavor,) = m["ResourceFlavor"]
    assert flavor["metadata"]["name"] == "h100-block-cr-0aaaaaaaaaaaaaaaa"
    assert flavor["spec"]["nodeLabels"] == {
        "mlplatform.io/pool": "h100-block",
        "mlplatform.io/accelerator": "nvidia-h100",
        # the label Karpenter puts on every node it launches into a reservation
        "karpenter.k8s.aws/capacity-reservation-id": "cr-0aaaaaaaaaaaaaaaa",
    }


def test_queue_is_the_block_outside_the_cohort(queue):
    m = _by_kind(
        block_manifests(queue, frameworks=KUEUE_FRAMEWORKS, namespace="kueue-system", now=DURING)
    )
    (cq,) = m["ClusterQueue"]
    assert "cohortName" not in cq["spec"] and "stopPolicy" not in cq["spec"]
    (group,) = cq["spec"]["resourceGroups"]
    quota = {r["name"]: r["nominalQuota"] for r in group["flavors"][0]["resources"]}
    assert quota == {"cpu": "384", "memory": "4096Gi", "nvidia.com/gpu": "16"}
    assert sorted(lq["metadata"]["namespace"] for lq in m["LocalQueue"]) == ["churn", "vision"]
    assert cq["metadata"]["annotations"]["mlplatform.io/admission-closes"] == CLOSES.isoformat()


@pytest.mark.parametrize(
    ("now", "policy"),
    [
        (BEFORE, "Hold"),
        (DURING, "None"),
        (CLOSES - timedelta(minutes=1), "None"),
        (CLOSES, "Hold"),
        (datetime(2026, 12, 20, tzinfo=UTC), "Hold"),
    ],
)
def test_stop_policy_follows_the_clock(queue, now, policy):
    assert queue.stop_policy(now) == policy
    (cq,) = _by_kind(block_manifests(queue, frameworks=KUEUE_FRAMEWORKS, namespace="k", now=now))[
        "ClusterQueue"
    ]
    assert cq["spec"].get("stopPolicy", "None") == policy


def test_gates_open_and_close_at_the_right_minute(queue):
    jobs = _by_kind(block_manifests(queue, frameworks=KUEUE_FRAMEWORKS, namespace="k", now=BEFORE))[
        "CronJob"
    ]
    by_name = {j["metadata"]["name"]: j for j in jobs}
    opener = by_name["open-cr-0aaaaaaaaaaaaaaaa"]["spec"]
    closer = by_name["close-cr-0aaaaaaaaaaaaaaaa"]["spec"]
    assert opener["schedule"] == "30 11 10 12 *" and opener["timeZone"] == "Etc/UTC"
    assert closer["schedule"] == "50 22 12 12 *"
    args = closer["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[:3] == ["patch", "clusterqueue.kueue.x-k8s.io", queue.name]
    assert '--patch={"spec":{"stopPolicy":"Hold"}}' in args
    # once open, only the closer remains; once closed, nothing
    later = _by_kind(block_manifests(queue, frameworks=KUEUE_FRAMEWORKS, namespace="k", now=DURING))
    assert [j["metadata"]["name"] for j in later["CronJob"]] == ["close-cr-0aaaaaaaaaaaaaaaa"]
    done = _by_kind(block_manifests(queue, frameworks=KUEUE_FRAMEWORKS, namespace="k", now=CLOSES))
    assert "CronJob" not in done


def test_gate_may_patch_this_queue_only(queue):
    m = _by_kind(block_manifests(queue, frameworks=KUEUE_FRAMEWORKS, namespace="k", now=BEFORE))
    (role,) = m["ClusterRole"]
    assert role["rules"] == [
        {
            "apiGroups": ["kueue.x-k8s.io"],
            "resources": ["clusterqueues"],
            "resourceNames": [queue.name],
            "verbs": ["get", "patch"],
        }
    ]


def _evaluate(expr: str, labels: dict[str, str] | None) -> bool:
    env = celpy.Environment()
    program = env.program(env.compile(expr))
    meta = {} if labels is None else {"labels": labels}
    return bool(program.evaluate(celpy.json_to_cel({"object": {"metadata": meta}})))


@pytest.mark.parametrize(
    ("labels", "admitted"),
    [
        ({MAX_EXEC_TIME_LABEL: "129600"}, True),  # exactly 36h
        ({MAX_EXEC_TIME_LABEL: "3600"}, True),
        ({MAX_EXEC_TIME_LABEL: "129601"}, False),
        ({MAX_EXEC_TIME_LABEL: "36h"}, False),
        ({"other": "x"}, False),
        (None, False),
    ],
)
def test_run_time_policy_admits_only_jobs_that_fit(queue, labels, admitted):
    m = _by_kind(block_manifests(queue, frameworks=KUEUE_FRAMEWORKS, namespace="k", now=DURING))
    (policy,) = m["ValidatingAdmissionPolicy"]
    (validation,) = policy["spec"]["validations"]
    assert validation["expression"] == run_time_expression(129600)
    assert _evaluate(validation["expression"], labels) is admitted
    resources = {r["resources"][0] for r in policy["spec"]["matchConstraints"]["resourceRules"]}
    assert resources == {"jobs", "pytorchjobs"}
    (binding,) = m["ValidatingAdmissionPolicyBinding"]
    assert binding["spec"]["validationActions"] == ["Deny"]
    assert binding["spec"]["matchResources"]["objectSelector"] == {
        "matchLabels": {QUEUE_LABEL: queue.name}
    }


def test_builtin_objects_pass_the_kubernetes_schema_strictly(queue):
    for m in block_manifests(queue, frameworks=KUEUE_FRAMEWORKS, namespace="k", now=BEFORE):
        if not m["apiVersion"].startswith("kueue.x-k8s.io"):
            kubernetes_validate.validate(m, "1.33", strict=True)


def test_objects_pass_kubectl_validate(queue, kubectl_validate: KubectlValidate):
    manifests = block_manifests(queue, frameworks=KUEUE_FRAMEWORKS, namespace="k", now=BEFORE)
    assert {"ResourceFlavor", "ClusterQueue", "LocalQueue"} <= {m["kind"] for m in manifests}
    kubectl_validate.assert_valid(manifests)
    broken = json.loads(json.dumps(manifests[1]))
    broken["spec"]["stopPolicy"] = "Pause"
    (problems,) = kubectl_validate.problems([broken])
    assert any("Pause" in p for p in problems), problems


def test_blocks_name_known_teams_and_block_pools_take_no_team_quota():
    pools = [
        GpuNodePoolArgs.model_validate(
            {
                **POOL,
                "reservations": {
                    "priority": "only",
                    "blocks": [{**BLOCK, "teams": ["research", "ghost"]}],
                },
            }
        )
    ]
    queues = TrainingQueuesArgs.model_validate(
        {"teams": [{"name": "research", "namespaces": ["churn"], "quotas": [{"pool": "h100-block", "gpus": 8}]}]}
    )  # fmt: skip
    found = {format_path(i.path): i.message for i in block_team_issues(pools, queues.teams)}
    assert "unknown team 'ghost'" in found["gpuPools[0].reservations.blocks[0].teams[1]"]
    assert "through each block's own queue" in found["trainingQueues.teams[0].quotas[0].pool"]


def test_block_window_checks_are_collected():
    block = CapacityBlock.model_validate(
        {**BLOCK, "maxRunTime": "100h", "instanceType": "p5.4xlarge"}
    )
    paths = {format_path(i.path) for i in block.issues()}
    assert paths == {"maxRunTime", "instanceType"}
