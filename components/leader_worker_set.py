"""LeaderWorkerSet (kubernetes-sigs/lws): the controller that runs multi-node model replicas.

A ``vllm`` endpoint with ``multiNode`` runs as a ``LeaderWorkerSet`` (see
:mod:`components.serving_multinode`); this component installs the controller from its pinned Helm
chart, only on stacks that have such an endpoint. The controller's namespace is Pod Security
"restricted", its pod runs non-root with a read-only root filesystem, and a NetworkPolicy admits
only its webhook (the API server) and its metrics port (Prometheus).

The chart installs its CRDs from ``crds/`` on the first install only (Helm never upgrades CRDs):
after a chart upgrade, apply the new release's CRDs server-side, as for Karpenter's and Kueue's
(docs/upgrading-crds.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
from pydantic import Field

from components.common import (
    RESTRICTED_NAMESPACE_LABELS,
    ArgsModel,
    Issue,
    KubeTarget,
    check_chart_version,
    ports_only_network_policy,
)

LWS_CHART = "oci://registry.k8s.io/lws/charts/lws"
# v0.10.0, the newest LWS release (kubernetes-sigs/lws tag v0.10.0, 2026-08-11); its installation
# doc (site/content/en/docs/installation) installs chart 0.10.0 from this OCI repository, app
# v0.10.0. Tests validate LeaderWorkerSets against the CRD of v0.9.0, the nearest release the Go
# module proxy serves (scripts/crd-sources.txt; keep the two in step).
LWS_CHART_VERSION = "0.10.0"
LWS_IMAGE_TAG = "v0.10.0"  # the chart's values.yaml at the tag says `tag: main`: pin it
WEBHOOK_PORT = 9443  # values.yaml service.port
METRICS_PORT = 8443  # templates/manager/deployment.yaml, with enablePrometheus


class LeaderWorkerSetArgs(ArgsModel):
    """Stack config section ``leaderWorkerSet`` (only used when an endpoint has ``multiNode``)."""

    chart_version: str = LWS_CHART_VERSION
    namespace: str = "lws-system"
    replicas: int = Field(default=2, ge=1, le=5)

    def issues(self) -> list[Issue]:
        return [*super().issues(), *check_chart_version("chartVersion", self.chart_version)]


def lws_values(args: LeaderWorkerSetArgs, *, prometheus: bool) -> dict[str, Any]:
    """The chart's values (every key exists in charts/lws/values.yaml at v0.10.0)."""
    return {
        "replicaCount": args.replicas,
        "image": {"manager": {"tag": LWS_IMAGE_TAG, "pullPolicy": "IfNotPresent"}},
        "podSecurityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "resources": {
            "requests": {"cpu": "250m", "memory": "512Mi"},
            "limits": {"cpu": "1", "memory": "1Gi"},
        },
        # The chart's ServiceMonitor (https :8443, the scraper's token); needs the Prometheus
        # Operator CRDs, so the monitoring stack goes in depends_on.
        "enablePrometheus": prometheus,
        "enableCertManager": False,
    }


class LeaderWorkerSet(pulumi.ComponentResource):
    """The LWS controller, its restricted namespace and its NetworkPolicy."""

    namespace: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        args: LeaderWorkerSetArgs,
        *,
        target: KubeTarget,
        monitoring_crds: pulumi.Resource | None = None,
        depends_on: Sequence[pulumi.Resource] = (),
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        args.raise_if_invalid("LeaderWorkerSet")
        super().__init__("mlplatform:serving:LeaderWorkerSet", name, None, opts)
        deps = [*target.depends_on, *depends_on]
        if monitoring_crds is not None:
            deps.append(monitoring_crds)

        def k8s_opts(*extra: pulumi.Resource) -> pulumi.ResourceOptions:
            return pulumi.ResourceOptions(
                parent=self, provider=target.provider, depends_on=[*deps, *extra]
            )

        ns = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata={"name": args.namespace, "labels": dict(RESTRICTED_NAMESPACE_LABELS)},
            opts=k8s_opts(),
        )
        if target.network_policy:
            policy = ports_only_network_policy(
                "lws-controller", args.namespace, (WEBHOOK_PORT, METRICS_PORT)
            )
            k8s.networking.v1.NetworkPolicy(
                f"{name}-controller-netpol",
                metadata=policy["metadata"],
                spec=policy["spec"],
                opts=k8s_opts(ns),
            )
        # Endpoints depend on this release: their LeaderWorkerSets are created after the CRD and
        # the webhook are up, and deleted before the controller goes.
        self.release = k8s.helm.v3.Release(
            f"{name}-lws",
            name="lws",
            chart=LWS_CHART,
            version=args.chart_version,
            namespace=args.namespace,
            values=lws_values(args, prometheus=monitoring_crds is not None),
            skip_await=False,
            atomic=True,
            timeout=600,
            opts=k8s_opts(ns),
        )
        self.namespace = pulumi.Output.from_input(args.namespace)
        self.register_outputs({"namespace": self.namespace})
