"""MonitoringStack: Prometheus, Alertmanager and Grafana that alert from day one, plus GPU metrics.

* **kube-prometheus-stack** (pinned chart): Prometheus keeps ``retentionDays`` of data on a
  persistent, encrypted gp3 volume (the default storage class on the local stack) and picks up
  *every* ServiceMonitor, PodMonitor and PrometheusRule on the cluster, not only the chart's own.
  Alertmanager is on, with Slack/webhook, PagerDuty, email and SNS receivers routed by severity.
  Grafana keeps its state on a volume, takes its admin password from a Kubernetes Secret (never the
  chart default) and loads dashboards through its sidecar. node-exporter and kube-state-metrics
  are on.
* **DCGM exporter** (pinned chart) on every GPU node: tolerates the GPU taint, exports a fixed
  field list (utilization, memory, temperature, power, XID, throttling) and is scraped through its
  ServiceMonitor with ``honorLabels`` so ``namespace``/``pod`` name the workload holding the GPU.
* **Rules and dashboards as files**: ``assets/alerts/*.yaml`` are plain Prometheus rule files
  (``promtool`` checks and tests them) wrapped here into PrometheusRule objects;
  ``assets/dashboards/*.json`` become ConfigMaps labelled ``grafana_dashboard: "1"``.

Receiver secrets (webhook URLs, PagerDuty routing keys, SMTP passwords) never enter the Helm
values: they go into their own Secret, mounted into Alertmanager, and the Alertmanager config only
names the files (``api_url_file``, ``routing_key_file``...). The Helm values stay plain data, so a
preview shows them in full and never depends on unknown outputs.

``sns`` receivers (AWS only) have no secret at all: Alertmanager publishes to the platform's
encrypted alarm topic (CostGuardrails) with SigV4, signing with short-lived credentials that EKS
Pod Identity hands its service account. The role may publish to that topic and use its key
through SNS, nothing else; teams subscribe to the topic (email, chat, paging tools).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import yaml

from components.common import (
    RESTRICTED_NAMESPACE_LABELS,
    InvalidArgsError,
    KubeTarget,
    merge_tags,
)
from components.generated_secret import GeneratedSecret
from components.monitoring.alerting import (
    ALERTMANAGER_SECRETS_DIR,
    SNS_MESSAGE,
    SNS_SUBJECT,
    alertmanager_config,
    alertmanager_sns_policy,
    secret_file,
    sns_topic_region,
)
from components.monitoring.args import (
    DEFAULT_GPU_HOURLY_PRICES_USD,
    GP3_ENCRYPTED,
    AlertmanagerArgs,
    AlertReceiver,
    DcgmExporterArgs,
    GrafanaArgs,
    MonitoringStackArgs,
    PrometheusArgs,
    ReceiverKind,
    ResourceSpec,
    Severity,
)
from components.monitoring.assets import (
    ALERTS_DIR,
    DASHBOARD_FOLDER,
    DASHBOARD_FOLDER_ANNOTATION,
    DASHBOARD_LABEL,
    DASHBOARD_SOURCES,
    DASHBOARDS_DIR,
    RULE_FILE_SOURCES,
    STACK_SOURCES,
    MetricSource,
    dashboard_configmap,
    fed_dashboards,
    fed_rule_files,
    gpu_price_rule_file,
    load_dashboards,
    load_rule_files,
    object_meta,
    prometheus_rule,
)
from components.monitoring.exporters import (
    DCGM_CHART,
    DCGM_FIELDS,
    DCGM_PROFILING_FIELDS,
    DCGM_RELEASE,
    DCGM_REPO,
    DCGM_VERSION,
    dcgm_exporter_values,
    dcgm_metrics_csv,
)
from components.monitoring.prometheus import (
    ALERTMANAGER_SERVICE_ACCOUNT,
    GRAFANA_PASSWORD_KEY,
    GRAFANA_USER_KEY,
    KPS_CHART,
    KPS_RELEASE,
    KPS_REPO,
    KPS_VERSION,
    POD_IDENTITY_ANNOTATION,
    PRIVILEGED_NAMESPACE_LABELS,
    PROMETHEUS_CRDS_CHART,
    PROMETHEUS_CRDS_RELEASE,
    PROMETHEUS_CRDS_VERSION,
    REPLACED_DEFAULT_ALERTS,
    kube_prometheus_stack_values,
    network_policies,
    prometheus_crds_values,
    storage_class,
)
from components.project_access import pod_identity_role

# The names other modules (the project template, tests) import from here.
__all__ = [
    "ALERTMANAGER_SECRETS_DIR",
    "ALERTMANAGER_SERVICE_ACCOUNT",
    "ALERTS_DIR",
    "DASHBOARDS_DIR",
    "DASHBOARD_FOLDER",
    "DASHBOARD_FOLDER_ANNOTATION",
    "DASHBOARD_LABEL",
    "DASHBOARD_SOURCES",
    "DCGM_CHART",
    "DCGM_FIELDS",
    "DCGM_PROFILING_FIELDS",
    "DCGM_RELEASE",
    "DCGM_REPO",
    "DCGM_VERSION",
    "DEFAULT_GPU_HOURLY_PRICES_USD",
    "GP3_ENCRYPTED",
    "GRAFANA_PASSWORD_KEY",
    "GRAFANA_USER_KEY",
    "KPS_CHART",
    "KPS_RELEASE",
    "KPS_REPO",
    "KPS_VERSION",
    "POD_IDENTITY_ANNOTATION",
    "PRIVILEGED_NAMESPACE_LABELS",
    "PROMETHEUS_CRDS_CHART",
    "PROMETHEUS_CRDS_RELEASE",
    "PROMETHEUS_CRDS_VERSION",
    "REPLACED_DEFAULT_ALERTS",
    "RULE_FILE_SOURCES",
    "SNS_MESSAGE",
    "SNS_SUBJECT",
    "STACK_SOURCES",
    "AlertReceiver",
    "AlertmanagerArgs",
    "DcgmExporterArgs",
    "GrafanaArgs",
    "MetricSource",
    "MonitoringStack",
    "MonitoringStackArgs",
    "PrometheusArgs",
    "ReceiverKind",
    "ResourceSpec",
    "Severity",
    "alertmanager_config",
    "alertmanager_sns_policy",
    "dashboard_configmap",
    "dcgm_exporter_values",
    "dcgm_metrics_csv",
    "fed_dashboards",
    "fed_rule_files",
    "gpu_price_rule_file",
    "kube_prometheus_stack_values",
    "load_dashboards",
    "load_rule_files",
    "network_policies",
    "prometheus_crds_values",
    "prometheus_rule",
    "secret_file",
    "sns_topic_region",
    "storage_class",
]

# --- Component -----------------------------------------------------------------------------

GRAFANA_ADMIN_SECRET = "grafana-admin"  # noqa: S105 - a Secret name
ALERTMANAGER_RECEIVERS_SECRET = "alertmanager-receivers"  # noqa: S105 - a Secret name
ALERTMANAGER_CONFIG_SECRET = "alertmanager-config"  # noqa: S105 - a Secret name


def _typed(manifest_part: dict[str, Any]) -> Any:
    """Manifest dicts go to typed resources as they are (pulumi-kubernetes accepts dicts)."""
    return manifest_part


class _Manifest(k8s.apiextensions.CustomResource):
    """A custom resource (PrometheusRule) declared from its manifest dict."""

    def __init__(self, name: str, manifest: dict[str, Any], opts: pulumi.ResourceOptions):
        super().__init__(
            name,
            api_version=manifest["apiVersion"],
            kind=manifest["kind"],
            metadata=manifest["metadata"],
            spec=manifest["spec"],
            opts=opts,
        )


class MonitoringStack(pulumi.ComponentResource):
    """Prometheus, Alertmanager, Grafana, node/GPU exporters, alert rules and dashboards."""

    namespace: pulumi.Output[str]
    prometheus_url: pulumi.Output[str]
    alertmanager_url: pulumi.Output[str]
    grafana_url: pulumi.Output[str]
    grafana_admin_secret: pulumi.Output[str]
    grafana_admin_password: pulumi.Output[str]
    # The role Alertmanager publishes to the alarm topic with; None without sns receivers.
    alertmanager_role_arn: pulumi.Output[str | None]
    # The Prometheus Operator CRDs: whatever declares a ServiceMonitor, PodMonitor or
    # PrometheusRule (here or in another component) waits for this release.
    crds: k8s.helm.v3.Release
    # The metric sources this stack's rules and dashboards were chosen for.
    metric_sources: frozenset[MetricSource]

    def __init__(
        self,
        name: str,
        args: MonitoringStackArgs,
        *,
        target: KubeTarget,
        receiver_secrets: Mapping[str, pulumi.Input[str]] | None = None,
        grafana_admin_password: pulumi.Input[str] | None = None,
        kms_key_arn: pulumi.Input[str] | None = None,
        alarm_topic_arn: pulumi.Input[str] | None = None,
        alarm_key_arn: pulumi.Input[str] | None = None,
        cluster_name: pulumi.Input[str] | None = None,
        workload_sources: Collection[MetricSource] = (),
        tags: Mapping[str, str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """``receiver_secrets`` maps each receiver's ``secret`` key to its (secret) value.
        Without ``grafana_admin_password`` a random one is generated (read it from the
        ``grafanaAdminPassword`` output). ``kms_key_arn`` encrypts the gp3 volumes with that key
        instead of the account's default EBS key (the EBS CSI role then needs grants on it).

        ``sns`` receivers (AWS only) need ``alarm_topic_arn`` and ``alarm_key_arn`` (the
        CostGuardrails outputs of the same names) and the cluster, ``cluster_name`` or else
        ``target.cluster_name``, for Alertmanager's Pod Identity role. ``tags`` go on that role.

        ``workload_sources`` are the metric sources other components deploy and scrape (Kueue,
        the Training Operator, serving endpoints). Rule files and dashboards ship only where
        every source they read is fed: by this stack itself (kubelet, kube-state-metrics,
        node-exporter, the DCGM exporter when enabled) or by one of these.
        """
        cluster = cluster_name if cluster_name is not None else target.cluster_name
        found = (
            args.issues()
            + args.secret_issues((receiver_secrets or {}).keys())
            + args.sns_issues(
                on_aws=target.on_aws,
                alarm_topic_arn=alarm_topic_arn,
                alarm_key_arn=alarm_key_arn,
                cluster_name=cluster,
            )
        )
        if found:
            raise InvalidArgsError("MonitoringStack", found)
        super().__init__("mlplatform:monitoring:MonitoringStack", name, None, opts)
        self._name = name
        self._args = args
        self._target = target
        ns_name = args.namespace
        own = STACK_SOURCES | ({MetricSource.DCGM} if args.dcgm_exporter.enabled else set())
        self.metric_sources = frozenset(own) | frozenset(workload_sources)

        namespace = k8s.core.v1.Namespace(
            f"{name}-ns",
            metadata={"name": ns_name, "labels": dict(RESTRICTED_NAMESPACE_LABELS)},
            opts=self._k8s_opts(),
        )
        agents_ns = k8s.core.v1.Namespace(
            f"{name}-agents-ns",
            metadata={"name": args.agents_namespace, "labels": dict(PRIVILEGED_NAMESPACE_LABELS)},
            opts=self._k8s_opts(),
        )
        sc_name, sc_res = self._storage_class(kms_key_arn)
        password, admin_secret = self._grafana_admin(namespace, grafana_admin_password)
        am_secrets = self._alertmanager(
            namespace,
            dict(receiver_secrets or {}),
            alarm_topic_arn=alarm_topic_arn,
            alarm_key_arn=alarm_key_arn,
            cluster=cluster,
            tags=tags,
        )
        for manifest in network_policies(ns_name) if self._target.network_policy else []:
            k8s.networking.v1.NetworkPolicy(
                f"{name}-netpol-{manifest['metadata']['name']}",
                metadata=manifest["metadata"],
                spec=manifest["spec"],
                opts=self._k8s_opts(namespace),
            )

        # Cluster-wide CRDs, in the stack's namespace only for Helm's release record.
        self.crds = k8s.helm.v3.Release(
            f"{name}-prometheus-crds",
            name=PROMETHEUS_CRDS_RELEASE,
            chart=PROMETHEUS_CRDS_CHART,
            version=PROMETHEUS_CRDS_VERSION,
            repository_opts={"repo": KPS_REPO},
            namespace=ns_name,
            values=prometheus_crds_values(),
            max_history=5,
            opts=self._k8s_opts(namespace),
        )
        values = kube_prometheus_stack_values(
            args,
            storage_class_name=sc_name,
            grafana_admin_secret=GRAFANA_ADMIN_SECRET,
            alertmanager_config_secret=ALERTMANAGER_CONFIG_SECRET,
            alertmanager_receivers_secret=ALERTMANAGER_RECEIVERS_SECRET,
            karpenter_state=MetricSource.KARPENTER_STATE in self.metric_sources,
        )
        release = k8s.helm.v3.Release(
            f"{name}-kps",
            name=KPS_RELEASE,
            chart=KPS_CHART,
            version=KPS_VERSION,
            repository_opts={"repo": KPS_REPO},
            namespace=ns_name,
            values=values,
            skip_crds=True,
            timeout=900,
            max_history=5,
            # Pod Identity credentials are injected when a pod starts: associate the role first.
            opts=self._k8s_opts(namespace, agents_ns, sc_res, admin_secret, *am_secrets, self.crds),
        )
        if args.dcgm_exporter.enabled:
            k8s.helm.v3.Release(
                f"{name}-dcgm-exporter",
                name=DCGM_RELEASE,
                chart=DCGM_CHART,
                version=DCGM_VERSION,
                repository_opts={"repo": DCGM_REPO},
                namespace=args.agents_namespace,
                values=dcgm_exporter_values(args.dcgm_exporter),
                timeout=600,
                max_history=5,
                # After the stack: its ServiceMonitor needs the operator's CRDs.
                opts=self._k8s_opts(agents_ns, release),
            )
        self._rules_and_dashboards(namespace, release)

        svc = f"{ns_name}.svc.cluster.local"
        self.namespace = pulumi.Output.from_input(ns_name)
        self.prometheus_url = pulumi.Output.from_input(
            f"http://{KPS_RELEASE}-prometheus.{svc}:9090"
        )
        self.alertmanager_url = pulumi.Output.from_input(
            f"http://{KPS_RELEASE}-alertmanager.{svc}:9093"
        )
        self.grafana_url = pulumi.Output.from_input(f"http://{KPS_RELEASE}-grafana.{svc}:80")
        self.grafana_admin_secret = pulumi.Output.from_input(GRAFANA_ADMIN_SECRET)
        self.grafana_admin_password = pulumi.Output.secret(password)
        self.register_outputs(
            {
                "namespace": self.namespace,
                "prometheusUrl": self.prometheus_url,
                "alertmanagerUrl": self.alertmanager_url,
                "grafanaUrl": self.grafana_url,
                "grafanaAdminSecret": self.grafana_admin_secret,
                "grafanaAdminPassword": self.grafana_admin_password,
                "alertmanagerRoleArn": self.alertmanager_role_arn,
            }
        )

    def _k8s_opts(self, *deps: Any) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(
            parent=self,
            provider=self._target.provider,
            depends_on=[*self._target.depends_on, *[d for d in deps if d is not None]],
        )

    def _storage_class(
        self, kms_key_arn: pulumi.Input[str] | None
    ) -> tuple[str | None, pulumi.Resource | None]:
        """The class the stack's volumes use (AWS only; the cluster default elsewhere)."""
        args = self._args
        if not self._target.on_aws:
            return None, None
        if not args.create_storage_class:
            return args.storage_class, None
        manifest = storage_class(args.storage_class, kms_key_arn)
        res = k8s.storage.v1.StorageClass(
            f"{self._name}-storage-class",
            metadata=manifest["metadata"],
            provisioner=manifest["provisioner"],
            parameters=manifest["parameters"],
            reclaim_policy=manifest["reclaimPolicy"],
            volume_binding_mode=manifest["volumeBindingMode"],
            allow_volume_expansion=manifest["allowVolumeExpansion"],
            opts=self._k8s_opts(),
        )
        return args.storage_class, res

    def _grafana_admin(
        self, namespace: pulumi.Resource, given: pulumi.Input[str] | None
    ) -> tuple[pulumi.Input[str], pulumi.Resource]:
        """Grafana admin credentials: a Secret, never the chart's default password."""
        if given is None:
            generated = GeneratedSecret(
                f"{self._name}-grafana-password",
                length=32,  # alphanumeric: safe unescaped in URIs and configs
                opts=pulumi.ResourceOptions(parent=self),
            )
            password: pulumi.Input[str] = generated.result
        else:
            password = given
        secret = k8s.core.v1.Secret(
            f"{self._name}-grafana-admin",
            metadata=_typed(object_meta(GRAFANA_ADMIN_SECRET, self._args.namespace)),
            type="Opaque",
            string_data={
                GRAFANA_USER_KEY: self._args.grafana.admin_user,
                GRAFANA_PASSWORD_KEY: pulumi.Output.secret(password),
            },
            opts=self._k8s_opts(namespace),
        )
        return password, secret

    def _alertmanager(
        self,
        namespace: pulumi.Resource,
        secrets: Mapping[str, pulumi.Input[str]],
        *,
        alarm_topic_arn: pulumi.Input[str] | None,
        alarm_key_arn: pulumi.Input[str] | None,
        cluster: pulumi.Input[str] | None,
        tags: Mapping[str, str] | None,
    ) -> list[pulumi.Resource]:
        """Alertmanager's config and receiver Secrets and, for sns receivers, its AWS role.

        Returns what the chart must wait for."""
        name, args, ns_name = self._name, self._args, self._args.namespace
        # Only the secrets some receiver uses, mounted under ALERTMANAGER_SECRETS_DIR.
        string_data = {
            r.secret_key: pulumi.Output.secret(secrets[r.secret_key])
            for r in args.alertmanager.receivers
            if r.needs_secret
        }
        receivers_secret = k8s.core.v1.Secret(
            f"{name}-alertmanager-receivers",
            metadata=_typed(object_meta(ALERTMANAGER_RECEIVERS_SECRET, ns_name)),
            type="Opaque",
            # None, not {}: the API server drops an empty map, and every preview would then
            # replace the Secret to put it back (found by the engine's no-change preview).
            string_data=string_data or None,
            opts=self._k8s_opts(namespace),
        )
        waits: list[pulumi.Resource] = [receivers_secret]

        # sns receivers: Alertmanager's service account gets a role that may publish to the topic.
        self.alertmanager_role_arn = pulumi.Output.from_input(None)
        if args.sns_receivers:
            assert cluster is not None  # sns_issues refused it before any resource

            def policy_for(_region: pulumi.Output[str]) -> pulumi.Output[dict[str, Any]]:
                # The topic's own region, not the provider's: that is where SNS uses the key.
                return pulumi.Output.all(alarm_topic_arn, alarm_key_arn).apply(
                    lambda a: alertmanager_sns_policy(topic_arn=a[0], key_arn=a[1])
                )

            role_tags = merge_tags(
                tags,
                {"mlplatform.io/namespace": ns_name, "mlplatform:component": "monitoring"},
            )
            role, role_policy = pod_identity_role(
                self,
                f"{name}-alertmanager",
                cluster_name=cluster,
                policy_for=policy_for,
                description=f"Alertmanager ({ns_name}/{ALERTMANAGER_SERVICE_ACCOUNT}) "
                "publishes alerts to the alarm SNS topic",
                tags=role_tags,
            )
            waits.append(
                aws.eks.PodIdentityAssociation(
                    f"{name}-alertmanager-pod-identity",
                    cluster_name=cluster,
                    namespace=ns_name,
                    service_account=ALERTMANAGER_SERVICE_ACCOUNT,
                    role_arn=role.arn,
                    tags=role_tags,
                    opts=pulumi.ResourceOptions(parent=self, depends_on=[role_policy]),
                )
            )
            self.alertmanager_role_arn = role.arn

        def render_config(topic: str | None) -> str:
            config = alertmanager_config(args.alertmanager, ALERTMANAGER_RECEIVERS_SECRET, topic)
            return yaml.safe_dump(config, sort_keys=False)

        waits.append(
            k8s.core.v1.Secret(
                f"{name}-alertmanager-config",
                metadata=_typed(object_meta(ALERTMANAGER_CONFIG_SECRET, ns_name)),
                type="Opaque",
                string_data={
                    "alertmanager.yaml": (
                        pulumi.Output.from_input(alarm_topic_arn).apply(render_config)
                        if args.sns_receivers
                        else render_config(None)
                    )
                },
                opts=self._k8s_opts(namespace),
            )
        )
        return waits

    def _rules_and_dashboards(self, namespace: pulumi.Resource, chart: pulumi.Resource) -> None:
        """The rule files and dashboards whose metrics this platform feeds, and GPU prices."""
        name, ns_name = self._name, self._args.namespace
        for stem, rule_file in fed_rule_files(self.metric_sources).items():
            manifest = prometheus_rule(f"mlplatform-{stem}", ns_name, rule_file)
            _Manifest(f"{name}-rules-{stem}", manifest, opts=self._k8s_opts(chart))
        prices = prometheus_rule(
            "mlplatform-gpu-prices", ns_name, gpu_price_rule_file(self._args.gpu_hourly_prices_usd)
        )
        _Manifest(f"{name}-rules-gpu-prices", prices, opts=self._k8s_opts(chart))
        for stem, dashboard in fed_dashboards(self.metric_sources).items():
            cm = dashboard_configmap(f"dashboard-{stem}", ns_name, dashboard)
            k8s.core.v1.ConfigMap(
                f"{name}-dashboard-{stem}",
                metadata=cm["metadata"],
                data=cm["data"],
                opts=self._k8s_opts(namespace),
            )
