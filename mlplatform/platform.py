"""Compose the platform's components from a validated stack config.

Ordering is expressed through dependencies, which Pulumi also uses in reverse to destroy:
Kubernetes objects wait for the cluster and its system nodes (and go first on teardown), NodePools
wait for the Karpenter controller, and whatever creates load balancers waits for the network.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from components.capacity_blocks import CapacityBlockQueues, block_queues
from components.ci_runners import CiRunners
from components.common import Environment, KubeTarget, StorageBackend, merge_tags
from components.cost_guardrails import CostGuardrails
from components.gpu_node_pool import GpuNodePool
from components.gpu_software import GpuSoftware
from components.karpenter import Karpenter
from components.leader_worker_set import LeaderWorkerSet
from components.load_balancer_controller import LoadBalancerController
from components.local_object_store import LocalObjectStore, LocalObjectStoreArgs
from components.model_registry import ModelRegistry, RegistryNetwork
from components.model_store import ModelStore
from components.monitoring_stack import MetricSource, MonitoringStack
from components.network import Network
from components.project_access import ProjectAccess
from components.project_namespaces import ProjectNamespaces
from components.serving_endpoint import ServingEndpoint
from components.training_cluster import TrainingCluster
from components.training_operator import TrainingOperator
from components.training_queues import GpuPoolCapacity, TrainingQueues
from components.warm_pool import WarmPools
from mlplatform.config import Platform, StackSettings, serving_service_account
from mlplatform.projects import declare_project_ci, project_entries


@dataclass
class Declared:
    """What later layers need from earlier ones."""

    target: KubeTarget
    tags: dict[str, str]
    network: Network | None = None
    cluster: TrainingCluster | None = None
    karpenter: Karpenter | None = None
    pools: list[GpuNodePool] = field(default_factory=list)
    storage: StorageBackend | None = None
    namespaces: ProjectNamespaces | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def declare(settings: StackSettings) -> Declared:
    cfg = settings.config
    tags = merge_tags(settings.base_tags, cfg.tags)
    pulumi.export("environment", cfg.environment.value)
    pulumi.export("platform", cfg.platform.value)
    # What the policy pack and `mlplatform plan` check this stack against.
    pulumi.export("compliance", cfg.compliance.exported())
    if cfg.platform is Platform.aws:
        aws_provider = aws.Provider(
            "aws",
            region=settings.region,
            default_tags=aws.ProviderDefaultTagsArgs(tags=tags),
        )
        pulumi.export("region", settings.region)
        # NetworkPolicies are declared only where the CNI enforces them (see the invariants).
        pulumi.export("networkPolicyEnforcement", "vpc-cni enableNetworkPolicy")
        declared = _declare_aws(settings, aws_provider, tags)
    else:
        declared = _declare_local(settings, tags)
        pulumi.export("kubeContext", cfg.kube_context)
        if cfg.kube_network_policies:
            pulumi.export("networkPolicyEnforcement", "the cluster's CNI (kubeNetworkPolicies)")
    _declare_monitoring(settings, declared)
    _declare_registry(settings, declared)
    _declare_training(settings, declared)
    _declare_serving(settings, declared)
    pulumi.export(
        "projects",
        project_entries(
            settings,
            has_registry="registry" in declared.extra,
            project_ci=declared.extra.get("project_ci", {}),
        ),
    )
    return declared


def _declare_aws(settings: StackSettings, provider: aws.Provider, tags: dict[str, str]) -> Declared:
    cfg = settings.config
    opts = pulumi.ResourceOptions(providers={"aws": provider})
    cluster_name = cfg.cluster.cluster_name or f"ml-platform-{settings.stack}"
    cluster_args = cfg.cluster.model_copy(
        update={
            "cluster_name": cluster_name,
            # CI's roles get their access entries beside the admins (see docs/ci.md).
            "admin_role_arns": list(
                dict.fromkeys([*cfg.cluster.admin_role_arns, *cfg.ci.admin_roles()])
            ),
            "reader_role_arns": list(
                dict.fromkeys([*cfg.cluster.reader_role_arns, *cfg.ci.reader_roles()])
            ),
        }
    )

    network = Network("network", cfg.network, cluster_name=cluster_name, tags=tags, opts=opts)
    cluster = TrainingCluster(
        "cluster",
        cluster_args,
        network=network,
        tags=tags,
        # The default StorageClass was the monitoring stack's child before the cluster owned it.
        storage_class_aliases=[
            pulumi.Alias(
                name="monitoring-storage-class",
                parent=pulumi.create_urn("monitoring", "mlplatform:monitoring:MonitoringStack"),
            )
        ],
        opts=opts,
    )
    target = cluster.target
    namespaces = _project_namespaces(settings, target)
    karpenter = Karpenter(
        "karpenter",
        cfg.karpenter,
        target=target,
        cluster_name=cluster_name,
        ebs_kms_key_arn=cluster.ebs_kms_key_arn,
        tags=tags,
        opts=opts,
    )
    pools = [
        GpuNodePool(f"pool-{p.name}", p, karpenter=karpenter, opts=opts) for p in cfg.gpu_pools
    ]
    if cfg.ci.enabled:
        _declare_ci(settings, network, cluster, tags, opts)
    GpuSoftware("gpu-software", cfg.gpu_software, target=target, pools=cfg.gpu_pools, opts=opts)
    warm = [(p.name, p.warm_pool_gpus, p.warm_pool) for p in cfg.gpu_pools if p.warm_pool]
    if warm:
        WarmPools(
            "warm-pools",
            warm,
            target=target,
            depends_on=[p.node_pool for p in pools if p.args.warm_pool],
            opts=opts,
        )

    lbc = LoadBalancerController(
        "load-balancer-controller",
        cfg.load_balancer_controller,
        target=target,
        vpc_id=network.vpc_id,
        region=settings.region,
        network_anchor=network.teardown_anchor,
        tags=tags,
        opts=opts,
    )
    # Budget and topic names are account-wide: scope them by cluster (one per stack).
    assert cfg.model_store is not None  # required on aws by the config checks
    store = ModelStore(
        "model-store",
        cfg.model_store,
        cluster_name=cluster.cluster_name,
        projects=[p.name for p in cfg.projects.projects],
        tags=tags,
        opts=opts,
    )
    access = ProjectAccess(
        "project-access",
        cfg.access_args(),
        store=store.refs(),
        cluster_name=cluster.cluster_name,
        service_accounts=target,
        namespace_resources=namespaces.resources,
        tags=tags,
        opts=opts,
    )
    pulumi.export("modelBucket", store.bucket_name)
    pulumi.export("modelBucketArn", store.bucket_arn)
    pulumi.export("kmsKeyArn", store.kms_key_arn)
    pulumi.export("ecrRepositories", store.ecr_repository_urls)
    pulumi.export("projectRoleArns", access.role_arns)
    project_ci = (
        declare_project_ci(settings, network, cluster, store, namespaces, tags, opts)
        if cfg.ci.enabled
        else {}
    )
    guardrails = CostGuardrails(
        f"{cluster_name}-cost",
        cfg.cost,
        tags=tags,
        protect=cfg.environment is Environment.PROD,
        opts=opts,
    )

    pulumi.export("budgetName", guardrails.budget_name)
    pulumi.export("alarmTopicArn", guardrails.alarm_topic_arn)
    pulumi.export("clusterName", cluster.cluster_name)
    pulumi.export("kubeconfig", cluster.kubeconfig)
    pulumi.export("vpcId", network.vpc_id)
    pulumi.export("privateSubnetIds", network.private_subnet_ids)
    pulumi.export("gpuPools", [p.pool_name for p in pools])
    return Declared(
        target=target,
        tags=tags,
        network=network,
        cluster=cluster,
        karpenter=karpenter,
        pools=pools,
        storage=StorageBackend(kind="s3", bucket=store.bucket_name, region=settings.region),
        namespaces=namespaces,
        extra={
            "lbc": lbc,
            "aws_opts": opts,
            "store": store,
            "access": access,
            "guardrails": guardrails,
            "project_ci": project_ci,
        },
    )


def _declare_ci(
    settings: StackSettings,
    network: Network,
    cluster: TrainingCluster,
    tags: dict[str, str],
    opts: pulumi.ResourceOptions,
) -> None:
    """Runners in this stack's VPC: the workflows' cluster jobs run there (see docs/ci.md)."""
    cfg = settings.config
    runners = CiRunners(
        "ci-runners",
        cfg.ci,
        project_name=cfg.ci.project_for(cluster.name),
        vpc_id=network.vpc_id,
        private_subnet_ids=network.private_subnet_ids,
        cluster_security_group_id=cluster.cluster_security_group_id,
        # Who deployed what is audit data: kept as long as the control plane's audit log.
        log_retention_days=cfg.cluster.log_retention_days,
        network_anchor=network.teardown_anchor,
        tags=tags,
        opts=opts,
    )
    # What a workflow (this repository's, or a generated project's) needs to run on them.
    pulumi.export(
        "ciRunner",
        {
            "project": runners.project_name,
            "label": runners.label,
            "repository": cfg.ci.repository,
            "securityGroupId": runners.security_group_id,
            "deployRoleArn": cfg.ci.deploy_role_arn,
            "previewRoleArn": cfg.ci.preview_role_arn,
        },
    )


def _declare_local(settings: StackSettings, tags: dict[str, str]) -> Declared:
    import pulumi_kubernetes as k8s

    cfg = settings.config
    provider = k8s.Provider("kubernetes", context=cfg.kube_context)
    target = KubeTarget(provider=provider, on_aws=False, network_policy=cfg.kube_network_policies)
    namespaces = _project_namespaces(settings, target)
    store = LocalObjectStore(
        "model-store",
        cfg.local_object_store or LocalObjectStoreArgs(),
        target=target,
        namespace_resources=namespaces.resources,
    )
    pulumi.export("modelBucket", store.bucket_name)
    pulumi.export("modelStoreEndpoint", store.endpoint_url)
    return Declared(target=target, tags=tags, storage=store.storage, namespaces=namespaces)


def _project_namespaces(settings: StackSettings, target: KubeTarget) -> ProjectNamespaces:
    # Declared before ProjectAccess, whose ServiceAccounts live in them. A team's namespaces
    # carry its label: that is what its ClusterQueue admits.
    return ProjectNamespaces(
        "namespaces", shared_namespaces(settings), target=target, teams=namespace_teams(settings)
    )


def shared_namespaces(settings: StackSettings) -> set[str]:
    """Namespaces several components use: projects', training teams', object-store clients'."""
    cfg = settings.config
    names = {p.effective_namespace for p in cfg.projects.projects}
    names |= {ns for team in cfg.training_queues.teams for ns in team.namespaces}
    if cfg.local_object_store is not None:
        names |= set(cfg.local_object_store.client_namespaces)
    return names


def namespace_teams(settings: StackSettings) -> dict[str, str]:
    """Each training team's namespaces, by namespace: the label the cost rules sum by."""
    teams = settings.config.training_queues.teams
    return {ns: team.name for team in teams for ns in team.namespaces}


def _declare_monitoring(settings: StackSettings, d: Declared) -> None:
    cfg = settings.config
    secrets = {k: pulumi.Output.secret(v.get_secret_value()) for k, v in cfg.secrets.items()}
    guardrails = d.extra.get("guardrails")
    args = cfg.monitoring
    if d.target.storage_class is not None:
        # The cluster declares the class (its default); monitoring's volumes name it.
        args = args.model_copy(
            update={"storage_class": d.target.storage_class, "create_storage_class": False}
        )
    monitoring = MonitoringStack(
        "monitoring",
        args,
        target=d.target,
        receiver_secrets=secrets,
        grafana_admin_password=secrets.get("grafanaAdminPassword"),
        # `sns` receivers publish to the budget's encrypted alarm topic through Pod Identity.
        alarm_topic_arn=guardrails.alarm_topic_arn if guardrails is not None else None,
        alarm_key_arn=guardrails.alarm_key_arn if guardrails is not None else None,
        # What the rest of the platform deploys and scrapes (see _declare_training/_serving).
        workload_sources=workload_metric_sources(settings),
        kms_key_arn=d.cluster.ebs_kms_key_arn if d.cluster is not None else None,
        tags=d.tags,
        opts=d.extra.get("aws_opts"),
    )
    d.extra["monitoring"] = monitoring
    if d.karpenter is not None:
        d.karpenter.service_monitor(
            "karpenter-service-monitor", monitoring.crds, namespace=cfg.monitoring.namespace
        )
    pulumi.export("prometheusUrl", monitoring.prometheus_url)
    pulumi.export("alertmanagerUrl", monitoring.alertmanager_url)
    pulumi.export("grafanaUrl", monitoring.grafana_url)


def workload_metric_sources(settings: StackSettings) -> set[MetricSource]:
    sources = {MetricSource.KUEUE, MetricSource.TRAINING_OPERATOR}
    if settings.config.platform is Platform.aws:
        # Karpenter's metrics (declared with the stack) and its EC2NodeClasses' reservations.
        sources |= {MetricSource.KARPENTER, MetricSource.KARPENTER_STATE}
    if settings.config.serving_endpoints:
        sources.add(MetricSource.SERVING)
    return sources


def _declare_registry(settings: StackSettings, d: Declared) -> None:
    cfg = settings.config
    if cfg.model_registry is None or not cfg.model_registry.enabled or d.storage is None:
        return
    network = None
    kms = None
    if d.network is not None and d.cluster is not None:
        network = RegistryNetwork(
            vpc_id=d.network.vpc_id,
            private_subnet_ids=d.network.private_subnet_ids,
            client_security_group_ids=[d.cluster.cluster_security_group_id],
        )
        kms = d.extra["store"].kms_key_arn
    args, target = cfg.model_registry, d.target
    if d.namespaces is not None and args.namespace in d.namespaces.resources:
        # shared with other components (the object store's credentials): declared once, there
        args = args.model_copy(update={"create_namespace": False})
        target = d.namespaces.target_for(target, args.namespace)
    # Each project's namespace gets the project's MLflow user; endpoints that load models from
    # the registry are admitted too (they get their credentials from the registry).
    clients = {p.effective_namespace: p.name for p in cfg.projects.projects}
    readers = [
        ep.namespace or name
        for name, ep in cfg.serving_endpoints.items()
        if "mlflow" in (ep.model.store.value, ep.canary.model.store.value if ep.canary else "")
    ]
    registry = ModelRegistry(
        "model-registry",
        args,
        target=target,
        storage=d.storage,
        network=network,
        kms_key_arn=kms,
        clients=clients,
        client_namespaces=d.namespaces.resources if d.namespaces is not None else None,
        reader_namespaces=readers,
        tags=d.tags,
        opts=d.extra.get("aws_opts"),
    )
    d.extra["registry"] = registry
    pulumi.export("mlflowTrackingUri", registry.tracking_uri)


def _declare_serving(settings: StackSettings, d: Declared) -> None:
    cfg = settings.config
    registry = d.extra.get("registry")
    monitoring = d.extra.get("monitoring")
    lbc = d.extra.get("lbc")
    role_arns = d.extra["access"].role_arns if "access" in d.extra else None
    network = d.network
    lws = None
    if any(ep.multi_node is not None for ep in cfg.serving_endpoints.values()):
        lws = LeaderWorkerSet(
            "leader-worker-set",
            cfg.leader_worker_set,
            target=d.target,
            monitoring_crds=monitoring.crds if monitoring is not None else None,
        ).release
    endpoints: dict[str, Any] = {}
    for name, ep in cfg.serving_endpoints.items():
        sa = serving_service_account(name)
        key = f"{ep.project}-{sa}"
        role = role_arns.apply(lambda arns, k=key: arns.get(k)) if role_arns else None
        endpoint = ServingEndpoint(
            name,
            ep,
            target=d.target,
            service_account_name=sa,
            storage=d.storage,
            iam_role_arn=role,
            known_pools=cfg.gpu_limits(),
            mlflow_tracking_uri=registry.tracking_uri if registry is not None else None,
            mlflow_credentials=registry.credentials(ep.project) if registry is not None else None,
            # The ALB's interfaces live in the subnets of its scheme; only those are admitted.
            alb_source_cidrs=(
                network.private_subnet_cidrs
                if ep.ingress.scheme == "internal"
                else network.public_subnet_cidrs
            )
            if network is not None
            else [],
            ingress_controller=lbc,
            leader_worker_set=lws if ep.multi_node is not None else None,
            depends_on=[monitoring] if monitoring is not None else [],
            tags=d.tags,
        )
        endpoints[name] = {
            "namespace": endpoint.namespace,
            "service": endpoint.service_name,
            "url": endpoint.url,
            "deployment": endpoint.service_name,
            "workload": "LeaderWorkerSet" if ep.multi_node is not None else "Deployment",
            "healthPath": "/health" if ep.runtime.value == "vllm" else "/healthz",
        }
    pulumi.export("servingEndpoints", endpoints)


def _declare_training(settings: StackSettings, d: Declared) -> None:
    cfg = settings.config
    limits = cfg.gpu_limits()
    # Pools on capacity blocks are reached through the blocks' own queues, not team quotas.
    capacities = [
        GpuPoolCapacity(p.name, p.accelerator.value, limits[p.name], *p.efa_node())
        for p in cfg.gpu_pools
        if not (p.reservations and p.reservations.blocks)
    ]
    monitoring = d.extra["monitoring"]
    engine = TrainingOperator(
        "training-operator",
        cfg.training_operator,
        target=d.target,
        monitoring_crds=monitoring.crds,
    )
    queues = TrainingQueues(
        "training-queues",
        cfg.training_queues,
        target=d.target,
        pools=capacities,
        frameworks=engine.kueue_frameworks,
        # Kueue's chart ships a ServiceMonitor: it needs the Prometheus Operator CRDs.
        depends_on=[engine, monitoring.crds],
        namespace_resources=d.namespaces.resources if d.namespaces is not None else None,
    )
    d.extra["queues"] = queues
    blocks = block_queues(cfg.gpu_pools, cfg.training_queues.teams)
    if blocks:
        CapacityBlockQueues(
            "capacity-blocks",
            blocks,
            target=d.target,
            frameworks=engine.kueue_frameworks,
            namespace=cfg.training_queues.namespace,
            depends_on=[queues.release],
            namespace_resources=d.namespaces.resources if d.namespaces is not None else None,
        )
    # What a project needs to be admitted: see components.training_queues.team_contract.
    pulumi.export("trainingQueues", queues.teams)
