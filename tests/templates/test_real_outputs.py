"""A project made by `new-project` for each shipped AWS stack runs on that stack's real outputs.

For dev and prod: the stack's offline plan is built, `new_project` generates a project from what
it offers, and the generated `infra/` program runs under mocks with its own stack file's config
(as `pulumi up --stack <stack>` would read it) and its `StackReference` answered by the plan's
real outputs, not by stand-ins. The training runs (the schedule's, and those ``submit.py``
renders from the ``trainingRun`` output) must then be admissible: the LocalQueue sits in the
project's namespace and points at a ClusterQueue of the plan whose namespaceSelector selects that
namespace, the GPU pool is a flavor of that queue, the images come from the stack's registries,
and the runs log to the stack's MLflow.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from mlplatform.graph import Graph
from mlplatform.new_project import new_project, offer_from_plan
from mlplatform.plan import run_program
from tests.shipped import shipped_plan
from tests.templates.helpers import import_program, infra_on_path, load_package_module

CASES = [
    # stack, options, the pool new-project must pick
    ("dev", {"project_name": "Demand Forecast"}, None),
    ("dev", {"project_name": "Vision", "framework": "pytorch", "accelerator": "nvidia-a10g"}, "a10g-spot"),
    ("prod", {"project_name": "Fraud Scorer", "framework": "pytorch", "accelerator": "nvidia-l4"}, "l4-spot"),
    ("prod", {"project_name": "Ranker", "team": "applied", "serving": "no"}, None),
]  # fmt: skip
POD_IDENTITY = "aws:eks/podIdentityAssociation:PodIdentityAssociation"


@pytest.fixture(scope="module")
def plans() -> dict[str, dict[str, Any]]:
    return {stack: shipped_plan(stack) for stack in ("dev", "prod")}


def is_drift_job(cron: dict[str, Any]) -> bool:
    """The drift CronJob of infra/quality.py or the retraining trigger of infra/retraining.py
    (not a retraining schedule: neither trains itself)."""
    labels = cron["metadata"].get("labels") or {}
    return labels.get("app.kubernetes.io/component") in ("drift", "retrain")


def _import_program(infra: Path, name: str) -> ModuleType:
    return import_program(infra, name)


def stack_config(infra: Path, stack: str, extra: dict[str, str]) -> tuple[str, dict[str, str]]:
    """The config `pulumi up --stack <stack>` passes: Pulumi.yaml defaults, then the stack file."""
    project = yaml.safe_load((infra / "Pulumi.yaml").read_text())
    name = project["name"]
    config = {
        f"{name}:{key}": str(spec["default"])
        for key, spec in project["config"].items()
        if "default" in spec
    }
    for key, value in yaml.safe_load((infra / f"Pulumi.{stack}.yaml").read_text())[
        "config"
    ].items():
        config[key] = str(value)
    config.update({f"{name}:{k}": v for k, v in extra.items()})
    return name, config


def deploy(tmp_path: Path, plan: dict[str, Any], options: dict[str, str]) -> tuple[Path, Graph]:
    offer = offer_from_plan(plan)
    root = new_project(offer, tmp_path, options, warn=lambda _m: None)
    infra = root / "infra"
    registries = plan["outputs"]["ecrRepositories"]
    images = {
        "trainingImage": f"{registries['training']}@sha256:{'a' * 64}",
        "servingImage": f"{registries['serving']}@sha256:{'b' * 64}",
        # The deploy workflow passes the champion; the schedule makes a run visible in the plan.
        "modelVersion": "1",
        "trainingSchedule": "0 3 * * 1",
    }
    name, config = stack_config(infra, plan["stack"], images)
    program = _import_program(infra, f"program_{plan['stack']}_{root.name}")
    graph = run_program(
        program.main,
        project=name,
        stack=plan["stack"],
        config=config,
        region=plan["outputs"]["region"],
        stack_references={offer.platform_stack: plan["outputs"]},
    )
    return root, graph


def _by_kind(manifests: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [m for m in manifests if m["kind"] == kind]


@pytest.mark.parametrize(("stack", "options", "pool"), CASES, ids=lambda v: str(v))
def test_generated_project_runs_on_the_stacks_real_outputs(
    tmp_path: Path,
    plans: dict[str, dict[str, Any]],
    stack: str,
    options: dict[str, str],
    pool: str | None,
) -> None:
    plan = plans[stack]
    root, graph = deploy(tmp_path, plan, options)
    assert graph.outputs["platformCheck"] == "ok"
    ns = root.name.replace("_", "-")
    stack_file = yaml.safe_load((root / "infra" / f"Pulumi.{stack}.yaml").read_text())["config"]
    assert stack_file[f"{ns}:gpuPool" if pool else f"{ns}:team"] == (
        pool or options.get("team", "research")
    )

    project = graph.manifests()
    assert _by_kind(project, "Job") == []  # deploying never trains
    (cron,) = [c for c in _by_kind(project, "CronJob") if not is_drift_job(c)]
    job = {
        "metadata": cron["spec"]["jobTemplate"]["metadata"],
        "spec": cron["spec"]["jobTemplate"]["spec"],
    }
    job["metadata"]["namespace"] = cron["metadata"]["namespace"]
    (lq,) = _by_kind(project, "LocalQueue")
    (namespace,) = _by_kind(project, "Namespace")
    assert namespace["metadata"]["name"] == ns == lq["metadata"]["namespace"]
    assert job["metadata"]["namespace"] == ns
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == lq["metadata"]["name"]

    # The ClusterQueue exists on the platform and admits the project's namespace.
    cqs = {m["metadata"]["name"]: m for m in _by_kind(plan["manifests"], "ClusterQueue")}
    cq = cqs[lq["spec"]["clusterQueue"]]
    selector = cq["spec"]["namespaceSelector"]["matchLabels"]
    labels = namespace["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in selector.items()), (selector, labels)
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"

    pod = job["spec"]["template"]["spec"]
    if pool:
        flavors = {f["name"] for g in cq["spec"]["resourceGroups"] for f in g["flavors"]}
        assert pool in flavors
        assert pod["nodeSelector"]["mlplatform.io/pool"] == pool
        nodepools = {m["metadata"]["name"] for m in _by_kind(plan["manifests"], "NodePool")}
        assert pool in nodepools
    else:
        # no GPU pool: any node of the image's architecture (the stacks' system nodes are amd64)
        assert pod["nodeSelector"] == {"kubernetes.io/arch": "amd64"}

    # Images come from the stack's registries, the only ones its roles may pull.
    registries = plan["outputs"]["ecrRepositories"]
    (container,) = pod["containers"]
    assert container["image"].startswith(registries["training"] + "@sha256:")
    for deployment in _by_kind(project, "Deployment"):
        for c in deployment["spec"]["template"]["spec"]["containers"]:
            assert c["image"].startswith(registries["serving"] + "@sha256:")
    # Runs log to the stack's MLflow, as the project's user.
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}
    assert env["MLFLOW_TRACKING_URI"] == plan["outputs"]["mlflowTrackingUri"]
    assert env["MLFLOW_TRACKING_PASSWORD"]["secretKeyRef"]["name"] == "mlflow-tracking"
    assert env["MODEL_DIR"].startswith("/tmp/")

    # Pod Identity binds the project's accounts, which the project declares, on this cluster.
    accounts = {
        (m["metadata"]["namespace"], m["metadata"]["name"])
        for m in _by_kind(project, "ServiceAccount")
    }
    associations = graph.by_type(POD_IDENTITY)
    assert associations
    for assoc in associations:
        assert assoc.inputs["clusterName"] == plan["outputs"]["clusterName"]
        assert (assoc.inputs["namespace"], assoc.inputs["serviceAccount"]) in accounts
    assert pod["serviceAccountName"] == f"{ns}-trainer"


def test_a_project_in_a_platform_namespace_is_refused(plans: dict[str, dict[str, Any]]) -> None:
    from mlplatform.new_project import NewProjectError

    offer = offer_from_plan(plans["dev"])
    with pytest.raises(NewProjectError, match=r"project_name: 'churn' belongs to the platform"):
        new_project(offer, Path("/nonexistent"), {"project_name": "churn"}, warn=lambda _m: None)


def test_the_preview_check_refuses_an_image_from_elsewhere(
    tmp_path: Path, plans: dict[str, dict[str, Any]]
) -> None:
    plan = plans["dev"]
    offer = offer_from_plan(plan)
    root = new_project(offer, tmp_path, {"project_name": "Elsewhere"}, warn=lambda _m: None)
    infra = root / "infra"
    name, config = stack_config(
        infra,
        "dev",
        {
            "trainingImage": "docker.io/library/python:3.12",
            "servingImage": f"{plan['outputs']['ecrRepositories']['serving']}:1",
            "modelVersion": "none",
        },
    )
    program = _import_program(infra, "program_dev_elsewhere")
    with pytest.raises(
        Exception, match=r"trainingImage: 'docker.io/library/python:3.12' is not in"
    ):
        run_program(
            program.main,
            project=name,
            stack="dev",
            config=config,
            stack_references={offer.platform_stack: plan["outputs"]},
        )


def test_the_same_project_runs_on_another_stack_with_that_stacks_file(
    tmp_path: Path, plans: dict[str, dict[str, Any]]
) -> None:
    """A project made for dev, given a prod stack file (as its README says), runs on prod."""
    dev, prod = plans["dev"], plans["prod"]
    root = new_project(
        offer_from_plan(dev), tmp_path, {"project_name": "Churn Forecast"}, warn=lambda _m: None
    )
    infra = root / "infra"
    prod_ref = offer_from_plan(prod).platform_stack
    (infra / "Pulumi.prod.yaml").write_text(
        yaml.safe_dump(
            {
                "config": {
                    "aws:region": prod["outputs"]["region"],
                    "churn-forecast:platformStack": prod_ref,
                    "churn-forecast:team": "applied",
                }
            }
        )
    )
    registries = prod["outputs"]["ecrRepositories"]
    images = {
        "trainingImage": f"{registries['training']}:1",
        "servingImage": f"{registries['serving']}:1",
        "modelVersion": "none",
    }
    name, config = stack_config(infra, "prod", images)
    program = _import_program(infra, "program_prod_churn_forecast")
    graph = run_program(
        program.main, project=name, stack="prod", config=config,
        stack_references={prod_ref: prod["outputs"]},
    )  # fmt: skip
    assert graph.outputs["platformCheck"] == "ok"
    (lq,) = _by_kind(graph.manifests(), "LocalQueue")
    assert lq["spec"]["clusterQueue"] == "applied"


@pytest.mark.parametrize("version", ["1.31.0", "1.34.0"])
def test_runs_pass_the_kubernetes_schema(
    tmp_path: Path, plans: dict[str, dict[str, Any]], version: str
) -> None:
    """The schedule's CronJob and a run as `submit.py` renders it from the real `trainingRun`."""
    import kubernetes_validate

    root, graph = deploy(tmp_path, plans["prod"], {"project_name": "Fraud Scorer"})
    (cron,) = [c for c in _by_kind(graph.manifests(), "CronJob") if not is_drift_job(c)]
    kubernetes_validate.validate(cron, version, strict=True)
    with infra_on_path(root / "infra"):
        import runs  # the project's own module, as submit.py imports it

        spec = runs.RunSpec.from_output(graph.outputs["trainingRun"])
        name = runs.run_name(spec.project)
        job = runs.job_manifest(spec, name, runs.train_args(spec, {"C": "0.5"}, seed=1))
    kubernetes_validate.validate(job, version, strict=True)
    assert job["metadata"]["name"] == name
    assert spec.mlflow_tracking_uri == plans["prod"]["outputs"]["mlflowTrackingUri"]


@pytest.mark.parametrize("version", ["1.31.0", "1.34.0"])
def test_the_retraining_trigger_starts_admissible_valid_runs(
    tmp_path: Path, plans: dict[str, dict[str, Any]], version: str
) -> None:
    """On dev's real outputs: the trigger's CronJob, its RBAC and the Job it creates (the
    ConfigMap's template after src/<package>/retrain.py renames it) pass the API server's strict
    schema, and the Job lands on the project's LocalQueue as the trainer."""
    import json

    import kubernetes_validate

    root, graph = deploy(tmp_path, plans["dev"], {"project_name": "Demand Forecast"})
    ns = root.name.replace("_", "-")
    project = graph.manifests()
    (trigger,) = [
        c for c in _by_kind(project, "CronJob") if c["metadata"]["name"] == f"{ns}-retrain"
    ]
    (role,) = _by_kind(project, "Role")
    (binding,) = _by_kind(project, "RoleBinding")
    (run,) = [
        m for m in _by_kind(project, "ConfigMap") if m["metadata"]["name"] == f"{ns}-retrain-run"
    ]
    module = load_package_module(root, "retrain")
    job = module.triggered_job(json.loads(run["data"]["job.json"]))
    for manifest in (trigger, role, binding, run, job):
        kubernetes_validate.validate(manifest, version, strict=True)
    (lq,) = _by_kind(project, "LocalQueue")
    assert job["metadata"]["namespace"] == ns == lq["metadata"]["namespace"]
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == lq["metadata"]["name"]
    assert job["spec"]["template"]["spec"]["serviceAccountName"] == f"{ns}-trainer"
    registries = plans["dev"]["outputs"]["ecrRepositories"]
    assert job["spec"]["template"]["spec"]["containers"][0]["image"].startswith(
        registries["training"] + "@sha256:"
    )
    # The Role lets the trigger's account do exactly what the trigger does.
    assert (
        binding["subjects"][0]["name"]
        == trigger["spec"]["jobTemplate"]["spec"]["template"]["spec"]["serviceAccountName"]
    )
