"""Kueue install, flavors, team queues and their validation, under Pulumi's mock runtime."""

from __future__ import annotations

from typing import Any

import pulumi
import pytest
import yaml

from components.common import GPU_RESOURCE, GPU_TAINT, InvalidArgsError, format_path
from components.training_operator import KUEUE_FRAMEWORKS
from components.training_queues import (
    CPU_FLAVOR,
    KUEUE_API_VERSION,
    TEAM_LABEL,
    TrainingQueues,
    TrainingQueuesArgs,
    check_pool_quotas,
    cluster_queue,
)
from tests.kube_validate import KubectlValidate
from tests.training.helpers import GPU_LIMITS, POOLS, target

TEAMS: dict[str, Any] = {
    "teams": [
        {
            "name": "research",
            "namespaces": ["churn", "vision"],
            "quotas": [
                {"pool": "a10g-spot", "gpus": 2, "borrowingLimit": {"gpus": 2}},
                {"pool": "h100-od", "gpus": 8, "cpu": "96", "memory": "1Ti"},
            ],
            "weight": "2",
        },
        {
            "name": "applied",
            "namespaces": ["ranking"],
            "quotas": [{"pool": "a10g-spot", "gpus": 2, "borrowingLimit": {"gpus": 1}}],
        },
    ]
}


def build(run, config: dict[str, Any] | None = None, **kwargs: Any):
    args = TrainingQueuesArgs.model_validate(config if config is not None else TEAMS)
    made: dict[str, TrainingQueues] = {}

    def program() -> None:
        made["tq"] = TrainingQueues(
            "tq",
            args,
            target=target(),
            pools=POOLS,
            frameworks=kwargs.pop("frameworks", KUEUE_FRAMEWORKS),
            **kwargs,
        )
        pulumi.export("trainingQueues", made["tq"].teams)

    return run(program), made


def kind(graph, k: str) -> dict[str, dict[str, Any]]:
    return {
        m["metadata"]["name"]: m
        for m in graph.manifests()
        if m["apiVersion"] == KUEUE_API_VERSION and m["kind"] == k
    }


def quotas(cq: dict[str, Any]) -> dict[str, dict[str, dict[str, str]]]:
    """flavor -> resource -> {nominalQuota, borrowingLimit?}"""
    (group,) = cq["spec"]["resourceGroups"]
    return {
        f["name"]: {r["name"]: {k: v for k, v in r.items() if k != "name"} for r in f["resources"]}
        for f in group["flavors"]
    }


def test_each_gpu_pool_gets_a_flavor_matching_its_node_labels_and_taint(run):
    graph, _ = build(run)
    flavors = kind(graph, "ResourceFlavor")
    assert set(flavors) == {CPU_FLAVOR, "a10g-spot", "h100-od"}
    for pool in POOLS:
        spec = flavors[pool.name]["spec"]
        assert spec["nodeLabels"] == {
            "mlplatform.io/pool": pool.name,
            "mlplatform.io/accelerator": pool.accelerator,
        }
        assert spec["nodeTaints"] == [GPU_TAINT]
    # CPU-only work: no labels, so it is never pinned to (or admitted onto) GPU nodes
    assert flavors[CPU_FLAVOR]["spec"] == {}


def test_team_cluster_queues_carry_gpu_cpu_memory_quotas_and_borrowing_limits(run):
    graph, _ = build(run)
    cqs = kind(graph, "ClusterQueue")
    assert set(cqs) == {"research", "applied"}
    research = quotas(cqs["research"])
    assert research["a10g-spot"] == {
        "cpu": {"nominalQuota": "16"},  # 8 per GPU when unset
        "memory": {"nominalQuota": "64Gi"},  # 32Gi per GPU when unset
        GPU_RESOURCE: {"nominalQuota": "2", "borrowingLimit": "2"},
    }
    assert research["h100-od"] == {
        "cpu": {"nominalQuota": "96"},
        "memory": {"nominalQuota": "1Ti"},
        GPU_RESOURCE: {"nominalQuota": "8"},  # no borrowingLimit: may borrow all idle H100s
    }
    assert quotas(cqs["applied"])["a10g-spot"][GPU_RESOURCE] == {
        "nominalQuota": "2",
        "borrowingLimit": "1",
    }


def test_cpu_flavor_comes_first_with_no_gpus_so_gpu_jobs_fall_through_to_their_pool(run):
    graph, _ = build(run)
    for cq in kind(graph, "ClusterQueue").values():
        (group,) = cq["spec"]["resourceGroups"]
        assert group["coveredResources"] == ["cpu", "memory", GPU_RESOURCE]
        first = group["flavors"][0]
        assert first["name"] == CPU_FLAVOR
        gpu = next(r for r in first["resources"] if r["name"] == GPU_RESOURCE)
        assert gpu == {"name": GPU_RESOURCE, "nominalQuota": "0", "borrowingLimit": "0"}


def test_teams_share_one_cohort_with_reclaim_and_priority_preemption_and_fair_weights(run):
    graph, _ = build(run)
    cqs = kind(graph, "ClusterQueue")
    assert {cq["spec"]["cohortName"] for cq in cqs.values()} == {"ml-platform"}
    for cq in cqs.values():
        assert cq["spec"]["preemption"] == {
            "withinClusterQueue": "LowerPriority",
            "reclaimWithinCohort": "Any",
        }
    assert cqs["research"]["spec"]["fairSharing"] == {"weight": "2"}
    assert cqs["applied"]["spec"]["fairSharing"] == {"weight": "1"}


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert set(selector) == {"matchLabels"}, "only label matching is used"
    return all(labels.get(k) == v for k, v in selector["matchLabels"].items())


def test_a_local_queue_per_team_namespace_and_team_labelled_namespaces_reach_the_team(run):
    graph, _ = build(run)
    lqs = [m for m in graph.manifests() if m["kind"] == "LocalQueue"]
    assert sorted((m["metadata"]["namespace"], m["metadata"]["name"]) for m in lqs) == [
        ("churn", "research"),
        ("ranking", "applied"),
        ("vision", "research"),
    ]
    assert all(m["spec"]["clusterQueue"] == m["metadata"]["name"] for m in lqs)
    cqs = kind(graph, "ClusterQueue")
    namespaces = {m["metadata"]["name"]: m for m in graph.manifests() if m["kind"] == "Namespace"}
    # Each team's namespaces are admitted by its ClusterQueue and by no other team's.
    for team, names in {"research": ["churn", "vision"], "applied": ["ranking"]}.items():
        for ns in names:
            labels = namespaces[ns]["metadata"]["labels"]
            admitted = [
                q for q, cq in cqs.items() if _selects(cq["spec"]["namespaceSelector"], labels)
            ]
            assert admitted == [team], ns
    # A project's own namespace joins a team by carrying the label the platform publishes.
    assert _selects(cqs["research"]["spec"]["namespaceSelector"], {TEAM_LABEL: "research"})
    assert not _selects(cqs["research"]["spec"]["namespaceSelector"], {TEAM_LABEL: "applied"})
    assert not _selects(cqs["research"]["spec"]["namespaceSelector"], {})


def test_the_output_says_what_a_project_needs_to_be_admitted(run):
    graph, _ = build(run)
    teams = graph.outputs["trainingQueues"]
    assert teams["research"] == {
        "clusterQueue": "research",
        "localQueue": "research",
        "namespaceLabels": {TEAM_LABEL: "research"},
        "namespaces": ["churn", "vision"],
        "gpuPools": {
            "a10g-spot": {"accelerator": "nvidia-a10g", "gpus": 2},
            "h100-od": {"accelerator": "nvidia-h100", "gpus": 8},
        },
    }
    assert teams["applied"]["gpuPools"] == {"a10g-spot": {"accelerator": "nvidia-a10g", "gpus": 2}}
    cqs = kind(graph, "ClusterQueue")
    for team in teams.values():
        cq = cqs[team["clusterQueue"]]
        assert _selects(cq["spec"]["namespaceSelector"], team["namespaceLabels"])
        (group,) = cq["spec"]["resourceGroups"]
        assert set(team["gpuPools"]) <= {f["name"] for f in group["flavors"]}


def test_kueue_chart_is_pinned_and_admits_the_engine_jobs(run):
    graph, _ = build(run)
    (release,) = graph.helm_releases()
    assert release["chart"] == "oci://registry.k8s.io/kueue/charts/kueue"
    assert release["version"][0].isdigit() and release["version"].startswith("0.")
    config = yaml.safe_load(release["values"]["managerConfig"]["controllerManagerConfigYaml"])
    assert config["apiVersion"] == "config.kueue.x-k8s.io/v1beta2"
    assert config["integrations"]["frameworks"] == ["batch/job", "kubeflow.org/pytorchjob"]
    assert config["manageJobsWithoutQueueName"] is False
    assert config["waitForPodsReady"]["timeout"] == "20m"
    assert config["fairSharing"]["preemptionStrategies"] == [
        "LessThanOrEqualToFinalShare",
        "LessThanInitialShare",
    ]


def test_fair_sharing_can_be_turned_off(run):
    graph, _ = build(run, {**TEAMS, "fairSharing": False})
    (release,) = graph.helm_releases()
    config = yaml.safe_load(release["values"]["managerConfig"]["controllerManagerConfigYaml"])
    assert "fairSharing" not in config


def test_queue_objects_wait_for_kueue_and_local_queues_for_their_namespace(run):
    graph, _ = build(run)
    release = graph.one("kubernetes:helm.sh/v3:Release")
    for r in graph.resources:
        if r.type.startswith(f"kubernetes:{KUEUE_API_VERSION}:"):
            assert graph.depends_on(r, release), r.name
    lq = graph.by_name("tq-lq-research-churn")
    assert graph.depends_on(lq, graph.by_name("tq-ns-churn"))
    assert graph.depends_on(lq, graph.by_name("tq-cq-research"))


def test_every_manifest_passes_kubectl_validate(run, kubectl_validate: KubectlValidate):
    """Kueue objects against the CRDs of Kueue v0.19.2: the nearest release the module proxy
    serves to the pinned chart 0.19.3 (same v1beta2 API)."""
    graph, _ = build(run)
    manifests = graph.manifests()
    kinds = {m["kind"] for m in manifests}
    assert {"ResourceFlavor", "ClusterQueue", "LocalQueue", "WorkloadPriorityClass"} <= kinds
    assert {"Namespace", "NetworkPolicy"} <= kinds
    kubectl_validate.assert_valid(manifests)


def test_project_namespaces_enforce_restricted_pod_security(run):
    graph, _ = build(run)
    namespaces = [m for m in graph.manifests() if m["kind"] == "Namespace"]
    assert namespaces
    assert all(
        m["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
        for m in namespaces
    )


def test_a_cluster_queue_breaking_its_crd_is_rejected(kubectl_validate: KubectlValidate):
    args = TrainingQueuesArgs.model_validate(TEAMS)
    good = cluster_queue(args.teams[0], "ml-platform")
    no_quota = cluster_queue(args.teams[0], "ml-platform")
    del no_quota["spec"]["resourceGroups"][0]["flavors"][1]["resources"][2]["nominalQuota"]
    v1beta1 = cluster_queue(args.teams[0], "ml-platform")
    v1beta1["spec"]["cohort"] = v1beta1["spec"].pop("cohortName")
    short = cluster_queue(args.teams[0], "ml-platform")
    del short["spec"]["resourceGroups"][0]["flavors"][1]["resources"][0]  # CEL: one per resource
    assert kubectl_validate.problems([good]) == [[]]
    quota, spelling, size = kubectl_validate.problems([no_quota, v1beta1, short])
    assert any("nominalQuota: Required value" in p for p in quota), quota
    assert any("spec.cohort" in p and "unknown field" in p for p in spelling), spelling
    assert any("same number of resources as the coveredResources" in p for p in size), size


def test_each_flavor_lists_the_covered_resources_in_their_order():
    """Kueue's admission webhook (not the CRD, which only counts them) requires the order."""
    args = TrainingQueuesArgs.model_validate(TEAMS)
    for team in args.teams:
        (group,) = cluster_queue(team, "ml-platform")["spec"]["resourceGroups"]
        for flavor in group["flavors"]:
            assert [r["name"] for r in flavor["resources"]] == group["coveredResources"]


# Validation ------------------------------------------------------------------------------------
def paths(issues) -> dict[str, str]:
    return {format_path(i.path): i.message for i in issues}


def with_quota(**quota: Any) -> TrainingQueuesArgs:
    return TrainingQueuesArgs.model_validate(
        {"teams": [{"name": "research", "namespaces": ["churn"], "quotas": [quota]}]}
    )


def test_a_quota_larger_than_the_pool_limit_is_reported_at_its_path():
    found = paths(check_pool_quotas(with_quota(pool="a10g-spot", gpus=6), GPU_LIMITS))
    assert list(found) == ["teams[0].quotas[0].gpus"]
    assert "6 GPUs exceeds pool 'a10g-spot'" in found["teams[0].quotas[0].gpus"]
    assert "limit of 4" in found["teams[0].quotas[0].gpus"]
    assert check_pool_quotas(with_quota(pool="a10g-spot", gpus=4), GPU_LIMITS) == []


def test_quotas_of_all_teams_together_may_not_exceed_the_pool():
    args = TrainingQueuesArgs.model_validate(
        {
            "teams": [
                {"name": "a", "namespaces": ["a"], "quotas": [{"pool": "a10g-spot", "gpus": 3}]},
                {"name": "b", "namespaces": ["b"], "quotas": [{"pool": "a10g-spot", "gpus": 2}]},
            ]
        }
    )
    found = paths(check_pool_quotas(args, GPU_LIMITS))
    assert list(found) == ["teams[1].quotas[0].gpus"]
    assert "add up to 5 GPUs" in found["teams[1].quotas[0].gpus"]


def test_borrowing_past_the_pool_limit_is_reported():
    args = with_quota(pool="a10g-spot", gpus=2, borrowingLimit={"gpus": 3})
    assert list(paths(check_pool_quotas(args, GPU_LIMITS))) == [
        "teams[0].quotas[0].borrowingLimit.gpus"
    ]


def test_an_unknown_pool_is_reported_with_the_known_ones():
    found = paths(check_pool_quotas(with_quota(pool="a100-spot", gpus=1), GPU_LIMITS))
    assert found == {
        "teams[0].quotas[0].pool": "unknown GPU pool 'a100-spot'; known pools: a10g-spot, h100-od"
    }


def test_a_negative_gpu_count_is_reported():
    found = paths(with_quota(pool="a10g-spot", gpus=-1, borrowingLimit={"gpus": -2}).issues())
    assert set(found) == {"teams[0].quotas[0].gpus", "teams[0].quotas[0].borrowingLimit.gpus"}
    assert "must be >= 0, got -1" in found["teams[0].quotas[0].gpus"]


def test_all_problems_are_reported_at_once_by_the_component(run):
    config = {
        "teams": [
            {
                "name": "Research",
                "namespaces": ["churn"],
                "quotas": [{"pool": "a10g-spot", "gpus": -1, "memory": "lots"}],
            },
            {"name": "b", "namespaces": ["churn"], "cpu": "-4"},
        ]
    }
    with pytest.raises(InvalidArgsError) as err:
        build(run, config)
    found = {format_path(i.path) for i in err.value.issues}
    assert found == {
        "teams[0].name",
        "teams[0].quotas[0].gpus",
        "teams[0].quotas[0].memory",
        "teams[1].cpu",
        "teams[1].namespaces[0]",
    }
    assert str(err.value).startswith("invalid TrainingQueues args:")


def test_the_component_rejects_quotas_its_pools_cannot_supply(run):
    with pytest.raises(InvalidArgsError) as err:
        build(
            run,
            {
                "teams": [
                    {
                        "name": "r",
                        "namespaces": ["r"],
                        "quotas": [{"pool": "a10g-spot", "gpus": 9}, {"pool": "nope", "gpus": 1}],
                    }
                ]
            },
        )
    assert {format_path(i.path) for i in err.value.issues} == {
        "teams[0].quotas[0].gpus",
        "teams[0].quotas[1].pool",
    }


def test_unknown_config_keys_are_rejected():
    with pytest.raises(ValueError, match="gpuz"):
        TrainingQueuesArgs.model_validate(
            {"teams": [{"name": "r", "namespaces": ["r"], "quotas": [{"pool": "x", "gpuz": 1}]}]}
        )
