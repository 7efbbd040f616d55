"""{{ cookiecutter.project_name }} on the ML platform.

Reads the platform stack's outputs through a ``pulumi.StackReference``. The platform owns what a
registered project stands on (its ``projects`` entry in the stack config): the namespace, labelled
for its team's Kueue ClusterQueue, with its LocalQueue; the service accounts' Pod Identity roles
scoped to ``projects/<project>/``; the MLflow user's Secret and the registry's admission; the CI
runner and roles. This program declares, with the platform's own components, what the project
runs in that namespace: the retraining schedule (a CronJob, when ``trainingSchedule`` is set){% if cookiecutter.serving == 'yes' %}, the ``ServingEndpoint`` (which
brings its ServiceMonitor and SLO burn-rate alerts), the drift job and the retraining trigger
(``retraining.py``) once a champion exists{% endif %}, a Grafana
dashboard and alerts. Training runs are not declared here: ``make submit`` (``submit.py``), the
``train`` workflow and the schedule start uniquely named Jobs from the ``trainingRun`` output
(see ``runs.py``), so a merge never retrains and runs never replace each other.
``platformCheck`` fails the preview, naming what to change, when the platform does not offer what
this project asks for (see ``mlplatform.contract``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
{%- if cookiecutter.serving == 'yes' %}
import quality  # quality seam (#20): infra/quality.py
import retraining  # continuous training (#20): infra/retraining.py
import runs
{%- endif %}
{%- if cookiecutter.serving == 'yes' %}
from components.common import KubeTarget, StorageBackend
{%- endif %}
from components.monitoring_stack import dashboard_configmap, prometheus_rule
{%- if cookiecutter.serving == 'yes' %}
from components.serving_args import CanaryArgs, ProbeArgs
from components.serving_endpoint import (
    AutoscalingArgs,
    IngressArgs,
    ModelSource,
    ServingEndpoint,
    ServingEndpointArgs,
)
{%- endif %}
from mlplatform.contract import ContractError, project_problems, validate_outputs
from observability import {% if cookiecutter.serving == 'yes' %}canary_alert_rules, {% endif %}dashboard, training_alert_rules
from runs import RunSpec, cron_job, schedule_problem
from runs import training_command as run_command

PROJECT = "{{ cookiecutter.project_slug.replace('_', '-') }}"
PACKAGE = "{{ cookiecutter.project_slug }}"
TRAINER_SA = f"{PROJECT}-trainer"
SERVER_SA = f"{PROJECT}-server"
RETRAINER_SA = f"{PROJECT}-retrainer"
# Training data, relative to the project's prefix in the model bucket (or a full s3:// URI).
DEFAULT_DATA = "data/train.csv"


@dataclass(frozen=True)
class Settings:
    platform_stack: str
    region: str
    team: str
    namespace: str
    training_image: str
    gpu_pool: str | None
    gpus: int
    min_accuracy: str | None  # None: the training gate's default (gates.py owns it)
    nodes: int = 1
    training_data: str = DEFAULT_DATA
    training_schedule: str | None = None
{%- if cookiecutter.serving == 'yes' %}
    serving_image: str = ""
    min_replicas: int = 1
    max_replicas: int = 3
    # The champion's version; None: no champion yet, so no endpoint (nothing to serve).
    model_version: str | None = None
    canary_version: str | None = None
    canary_weight: int = 10
    ingress_host: str | None = None
    certificate_arn: str | None = None
    # Share of requests logged to inference-logs/ (0..1); None: the platform's default.
    inference_log_sample_rate: float | None = None
    # The hourly retraining trigger (infra/retraining.py); max age None: retrain.py's default.
    retrain_on_drift: bool = True
    retrain_max_age_days: float | None = None
{%- endif %}

    @classmethod
    def from_config(cls) -> Settings:
        """The stack's config; every problem at once, naming the key, before any resource."""
        cfg = pulumi.Config()
        aws_cfg = pulumi.Config("aws")
        problems: list[str] = []
        # CI passes digest-pinned image references (repo@sha256:...) through the environment.
        training_image = cfg.get("trainingImage") or os.environ.get("TRAINING_IMAGE", "")
        if not training_image:
            problems.append("trainingImage (or TRAINING_IMAGE): not set")
{%- if cookiecutter.serving == 'yes' %}
        serving_image = cfg.get("servingImage") or os.environ.get("SERVING_IMAGE", "")
        if not serving_image:
            problems.append("servingImage (or SERVING_IMAGE): not set")
        # The champion alias, resolved by the workflows (`make champion`); "none" before the
        # first promotion. Unset is an error, not "no endpoint": a forgotten variable must never
        # delete a serving endpoint.
        model_version = cfg.get("modelVersion") or os.environ.get("MODEL_VERSION", "")
        canary = cfg.get("canaryModelVersion") or os.environ.get("CANARY_MODEL_VERSION") or None
        if not model_version:
            problems.append(
                "modelVersion (or MODEL_VERSION): not set; the workflows pass the champion "
                "(`make champion`), `none` before the first promotion"
            )
        elif model_version != "none" and not model_version.isdigit():
            problems.append(f"modelVersion: {model_version!r} is not a version number or none")
        if canary is not None and not canary.isdigit():
            problems.append(f"canaryModelVersion: {canary!r} is not a version number")
        if canary is not None and model_version == "none":
            problems.append("canaryModelVersion: a canary needs a champion to compare with")
        canary_weight = cfg.get_int("canaryWeight", 10)
        if not 1 <= canary_weight <= 50:
            problems.append(f"canaryWeight: {canary_weight} is not between 1 and 50 (percent)")
        raw_rate = cfg.get("inferenceLogSampleRate") or None
        sample_rate = _fraction(raw_rate)
        if raw_rate is not None and sample_rate is None:
            problems.append(f"inferenceLogSampleRate: {raw_rate!r} is not a number between 0 and 1")
        retrain_on_drift = cfg.get_bool("retrainOnDrift", True)
        raw_age = cfg.get("retrainMaxAgeDays") or None
        max_age = _positive(raw_age)
        if raw_age is not None and max_age is None:
            problems.append(f"retrainMaxAgeDays: {raw_age!r} is not a positive number of days")
{%- endif %}
        min_accuracy = cfg.get("minAccuracy") or None
        if min_accuracy is not None and _fraction(min_accuracy) is None:
            problems.append(f"minAccuracy: {min_accuracy!r} is not a number between 0 and 1")
        nodes = cfg.get_int("nodes", 1)
        if nodes < 1:
            problems.append(f"nodes: {nodes} must be at least 1")
        schedule = cfg.get("trainingSchedule") or None
        if schedule is not None:
            problem = schedule_problem(schedule)
            if problem:
                problems.append(problem)
            elif nodes > 1:
                problems.append("trainingSchedule: scheduled runs are single-node; set nodes: 1")
{%- if cookiecutter.serving == 'yes' %}
        if retrain_on_drift and nodes > 1:
            problems.append(
                "retrainOnDrift: triggered runs are single-node Jobs; set nodes: 1, "
                "or retrainOnDrift: false and retrain with `make submit`"
            )
{%- endif %}
        if problems:
            raise ValueError(f"{PROJECT}: invalid config:\n  - " + "\n  - ".join(problems))
        return cls(
            platform_stack=cfg.require("platformStack"),
            region=aws_cfg.get("region") or "{{ cookiecutter.aws_region }}",
            team=cfg.require("team"),
            namespace=cfg.get("namespace") or PROJECT,
            training_image=training_image,
            gpu_pool=cfg.get("gpuPool") or None,
            gpus=cfg.get_int("gpus", {{ 0 if cookiecutter.accelerator == 'none' else 1 }}),
            min_accuracy=min_accuracy,
            nodes=nodes,
            training_data=cfg.get("trainingData") or DEFAULT_DATA,
            training_schedule=schedule,
{%- if cookiecutter.serving == 'yes' %}
            serving_image=serving_image,
            min_replicas=cfg.get_int("minReplicas", {{ cookiecutter.serving_min_replicas or 1 }}),
            max_replicas=cfg.get_int("maxReplicas", {{ cookiecutter.serving_max_replicas or 3 }}),
            model_version=None if model_version == "none" else model_version,
            canary_version=canary,
            canary_weight=canary_weight,
            ingress_host=cfg.get("ingressHost") or None,
            certificate_arn=cfg.get("certificateArn") or None,
            inference_log_sample_rate=sample_rate,
            retrain_on_drift=retrain_on_drift,
            retrain_max_age_days=max_age,
{%- endif %}
        )


def _positive(raw: str | None) -> float | None:
    """``raw`` as a positive number; None when unset or not one."""
    try:
        value = float(raw) if raw is not None else None
    except ValueError:
        return None
    return value if value is not None and value > 0 else None


def _fraction(raw: str | None) -> float | None:
    """``raw`` as a number in [0, 1]; None when unset or not one."""
    try:
        value = float(raw) if raw is not None else None
    except ValueError:
        return None
    return value if value is not None and 0 <= value <= 1 else None


def training_command(nodes: int, gpus: int) -> list[str]:
    """This project's training command (``runs.training_command``); refuses what cannot run."""
    try:
        return run_command(nodes, gpus, PACKAGE)
    except ValueError as exc:
        raise ValueError(f"{PROJECT}: {exc}") from None


def service_accounts() -> dict[str, str]:
    """The accounts this project runs as, and the access each needs from the registration."""
    needs = {TRAINER_SA: "read-write"}
{%- if cookiecutter.serving == 'yes' %}
    needs[SERVER_SA] = "read"  # the ServingEndpoint declares it; the platform binds its role
    needs[RETRAINER_SA] = "read"  # the retraining trigger (retraining.py) reads drift results
{%- endif %}
    return needs


def platform_problems(s: Settings, outputs: dict[str, Any]) -> list[str]:
    """What this project asks of the platform that the platform stack does not offer."""
    try:
        offer = validate_outputs(outputs)
    except ContractError as exc:
        return [str(exc)]
    images = {"trainingImage": s.training_image}
{%- if cookiecutter.serving == 'yes' %}
    images["servingImage"] = s.serving_image
{%- endif %}
    return project_problems(
        offer,
        stack=s.platform_stack,
        team=s.team,
        gpu_pool=s.gpu_pool if s.gpus > 0 else None,
        namespace=s.namespace,
        images=images,
        project=PROJECT,
        service_accounts=service_accounts(),
    )


def _k8s_body(manifest: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in manifest.items() if k not in ("apiVersion", "kind")}


def registered(projects: Any, key: str) -> Any:
    """``projects[PROJECT][key]``; None when absent (``platformCheck`` says why)."""
    entry = projects.get(PROJECT) if isinstance(projects, dict) else None
    return entry.get(key) if isinstance(entry, dict) else None


def run_spec_for(
    s: Settings, bucket: str, tracking_uri: str | None, mlflow_secret: dict[str, str] | None
) -> RunSpec:
    """What every training run of this project shares, from the settings and the platform."""
    training_command(s.nodes, s.gpus)  # refuses a node count this framework cannot use
    gpu = s.gpus > 0
    return RunSpec(
        project=PROJECT,
        package=PACKAGE,
        namespace=s.namespace,
        queue=s.team,  # the LocalQueue the platform declares in a team's namespaces
        service_account=TRAINER_SA,
        image=s.training_image,
        bucket=bucket,
        region=s.region,
        data=s.training_data,
        min_accuracy=s.min_accuracy,
        nodes=s.nodes,
        gpus_per_node=s.gpus,
        pool=s.gpu_pool if gpu else None,
        cpu="4" if gpu else "2",
        memory="16Gi" if gpu else "4Gi",
        shm_size="2Gi" if gpu else None,
        mlflow_tracking_uri=tracking_uri or None,
        mlflow_secret=mlflow_secret,
    )


def deploy(s: Settings) -> dict[str, Any]:
    platform = pulumi.StackReference(s.platform_stack)
    provider = k8s.Provider(
        "platform-cluster",
        kubeconfig=platform.require_output("kubeconfig"),
        # Objects the program does not name keep the platform's defaults; nothing lands in default.
        namespace=s.namespace,
    )
{%- if cookiecutter.serving == 'yes' %}
    cluster_name = platform.require_output("clusterName")
    target = KubeTarget(provider=provider, cluster_name=cluster_name, on_aws=True)
    storage = StorageBackend(
        kind="s3", bucket=platform.require_output("modelBucket"), region=s.region
    )
{%- endif %}

    # The namespace, its LocalQueue and the accounts' roles are the platform's (registration);
    # the workloads below wait for nothing here but the provider.
    deps: list[pulumi.Resource] = []
    projects = platform.get_output("projects")
    role_arns = platform.get_output("projectRoleArns").apply(
        lambda arns: {k: v for k, v in (arns or {}).items() if k.startswith(f"{PROJECT}-")}
    )

    # Runs are started by submit.py, the train workflow and the schedule, all from this spec.
    run_spec = pulumi.Output.all(
        bucket=platform.require_output("modelBucket"),
        tracking=platform.get_output("mlflowTrackingUri"),
        projects=projects,
    ).apply(
        lambda v: run_spec_for(
            s, v["bucket"], v["tracking"], registered(v["projects"], "mlflowSecret")
        )
    )
    outputs: dict[str, Any] = {
        "namespace": s.namespace,
        "trainingRun": run_spec.apply(lambda spec: spec.to_output()),
        "trainingSchedule": s.training_schedule or "",
        "trainingImage": s.training_image,
        "roleArns": role_arns,
    }
    if s.training_schedule:
        schedule = s.training_schedule
        cron = run_spec.apply(lambda spec: cron_job(spec, schedule))
        k8s.batch.v1.CronJob(
            f"{PROJECT}-schedule",
            metadata=cron.apply(lambda c: c["metadata"]),
            spec=cron.apply(lambda c: c["spec"]),
            opts=pulumi.ResourceOptions(provider=provider, depends_on=deps),
        )
    rule_groups = training_alert_rules(s.namespace)["groups"]
{%- if cookiecutter.serving == 'yes' %}

    # No champion yet: no endpoint. One that started without a model would only answer 503.
    outputs["servingImage"] = s.serving_image
    outputs["servingModelVersion"] = s.model_version or "none"
    outputs["servingUrl"] = ""
    if s.model_version is not None:
        canary = None
        if s.canary_version is not None:
            canary = CanaryArgs(
                model=ModelSource(path=f"models/{PACKAGE}", version=s.canary_version),
                weight=s.canary_weight,
            )
            rule_groups += canary_alert_rules(s.namespace)["groups"]
        endpoint = ServingEndpoint(
            PROJECT,
            ServingEndpointArgs(
                project=PROJECT,
                image=s.serving_image,
                model=ModelSource(path=f"models/{PACKAGE}", version=s.model_version),
                canary=canary,
                namespace=s.namespace,
                create_namespace=False,
                autoscaling=AutoscalingArgs(
                    min_replicas=s.min_replicas, max_replicas=s.max_replicas
                ),
                ingress=IngressArgs(
                    enabled=s.ingress_host is not None,
                    host=s.ingress_host,
                    certificate_arn=s.certificate_arn,
                ),
                # /healthz is readiness (503 until the model loads); /livez says the process runs.
                probes=ProbeArgs(liveness_path="/livez"),
                inference_log_sample_rate=s.inference_log_sample_rate,
            ),
            target=target,
            service_account_name=SERVER_SA,
            storage=storage,
            depends_on=deps,
        )
        outputs["servingUrl"] = endpoint.url
        outputs["servingInternalUrl"] = endpoint.internal_url
        # Quality seam (#20): drift CronJob, model-quality alerts and dashboard (infra/quality.py).
        quality.deploy(
            project=PROJECT,
            package=PACKAGE,
            namespace=s.namespace,
            image=s.serving_image,
            queue=s.team,
            service_account=TRAINER_SA,
            bucket=storage.bucket,
            provider=provider,
            depends_on=deps,
            model_version=s.model_version,
            canary_version=s.canary_version,
        )
        if s.retrain_on_drift:
            # Continuous training (#20): the hourly trigger and the run it starts.
            retraining.deploy(
                project=PROJECT,
                package=PACKAGE,
                namespace=s.namespace,
                image=s.serving_image,
                queue=s.team,
                bucket=storage.bucket,
                model_version=s.model_version,
                run_job=run_spec.apply(
                    lambda spec: runs.job_manifest(
                        spec, retraining.names(PROJECT)["cron"], runs.train_args(spec)
                    )
                ),
                max_age_days=s.retrain_max_age_days,
                provider=provider,
                depends_on=deps,
            )
        outputs["retrainTrigger"] = retraining.names(PROJECT)["cron"] if s.retrain_on_drift else ""
{%- endif %}

    rule = prometheus_rule(f"{PROJECT}-training", s.namespace, {"groups": rule_groups})
    k8s.apiextensions.CustomResource(
        f"{PROJECT}-training-alerts",
        api_version=rule["apiVersion"],
        kind=rule["kind"],
        metadata=rule["metadata"],
        spec=rule["spec"],
        opts=pulumi.ResourceOptions(provider=provider, depends_on=deps),
    )
    board = dashboard_configmap(f"{PROJECT}-dashboard", s.namespace, dashboard(s.namespace))
    k8s.core.v1.ConfigMap(
        f"{PROJECT}-dashboard",
        **_k8s_body(board),
        opts=pulumi.ResourceOptions(provider=provider, depends_on=deps),
    )

    def check(outputs: dict[str, Any]) -> str:
        problems = platform_problems(s, outputs)
        if problems:
            raise ValueError(f"{PROJECT} on {s.platform_stack}: " + "; ".join(problems))
        return "ok"

    # Fails the preview with a clear message when the platform lacks what this project needs.
    outputs["platformCheck"] = platform.outputs.apply(check)
    return outputs


def main() -> None:
    for key, value in deploy(Settings.from_config()).items():
        pulumi.export(key, value)
