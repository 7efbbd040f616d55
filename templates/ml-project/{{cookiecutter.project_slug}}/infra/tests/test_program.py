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

ACCOUNT = "123456789012"
REGION = "{{ cookiecutter.aws_region }}"
REGISTRY = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
PLATFORM_STACK = "{{ cookiecutter.platform_stack }}"
TEAM = "{{ cookiecutter.team }}"
GPU_POOL = "{{ cookiecutter.gpu_pool }}"
TEAM_LABEL = "mlplatform.io/team"
NS = program.PROJECT
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
}


def settings(**overrides: Any) -> program.Settings:
    base: dict[str, Any] = {
        "platform_stack": PLATFORM_STACK,
        "region": REGION,
        "team": TEAM,
        "namespace": NS,
        "training_image": f"{REGISTRY}/ml-platform/dev/training:{NS}-abc123",
        "gpu_pool": GPU_POOL or None,
        "gpus": {{ 0 if cookiecutter.accelerator == 'none' else 1 }},
        "min_accuracy": "0.7",
{%- if cookiecutter.serving == 'yes' %}
        "serving_image": f"{REGISTRY}/ml-platform/dev/serving:{NS}-abc123",
        "min_replicas": 1,
        "max_replicas": 3,
        "model_version": None,
        "ingress_host": None,
        "certificate_arn": None,
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


def test_namespace_is_restricted_and_admitted_by_the_team_queue(graph: Any) -> None:
    (ns,) = [m for m in manifests(graph, "Namespace") if m["metadata"]["name"] == NS]
    labels = ns["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    assert labels["mlplatform.io/project"] == NS
    # The labels the platform says its team's ClusterQueue selects.
    assert labels[TEAM_LABEL] == TEAM


def test_local_queue_points_at_the_team_cluster_queue(graph: Any) -> None:
    (lq,) = manifests(graph, "LocalQueue")
    assert lq["apiVersion"] == "kueue.x-k8s.io/v1beta2"
    assert lq["metadata"]["namespace"] == NS
    assert lq["spec"]["clusterQueue"] == PLATFORM_OUTPUTS["trainingQueues"][TEAM]["clusterQueue"]
    (job,) = manifests(graph, "Job")
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == lq["metadata"]["name"]
    assert job["metadata"]["namespace"] == NS
    (ns,) = graph.by_type("kubernetes:core/v1:Namespace")
    (queue,) = graph.by_type("kubernetes:kueue.x-k8s.io/v1beta2:LocalQueue")
    assert graph.depends_on(queue, ns)


def test_project_access_grants_pod_identity_on_project_prefix_only(graph: Any) -> None:
    assocs = graph.by_type("aws:eks/podIdentityAssociation:PodIdentityAssociation")
    expected = {f"{NS}-trainer"}
{%- if cookiecutter.serving == 'yes' %}
    expected.add(f"{NS}-server")
{%- endif %}
    assert {a.inputs["serviceAccount"] for a in assocs} == expected
    assert {a.inputs["namespace"] for a in assocs} == {NS}
    assert {a.inputs["clusterName"] for a in assocs} == {"ml-platform-dev"}
    # Every association names a service account this program declares.
    accounts = {
        (m["metadata"]["namespace"], m["metadata"]["name"])
        for m in manifests(graph, "ServiceAccount")
    }
    assert {(NS, name) for name in expected} <= accounts
    for policy in graph.by_type("aws:iam/rolePolicy:RolePolicy"):
        doc = json.loads(policy.inputs["policy"])
        resources = [r for st in doc["Statement"] for r in _as_list(st["Resource"])]
        objects = [r for r in resources if r.startswith("arn:aws:s3:::") and "/" in r]
        assert objects == [f"arn:aws:s3:::ml-platform-models-dev/projects/{NS}/*"]


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_training_job_is_queued_and_pinned(graph: Any) -> None:
    (job,) = manifests(graph, "Job")
    assert job["spec"]["suspend"] is True
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == f"{REGISTRY}/ml-platform/dev/training:{NS}-abc123"
    assert container["command"] == ["python", "-m", f"{program.PACKAGE}.train"]
    assert container["args"] == ["--min-accuracy", "0.7", "--upload", "yes"]
    assert pod["serviceAccountName"] == f"{NS}-trainer"
    env = {e["name"]: e.get("value") for e in container["env"]}
    checkpoints = f"s3://ml-platform-models-dev/projects/{NS}/checkpoints/{NS}-train"
    assert env["CHECKPOINT_URI"] == checkpoints
{%- if cookiecutter.accelerator == 'none' %}
    assert "nvidia.com/gpu" not in container["resources"]["limits"]
    # the image is built for amd64: the job stays on amd64 nodes (no GPU pool selector)
    assert pod["nodeSelector"] == {"kubernetes.io/arch": "amd64"}
{%- else %}
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["nodeSelector"] == {"mlplatform.io/pool": GPU_POOL, "kubernetes.io/arch": "amd64"}
    assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
{%- endif %}
{%- if cookiecutter.serving == 'yes' %}


def test_serving_endpoint_serves_the_project_model(graph: Any) -> None:
    (deploy,) = [d for d in manifests(graph, "Deployment") if d["metadata"]["name"] == NS]
    assert deploy["metadata"]["namespace"] == NS
    (container,) = deploy["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"{REGISTRY}/ml-platform/dev/serving:{NS}-abc123"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MODEL_BUCKET"] == "ml-platform-models-dev"
    assert env["MODEL_PREFIX"] == f"projects/{NS}/"
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    (hpa,) = manifests(graph, "HorizontalPodAutoscaler")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 3)
    # The endpoint lives in the project's namespace: it must not declare a second one.
    assert [m["metadata"]["name"] for m in manifests(graph, "Namespace")] == [NS]


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


def test_ecr_arn_from_url() -> None:
    assert program.ecr_repository_arn(f"{REGISTRY}/team/repo") == (
        f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/team/repo"
    )
    with pytest.raises(ValueError, match="not an ECR repository URL"):
        program.ecr_repository_arn("docker.io/library/python")


def test_missing_image_is_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRAINING_IMAGE", raising=False)
    monkeypatch.delenv("SERVING_IMAGE", raising=False)
    import pulumi

    monkeypatch.setattr(pulumi, "Config", lambda *_a, **_k: _EmptyConfig())
    with pytest.raises(ValueError, match=r"set trainingImage \(or TRAINING_IMAGE\)"):
        program.Settings.from_config()


class _EmptyConfig:
    def get(self, _key: str) -> None:
        return None

    def require(self, key: str) -> str:
        raise AssertionError(f"{key} is read after the images are checked")

    def get_bool(self, _key: str, default: bool) -> bool:
        return default

    def get_int(self, _key: str, default: int) -> int:
        return default
