"""The distributed training engine: the Kubeflow Training Operator, for multi-node ``PyTorchJob``s.

Why this engine (and not KubeRay) is argued in ``docs/training-engine.md``. In short: a
``PyTorchJob`` runs an unchanged ``torchrun`` script (the operator sets ``MASTER_ADDR``,
``WORLD_SIZE``, ``RANK`` and the rendezvous for every replica), needs no Ray runtime in the
training image and no always-on head pod, and Kueue admits it as one gang through its built-in
``kubeflow.org/pytorchjob`` integration.

The operator publishes no Helm chart; its release is a kustomize overlay in its repository, so it
is applied with ``kustomize.v2.Directory`` from the overlay at a pinned release tag (never a
branch). The overlay creates its own ``kubeflow`` namespace.

Its controller serves Prometheus metrics (``training_operator_jobs_*_total`` by ``job_namespace``
and ``framework``; pkg/common/metrics.go) on the overlay's ``training-operator`` Service, port
``monitoring-port`` (manifests/base/service.yaml). Its ``prometheus.io/*`` annotations mean
nothing to the Prometheus Operator, so the component declares a ServiceMonitor for it when given
the monitoring stack's CRDs.

Kueue learns about the engine through :data:`KUEUE_FRAMEWORKS`: pass
``TrainingOperator.kueue_frameworks`` to ``TrainingQueues(frameworks=...)`` and the operator as one
of its ``depends_on``, so Kueue starts with the PyTorchJob integration enabled and its CRD present.
"""

from __future__ import annotations

import re
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
from pydantic import Field

from components.common import ArgsModel, Issue, KubeTarget
from components.training_queues import BATCH_JOB_FRAMEWORK

# The newest v1 release (kubeflow/trainer tags, 2026-08: v1.9.4; v2.x is Trainer v2, a new
# TrainJob API, see docs/training-engine.md). Tests validate PyTorchJobs against this release's
# CRD (scripts/crd-sources.txt; keep the two in step).
TRAINING_OPERATOR_VERSION = "v1.9.4"
TRAINING_OPERATOR_REPO = "https://github.com/kubeflow/trainer"
TRAINING_OPERATOR_OVERLAY = "manifests/overlays/standalone"
TRAINING_OPERATOR_NAMESPACE = "kubeflow"
PYTORCHJOB_API_VERSION = "kubeflow.org/v1"
PYTORCHJOB_FRAMEWORK = "kubeflow.org/pytorchjob"
# The overlay's metrics Service (manifests/base/service.yaml at the pinned tag).
METRICS_SERVICE_LABELS = {"app": "training-operator"}
METRICS_PORT = "monitoring-port"
# The Kueue integrations the platform's jobs need: single-node Jobs and the engine's jobs.
KUEUE_FRAMEWORKS: tuple[str, ...] = (BATCH_JOB_FRAMEWORK, PYTORCHJOB_FRAMEWORK)

_RELEASE_TAG = re.compile(r"^v\d+\.\d+\.\d+(-rc\.\d+)?$")


def overlay_url(version: str) -> str:
    """The kustomize remote target of the operator's standalone overlay at a release tag."""
    return f"{TRAINING_OPERATOR_REPO}//{TRAINING_OPERATOR_OVERLAY}?ref={version}"


class TrainingOperatorArgs(ArgsModel):
    """Stack config section ``trainingOperator``."""

    version: str = Field(
        default=TRAINING_OPERATOR_VERSION,
        description="Kubeflow Training Operator release tag (PyTorchJob engine).",
    )

    def issues(self) -> list[Issue]:
        found = super().issues()
        if not _RELEASE_TAG.match(self.version):
            found.append(
                Issue(
                    ("version",),
                    f"must be a Training Operator release tag such as {TRAINING_OPERATOR_VERSION} "
                    f"(a branch would change under the stack), got {self.version!r}",
                )
            )
        return found


def service_monitor() -> dict[str, Any]:
    """Scrapes the operator's metrics Service (plain HTTP on :8080 at this release)."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {
            "name": "training-operator",
            "namespace": TRAINING_OPERATOR_NAMESPACE,
            "labels": {"app.kubernetes.io/part-of": "mlplatform-training"},
        },
        "spec": {
            "selector": {"matchLabels": dict(METRICS_SERVICE_LABELS)},
            "namespaceSelector": {"matchNames": [TRAINING_OPERATOR_NAMESPACE]},
            "endpoints": [{"port": METRICS_PORT, "path": "/metrics", "interval": "30s"}],
        },
    }


class TrainingOperator(pulumi.ComponentResource):
    """The Kubeflow Training Operator (PyTorchJob controller), pinned to a release."""

    namespace: pulumi.Output[str]
    version: pulumi.Output[str]
    kueue_frameworks: tuple[str, ...]

    def __init__(
        self,
        name: str,
        args: TrainingOperatorArgs,
        *,
        target: KubeTarget,
        monitoring_crds: pulumi.Resource | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """``monitoring_crds``: the Prometheus Operator CRDs (``MonitoringStack.crds``); with
        them the operator's metrics are scraped through a ServiceMonitor."""
        args.raise_if_invalid("TrainingOperator")
        super().__init__("mlplatform:training:TrainingOperator", name, None, opts)
        self.manifests = k8s.kustomize.v2.Directory(
            f"{name}-operator",
            directory=overlay_url(args.version),
            opts=pulumi.ResourceOptions(
                parent=self, provider=target.provider, depends_on=list(target.depends_on)
            ),
        )
        if monitoring_crds is not None:
            monitor = service_monitor()
            k8s.apiextensions.CustomResource(
                f"{name}-service-monitor",
                api_version=monitor["apiVersion"],
                kind=monitor["kind"],
                metadata=monitor["metadata"],
                spec=monitor["spec"],
                opts=pulumi.ResourceOptions(
                    parent=self,
                    provider=target.provider,
                    # The overlay creates the namespace; the monitoring stack the CRD.
                    depends_on=[*target.depends_on, self.manifests, monitoring_crds],
                ),
            )
        self.kueue_frameworks = KUEUE_FRAMEWORKS
        self.namespace = pulumi.Output.from_input(TRAINING_OPERATOR_NAMESPACE)
        self.version = pulumi.Output.from_input(args.version)
        self.register_outputs(
            {
                "namespace": self.namespace,
                "version": self.version,
                "kueueFrameworks": list(KUEUE_FRAMEWORKS),
            }
        )
