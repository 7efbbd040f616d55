"""A project made by `new-project` for each shipped AWS stack runs on that stack's real outputs.

For dev and prod: each project is registered the way `new-project` tells the user to (its
printed stack-config entry, merged into a copy of the shipped stack file), the stack's offline
plan is built from that, `new_project` generates the project from what it offers, and the
generated `infra/` program runs under mocks with its own stack file's config
(as `pulumi up --stack <stack>` would read it) and its `StackReference` answered by the plan's
real outputs, not by stand-ins. The training runs (the schedule's, and those ``submit.py``
renders from the ``trainingRun`` output) must then be admissible: the LocalQueue sits in the
project's namespace and points at a ClusterQueue of the plan whose namespaceSelector selects that
namespace, the GPU pool is a flavor of that queue, the images come from the stack's registries,
and the runs log to the stack's MLflow as the project's user, from the Secret the plan declares in
the namespace. The generated workflows run their cluster jobs on the project's runner, as the
roles the plan declares for its repository.
"""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from mlplatform.graph import Graph
from mlplatform.new_project import new_project, offer_from_plan
from mlplatform.plan import run_program
from mlplatform.registration import registration
from mlplatform.report import build_plan
from tests.shipped import shipped_plan
from tests.templates.helpers import REPO, import_program, infra_on_path, load_package_module

CASES = [
    # stack, options, the pool new-project must pick
    ("dev", {"project_name": "Demand Forecast"}, None),
    ("dev", {"project_name": "Vision", "framework": "pytorch", "accelerator": "nvidia-a10g"}, "a10g-spot"),
    ("prod", {"project_name": "Fraud Scorer", "framework": "pytorch", "accelerator": "nvidia-l4"}, "l4-spot"),
    ("prod", {"project_name": "Ranker", "team": "applied", "serving": "no"}, None),
]  # fmt: skip
POD_IDENTITY = "aws:eks/podIdentityAssociation:PodIdentityAssociation"


def project_of(options: dict[str, str]) -> str:
    return options["project_name"].lower().replace(" ", "-")


def registered_plan(stack: str, cases: list[dict[str, str]], stacks_dir: Path) -> dict[str, Any]:
    """The plan of the shipped stack with each project registered by the entry new-project
    prints for it (merged into a copy of the stack file, as its message says)."""
    offer = offer_from_plan(shipped_plan(stack))
    doc = yaml.safe_load((REPO / "stacks" / f"Pulumi.{stack}.yaml").read_text())
    config = doc["config"]
    for options in cases:
        project = project_of(options)
        status = registration(
            offer,
            project=project,
            team=options.get("team") or next(iter(offer.outputs.trainingQueues)),
            serving=options.get("serving", "yes") == "yes",
            repository=f"example-org/{project}",
        )
        assert not status.registered and status.entry in status.message()
        entry = yaml.safe_load(textwrap.dedent(status.entry))
        projects = config["ml-platform:projects"]
        projects["projects"] += entry["ml-platform:projects"]["projects"]
        projects["grants"] += entry["ml-platform:projects"]["grants"]
        (team,) = entry["ml-platform:trainingQueues"]["teams"]
        (shipped,) = [
            t for t in config["ml-platform:trainingQueues"]["teams"] if t["name"] == team["name"]
        ]
        shipped["namespaces"] = sorted({*shipped["namespaces"], *team["namespaces"]})
    stacks_dir.mkdir(exist_ok=True)
    for f in (REPO / "stacks").glob("Pulumi.*.yaml"):
        shutil.copy(f, stacks_dir / f.name)
    (stacks_dir / f"Pulumi.{stack}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return build_plan(stack, stacks_dir)


@pytest.fixture(scope="module")
def plans(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    cases = {
        stack: [o for s, o, _ in CASES if s == stack] + extra
        for stack, extra in (
            ("dev", [{"project_name": "Elsewhere"}]),
            ("prod", [{"project_name": "Churn Forecast", "team": "applied"}]),
        )
    }
    root = tmp_path_factory.mktemp("stacks")
    return {s: registered_plan(s, c, root / s) for s, c in cases.items()}


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
    said: list[str] = []
    root = new_project(offer, tmp_path, options, warn=said.append, inform=said.append)
    assert [m for m in said if "is registered on stack" in m], said
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
    # The namespace and its LocalQueue are the platform's: the project declares neither.
    assert _by_kind(project, "Namespace") == _by_kind(project, "LocalQueue") == []
    entry = plan["outputs"]["projects"][ns]
    assert entry["namespace"] == ns
    (namespace,) = [
        m for m in _by_kind(plan["manifests"], "Namespace") if m["metadata"]["name"] == ns
    ]
    (lq,) = [
        m for m in _by_kind(plan["manifests"], "LocalQueue") if m["metadata"]["namespace"] == ns
    ]
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
    # Runs log to the stack's MLflow as the project's user: the Secret the plan declares in the
    # namespace, under the keys the platform exports, and the registry admits the namespace.
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}
    assert env["MLFLOW_TRACKING_URI"] == plan["outputs"]["mlflowTrackingUri"]
    secret = entry["mlflowSecret"]
    for var, key in (("USERNAME", "usernameKey"), ("PASSWORD", "passwordKey")):
        ref = env[f"MLFLOW_TRACKING_{var}"]["secretKeyRef"]
        assert ref == {"name": secret["name"], "key": secret[key]}
    assert [
        m for m in _by_kind(plan["manifests"], "Secret")
        if (m["metadata"]["namespace"], m["metadata"]["name"]) == (ns, secret["name"])
    ]  # fmt: skip
    (registry_policy,) = [
        m for m in _by_kind(plan["manifests"], "NetworkPolicy") if m["metadata"]["name"] == "mlflow"
    ]
    assert ns in str(registry_policy["spec"]["ingress"])
    assert env["MODEL_DIR"].startswith("/tmp/")

    # Pod Identity: the platform binds the project's accounts on this cluster; the trainer's
    # account is the platform's, the server's the project's endpoint's.
    assert graph.by_type(POD_IDENTITY) == []
    bound = {
        (r["inputs"]["namespace"], r["inputs"]["serviceAccount"])
        for r in plan["resources"]
        if r["type"] == POD_IDENTITY
    }
    platform_accounts = {
        (m["metadata"]["namespace"], m["metadata"]["name"])
        for m in _by_kind(plan["manifests"], "ServiceAccount")
    }
    assert pod["serviceAccountName"] == f"{ns}-trainer"
    assert (ns, f"{ns}-trainer") in bound & platform_accounts
    for deployment in _by_kind(project, "Deployment"):
        account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
        assert (ns, account) in bound
        assert account in {m["metadata"]["name"] for m in _by_kind(project, "ServiceAccount")}

    # The workflows' cluster jobs run on the project's runner, as the roles the plan declares.
    ci = entry["ci"]
    roles = {"deploy": ci["deployRoleArn"], "preview": ci["previewRoleArn"]}
    workflows = root / ".github" / "workflows"
    for workflow, job_id, role in (
        ("deploy", "deploy", "deploy"),
        ("infra-preview", "preview", "preview"),
        ("train", "submit", "deploy"),
        ("promote", "promote", "deploy"),
    ):
        job = yaml.safe_load((workflows / f"{workflow}.yml").read_text())["jobs"][job_id]
        assert job["runs-on"] == ci["label"], workflow
        (creds,) = [s for s in job["steps"] if "configure-aws-credentials" in s.get("uses", "")]
        assert creds["with"]["role-to-assume"] == roles[role], workflow


def test_a_project_in_a_platform_namespace_is_refused(plans: dict[str, dict[str, Any]]) -> None:
    from mlplatform.new_project import NewProjectError

    offer = offer_from_plan(plans["dev"])
    with pytest.raises(
        NewProjectError, match=r"project_name: 'monitoring' belongs to the platform"
    ):
        new_project(
            offer, Path("/nonexistent"), {"project_name": "monitoring"}, warn=lambda _m: None
        )


def test_an_unregistered_project_is_generated_with_the_entry_to_add(tmp_path: Path) -> None:
    """Never a silently broken project: new-project says it is not registered, prints the
    entry, and the project's preview refuses to run until the platform registers it."""
    plan = shipped_plan("dev")
    said: list[str] = []
    root = new_project(
        offer_from_plan(plan),
        tmp_path,
        {"project_name": "Lonely"},
        warn=said.append,
        inform=said.append,
        repository="example-org/lonely",
    )
    (message,) = [m for m in said if "registered" in m]
    assert "is NOT registered on stack 'dev'" in message
    assert "stacks/Pulumi.dev.yaml" in message
    assert "      - name: lonely\n        repository: example-org/lonely\n" in message
    assert "{project: lonely, serviceAccount: lonely-trainer, access: read-write}" in message
    assert "namespaces: [churn, lonely]" in message
    workflows = root / ".github" / "workflows"
    deploy = yaml.safe_load((workflows / "deploy.yml").read_text())["jobs"]["deploy"]
    assert deploy["runs-on"] == "ubuntu-24.04"  # no runner until registered with a repository
    registries = plan["outputs"]["ecrRepositories"]
    name, config = stack_config(
        root / "infra",
        "dev",
        {
            "trainingImage": f"{registries['training']}:1",
            "servingImage": f"{registries['serving']}:1",
            "modelVersion": "none",
        },
    )
    program = _import_program(root / "infra", "program_dev_lonely")
    with pytest.raises(Exception, match=r"project: 'lonely' is not registered on"):
        run_program(
            program.main, project=name, stack="dev", config=config,
            stack_references={offer_from_plan(plan).platform_stack: plan["outputs"]},
        )  # fmt: skip


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
    assert graph.outputs["trainingRun"]["queue"] == "applied"
    (lq,) = [
        m for m in _by_kind(prod["manifests"], "LocalQueue")
        if m["metadata"]["namespace"] == "churn-forecast"
    ]  # fmt: skip
    assert (lq["metadata"]["name"], lq["spec"]["clusterQueue"]) == ("applied", "applied")


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
    # The LocalQueue is the platform's (registration), in the project's namespace.
    (lq,) = [
        m
        for m in _by_kind(plans["dev"]["manifests"], "LocalQueue")
        if m["metadata"]["namespace"] == ns
    ]
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
