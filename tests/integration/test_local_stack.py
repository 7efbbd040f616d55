"""The local stack through the real engine, end to end: `pulumi preview`, `up`, `mlplatform
verify`, a second preview with no changes, `destroy`, nothing left behind.

The cluster is the control plane of scripts/control-plane.sh (a fresh one, shaped like a kind
cluster: one node and kind's default StorageClass, and the CRDs the charts would bring). Chart
repositories and Git hosts are out of reach here, so each Helm release and the Training Operator's
kustomize overlay point at an empty local stand-in of the same name and version
(engine_programs.stub_remote_sources); every object the platform declares itself is applied as
is, and checked like the offline plan's (test_control_plane.py).

With ``MLPLATFORM_KUBE_CONTEXT`` set, the same test runs against that context of your kubeconfig
(kind, EKS) with the real charts instead. How to run: docs/integration-tests.md.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration import cluster_checks as checks
from tests.integration.control_plane import (
    CONTEXT,
    KIND_STORAGE_CLASS,
    ControlPlane,
    Kubectl,
    binaries_dir,
    crds_dir,
    offline_plan,
    start,
)
from tests.integration.engine_programs import STUB_CHARTS_ENV
from tests.integration.engine_support import StackProject, engine_search_path
from tests.integration.plan_nodes import local_nodes

pytestmark = [
    pytest.mark.engine,
    pytest.mark.control_plane,
    pytest.mark.xdist_group("control-plane"),
]

STACK = "local"
CONTEXT_KEY = "ml-platform:kubeContext"
REAL_CLUSTER_ENV = "MLPLATFORM_KUBE_CONTEXT"
SECRET_TYPE = "pulumi-python:dynamic/mlplatform:GeneratedSecret"


@dataclass
class Cluster:
    kubectl: Kubectl
    kubeconfig: Path
    context: str
    stubbed: bool  # chart releases point at empty stand-ins


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if context := os.environ.get(REAL_CLUSTER_ENV):
        kubeconfig = Path(os.environ.get("KUBECONFIG", Path.home() / ".kube/config"))
        binary = shutil.which("kubectl") or str(binaries_dir() / "kubectl")
        kubectl = Kubectl(Path(binary), kubeconfig)
        kubectl("--context", context, "version")
        yield Cluster(kubectl, kubeconfig, context, stubbed=False)
        return
    cp: ControlPlane = start(tmp_path_factory.mktemp("local-engine"))
    try:
        cp.install_crds(crds_dir())
        cp.add_nodes(local_nodes())
        assert cp.kubectl.apply([KIND_STORAGE_CLASS]).returncode == 0
        yield Cluster(cp.kubectl, cp.kubeconfig, CONTEXT, stubbed=True)
    finally:
        cp.stop()


@pytest.fixture(scope="module")
def project(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackProject]:
    root = tmp_path_factory.mktemp("local-stack")
    env = {"KUBECONFIG": str(cluster.kubeconfig), STUB_CHARTS_ENV: str(root / "charts")}
    proj = StackProject(
        root / "engine",
        engine_search_path(("pulumi-resource-pulumi-python",)),
        STACK,
        program="platform_without_remote_sources" if cluster.stubbed else None,
        extra_env=env,
    )
    assert proj.pulumi("config", "set", CONTEXT_KEY, cluster.context).returncode == 0
    try:
        yield proj
    finally:
        proj.pulumi("destroy", "--yes", "--skip-preview")


@pytest.fixture(scope="module")
def manifests(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    return list(offline_plan(STACK, tmp_path_factory.mktemp("local-manifests"))["manifests"])


@pytest.fixture(scope="module")
def deployed(project: StackProject) -> dict[str, Any]:
    """`pulumi up`; the stack's outputs (secrets shown)."""
    up = project.pulumi("up", "--yes", "--skip-preview")
    assert up.returncode == 0, up.output
    out = project.pulumi("stack", "output", "--json", "--show-secrets")
    assert out.returncode == 0, out.output
    return dict(json.loads(out.output[out.output.index("{") :]))


def _changes(output: str) -> dict[str, int]:
    """The resource counts of a preview's summary ("+ 52 to create")."""
    return {
        op: int(n) for n, op in re.findall(r"([0-9]+) to (create|update|delete|replace)", output)
    }


def test_preview_plans_the_local_platform(project: StackProject, manifests: list[Any]) -> None:
    preview = project.pulumi("preview")
    assert preview.returncode == 0, preview.output
    assert _changes(preview.output).get("create", 0) > len(manifests)
    assert "delete" not in _changes(preview.output)


def test_up_applies_every_object_the_platform_declares(
    deployed: dict[str, Any],
    cluster: Cluster,
    manifests: list[dict[str, Any]],
    project: StackProject,
) -> None:
    assert deployed["platform"] == "local"
    state = json.loads(project.pulumi("stack", "export").output)
    types = {r["type"] for r in state["deployment"].get("resources", [])}
    assert not {t for t in types if t.startswith("aws:")}  # the local stack declares no AWS
    assert checks.missing_objects(cluster.kubectl, manifests) == []


def test_generated_secrets_stay_secret(deployed: dict[str, Any], project: StackProject) -> None:
    """GeneratedSecret (instead of pulumi_random) ran under the engine; its value is encrypted in
    the state and reaches the cluster only inside Secrets."""
    state = json.loads(project.pulumi("stack", "export").output)
    generated = [r for r in state["deployment"]["resources"] if r["type"] == SECRET_TYPE]
    # MinIO root user and password, Grafana admin password, MLflow's admin and the example
    # project's user
    assert len(generated) == 5
    for r in generated:
        result = r["outputs"]["result"]
        assert isinstance(result, dict) and "ciphertext" in result, r["urn"]
    shown = project.pulumi("stack", "export", "--show-secrets").output
    plaintext = json.loads(shown)["deployment"]["resources"]
    # --show-secrets writes each secret as {<secret signature>: ..., "plaintext": <JSON text>}
    values = {
        r["urn"]: json.loads(r["outputs"]["result"]["plaintext"])
        for r in plaintext
        if r["type"] == SECRET_TYPE
    }
    weak = [
        (urn.rsplit("::", 1)[-1], type(v).__name__, len(v))
        for urn, v in values.items()
        if not (isinstance(v, str) and len(v) >= 20 and v.isalnum())
    ]
    assert weak == []
    values = list(values.values())
    assert not any(v in json.dumps(state) for v in values)


def test_the_cluster_agrees_with_the_platform(
    deployed: dict[str, Any], cluster: Cluster, manifests: list[dict[str, Any]]
) -> None:
    """The checks the offline manifests pass (test_control_plane.py), on what the engine applied."""
    assert checks.pod_security_problems(cluster.kubectl, manifests) == []
    assert checks.placement_problems(cluster.kubectl, manifests) == []
    assert checks.claim_problems(cluster.kubectl, manifests) == []


def test_verify_reports_what_it_can_see(
    deployed: dict[str, Any],
    cluster: Cluster,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`mlplatform verify --stack local` after `up`: the cluster checks run against it. Without
    the charts (stand-ins here) there is no Prometheus or Alertmanager to answer, and verify says
    so; everything the platform declares itself passes."""
    from mlplatform.cli import main as cli_main

    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps(deployed))
    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))
    capsys.readouterr()
    code = cli_main(["verify", "--stack", STACK, "--outputs", str(outputs), "--format", "json"])
    report = json.loads(capsys.readouterr().out)
    status = {c["name"]: c["status"] for c in report["checks"]}
    assert status["aws"] == "skip"
    assert status["k8s.nodes-ready"] == "pass"
    chart_made = {"k8s.prometheus-targets", "k8s.alertmanager"}
    if cluster.stubbed:
        assert code == 1
        assert {n for n, s in status.items() if s == "fail"} == chart_made, report
    else:
        assert code == 0, report


def test_second_preview_changes_nothing(deployed: dict[str, Any], project: StackProject) -> None:
    again = project.pulumi("preview", "--expect-no-changes")
    assert again.returncode == 0, again.output
    # The same check fails when something would change.
    assert (
        project.pulumi(
            "config", "set", "--path", "ml-platform:monitoring.prometheus.retentionDays", "4"
        ).returncode
        == 0
    )
    try:
        changed = project.pulumi("preview", "--expect-no-changes")
        assert changed.returncode != 0
        assert _changes(changed.output).get("update", 0) >= 1, changed.output
    finally:
        project.pulumi(
            "config", "set", "--path", "ml-platform:monitoring.prometheus.retentionDays", "3"
        )


def test_destroy_leaves_nothing_behind(
    deployed: dict[str, Any],
    project: StackProject,
    cluster: Cluster,
    manifests: list[dict[str, Any]],
) -> None:
    def present() -> list[str]:
        return [
            checks.ref(m) for m in manifests if not checks.missing_objects(cluster.kubectl, [m])
        ]

    assert len(present()) == len(manifests)  # all there before
    down = project.pulumi("destroy", "--yes", "--skip-preview")
    assert down.returncode == 0, down.output
    state = json.loads(project.pulumi("stack", "export").output)
    assert not state["deployment"].get("resources")
    assert present() == []
