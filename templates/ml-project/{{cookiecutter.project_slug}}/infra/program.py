"""{{ cookiecutter.project_name }} on the ML platform.

Reads the platform stack's outputs through a ``pulumi.StackReference`` and declares, with the
platform's own components: the project's namespace (labelled so that its team's Kueue
ClusterQueue admits it) and the namespace's LocalQueue, its ``ProjectAccess`` (service accounts
and Pod Identity roles scoped to ``projects/<project>/`` in the model bucket), the
``TrainingJob``{% if cookiecutter.serving == 'yes' %}, the ``ServingEndpoint`` (which brings its
ServiceMonitor and SLO burn-rate alerts){% endif %}, a Grafana dashboard and a training-failure
alert. ``platformCheck`` fails the preview, naming what to change, when the platform does not
offer what this project asks for (see ``mlplatform.contract``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
{%- if cookiecutter.serving == 'yes' %}
import quality  # quality seam (#20): infra/quality.py
{%- endif %}
from components.common import RESTRICTED_NAMESPACE_LABELS, KubeTarget, StorageBackend
from components.monitoring_stack import dashboard_configmap, prometheus_rule
from components.project_access import (
    AccessGrant,
    AccessLevel,
    ProjectAccess,
    ProjectAccessArgs,
    ProjectSpec,
    StoreRefs,
)
{%- if cookiecutter.serving == 'yes' %}
from components.serving_endpoint import (
    AutoscalingArgs,
    IngressArgs,
    ModelSource,
    ServingEndpoint,
    ServingEndpointArgs,
)
{%- endif %}
from components.training_job import TrainingJob, TrainingJobArgs
from components.training_queues import KUEUE_API_VERSION
from mlplatform.contract import ContractError, project_problems, validate_outputs

PROJECT = "{{ cookiecutter.project_slug.replace('_', '-') }}"
PACKAGE = "{{ cookiecutter.project_slug }}"
TRAINER_SA = f"{PROJECT}-trainer"
SERVER_SA = f"{PROJECT}-server"
PROJECT_LABEL = "mlplatform.io/project"
_ECR_URL = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/(?P<repo>.+)$"
)


@dataclass(frozen=True)
class Settings:
    platform_stack: str
    region: str
    team: str
    namespace: str
    training_image: str
    gpu_pool: str | None
    gpus: int
    min_accuracy: str
{%- if cookiecutter.serving == 'yes' %}
    serving_image: str
    min_replicas: int
    max_replicas: int
    model_version: str | None
    ingress_host: str | None
    certificate_arn: str | None
{%- endif %}

    @classmethod
    def from_config(cls) -> Settings:
        cfg = pulumi.Config()
        aws_cfg = pulumi.Config("aws")
        # CI passes image references through the environment (see .github/workflows).
        training_image = cfg.get("trainingImage") or os.environ.get("TRAINING_IMAGE", "")
        missing = [] if training_image else ["trainingImage (or TRAINING_IMAGE)"]
{%- if cookiecutter.serving == 'yes' %}
        serving_image = cfg.get("servingImage") or os.environ.get("SERVING_IMAGE", "")
        if not serving_image:
            missing.append("servingImage (or SERVING_IMAGE)")
{%- endif %}
        if missing:
            raise ValueError(
                f"{PROJECT}: set {', '.join(missing)} to an image pushed to the platform's "
                "registry, e.g. `pulumi config set trainingImage <repo-url>:<tag>`"
            )
        return cls(
            platform_stack=cfg.require("platformStack"),
            region=aws_cfg.get("region") or "{{ cookiecutter.aws_region }}",
            team=cfg.require("team"),
            namespace=cfg.get("namespace") or PROJECT,
            training_image=training_image,
            gpu_pool=cfg.get("gpuPool") or None,
            gpus=cfg.get_int("gpus", {{ 0 if cookiecutter.accelerator == 'none' else 1 }}),
            min_accuracy=cfg.get("minAccuracy") or "0.7",
{%- if cookiecutter.serving == 'yes' %}
            serving_image=serving_image,
            min_replicas=cfg.get_int("minReplicas", {{ cookiecutter.serving_min_replicas or 1 }}),
            max_replicas=cfg.get_int("maxReplicas", {{ cookiecutter.serving_max_replicas or 3 }}),
            model_version=cfg.get("modelVersion") or None,
            ingress_host=cfg.get("ingressHost") or None,
            certificate_arn=cfg.get("certificateArn") or None,
{%- endif %}
        )


def ecr_repository_arn(url: str, partition: str = "aws") -> str:
    """ARN of an ECR repository from its URL (the platform exports URLs)."""
    m = _ECR_URL.match(url)
    if not m:
        raise ValueError(f"not an ECR repository URL: {url!r}")
    return f"arn:{partition}:ecr:{m['region']}:{m['account']}:repository/{m['repo']}"


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
    )


def team_value(queues: Any, team: str, key: str, default: Any) -> Any:
    """``trainingQueues[team][key]``; the default when absent (``platformCheck`` says why)."""
    entry = queues.get(team) if isinstance(queues, dict) else None
    return entry.get(key, default) if isinstance(entry, dict) else default


def selector(**labels: str) -> str:
    """A PromQL label selector, e.g. {namespace="x",handler="/predict"}."""
    return "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


def selector_re(**labels: str) -> str:
    return "{" + ",".join(f'{k}=~"{v}"' for k, v in labels.items()) + "}"


def alert_template(expr: str) -> str:
    """Prometheus alert templating: the double braces are built here, not written literally."""
    return "{" * 2 + f" {expr} " + "}" * 2


def training_alert_rules(namespace: str) -> dict[str, Any]:
    failed = "kube_job_status_failed" + selector(namespace=namespace)[:-1]
    failed += "," + selector_re(job_name=f"{PROJECT}-train.*")[1:]
    return {
        "groups": [
            {
                "name": f"{PROJECT}-training",
                "rules": [
                    {
                        "alert": "ProjectTrainingJobFailed",
                        "expr": f"{failed} > 0",
                        "for": "1m",
                        "labels": {"severity": "warning", "project": PROJECT},
                        "annotations": {
                            "summary": f"{PROJECT} training job failed",
                            "description": (
                                f"Job {alert_template('$labels.job_name')} in {namespace} "
                                "failed; see `kubectl logs job/<name>`."
                            ),
                        },
                    }
                ],
            }
        ]
    }


def dashboard(namespace: str) -> dict[str, Any]:
    def panel(pid: int, title: str, expr: str, unit: str, x: int, y: int) -> dict[str, Any]:
        return {
            "id": pid,
            "type": "timeseries",
            "title": title,
            "datasource": {"type": "prometheus", "uid": "prometheus"},
            "gridPos": {"h": 8, "w": 12, "x": x, "y": y},
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "targets": [{"expr": expr, "refId": "A"}],
        }

    ns = selector(namespace=namespace)
{%- if cookiecutter.serving == 'yes' %}
    predict = selector(namespace=namespace, handler="/predict")
{%- endif %}
    panels = [
{%- if cookiecutter.serving == 'yes' %}
        panel(
            1,
            "Requests per second by status",
            f"sum by (status) (rate(http_requests_total{predict}[5m]))",
            "reqps",
            0,
            0,
        ),
        panel(
            2,
            "p99 latency",
            f"histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{predict}[5m])))",
            "s",
            12,
            0,
        ),
{%- endif %}
        panel(
            3,
            "Training jobs (succeeded - failed)",
            f"sum by (job_name) (kube_job_status_succeeded{ns} - kube_job_status_failed{ns})",
            "short",
            0,
            8,
        ),
        panel(4, "GPU utilisation", f"avg by (pod) (DCGM_FI_DEV_GPU_UTIL{ns})", "percent", 12, 8),
    ]
    return {
        "title": PROJECT,
        "uid": PROJECT[:40],
        "tags": ["mlplatform", PROJECT],
        "schemaVersion": 39,
        "time": {"from": "now-6h", "to": "now"},
        "panels": panels,
    }


def _k8s_body(manifest: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in manifest.items() if k not in ("apiVersion", "kind")}


def deploy(s: Settings) -> dict[str, Any]:
    platform = pulumi.StackReference(s.platform_stack)
    cluster_name = platform.require_output("clusterName")
    ecr = platform.require_output("ecrRepositories")
    provider = k8s.Provider(
        "platform-cluster",
        kubeconfig=platform.require_output("kubeconfig"),
        # Objects the program does not name keep the platform's defaults; nothing lands in default.
        namespace=s.namespace,
    )
    target = KubeTarget(provider=provider, cluster_name=cluster_name, on_aws=True)
    storage = StorageBackend(
        kind="s3", bucket=platform.require_output("modelBucket"), region=s.region
    )
    k8s_opts = pulumi.ResourceOptions(provider=provider)

    queues = platform.require_output("trainingQueues")

    # The team's ClusterQueue admits namespaces that carry the labels the platform publishes.
    team_labels = queues.apply(lambda q: team_value(q, s.team, "namespaceLabels", {}))
    namespace = k8s.core.v1.Namespace(
        f"{PROJECT}-namespace",
        metadata={
            "name": s.namespace,
            "labels": team_labels.apply(
                lambda labels: {**RESTRICTED_NAMESPACE_LABELS, PROJECT_LABEL: PROJECT, **labels}
            ),
        },
        opts=k8s_opts,
    )
    deps: list[pulumi.Resource] = [namespace]
    local_queue = k8s.apiextensions.CustomResource(
        f"{PROJECT}-queue",
        api_version=KUEUE_API_VERSION,
        kind="LocalQueue",
        metadata={"name": s.team, "namespace": s.namespace, "labels": {PROJECT_LABEL: PROJECT}},
        spec={"clusterQueue": queues.apply(lambda q: team_value(q, s.team, "clusterQueue", ""))},
        opts=pulumi.ResourceOptions(provider=provider, depends_on=deps),
    )

    grants = [
        AccessGrant(project=PROJECT, service_account=TRAINER_SA, access=AccessLevel.READ_WRITE)
    ]
{%- if cookiecutter.serving == 'yes' %}
    # The ServingEndpoint declares its own service account.
    grants.append(
        AccessGrant(
            project=PROJECT,
            service_account=SERVER_SA,
            access=AccessLevel.READ,
            create_service_account=False,
        )
    )
{%- endif %}
    access = ProjectAccess(
        f"{PROJECT}-access",
        ProjectAccessArgs(
            projects=[ProjectSpec(name=PROJECT, namespace=s.namespace)], grants=grants
        ),
        store=StoreRefs(
            bucket_arn=platform.require_output("modelBucketArn"),
            kms_key_arn=platform.require_output("kmsKeyArn"),
            ecr_repository_arns={
                key: ecr.apply(lambda repos, k=key: ecr_repository_arn(repos[k]))
                for key in ("training", "serving")
            },
        ),
        cluster_name=cluster_name,
        service_accounts=target,
        namespace_resources={s.namespace: namespace},
        tags={PROJECT_LABEL: PROJECT},
    )

    training = TrainingJob(
        f"{PROJECT}-train",
        TrainingJobArgs(
            name=f"{PROJECT}-train",
            project=PROJECT,
            namespace=s.namespace,
            queue=s.team,  # the LocalQueue above
            image=s.training_image,
            command=["python", "-m", f"{PACKAGE}.train"],
            args=["--min-accuracy", s.min_accuracy, "--upload", "yes"],
            service_account_name=TRAINER_SA,
            gpus_per_node=s.gpus,
            pool=s.gpu_pool if s.gpus > 0 else None,
            cpu="4" if s.gpus > 0 else "2",
            memory="16Gi" if s.gpus > 0 else "4Gi",
            shm_size="2Gi" if s.gpus > 0 else None,
        ),
        target=target,
        storage=storage,
        depends_on=[local_queue, access, *deps],
    )
    outputs: dict[str, Any] = {
        "namespace": s.namespace,
        "trainingJob": training.job_name,
        "checkpointUri": training.checkpoint_uri,
        "roleArns": access.role_arns,
    }
{%- if cookiecutter.serving == 'yes' %}

    endpoint = ServingEndpoint(
        PROJECT,
        ServingEndpointArgs(
            project=PROJECT,
            image=s.serving_image,
            model=ModelSource(path=f"models/{PACKAGE}", version=s.model_version),
            namespace=s.namespace,
            create_namespace=False,
            autoscaling=AutoscalingArgs(min_replicas=s.min_replicas, max_replicas=s.max_replicas),
            ingress=IngressArgs(
                enabled=s.ingress_host is not None,
                host=s.ingress_host,
                certificate_arn=s.certificate_arn,
            ),
        ),
        target=target,
        service_account_name=SERVER_SA,
        storage=storage,
        depends_on=[access, *deps],
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
        depends_on=[local_queue, access, *deps],
    )
{%- endif %}

    rule = prometheus_rule(f"{PROJECT}-training", s.namespace, training_alert_rules(s.namespace))
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
