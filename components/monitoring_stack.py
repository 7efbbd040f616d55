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

from collections.abc import Mapping
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import pulumi_random as random
import yaml

from components.common import (
    RESTRICTED_NAMESPACE_LABELS,
    InvalidArgsError,
    KubeTarget,
    merge_tags,
)
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
    DASHBOARDS_DIR,
    dashboard_configmap,
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
    REPLACED_DEFAULT_ALERTS,
    kube_prometheus_stack_values,
    network_policies,
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
    "REPLACED_DEFAULT_ALERTS",
    "SNS_MESSAGE",
    "SNS_SUBJECT",
    "AlertReceiver",
    "AlertmanagerArgs",
    "DcgmExporterArgs",
    "GrafanaArgs",
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
    "gpu_price_rule_file",
    "kube_prometheus_stack_values",
    "load_dashboards",
    "load_rule_files",
    "network_policies",
    "prometheus_rule",
    "secret_file",
    "sns_topic_region",
    "storage_class",
]

# --- Component -----------------------------------------------------------------------------


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
        secrets = dict(receiver_secrets or {})
        ns_name = args.namespace

        def k8s_opts(*deps: Any) -> pulumi.ResourceOptions:
            return pulumi.ResourceOptions(
                parent=self,
                provider=target.provider,
                depends_on=[*target.depends_on, *[d for d in deps if d is not None]],
            )

        namespace = k8s.core.v1.Namespace(
            f"{name}-ns",
            metadata={"name": ns_name, "labels": dict(RESTRICTED_NAMESPACE_LABELS)},
            opts=k8s_opts(),
        )
        agents_ns = k8s.core.v1.Namespace(
            f"{name}-agents-ns",
            metadata={"name": args.agents_namespace, "labels": dict(PRIVILEGED_NAMESPACE_LABELS)},
            opts=k8s_opts(),
        )

        sc_name: str | None = None
        sc_res = None
        if target.on_aws:
            sc_name = args.storage_class
            if args.create_storage_class:
                manifest = storage_class(args.storage_class, kms_key_arn)
                sc_res = k8s.storage.v1.StorageClass(
                    f"{name}-storage-class",
                    metadata=manifest["metadata"],
                    provisioner=manifest["provisioner"],
                    parameters=manifest["parameters"],
                    reclaim_policy=manifest["reclaimPolicy"],
                    volume_binding_mode=manifest["volumeBindingMode"],
                    allow_volume_expansion=manifest["allowVolumeExpansion"],
                    opts=k8s_opts(),
                )

        # Grafana admin credentials: a Secret, never the chart's default password.
        if grafana_admin_password is None:
            generated = random.RandomPassword(
                f"{name}-grafana-password",
                length=32,
                special=False,
                opts=pulumi.ResourceOptions(parent=self),
            )
            password: pulumi.Input[str] = generated.result
        else:
            password = grafana_admin_password
        admin_secret_name = "grafana-admin"  # noqa: S105 - a Secret name
        admin_secret = k8s.core.v1.Secret(
            f"{name}-grafana-admin",
            metadata=_typed(object_meta(admin_secret_name, ns_name)),
            type="Opaque",
            string_data={
                GRAFANA_USER_KEY: args.grafana.admin_user,
                GRAFANA_PASSWORD_KEY: pulumi.Output.secret(password),
            },
            opts=k8s_opts(namespace),
        )

        receivers_secret_name = "alertmanager-receivers"  # noqa: S105 - a Secret name
        receivers_secret = k8s.core.v1.Secret(
            f"{name}-alertmanager-receivers",
            metadata=_typed(object_meta(receivers_secret_name, ns_name)),
            type="Opaque",
            # Only the secrets some receiver uses, mounted under ALERTMANAGER_SECRETS_DIR.
            string_data={
                r.secret_key: pulumi.Output.secret(secrets[r.secret_key])
                for r in args.alertmanager.receivers
                if r.needs_secret
            },
            opts=k8s_opts(namespace),
        )

        # sns receivers: Alertmanager's service account gets a role that may publish to the topic.
        self.alertmanager_role_arn = pulumi.Output.from_input(None)
        identity = None
        if args.sns_receivers:

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
            identity = aws.eks.PodIdentityAssociation(
                f"{name}-alertmanager-pod-identity",
                cluster_name=cluster,
                namespace=ns_name,
                service_account=ALERTMANAGER_SERVICE_ACCOUNT,
                role_arn=role.arn,
                tags=role_tags,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[role_policy]),
            )
            self.alertmanager_role_arn = role.arn

        def render_config(topic: str | None) -> str:
            config = alertmanager_config(args.alertmanager, receivers_secret_name, topic)
            return yaml.safe_dump(config, sort_keys=False)

        am_config_name = "alertmanager-config"
        am_config = k8s.core.v1.Secret(
            f"{name}-alertmanager-config",
            metadata=_typed(object_meta(am_config_name, ns_name)),
            type="Opaque",
            string_data={
                "alertmanager.yaml": (
                    pulumi.Output.from_input(alarm_topic_arn).apply(render_config)
                    if args.sns_receivers
                    else render_config(None)
                )
            },
            opts=k8s_opts(namespace),
        )

        for manifest in network_policies(ns_name):
            k8s.networking.v1.NetworkPolicy(
                f"{name}-netpol-{manifest['metadata']['name']}",
                metadata=manifest["metadata"],
                spec=manifest["spec"],
                opts=k8s_opts(namespace),
            )

        values = kube_prometheus_stack_values(
            args,
            storage_class_name=sc_name,
            grafana_admin_secret=admin_secret_name,
            alertmanager_config_secret=am_config_name,
            alertmanager_receivers_secret=receivers_secret_name,
        )
        release = k8s.helm.v3.Release(
            f"{name}-kps",
            name=KPS_RELEASE,
            chart=KPS_CHART,
            version=KPS_VERSION,
            repository_opts={"repo": KPS_REPO},
            namespace=ns_name,
            values=values,
            timeout=900,
            max_history=5,
            # Pod Identity credentials are injected when a pod starts: associate the role first.
            opts=k8s_opts(
                namespace, agents_ns, sc_res, admin_secret, receivers_secret, am_config, identity
            ),
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
                opts=k8s_opts(agents_ns, release),
            )

        for stem, rule_file in load_rule_files().items():
            manifest = prometheus_rule(f"mlplatform-{stem}", ns_name, rule_file)
            _Manifest(f"{name}-rules-{stem}", manifest, opts=k8s_opts(release))
        prices = prometheus_rule(
            "mlplatform-gpu-prices", ns_name, gpu_price_rule_file(args.gpu_hourly_prices_usd)
        )
        _Manifest(f"{name}-rules-gpu-prices", prices, opts=k8s_opts(release))

        for stem, dashboard in load_dashboards().items():
            cm = dashboard_configmap(f"dashboard-{stem}", ns_name, dashboard)
            k8s.core.v1.ConfigMap(
                f"{name}-dashboard-{stem}",
                metadata=cm["metadata"],
                data=cm["data"],
                opts=k8s_opts(namespace),
            )

        svc = f"{ns_name}.svc.cluster.local"
        self.namespace = pulumi.Output.from_input(ns_name)
        self.prometheus_url = pulumi.Output.from_input(
            f"http://{KPS_RELEASE}-prometheus.{svc}:9090"
        )
        self.alertmanager_url = pulumi.Output.from_input(
            f"http://{KPS_RELEASE}-alertmanager.{svc}:9093"
        )
        self.grafana_url = pulumi.Output.from_input(f"http://{KPS_RELEASE}-grafana.{svc}:80")
        self.grafana_admin_secret = pulumi.Output.from_input(admin_secret_name)
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
