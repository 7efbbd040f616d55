"""ServingEndpoint: one model served on the cluster, production-grade by default.

What one endpoint declares (all in its namespace):

* a Namespace with Pod Security "restricted" labels (or the project's existing namespace);
* a ServiceAccount that the project's ``ProjectAccess`` binds to its IAM role through Pod Identity;
* a hardened Deployment (pinned image, non-root, read-only root FS, no capabilities,
  RuntimeDefault seccomp, requests and limits, startup/readiness/liveness probes, zone spread,
  graceful drain) that reads its model from the model store at start;
* a Service, a HorizontalPodAutoscaler (or a KEDA ScaledObject for scale to zero), a
  PodDisruptionBudget and a NetworkPolicy;
* an Ingress on the shared internal ALB (AWS) or on a plain ingress class (local);
* optionally a canary: a second Deployment + Service and a weighted ALB forward action;
* a ServiceMonitor and a PrometheusRule with multi-window, multi-burn-rate SLO alerts.

The manifests are built by responsibility: :mod:`components.serving_workload` (Deployment,
Service), :mod:`components.serving_scaling` (HPA or KEDA, PDB, and the cold start of scale to
zero), :mod:`components.serving_exposure` (NetworkPolicy, Ingress), :mod:`components.serving_slo`
(ServiceMonitor, burn-rate alerts); args and their checks live in :mod:`components.serving_args`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import pulumi

from components.common import InvalidArgsError, Issue, KubeTarget, StorageBackend, check_image
from components.serving_args import (
    DEFAULT_ALB_GROUP,
    ENDPOINT_LABEL,
    PROJECT_LABEL,
    TRACK_LABEL,
    VLLM_IMAGE,
    ZONE_KEY,
    AutoscalingArgs,
    CanaryArgs,
    IngressArgs,
    KedaArgs,
    LoadFormat,
    ModelSource,
    ModelStore,
    MultiNodeArgs,
    ProbeArgs,
    ResourcesArgs,
    Runtime,
    ScaleMetric,
    ServingEndpointArgs,
    ShutdownArgs,
    SloArgs,
    check_endpoint,
)
from components.serving_exposure import ExposureBuilder
from components.serving_multinode import MultiNodeBuilder
from components.serving_scaling import ScalingBuilder
from components.serving_slo import BURN_WINDOWS, MonitoringBuilder, slo_metrics, slo_rule_groups
from components.serving_workload import MLFLOW_CREDENTIALS

__all__ = [
    "BURN_WINDOWS",
    "DEFAULT_ALB_GROUP",
    "ENDPOINT_LABEL",
    "PROJECT_LABEL",
    "TRACK_LABEL",
    "VLLM_IMAGE",
    "ZONE_KEY",
    "AutoscalingArgs",
    "CanaryArgs",
    "EndpointPlan",
    "IngressArgs",
    "KedaArgs",
    "LoadFormat",
    "ModelSource",
    "ModelStore",
    "MultiNodeArgs",
    "ProbeArgs",
    "ResourcesArgs",
    "Runtime",
    "ScaleMetric",
    "ServingEndpoint",
    "ServingEndpointArgs",
    "ShutdownArgs",
    "SloArgs",
    "check_endpoint",
    "check_image",
    "slo_metrics",
    "slo_rule_groups",
]


class EndpointPlan(MultiNodeBuilder, ScalingBuilder, ExposureBuilder, MonitoringBuilder):
    """Plain-data manifests of one endpoint, before they are declared as resources.

    ``model_uri``/``canary_model_uri`` and ``env_extra`` values may be pulumi Inputs.
    """

    def __init__(
        self,
        name: str,
        args: ServingEndpointArgs,
        *,
        on_aws: bool,
        model_uri: Any,
        canary_model_uri: Any = None,
        service_account_name: str,
        iam_role_arn: Any = None,
        env_extra: Mapping[str, Any] | None = None,
        env_from_secret: str | None = None,
        prometheus_url: str = "http://prometheus-operated.monitoring.svc:9090",
        monitoring_namespace: str = "monitoring",
        monitoring_labels: Mapping[str, str] | None = None,
        ingress_controller_namespace: str = "kube-system",
        alb_source_cidrs: Any = (),
        mlflow_credentials: Any = None,
        network_policies: bool = True,
        tags: Mapping[str, str] | None = None,
    ):
        self.name = name
        self.args = args
        self.on_aws = on_aws
        self.namespace = args.namespace or name
        self.port = args.port or (8000 if args.runtime is Runtime.VLLM else 8080)
        self.image = args.image or VLLM_IMAGE
        self.model_uri = model_uri
        self.canary_model_uri = canary_model_uri
        self.service_account_name = service_account_name
        self.iam_role_arn = iam_role_arn
        self.env_extra = dict(env_extra or {})
        self.env_from_secret = env_from_secret
        self.prometheus_url = prometheus_url
        self.monitoring_namespace = monitoring_namespace
        self.monitoring_labels = dict(monitoring_labels or {})
        self.ingress_ns = ingress_controller_namespace
        # A list, or an Output of one (the subnets of an existing VPC).
        self.alb_source_cidrs = (
            alb_source_cidrs
            if isinstance(alb_source_cidrs, pulumi.Output)
            else list(alb_source_cidrs)
        )
        self.mlflow_credentials = mlflow_credentials
        self.mlflow_credentials_secret = MLFLOW_CREDENTIALS if mlflow_credentials else None
        self.network_policies = network_policies
        self.tags = dict(tags or {})
        self.service = name
        self.canary_service = f"{name}-canary"
        self.health_path = "/health" if args.runtime is Runtime.VLLM else "/healthz"

    def manifests(self) -> list[dict[str, Any]]:
        """Every object, in apply order (the namespace first)."""
        a = self.args
        out: list[dict[str, Any]] = []
        if a.create_namespace:
            out.append(self.namespace_manifest())
        out.append(self.service_account())
        if self.mlflow_credentials_secret:
            out.append(self.mlflow_credentials_manifest())
        out += [self.workload(), self.service_manifest()]
        if a.canary is not None:
            out += [self.workload("canary"), self.service_manifest("canary")]
        out.append(self.scaled_object() if a.keda.enabled else self.hpa())
        out.append(self.pdb())
        if self.network_policies:  # only where the cluster's CNI enforces them
            out.append(self.network_policy())
        ingress = self.ingress()
        if ingress is not None:
            out.append(ingress)
        out += [self.service_monitor(), self.prometheus_rule()]
        return out


# ------------------------------------------------------------------------------------------
# The component.

_ROLE = {
    "Namespace": "ns",
    "ServiceAccount": "sa",
    "Secret": "mlflow-credentials",
    "Service": "svc",
    "HorizontalPodAutoscaler": "hpa",
    "ScaledObject": "scaledobject",
    "PodDisruptionBudget": "pdb",
    "NetworkPolicy": "netpol",
    "Ingress": "ingress",
    "ServiceMonitor": "servicemonitor",
    "PrometheusRule": "slo",
}


class ServingEndpoint(pulumi.ComponentResource):
    """One model served on the cluster (see the module docstring for what it declares)."""

    namespace: pulumi.Output[str]
    service_name: pulumi.Output[str]
    url: pulumi.Output[str]
    internal_url: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        args: ServingEndpointArgs,
        *,
        target: KubeTarget,
        service_account_name: str,
        storage: StorageBackend | None = None,
        iam_role_arn: pulumi.Input[str] | None = None,
        known_pools: Sequence[str] | Mapping[str, int] = (),
        mlflow_tracking_uri: pulumi.Input[str] | None = None,
        mlflow_credentials: pulumi.Input[str] | None = None,
        prometheus_url: str = "http://prometheus-operated.monitoring.svc:9090",
        monitoring_namespace: str = "monitoring",
        monitoring_labels: Mapping[str, str] | None = None,
        ingress_controller_namespace: str = "kube-system",
        alb_source_cidrs: pulumi.Input[Sequence[str]] = (),
        ingress_controller: pulumi.Resource | None = None,
        leader_worker_set: pulumi.Resource | None = None,
        depends_on: Sequence[pulumi.Resource] = (),
        tags: Mapping[str, str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ):
        """``alb_source_cidrs``: the load balancer subnets' CIDRs (what the NetworkPolicy admits
        for the ALB). ``mlflow_credentials``: the project's registry credentials file (models
        loaded from an authenticated MLflow), mounted at ``$HOME/.mlflow/credentials``."""
        found = check_endpoint(args, known_pools, name=name, on_aws=target.on_aws)
        uses_s3, uses_mlflow = _stores(args)
        if uses_s3 and storage is None:
            found.append(Issue(("model", "store"), "s3 needs the platform's model store"))
        if uses_mlflow and mlflow_tracking_uri is None:
            found.append(Issue(("model", "store"), "mlflow needs the platform's tracking URI"))
        if args.multi_node is not None and leader_worker_set is None:
            found.append(
                Issue(("multiNode",), "needs the LeaderWorkerSet controller (leader_worker_set)")
            )
        if found:
            raise InvalidArgsError("ServingEndpoint", found)
        super().__init__("mlplatform:serving:ServingEndpoint", name, None, opts)

        def model_uri(src: ModelSource) -> Any:
            if src.store is ModelStore.MLFLOW:
                return src.path
            assert storage is not None  # checked above
            return storage.uri(args.project, src.path)

        plan = EndpointPlan(
            name,
            args,
            on_aws=target.on_aws,
            model_uri=model_uri(args.model),
            canary_model_uri=model_uri(args.canary.model) if args.canary else None,
            service_account_name=service_account_name,
            iam_role_arn=iam_role_arn,
            env_extra=_env_extra(args, storage, mlflow_tracking_uri if uses_mlflow else None),
            env_from_secret=storage.credentials_secret if storage is not None else None,
            prometheus_url=prometheus_url,
            monitoring_namespace=monitoring_namespace,
            monitoring_labels=monitoring_labels,
            ingress_controller_namespace=ingress_controller_namespace,
            alb_source_cidrs=alb_source_cidrs,
            mlflow_credentials=mlflow_credentials if uses_mlflow else None,
            network_policies=target.network_policy,
            tags=tags,
        )
        self.plan = plan
        # The SLO rules as data, for promtool and for dashboards.
        self.rule_groups: list[dict[str, Any]] = plan.rule_groups()
        controllers = [leader_worker_set] if leader_worker_set is not None else []
        self._declare(
            name, plan, target, [*target.depends_on, *depends_on, *controllers], ingress_controller
        )

        self.namespace = pulumi.Output.from_input(plan.namespace)
        self.service_name = pulumi.Output.from_input(plan.service)
        self.url = pulumi.Output.from_input(plan.url())
        self.internal_url = pulumi.Output.from_input(plan.internal_url())
        self.register_outputs(
            {
                "namespace": self.namespace,
                "serviceName": self.service_name,
                "url": self.url,
                "internalUrl": self.internal_url,
            }
        )

    def _declare(
        self,
        name: str,
        plan: EndpointPlan,
        target: KubeTarget,
        base_deps: list[pulumi.Resource],
        ingress_controller: pulumi.Resource | None,
    ) -> None:
        """Each manifest as its typed resource (or a CustomResource), in apply order."""
        import pulumi_kubernetes as k8s

        created: list[pulumi.Resource] = []

        def child_opts(*extra: pulumi.Resource) -> pulumi.ResourceOptions:
            return pulumi.ResourceOptions(
                parent=self, provider=target.provider, depends_on=[*base_deps, *created, *extra]
            )

        typed: dict[str, Any] = {
            "ServiceAccount": k8s.core.v1.ServiceAccount,
            "Secret": k8s.core.v1.Secret,
            "Deployment": k8s.apps.v1.Deployment,
            "Service": k8s.core.v1.Service,
            "HorizontalPodAutoscaler": k8s.autoscaling.v2.HorizontalPodAutoscaler,
            "PodDisruptionBudget": k8s.policy.v1.PodDisruptionBudget,
            "NetworkPolicy": k8s.networking.v1.NetworkPolicy,
            "Ingress": k8s.networking.v1.Ingress,
        }
        ns_res: list[pulumi.Resource] = []
        for manifest in plan.manifests():
            kind = manifest["kind"]
            res_name = f"{name}-{_role(kind, manifest['metadata']['name'], name)}"
            extra: list[pulumi.Resource] = list(ns_res)
            if kind == "Ingress" and ingress_controller is not None:
                # Destroyed before the controller, so the controller deletes the ALB first.
                extra.append(ingress_controller)
            body = {k: v for k, v in manifest.items() if k not in ("apiVersion", "kind")}
            res: pulumi.Resource
            if kind == "Namespace":
                ns_res.append(k8s.core.v1.Namespace(res_name, **body, opts=child_opts()))
                continue
            if kind in typed:
                res = typed[kind](res_name, **_snake(body), opts=child_opts(*extra))
            else:  # custom resources: LeaderWorkerSet, ScaledObject, ServiceMonitor, PrometheusRule
                res = k8s.apiextensions.CustomResource(
                    res_name,
                    api_version=manifest["apiVersion"],
                    kind=kind,
                    metadata=manifest["metadata"],
                    spec=manifest["spec"],
                    opts=child_opts(*extra),
                )
            if kind in ("ServiceAccount", "Secret"):
                created.append(res)  # pods must not start before their identity exists


def _stores(args: ServingEndpointArgs) -> tuple[bool, bool]:
    """Whether the endpoint (or its canary) loads from the model store, and from MLflow."""
    sources = [args.model] + ([args.canary.model] if args.canary is not None else [])
    return (
        any(s.store is ModelStore.S3 for s in sources),
        any(s.store is ModelStore.MLFLOW for s in sources),
    )


def _env_extra(
    args: ServingEndpointArgs, storage: StorageBackend | None, tracking_uri: Any
) -> dict[str, Any]:
    env: dict[str, Any] = {}
    if tracking_uri is not None:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    if storage is not None and _stores(args)[0]:
        env["MODEL_BUCKET"] = storage.bucket
        env["MODEL_PREFIX"] = storage.project_prefix(args.project)
    if storage is not None:
        if storage.region:
            env["AWS_REGION"] = storage.region
        if storage.endpoint_url is not None:
            # MinIO on the local stack: boto3 reads AWS_ENDPOINT_URL*; the Run:ai streamer reads
            # its own variables (vLLM copies AWS_ENDPOINT_URL over only when given
            # --model-loader-extra-config), and MinIO wants path-style requests.
            env["AWS_ENDPOINT_URL"] = storage.endpoint_url
            env["AWS_ENDPOINT_URL_S3"] = storage.endpoint_url
            if args.runtime is Runtime.VLLM:
                env["RUNAI_STREAMER_S3_ENDPOINT"] = storage.endpoint_url
                env["RUNAI_STREAMER_S3_USE_VIRTUAL_ADDRESSING"] = "0"
    return env


def _role(kind: str, obj_name: str, name: str) -> str:
    """The resource-name suffix of a manifest (stable: it is part of each URN)."""
    if kind in ("Deployment", "Service", "LeaderWorkerSet"):
        prefix = "canary-" if obj_name != name else ""
        return prefix + {"Deployment": "deploy", "Service": "svc", "LeaderWorkerSet": "lws"}[kind]
    return _ROLE.get(kind, kind.lower())


def _snake(body: dict[str, Any]) -> dict[str, Any]:
    """Top-level camelCase keys to the snake_case keyword names of typed resources."""
    return {re.sub(r"(?<!^)(?=[A-Z])", "_", k).lower(): v for k, v in body.items()}
