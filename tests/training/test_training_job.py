"""TrainingJob: single-node Jobs and multi-node PyTorchJobs, queued, placed and hardened."""

from __future__ import annotations

from typing import Any

import pytest

from components.common import GPU_TOLERATION, InvalidArgsError, format_path
from components.training_job import (
    TrainingJob,
    TrainingJobArgs,
    batch_job,
    check_job_pool,
    pytorch_job,
)
from tests.kube_validate import KubectlValidate
from tests.training.helpers import (
    GPU_LIMITS,
    minio,
    s3,
    target,
    validate_pod_template,
)

BASE: dict[str, Any] = {
    "name": "train-churn",
    "project": "churn",
    "namespace": "churn",
    "queue": "research",
    "image": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/training:1.4.2",
    "command": ["torchrun", "train.py"],
    "serviceAccountName": "churn-training",
    "pool": "a10g-spot",
}


def job_args(**overrides: Any) -> TrainingJobArgs:
    return TrainingJobArgs.model_validate({**BASE, **overrides})


def build(run, args: TrainingJobArgs, storage=None, **kwargs: Any) -> dict[str, Any]:
    graph = run(
        lambda: TrainingJob("job", args, target=target(), storage=storage or s3(), **kwargs)
    )
    (manifest,) = graph.manifests()
    return manifest


def templates(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    if manifest["kind"] == "Job":
        return [manifest["spec"]["template"]]
    return [r["template"] for r in manifest["spec"]["pytorchReplicaSpecs"].values()]


def env_of(template: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in template["spec"]["containers"][0]["env"]}


def test_single_node_job_is_a_suspended_queued_batch_job(run):
    job = build(run, job_args(priorityClass="urgent"))
    assert (job["apiVersion"], job["kind"]) == ("batch/v1", "Job")
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "research"
    assert job["metadata"]["labels"]["kueue.x-k8s.io/priority-class"] == "urgent"
    assert job["spec"]["suspend"] is True
    assert job["spec"]["backoffLimit"] == 2
    assert job["spec"]["activeDeadlineSeconds"] == 86400
    # Pulumi state: no TTL (refresh would recreate a deleted job and train again), and `up`
    # does not wait for the training to finish
    assert "ttlSecondsAfterFinished" not in job["spec"]
    assert job["metadata"]["annotations"] == {"pulumi.com/skipAwait": "true"}


@pytest.mark.parametrize("nodes", [1, 3])
def test_pods_request_gpus_tolerate_the_taint_select_the_pool_and_are_not_disrupted(run, nodes):
    job = build(run, job_args(nodes=nodes, gpusPerNode=4, cpu="40", memory="160Gi"))
    for template in templates(job):
        assert template["metadata"]["annotations"] == {"karpenter.sh/do-not-disrupt": "true"}
        spec = template["spec"]
        assert spec["tolerations"] == [GPU_TOLERATION]
        assert spec["nodeSelector"] == {
            "mlplatform.io/pool": "a10g-spot",
            "kubernetes.io/arch": "amd64",
        }
        resources = spec["containers"][0]["resources"]
        expected = {"cpu": "40", "memory": "160Gi", "nvidia.com/gpu": "4"}
        assert resources == {"requests": expected, "limits": expected}
        assert spec["serviceAccountName"] == "churn-training"
        assert spec["automountServiceAccountToken"] is False


@pytest.mark.parametrize("nodes", [1, 2])
def test_pods_run_non_root_with_a_read_only_root_and_writable_scratch(run, nodes):
    job = build(run, job_args(nodes=nodes))
    for template in templates(job):
        pod = template["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        ctx = pod["containers"][0]["securityContext"]
        assert ctx["readOnlyRootFilesystem"] is True
        assert ctx["allowPrivilegeEscalation"] is False
        assert ctx["capabilities"] == {"drop": ["ALL"]}
        mounts = {m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
        assert mounts == {"/tmp"}  # no /dev/shm unless asked for
        assert env_of(template)["HOME"] == "/tmp"
        validate_pod_template(template)


def test_shared_memory_is_a_memory_backed_volume_of_the_given_size(run):
    job = build(run, job_args(shmSize="8Gi"))
    pod = job["spec"]["template"]["spec"]
    (shm,) = [v for v in pod["volumes"] if v["name"] == "dshm"]
    assert shm["emptyDir"] == {"medium": "Memory", "sizeLimit": "8Gi"}
    assert {"name": "dshm", "mountPath": "/dev/shm"} in pod["containers"][0]["volumeMounts"]


def test_checkpoints_go_to_the_project_prefix_of_the_model_bucket_on_s3(run):
    job = build(run, job_args(env={"EPOCHS": "3"}))
    env = env_of(job["spec"]["template"])
    assert env["CHECKPOINT_URI"] == "s3://ml-models/projects/churn/checkpoints/train-churn"
    assert env["AWS_REGION"] == "eu-west-1"
    assert env["EPOCHS"] == "3"
    assert "AWS_ENDPOINT_URL_S3" not in env
    assert "envFrom" not in job["spec"]["template"]["spec"]["containers"][0]


def test_checkpoints_go_to_minio_on_the_local_stack(run):
    job = build(run, job_args(), storage=minio())
    container = job["spec"]["template"]["spec"]["containers"][0]
    env = env_of(job["spec"]["template"])
    assert env["CHECKPOINT_URI"] == "s3://models/projects/churn/checkpoints/train-churn"
    assert env["AWS_ENDPOINT_URL_S3"] == "http://minio.minio.svc:9000"
    assert container["envFrom"] == [{"secretRef": {"name": "minio-credentials"}}]


def test_multi_node_job_is_a_suspended_pytorchjob_with_one_master_and_workers(run):
    job = build(run, job_args(nodes=4, gpusPerNode=8, pool="h100-od", shmSize="64Gi"))
    assert (job["apiVersion"], job["kind"]) == ("kubeflow.org/v1", "PyTorchJob")
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "research"
    run_policy = job["spec"]["runPolicy"]
    assert run_policy["suspend"] is True
    assert run_policy["backoffLimit"] == 2
    assert run_policy["activeDeadlineSeconds"] == 86400
    assert "ttlSecondsAfterFinished" not in run_policy
    replicas = job["spec"]["pytorchReplicaSpecs"]
    assert replicas["Master"]["replicas"] == 1
    assert replicas["Worker"]["replicas"] == 3
    assert job["spec"]["nprocPerNode"] == "8"
    for name, replica in replicas.items():
        # the operator injects the rendezvous env into the container named "pytorch"
        assert replica["template"]["spec"]["containers"][0]["name"] == "pytorch"
        validate_pod_template(replica["template"], name=name.lower())


def test_cpu_only_job_has_no_gpu_placement(run):
    job = build(run, job_args(gpusPerNode=0, pool=None))
    pod = job["spec"]["template"]["spec"]
    assert "tolerations" not in pod
    # still on the architecture its image is built for
    assert pod["nodeSelector"] == {"kubernetes.io/arch": "amd64"}
    assert "nvidia.com/gpu" not in pod["containers"][0]["resources"]["limits"]


def test_preempted_pods_do_not_use_up_retries(run):
    job = build(run, job_args())
    assert job["spec"]["podFailurePolicy"]["rules"] == [
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}
    ]


def test_every_job_shape_passes_kubectl_validate(run, kubectl_validate: KubectlValidate):
    """Jobs against Kubernetes 1.33, PyTorchJobs against the pinned Training Operator's CRD."""
    jobs = [
        build(run, job_args(priorityClass="urgent", shmSize="8Gi")),
        build(run, job_args(gpusPerNode=0, pool=None)),
        build(run, job_args(), storage=minio()),
        build(run, job_args(nodes=4, gpusPerNode=8, pool="h100-od", shmSize="64Gi")),
        build(run, job_args(nodes=2, env={"EPOCHS": "3"}), storage=minio()),
    ]
    assert {j["kind"] for j in jobs} == {"Job", "PyTorchJob"}
    kubectl_validate.assert_valid(jobs)


def test_a_pytorchjob_breaking_its_crd_is_rejected(run, kubectl_validate: KubectlValidate):
    wrong_type = build(run, job_args(nodes=2))
    wrong_type["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"] = "one"
    # the pod template inside the CR is checked field by field, like a Pod
    typo = build(run, job_args(nodes=2))
    typo["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]["portz"] = []
    type_problems, typo_problems = kubectl_validate.problems([wrong_type, typo])
    assert any("Worker.replicas in body must be of type integer" in p for p in type_problems)
    assert any("containers[0].portz" in p and "unknown field" in p for p in typo_problems)


# Validation ------------------------------------------------------------------------------------
def paths(issues) -> dict[str, str]:
    return {format_path(i.path): i.message for i in issues}


def test_a_negative_gpu_count_is_reported():
    found = paths(job_args(gpusPerNode=-2).issues())
    assert found == {"gpusPerNode": "must be >= 0, got -2"}


def test_bad_inputs_are_all_reported_at_once():
    found = paths(
        job_args(
            name="Train_1",
            image="training:latest",
            nodes=0,
            pool=None,
            shmSize="a lot",
            env={"CHECKPOINT_URI": "s3://elsewhere"},
        ).issues()
    )
    assert set(found) == {"name", "image", "nodes", "pool", "shmSize", "env.CHECKPOINT_URI"}
    assert "pinned" in found["image"]


@pytest.mark.parametrize(
    "image", ["training", "repo/training:latest", "registry:5000/training", "a b:1"]
)
def test_unpinned_images_are_rejected(image):
    assert "image" in paths(job_args(image=image).issues())


@pytest.mark.parametrize(
    "image", ["registry:5000/training:1.0", "training@sha256:" + "a" * 64, "ecr/x:2026.11.1"]
)
def test_pinned_images_are_accepted(image):
    assert job_args(image=image).issues() == []


def test_an_unknown_pool_and_a_job_bigger_than_its_pool_are_reported():
    assert paths(check_job_pool(job_args(pool="a100"), GPU_LIMITS)) == {
        "pool": "unknown GPU pool 'a100'; known pools: a10g-spot, h100-od"
    }
    too_big = paths(check_job_pool(job_args(nodes=3, gpusPerNode=2), GPU_LIMITS))
    assert list(too_big) == ["gpusPerNode"] and "needs 6 GPUs" in too_big["gpusPerNode"]
    assert check_job_pool(job_args(nodes=2, gpusPerNode=2), GPU_LIMITS) == []


def test_a_managed_job_refuses_a_ttl_submitted_runs_may_set_one(run):
    """Issue 16 item 10: a TTL-deleted managed Job is recreated by `up --refresh` and trains again."""
    with pytest.raises(InvalidArgsError, match="ttlSecondsAfterFinished: must be unset"):
        build(run, job_args(ttlSecondsAfterFinished=3600))
    # the pure builders (what a submitted run uses) still carry it when asked
    submitted = batch_job(job_args(ttlSecondsAfterFinished=3600), "s3://b/c", s3())
    assert submitted["spec"]["ttlSecondsAfterFinished"] == 3600
    distributed = pytorch_job(job_args(nodes=2, ttlSecondsAfterFinished=60), "s3://b/c", s3())
    assert distributed["spec"]["runPolicy"]["ttlSecondsAfterFinished"] == 60


def test_the_component_refuses_bad_args_before_declaring_anything(run):
    with pytest.raises(InvalidArgsError, match="gpusPerNode"):
        build(run, job_args(gpusPerNode=-1))
    with pytest.raises(InvalidArgsError, match="unknown GPU pool"):
        build(run, job_args(pool="a100"), gpu_limits=GPU_LIMITS)
