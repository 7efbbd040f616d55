"""The infrastructure program under mocks: what it declares on the platform, and what it refuses.

Runs the program with the platform library's own mock harness. The platform stack's outputs are
stand-ins, checked against the platform's output contract (``mlplatform.contract``), the same
schema the platform's own tests check its real stacks' outputs against. No cloud account or
cluster is touched.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

contract = pytest.importorskip(
    "mlplatform.contract", reason="the platform library is not installed (see conftest.py)"
)
plan = pytest.importorskip("mlplatform.plan", reason="the platform library is not installed")

import program  # noqa: E402
import runs  # noqa: E402

ACCOUNT = "123456789012"
REGION = "{{ cookiecutter.aws_region }}"
REGISTRY = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
PLATFORM_STACK = "{{ cookiecutter.platform_stack }}"
TEAM = "{{ cookiecutter.team }}"
GPU_POOL = "{{ cookiecutter.gpu_pool }}"
TEAM_LABEL = "mlplatform.io/team"
NS = program.PROJECT
TRAINING_IMAGE = f"{REGISTRY}/ml-platform/dev/training@sha256:{'a' * 64}"
ACCELERATOR = "{{ cookiecutter.accelerator }}"
TEAM_POOLS: dict[str, Any] = {GPU_POOL: {"accelerator": ACCELERATOR, "gpus": 2}} if GPU_POOL else {}
PLATFORM_OUTPUTS: dict[str, Any] = {
    "platform": "aws",
    "environment": "dev",
    "region": REGION,
    "clusterName": "ml-platform-dev",
    "kubeconfig": "apiVersion: v1\nkind: Config\n",
    "modelBucket": "ml-platform-models-dev",
    "modelBucketArn": "arn:aws:s3:::ml-platform-models-dev",
    "kmsKeyArn": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/00000000-0000-0000-0000-000000000000",
    "ecrRepositories": {
        "training": f"{REGISTRY}/ml-platform/dev/training",
        "serving": f"{REGISTRY}/ml-platform/dev/serving",
    },
    "trainingQueues": {
        TEAM: {
            "clusterQueue": TEAM,
            "localQueue": TEAM,
            "namespaceLabels": {TEAM_LABEL: TEAM},
            "namespaces": ["platform-owned"],
            "gpuPools": TEAM_POOLS,
        },
        "other-team": {
            "clusterQueue": "other-team",
            "localQueue": "other-team",
            "namespaceLabels": {TEAM_LABEL: "other-team"},
            "namespaces": [],
            "gpuPools": {"other-pool": {"accelerator": "nvidia-t4", "gpus": 1}},
        },
    },
    "gpuPools": [p for p in (GPU_POOL, "other-pool") if p],
    "mlflowTrackingUri": "http://mlflow.mlflow.svc.cluster.local:5000",
    # The platform's registration of this project (its stack config's ml-platform:projects).
    "projects": {
        NS: {
            "namespace": NS,
            "team": TEAM,
            "serviceAccounts": program.service_accounts(),
            "mlflowSecret": {
                "name": "mlflow-tracking",
                "usernameKey": "username",
                "passwordKey": "password",
            },
        }
    },
}


def is_drift_job(cron: dict[str, Any]) -> bool:
    """The drift CronJob of infra/quality.py or the retraining trigger of infra/retraining.py
    (neither trains itself: they are not retraining schedules)."""
    labels = cron["metadata"].get("labels") or {}
    return labels.get("app.kubernetes.io/component") in ("drift", "retrain")


def settings(**overrides: Any) -> program.Settings:
    base: dict[str, Any] = {
        "platform_stack": PLATFORM_STACK,
        "region": REGION,
        "team": TEAM,
        "namespace": NS,
        "training_image": TRAINING_IMAGE,
        "gpu_pool": GPU_POOL or None,
        "gpus": {{ 0 if cookiecutter.accelerator == 'none' else 1 }},
        "min_accuracy": "0.6",
        "training_schedule": "0 3 * * 1",
{%- if cookiecutter.serving == 'yes' %}
        "serving_image": f"{REGISTRY}/ml-platform/dev/serving@sha256:{'b' * 64}",
        "min_replicas": 1,
        "max_replicas": 3,
        "model_version": "3",
{%- endif %}
    }
    return program.Settings(**{**base, **overrides})


def run(s: program.Settings, outputs: dict[str, Any] | None = None) -> Any:
    def body() -> None:
        import pulumi

        for key, value in program.deploy(s).items():
            pulumi.export(key, value)

    return plan.run_program(
        body,
        project=NS,
        stack="dev",
        region=REGION,
        stack_references={PLATFORM_STACK: {**PLATFORM_OUTPUTS, **(outputs or {})}},
    )


@pytest.fixture(scope="module")
def graph() -> Any:
    return run(settings())


def manifests(graph: Any, kind: str) -> list[dict[str, Any]]:
    return [m for m in graph.manifests() if m.get("kind") == kind]


def test_stand_in_outputs_follow_the_platform_contract() -> None:
    offer = contract.validate_outputs(PLATFORM_OUTPUTS)
    assert TEAM in offer.trainingQueues
    with pytest.raises(contract.ContractError, match=r"trainingQueues"):
        contract.validate_outputs({**PLATFORM_OUTPUTS, "trainingQueues": {TEAM: TEAM}})


def test_reads_the_platform_stack(graph: Any) -> None:
    assert graph.outputs["platformCheck"] == "ok"
    # The mocks answer only the stack named in the settings.
    with pytest.raises(Exception, match=r"stack reference 'org/ml-platform/elsewhere'"):
        run(settings(platform_stack="org/ml-platform/elsewhere"))


def test_the_platform_owns_the_namespace_queue_and_access(graph: Any) -> None:
    """A registered project's namespace, LocalQueue and Pod Identity roles are the platform's:
    the project's CI may edit only inside the namespace, so it declares none of them."""
    for kind in ("Namespace", "LocalQueue"):
        assert manifests(graph, kind) == [], kind
    # Only the endpoint's own account (its ServingEndpoint's); the platform binds its role.
    accounts = {m["metadata"]["name"] for m in manifests(graph, "ServiceAccount")}
    assert accounts <= {program.SERVER_SA}
    assert graph.by_type("aws:eks/podIdentityAssociation:PodIdentityAssociation") == []
    assert graph.by_type("aws:iam/role:Role") == []
    (cron,) = training_schedules(graph)
    assert cron["metadata"]["namespace"] == NS
    template_labels = cron["spec"]["jobTemplate"]["metadata"]["labels"]
    # The LocalQueue the platform declares in the team's namespaces is named after the team.
    queue = PLATFORM_OUTPUTS["trainingQueues"][TEAM]["localQueue"]
    assert template_labels["kueue.x-k8s.io/queue-name"] == queue
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    registration = PLATFORM_OUTPUTS["projects"][NS]
    assert registration["serviceAccounts"][pod["serviceAccountName"]] == "read-write"


{%- if cookiecutter.serving == 'yes' %}


def test_the_server_gets_the_sample_rate(graph: Any) -> None:
    def rate(g: Any) -> str:
        (deploy,) = [d for d in manifests(g, "Deployment") if d["metadata"]["name"] == NS]
        (container,) = deploy["spec"]["template"]["spec"]["containers"]
        return {e["name"]: e.get("value") for e in container["env"]}["INFERENCE_LOG_SAMPLE_RATE"]

    assert rate(graph) == "0.01"  # the platform's default
    assert rate(run(settings(inference_log_sample_rate=0.2))) == "0.2"
{%- endif %}


def test_an_unregistered_project_fails_the_preview_naming_the_fix() -> None:
    unregistered = r"project: '.*' is not registered on .*ml-platform:projects"
    with pytest.raises(Exception, match=unregistered):
        run(settings(), outputs={"projects": {}})
    short = {**PLATFORM_OUTPUTS["projects"][NS], "serviceAccounts": {}}
    with pytest.raises(Exception, match=r"serviceAccounts: .* grants .*-trainer nothing"):
        run(settings(), outputs={"projects": {NS: short}})


def test_deploying_starts_no_training_run(graph: Any) -> None:
    """A merge deploys; it does not retrain. Runs come from submit.py and the schedule."""
    assert manifests(graph, "Job") == []
    assert manifests(graph, "PyTorchJob") == []
    assert graph.outputs["trainingSchedule"] == "0 3 * * 1"
    assert training_schedules(run(settings(training_schedule=None))) == []


def training_schedules(graph: Any) -> list[dict[str, Any]]:
    """The retraining CronJobs (not the model-quality drift job of infra/quality.py)."""
    return [c for c in manifests(graph, "CronJob") if not is_drift_job(c)]


def run_spec(graph: Any) -> runs.RunSpec:
    return runs.RunSpec.from_output(graph.outputs["trainingRun"])


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def _check_run_pod(pod: dict[str, Any]) -> None:
    (container,) = pod["containers"]
    assert container["image"] == TRAINING_IMAGE
    assert container["command"] == program.training_command(1, {{ 0 if cookiecutter.accelerator == 'none' else 1 }})
    assert pod["serviceAccountName"] == f"{NS}-trainer"
    env = _env(container)
    # Each run checkpoints under its own name (Kubernetes expands $(RUN_ID), defined before).
    assert env["CHECKPOINT_URI"] == (
        f"s3://ml-platform-models-dev/projects/{NS}/checkpoints/$(RUN_ID)"
    )
    names = [e["name"] for e in container["env"]]
    assert names.index("RUN_ID") < names.index("CHECKPOINT_URI")
    # The root filesystem is read-only: models go to the /tmp scratch volume.
    scratch = {m["mountPath"] for m in container["volumeMounts"]}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert env["MODEL_DIR"].startswith("/tmp/")
    assert "/tmp" in scratch
    assert env["HOME"] == "/tmp"
    assert env["MLFLOW_TRACKING_URI"] == PLATFORM_OUTPUTS["mlflowTrackingUri"]
    for var, key in (
        ("MLFLOW_TRACKING_USERNAME", "username"),
        ("MLFLOW_TRACKING_PASSWORD", "password"),
    ):
        assert env[var] == {"secretKeyRef": {"name": "mlflow-tracking", "key": key}}
{%- if cookiecutter.accelerator == 'none' %}
    assert "nvidia.com/gpu" not in container["resources"]["limits"]
    # the image is built for amd64: the job stays on amd64 nodes (no GPU pool selector)
    assert pod["nodeSelector"] == {"kubernetes.io/arch": "amd64"}
{%- else %}
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["nodeSelector"] == {"mlplatform.io/pool": GPU_POOL, "kubernetes.io/arch": "amd64"}
    assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
{%- endif %}
{% if cookiecutter.framework == 'pytorch' %}

def test_training_command_is_torchrun_on_one_node_or_many() -> None:
    module = f"{program.PACKAGE}.train"
    one = ["torchrun", "--standalone", "--nproc-per-node=1", "-m", module]
    assert program.training_command(1, 0) == one
    assert program.training_command(1, 4)[2] == "--nproc-per-node=4"
    # On several nodes the PyTorchJob operator sets the rendezvous (PET_* variables).
    assert program.training_command(3, 2) == ["torchrun", "-m", module]


def test_more_than_one_node_is_a_pytorchjob_under_torchrun(graph: Any) -> None:
    spec = runs.RunSpec(**{**run_spec(graph).to_output(), "nodes": 2})
    job = runs.job_manifest(spec, "churn-x", runs.train_args(spec))
    assert job["kind"] == "PyTorchJob"
    replicas = job["spec"]["pytorchReplicaSpecs"]
    assert (replicas["Master"]["replicas"], replicas["Worker"]["replicas"]) == (1, 1)
    (container,) = replicas["Master"]["template"]["spec"]["containers"]
    assert container["command"] == ["torchrun", "-m", f"{program.PACKAGE}.train"]
    assert job["spec"]["nprocPerNode"] == "1"
{%- else %}

def test_scikit_learn_trains_on_one_node() -> None:
    assert program.training_command(1, 0) == ["python", "-m", f"{program.PACKAGE}.train"]
    with pytest.raises(ValueError, match="nodes must be 1"):
        program.training_command(2, 0)
{%- endif %}


def test_scheduled_runs_are_queued_hardened_and_tracked(graph: Any) -> None:
    (cron,) = training_schedules(graph)
    assert cron["spec"]["schedule"] == "0 3 * * 1"
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    job = cron["spec"]["jobTemplate"]["spec"]
    assert job["suspend"] is True  # Kueue admits it
    assert job["ttlSecondsAfterFinished"] == 7 * 24 * 3600  # history lives in MLflow and S3
    pod = job["template"]["spec"]
    _check_run_pod(pod)
    env = _env(pod["containers"][0])
    # Each scheduled Job's own (controller-made) name is its run id.
    assert env["RUN_ID"] == {
        "fieldRef": {"fieldPath": "metadata.labels['batch.kubernetes.io/job-name']"}
    }
    args = pod["containers"][0]["args"]
    assert args[:2] == ["--data", f"s3://ml-platform-models-dev/projects/{NS}/data/train.csv"]
    assert args[2:] == ["--min-accuracy", "0.6", "--upload", "yes"]


def test_submitted_runs_are_unique_and_rendered_by_the_platform(graph: Any) -> None:
    spec = run_spec(graph)
    names = {runs.run_name(spec.project) for _ in range(20)}
    assert len(names) == 20
    name = sorted(names)[0]
    assert len(name) <= 63
    job = runs.job_manifest(spec, name, runs.train_args(spec, {"C": "0.5"}, seed=3))
    assert job["kind"] == "Job"
    assert job["metadata"]["name"] == name
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == TEAM
    assert job["spec"]["suspend"] is True
    _check_run_pod(job["spec"]["template"]["spec"])
    assert job["spec"]["template"]["spec"]["containers"][0]["args"][-6:] == [
        "--upload", "yes", "--seed", "3", "--param", "C=0.5",
    ]  # fmt: skip


{% if cookiecutter.framework == 'pytorch' -%}
def test_multi_node_runs_are_pytorch_jobs(graph: Any) -> None:
    spec = runs.RunSpec(**{**run_spec(graph).to_output(), "nodes": 3})
    job = runs.job_manifest(spec, "churn-x", runs.train_args(spec))
    assert job["kind"] == "PyTorchJob"
    replicas = job["spec"]["pytorchReplicaSpecs"]
    assert (replicas["Master"]["replicas"], replicas["Worker"]["replicas"]) == (1, 2)
    for replica in replicas.values():
        env = _env(replica["template"]["spec"]["containers"][0])
        assert env["RUN_ID"] == "churn-x"  # the operator's pods carry no Job name label
        assert env["MODEL_DIR"].startswith("/tmp/")


{% endif -%}
def test_unset_min_accuracy_leaves_the_floor_to_the_training_gate(graph: Any) -> None:
    # One owner of the default: gates.py's MIN_ACCURACY; the program passes only a set value.
    spec = runs.RunSpec(**{**run_spec(graph).to_output(), "min_accuracy": None})
    assert "--min-accuracy" not in runs.train_args(spec)
    assert runs.train_args(run_spec(graph))[2:4] == ["--min-accuracy", "0.6"]


def test_run_spec_refuses_unknown_keys(graph: Any) -> None:
    with pytest.raises(ValueError, match=r"unknown keys \['surprise'\]"):
        runs.RunSpec.from_output({**graph.outputs["trainingRun"], "surprise": 1})


{%- if cookiecutter.serving == 'yes' %}


def test_serving_endpoint_serves_the_champion(graph: Any) -> None:
    (deploy,) = [d for d in manifests(graph, "Deployment") if d["metadata"]["name"] == NS]
    assert deploy["metadata"]["namespace"] == NS
    (container,) = deploy["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"{REGISTRY}/ml-platform/dev/serving@sha256:{'b' * 64}"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MODEL_BUCKET"] == "ml-platform-models-dev"
    assert env["MODEL_PREFIX"] == f"projects/{NS}/"
    # Every replica loads the same, pinned version: the champion the workflow resolved.
    assert env["MODEL_VERSION"] == "3"
    assert graph.outputs["servingModelVersion"] == "3"
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    # A pod without its model is taken out of traffic, not restarted in a loop.
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    (hpa,) = manifests(graph, "HorizontalPodAutoscaler")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 3)
    # The endpoint lives in the platform's namespace for the project: it declares none.
    assert manifests(graph, "Namespace") == []


def test_first_deploy_declares_no_endpoint_until_a_champion_exists() -> None:
    first = run(settings(model_version=None))
    assert manifests(first, "Deployment") == []
    assert first.by_type("mlplatform:serving:ServingEndpoint") == []
    assert first.outputs["servingUrl"] == ""
    assert first.outputs["servingModelVersion"] == "none"
    assert first.outputs["platformCheck"] == "ok"
    assert training_schedules(first)  # the rest of the project is there


def test_canary_serves_the_candidate_beside_the_champion() -> None:
    g = run(settings(canary_version="4", canary_weight=20))
    versions = {
        d["metadata"]["name"]: {
            e["name"]: e.get("value") for e in d["spec"]["template"]["spec"]["containers"][0]["env"]
        }["MODEL_VERSION"]
        for d in manifests(g, "Deployment")
    }
    assert versions == {NS: "3", f"{NS}-canary": "4"}
    alerts = {
        r["alert"]: r
        for m in manifests(g, "PrometheusRule")
        for grp in m["spec"]["groups"]
        for r in grp["rules"]
        if "alert" in r
    }
    assert alerts["ProjectCanaryErrors"]["labels"]["track"] == "canary"
    assert f'service="{NS}-canary"' in alerts["ProjectCanaryErrors"]["expr"]


def test_slo_alerts_use_the_apps_metric_names(graph: Any) -> None:
    rules = json.dumps([m["spec"] for m in manifests(graph, "PrometheusRule")])
    assert "http_requests_total" in rules
    assert "http_request_duration_seconds" in rules
{%- endif %}


def test_dashboard_and_training_alert(graph: Any) -> None:
    boards = manifests(graph, "ConfigMap")
    (board,) = [m for m in boards if m["metadata"]["name"] == f"{NS}-dashboard"]
    assert board["metadata"]["labels"]["grafana_dashboard"] == "1"
    dash = json.loads(next(iter(board["data"].values())))
    assert dash["uid"] == NS[:40]
    alerts = [
        r["alert"]
        for m in manifests(graph, "PrometheusRule")
        for g in m["spec"]["groups"]
        for r in g["rules"]
        if "alert" in r
    ]
    assert "ProjectTrainingJobFailed" in alerts


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"team": "vision"}, r"team: 'vision' has no training queue on .*teams: "),
        ({"gpu_pool": "tpu-v5", "gpus": 1}, r"gpuPool: 'tpu-v5' is not a GPU pool"),
        ({"gpu_pool": "other-pool", "gpus": 1}, r"team '.*' has no quota on pool 'other-pool'"),
        ({"namespace": "platform-owned"}, r"namespace: 'platform-owned' belongs to the platform"),
        ({"training_image": "docker.io/library/python:3.12"}, r"trainingImage: .* is not in"),
    ],
)
def test_what_the_platform_does_not_offer_fails_the_preview(
    overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(Exception, match=message):
        run(settings(**overrides))


def test_outputs_that_break_the_contract_fail_the_preview() -> None:
    with pytest.raises(Exception, match=r"break the project contract"):
        run(settings(), outputs={"trainingQueues": {TEAM: TEAM}})


def test_missing_image_is_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRAINING_IMAGE", raising=False)
    monkeypatch.delenv("SERVING_IMAGE", raising=False)
    import pulumi

    monkeypatch.setattr(pulumi, "Config", lambda *_a, **_k: _EmptyConfig())
    with pytest.raises(ValueError, match=r"trainingImage \(or TRAINING_IMAGE\): not set"):
        program.Settings.from_config()


def test_every_config_problem_is_reported_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import pulumi

    values = {
        "trainingImage": TRAINING_IMAGE,
        "trainingSchedule": "every monday",
        "nodes": "0",
        "minAccuracy": "60%",
{%- if cookiecutter.serving == 'yes' %}
        "inferenceLogSampleRate": "2",
        "servingImage": TRAINING_IMAGE,
        "modelVersion": "latest",
        "canaryModelVersion": "v2",
{%- endif %}
    }
    monkeypatch.setattr(pulumi, "Config", lambda *_a, **_k: _EmptyConfig(values))
    with pytest.raises(ValueError, match="invalid config") as err:
        program.Settings.from_config()
    message = str(err.value)
    assert "trainingSchedule: 'every monday' is not a five-field cron" in message
    assert "nodes: 0 must be at least 1" in message
    assert "minAccuracy: '60%' is not a number between 0 and 1" in message
{%- if cookiecutter.serving == 'yes' %}
    assert "inferenceLogSampleRate: '2' is not a number between 0 and 1" in message
{%- endif %}
{%- if cookiecutter.serving == 'yes' %}
    assert "modelVersion: 'latest' is not a version number or none" in message
    assert "canaryModelVersion: 'v2' is not a version number" in message
{%- endif %}
{%- if cookiecutter.serving == 'yes' %}


def test_an_unset_model_version_never_removes_the_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    import pulumi

    monkeypatch.delenv("MODEL_VERSION", raising=False)
    values = {"trainingImage": TRAINING_IMAGE, "servingImage": TRAINING_IMAGE}
    monkeypatch.setattr(pulumi, "Config", lambda *_a, **_k: _EmptyConfig(values))
    with pytest.raises(ValueError, match=r"modelVersion \(or MODEL_VERSION\): not set"):
        program.Settings.from_config()
{%- endif %}


class _EmptyConfig:
    def __init__(self, values: dict[str, str] | None = None) -> None:
        self.values = values or {}

    def get(self, key: str) -> str | None:
        return self.values.get(key)

    def require(self, key: str) -> str:
        raise AssertionError(f"{key} is read after the config is checked")

    def get_bool(self, _key: str, default: bool) -> bool:
        return default

    def get_int(self, key: str, default: int) -> int:
        return int(self.values[key]) if key in self.values else default
