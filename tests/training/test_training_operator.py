"""The distributed engine: pinned Training Operator, and Kueue configured to admit its jobs."""

from __future__ import annotations

from pathlib import Path

import pulumi
import yaml

from components.common import format_path
from components.training_operator import (
    KUEUE_FRAMEWORKS,
    TRAINING_OPERATOR_VERSION,
    TrainingOperator,
    TrainingOperatorArgs,
)
from components.training_queues import TrainingQueues, TrainingQueuesArgs
from tests.training.helpers import POOLS, target

DOC = Path(__file__).resolve().parents[2] / "docs" / "training-engine.md"


def test_operator_is_applied_from_a_release_tag(run):
    graph = run(lambda: TrainingOperator("engine", TrainingOperatorArgs(), target=target()))
    directory = graph.one("kubernetes:kustomize/v2:Directory")
    url = directory.inputs["directory"]
    assert url.startswith("https://github.com/kubeflow/trainer//manifests/overlays/standalone")
    assert url.endswith(f"?ref={TRAINING_OPERATOR_VERSION}")


SERVICE_MONITOR = "kubernetes:monitoring.coreos.com/v1:ServiceMonitor"


def test_operator_metrics_are_scraped_once_the_monitoring_crds_exist(run):
    # The overlay's Service carries prometheus.io/* annotations, which the Prometheus Operator
    # ignores: without a ServiceMonitor, PyTorchJobFailed could never fire.
    def program() -> None:
        t = target()
        crds = pulumi.CustomResource("test:index:Crds", "crds", {})
        TrainingOperator("engine", TrainingOperatorArgs(), target=t, monitoring_crds=crds)

    graph = run(program)
    monitor = graph.one(SERVICE_MONITOR)
    spec = monitor.inputs["spec"]
    assert monitor.inputs["metadata"]["namespace"] == "kubeflow"
    assert spec["selector"] == {"matchLabels": {"app": "training-operator"}}
    assert spec["namespaceSelector"] == {"matchNames": ["kubeflow"]}
    assert [e["port"] for e in spec["endpoints"]] == ["monitoring-port"]
    assert graph.depends_on(monitor, graph.one("test:index:Crds"))
    assert graph.depends_on(monitor, graph.one("kubernetes:kustomize/v2:Directory"))
    # Without the monitoring stack there is nothing to declare it with.
    bare = run(lambda: TrainingOperator("engine", TrainingOperatorArgs(), target=target()))
    assert bare.by_type(SERVICE_MONITOR) == []


def test_a_branch_is_not_a_version():
    issues = TrainingOperatorArgs(version="master").issues()
    assert [format_path(i.path) for i in issues] == ["version"]
    assert TrainingOperatorArgs(version="v1.9.3").issues() == []


def test_kueue_admits_pytorchjobs_and_starts_after_the_operator(run):
    def program() -> None:
        t = target()
        engine = TrainingOperator("engine", TrainingOperatorArgs(), target=t)
        TrainingQueues(
            "queues",
            TrainingQueuesArgs(),
            target=t,
            pools=POOLS,
            frameworks=engine.kueue_frameworks,
            depends_on=[engine],
        )

    graph = run(program)
    assert set(KUEUE_FRAMEWORKS) == {"batch/job", "kubeflow.org/pytorchjob"}
    (release,) = graph.helm_releases()
    config = yaml.safe_load(release["values"]["managerConfig"]["controllerManagerConfigYaml"])
    assert "kubeflow.org/pytorchjob" in config["integrations"]["frameworks"]
    kueue = graph.one("kubernetes:helm.sh/v3:Release")
    assert graph.depends_on(kueue, graph.one("kubernetes:kustomize/v2:Directory"))
    # Kueue's chart declares its own ServiceMonitor: the training dashboard graphs its gauges.
    assert release["values"]["enablePrometheus"] is True


def test_the_engine_doc_names_the_pinned_version():
    text = DOC.read_text()
    assert TRAINING_OPERATOR_VERSION in text
    assert "KubeRay" in text  # the alternative and why it was not chosen
