"""The infrastructure program under mocks: what it declares on the platform, and what it refuses.

Runs the program with the platform library's own mock harness; the platform stack is replaced by
fixed outputs. No cloud account or cluster is touched.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

import pytest

plan = pytest.importorskip(
    "mlplatform.plan", reason="the platform library (platform_requirement) is not installed"
)
mocks_mod = pytest.importorskip("mlplatform.mocks", reason="the platform library is not installed")

import program  # noqa: E402

ACCOUNT = "123456789012"
REGION = "{{ cookiecutter.aws_region }}"
REGISTRY = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
PLATFORM_OUTPUTS: dict[str, Any] = {
    "clusterName": "ml-platform-dev",
    "kubeconfig": "apiVersion: v1\nkind: Config\n",
    "modelBucket": "ml-platform-models-dev",
    "modelBucketArn": "arn:aws:s3:::ml-platform-models-dev",
    "kmsKeyArn": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/00000000-0000-0000-0000-000000000000",
    "ecrRepositories": {"training": f"{REGISTRY}/ml-training", "serving": f"{REGISTRY}/ml-serving"},
    "trainingQueues": {"ml": "ml"},
    "gpuPools": ["{{ 'nvidia-t4' if cookiecutter.accelerator == 'none' else cookiecutter.accelerator }}"],
    "mlflowTrackingUri": "http://mlflow.mlflow.svc:5000",
}
NS = program.PROJECT


class Mocks(mocks_mod.PlatformMocks):
    """The platform's mocks, plus answers for the platform stack reference."""

    outputs: ClassVar[dict[str, Any]] = PLATFORM_OUTPUTS
    read_stacks: ClassVar[list[str]] = []

    def new_resource(self, args: Any) -> tuple[str, dict[str, Any]]:
        if args.typ == "pulumi:pulumi:StackReference":
            self.read_stacks.append(args.inputs["name"])
            return args.name, {"name": args.name, "outputs": self.outputs}
        return super().new_resource(args)

    def call(self, args: Any) -> Any:
        result = super().call(args)
        # The SDK iterates a tuple's failure list; a bare dict means "no failures".
        return result[0] if isinstance(result, tuple) and result[1] is None else result


def settings(**overrides: Any) -> program.Settings:
    base: dict[str, Any] = {
        "platform_stack": "{{ cookiecutter.platform_stack }}",
        "region": REGION,
        "team": "ml",
        "namespace": NS,
        "create_namespace": True,
        "training_image": f"{REGISTRY}/ml-training:{NS}-abc123",
        "gpu_pool": {{ 'None' if cookiecutter.accelerator == 'none' else ('"' ~ cookiecutter.accelerator ~ '"') }},
        "gpus": {{ 0 if cookiecutter.accelerator == 'none' else 1 }},
        "min_accuracy": "0.7",
{%- if cookiecutter.serving == 'yes' %}
        "serving_image": f"{REGISTRY}/ml-serving:{NS}-abc123",
        "min_replicas": 1,
        "max_replicas": 3,
        "model_version": None,
        "ingress_host": None,
        "certificate_arn": None,
{%- endif %}
    }
    return program.Settings(**{**base, **overrides})


def run(
    monkeypatch: pytest.MonkeyPatch, s: program.Settings, outputs: dict[str, Any] | None = None
) -> Any:
    class These(Mocks):
        pass

    These.outputs = {**PLATFORM_OUTPUTS, **(outputs or {})}
    monkeypatch.setattr(plan, "PlatformMocks", These)

    def body() -> None:
        import pulumi

        for key, value in program.deploy(s).items():
            pulumi.export(key, value)

    return plan.run_program(body, project=NS, stack="dev", region=REGION)


@pytest.fixture
def graph(monkeypatch: pytest.MonkeyPatch) -> Any:
    return run(monkeypatch, settings())


def manifests(graph: Any, kind: str) -> list[dict[str, Any]]:
    return [m for m in graph.manifests() if m.get("kind") == kind]


def test_reads_the_platform_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    Mocks.read_stacks.clear()
    graph = run(monkeypatch, settings())
    assert Mocks.read_stacks == ["{{ cookiecutter.platform_stack }}"]
    assert graph.outputs["platformCheck"] == "ok"


def test_namespace_is_restricted_and_labelled(graph: Any) -> None:
    (ns,) = [m for m in manifests(graph, "Namespace") if m["metadata"]["name"] == NS]
    labels = ns["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    assert labels["mlplatform.io/project"] == NS


def test_project_access_grants_pod_identity_on_project_prefix_only(graph: Any) -> None:
    assocs = graph.by_type("aws:eks/podIdentityAssociation:PodIdentityAssociation")
    expected = {f"{NS}-trainer"}
{%- if cookiecutter.serving == 'yes' %}
    expected.add(f"{NS}-server")
{%- endif %}
    assert {a.inputs["serviceAccount"] for a in assocs} == expected
    assert {a.inputs["namespace"] for a in assocs} == {NS}
    assert {a.inputs["clusterName"] for a in assocs} == {"ml-platform-dev"}
    for policy in graph.by_type("aws:iam/rolePolicy:RolePolicy"):
        doc = json.loads(policy.inputs["policy"])
        resources = [r for st in doc["Statement"] for r in _as_list(st["Resource"])]
        objects = [r for r in resources if r.startswith("arn:aws:s3:::") and "/" in r]
        assert objects == [f"arn:aws:s3:::ml-platform-models-dev/projects/{NS}/*"]


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_training_job_is_queued_and_pinned(graph: Any) -> None:
    (job,) = manifests(graph, "Job")
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "ml"
    assert job["spec"]["suspend"] is True
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"].endswith(f"ml-training:{NS}-abc123")
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
    assert pod["nodeSelector"] == {
        "mlplatform.io/pool": "{{ cookiecutter.accelerator }}",
        "kubernetes.io/arch": "amd64",
    }
    assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
{%- endif %}
{%- if cookiecutter.serving == 'yes' %}


def test_serving_endpoint_serves_the_project_model(graph: Any) -> None:
    (deploy,) = [d for d in manifests(graph, "Deployment") if d["metadata"]["name"] == NS]
    assert deploy["metadata"]["namespace"] == NS
    (container,) = deploy["spec"]["template"]["spec"]["containers"]
    assert container["image"].endswith(f"ml-serving:{NS}-abc123")
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


def test_existing_namespace_is_not_redeclared(monkeypatch: pytest.MonkeyPatch) -> None:
    graph = run(monkeypatch, settings(create_namespace=False))
    assert not [m for m in manifests(graph, "Namespace") if m["metadata"]["name"] == NS]


def test_unknown_team_fails_with_the_platforms_teams(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(Exception, match=r"team 'vision' has no training queue.*teams: ml"):
        run(monkeypatch, settings(team="vision"))


def test_unknown_gpu_pool_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(Exception, match=r"gpuPool 'tpu-v5' is not a GPU pool"):
        run(monkeypatch, settings(gpu_pool="tpu-v5", gpus=1))


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

    def get_bool(self, _key: str, default: bool) -> bool:
        return default

    def get_int(self, _key: str, default: int) -> int:
        return default
