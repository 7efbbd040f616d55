"""Warm pool: N GPU nodes kept up in working hours by low-priority placeholders that any real
workload preempts, scaled by two CronJobs that may touch nothing else."""

from __future__ import annotations

import kubernetes_validate
import pytest

from components.common import GPU_TOLERATION, POOL_LABEL, format_path
from components.gpu_node_pool import GpuNodePoolArgs
from components.warm_pool import (
    KUBECTL_IMAGE,
    PAUSE_IMAGE,
    PLACEHOLDER_PRIORITY,
    PRIORITY_CLASS,
    WARM_POOL_NAMESPACE,
    WarmPoolArgs,
    WarmPools,
    shared_manifests,
    warm_pool_manifests,
)
from mlplatform.plan import run_program

BERLIN = {"nodes": 2, "days": ["mon", "tue", "wed", "thu", "fri"], "start": "07:30",
          "stop": "19:00", "timeZone": "Europe/Berlin"}  # fmt: skip


def _by_kind(manifests):
    out: dict[str, list] = {}
    for m in manifests:
        out.setdefault(m["kind"], []).append(m)
    return out


def test_placeholders_hold_one_node_each_and_never_evict_anything():
    m = _by_kind(warm_pool_manifests("l4", 1, WarmPoolArgs.model_validate(BERLIN)))
    (deploy,) = m["Deployment"]
    pod = deploy["spec"]["template"]["spec"]
    assert deploy["spec"]["replicas"] == 0  # the CronJobs own the count
    assert pod["priorityClassName"] == PRIORITY_CLASS
    assert pod["nodeSelector"] == {POOL_LABEL: "l4"} and pod["tolerations"] == [GPU_TOLERATION]
    (term,) = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    (container,) = pod["containers"]
    assert container["image"] == PAUSE_IMAGE
    assert container["resources"]["requests"]["nvidia.com/gpu"] == "1"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    (pc,) = [x for x in shared_manifests() if x["kind"] == "PriorityClass"]
    assert pc["value"] == PLACEHOLDER_PRIORITY < 0 and pc["preemptionPolicy"] == "Never"
    assert pc["globalDefault"] is False


def test_schedule_in_the_teams_time_zone():
    m = _by_kind(warm_pool_manifests("l4", 1, WarmPoolArgs.model_validate(BERLIN)))
    jobs = {j["metadata"]["name"]: j["spec"] for j in m["CronJob"]}
    start, stop = jobs["warm-l4-start"], jobs["warm-l4-stop"]
    assert start["schedule"] == "30 7 * * 1,2,3,4,5" and start["timeZone"] == "Europe/Berlin"
    assert stop["schedule"] == "0 19 * * 1,2,3,4,5"
    args = start["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args == [
        "scale",
        "deployment/warm-l4",
        "--replicas=2",
        f"--namespace={WARM_POOL_NAMESPACE}",
    ]
    assert (
        "--replicas=0" in stop["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"]
    )
    image = start["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == KUBECTL_IMAGE and not image.endswith(":latest")
    assert WarmPoolArgs.model_validate(BERLIN).hours_per_week == 57.5
    sunday = WarmPoolArgs.model_validate({**BERLIN, "days": ["sun", "sat"]})
    assert sunday.cron("07:30") == "30 7 * * 0,6"


def test_scaler_may_scale_this_deployment_only():
    m = _by_kind(warm_pool_manifests("l4", 1, WarmPoolArgs.model_validate(BERLIN)))
    (role,) = m["Role"]
    for rule in role["rules"]:
        assert rule["resourceNames"] == ["warm-l4"]
        assert set(rule["verbs"]) <= {"get", "patch", "update"}
    assert {r["resources"][0] for r in role["rules"]} == {"deployments", "deployments/scale"}


def test_manifests_pass_the_kubernetes_schema_and_restricted_pod_security():
    manifests = [
        *shared_manifests(),
        *warm_pool_manifests("l4", 1, WarmPoolArgs.model_validate(BERLIN)),
    ]
    for m in manifests:
        kubernetes_validate.validate(m, "1.33", strict=True)
    (ns,) = [m for m in manifests if m["kind"] == "Namespace"]
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for m in manifests:
        if m["kind"] in ("Deployment", "CronJob"):
            spec = m["spec"]["template"]["spec"] if m["kind"] == "Deployment" else (
                m["spec"]["jobTemplate"]["spec"]["template"]["spec"])  # fmt: skip
            assert spec["securityContext"]["runAsNonRoot"] is True
            for c in spec["containers"]:
                ctx = c["securityContext"]
                assert ctx["allowPrivilegeEscalation"] is False and ctx["readOnlyRootFilesystem"]
                assert ctx["capabilities"] == {"drop": ["ALL"]}


@pytest.mark.parametrize(
    ("change", "key", "words"),
    [
        ({"stop": "07:00"}, "warmPool.stop", "after start"),
        ({"timeZone": "Mars/Olympus"}, "warmPool.timeZone", "IANA"),
        ({"days": ["mon", "mon"]}, "warmPool.days", "twice"),
        ({"nodes": 5}, "warmPool.nodes", "maxGpus"),
        ({"gpusPerNode": 2}, "warmPool.gpusPerNode", "fit one node"),
    ],
)
def test_bad_warm_pools(change, key, words):
    pool = GpuNodePoolArgs.model_validate(
        {"name": "l4", "accelerator": "nvidia-l4", "maxGpus": 4, "maxGpusPerNode": 1,
         "warmPool": {**BERLIN, **change}}
    )  # fmt: skip
    msgs = {format_path(i.path): i.message for i in pool.issues()}
    assert words in msgs[key]


def test_component_declares_after_its_pools(run):
    from components.common import KubeTarget

    def program():
        import pulumi_kubernetes as k8s

        provider = k8s.Provider("k", context="x")
        WarmPools(
            "warm",
            [("l4", 1, WarmPoolArgs.model_validate(BERLIN))],
            target=KubeTarget(provider=provider, on_aws=False),
        )

    graph = run_program(program)
    kinds = sorted(
        r.type.rsplit(":", 1)[-1]
        for r in graph.resources
        if r.type.startswith("kubernetes:") and r.type != "pulumi:providers:kubernetes"
    )
    assert kinds == sorted(
        ["Namespace", "PriorityClass", "NetworkPolicy", "Deployment", "ServiceAccount", "Role",
         "RoleBinding", "CronJob", "CronJob"]
    )  # fmt: skip
    deploy = graph.one("kubernetes:apps/v1:Deployment")
    assert graph.depends_on(deploy, graph.one("kubernetes:core/v1:Namespace"))
