"""Every shipped stack's Kubernetes layer, applied to a real control plane.

For each stack (dev, prod, local) a fresh control plane (etcd, kube-apiserver,
kube-controller-manager, kube-scheduler, kwok; scripts/control-plane.sh) gets:
- the CRDs the platform's charts and overlays would install, from the projects' Go modules
  (scripts/control-plane-crds.sh; which module version stands for which pinned chart is in that
  script and in the folder's SOURCES file);
- kwok nodes shaped like the plan's node groups and Karpenter NodePools (plan_nodes.py); the local
  stack gets one kind-like node and kind's default StorageClass;
- the offline plan's manifests (`mlplatform plan --out DIR`), applied with `kubectl apply`.

Helm charts cannot be downloaded here, so the chart releases themselves are not in this test (the
plan's manifests never held them); every object the platform declares itself is.

Then: every object is accepted by the API server (schemas, CRD validation and CEL rules), every
workload's pod passes Pod Security "restricted" in its namespace, every pod is Running on a node
of the right pool and no wrong node would take it, every claim binds through a StorageClass that
exists. Each check has a deliberately broken case that shows it fails (test_checks_catch_*).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlplatform.cost import parse_quantity
from tests.integration import cluster_checks as checks
from tests.integration.control_plane import (
    KIND_STORAGE_CLASS,
    ControlPlane,
    ControlPlanes,
    binaries_dir,
    crds_dir,
    offline_plan,
)
from tests.integration.plan_nodes import node, plan_nodes

pytestmark = [pytest.mark.control_plane, pytest.mark.xdist_group("control-plane")]

REPO = Path(__file__).resolve().parents[2]
STACKS = ("dev", "prod", "local")
# Breaks a check finds that are being fixed elsewhere: (stack, check, target) -> reason. Each is left
# out of its check; issue #16's four (dev's unbound MLflow claim, amd64 pods on arm64 nodes) were
# fixed and removed. Keep it empty.
KNOWN_BREAKS: dict[tuple[str, str, str], str] = {}


def known(stack: str, check: str) -> set[str]:
    return {target for (s, c, target) in KNOWN_BREAKS if (s, c) == (stack, check)}


@dataclass
class Applied:
    stack: str
    plan: dict[str, Any]
    cp: ControlPlane
    nodes: list[dict[str, Any]]
    apply: subprocess.CompletedProcess[str]

    @property
    def manifests(self) -> list[dict[str, Any]]:
        return list(self.plan["manifests"])


@pytest.fixture(scope="session")
def control_planes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlanes]:
    binaries_dir()  # skips (fails in CI) without the binaries
    planes = ControlPlanes(tmp_path_factory.mktemp("control-planes"))
    try:
        yield planes
    finally:
        planes.stop_all()


def shaped(cp: ControlPlane, plan: dict[str, Any], stack: str) -> list[dict[str, Any]]:
    """CRDs, nodes like the plan's, and what the cluster brings (kind's class for local)."""
    cp.install_crds(crds_dir())
    nodes = plan_nodes(plan)
    cp.add_nodes(nodes)
    if stack == "local":
        assert cp.kubectl.apply([KIND_STORAGE_CLASS]).returncode == 0
    return nodes


@pytest.fixture(scope="session")
def applied_stacks(control_planes: ControlPlanes) -> dict[str, Applied | str]:
    """The stack applied last, on its own control plane (tests are ordered stack by stack), or
    why applying it failed (so that its other tests fail at once instead of trying again)."""
    return {}


@pytest.fixture(params=STACKS)
def applied(
    request: pytest.FixtureRequest,
    applied_stacks: dict[str, Applied | str],
    control_planes: ControlPlanes,
    tmp_path_factory: pytest.TempPathFactory,
) -> Applied:
    stack = request.param
    for other in [s for s in applied_stacks if s != stack]:  # tests come stack by stack
        control_planes.stop(f"apply-{other}")
        del applied_stacks[other]
    if stack not in applied_stacks:
        try:
            out = tmp_path_factory.mktemp(f"manifests-{stack}")
            plan = offline_plan(stack, out)
            cp = control_planes.get(f"apply-{stack}")
            nodes = shaped(cp, plan, stack)
            # What `helm upgrade --install --create-namespace` and the overlay (plan --out's
            # README) create before the user applies the folder.
            made = cp.kubectl("apply", "-f", "-", stdin=_namespaces(outside_namespaces(plan)))
            assert made.returncode == 0, made.stderr
            # The user's path: `kubectl apply -f DIR` (namespaces first, by file name).
            result = cp.kubectl("apply", "--server-side", "-f", str(out), check=False)
            cp.settle()
            applied_stacks[stack] = Applied(stack, plan, cp, nodes, result)
        except Exception as exc:
            control_planes.stop(f"apply-{stack}")
            applied_stacks[stack] = f"applying {stack} failed: {type(exc).__name__}: {exc}"
    got = applied_stacks[stack]
    if isinstance(got, str):
        pytest.fail(got, pytrace=False)
    return got


def outside_namespaces(plan: dict[str, Any]) -> set[str]:
    """Namespaces the plan's objects use but do not declare: each must be one a Helm release or
    the Training Operator overlay creates, or the apply would fail on a real cluster too."""
    from components.training_operator import TRAINING_OPERATOR_NAMESPACE

    manifests = plan["manifests"]
    declared = {m["metadata"]["name"] for m in manifests if m["kind"] == "Namespace"}
    used = {m["metadata"]["namespace"] for m in manifests if m["metadata"].get("namespace")}
    created_outside = {
        str(r["inputs"]["namespace"])
        for r in plan["resources"]
        if r["type"] == "kubernetes:helm.sh/v3:Release" and r["inputs"].get("namespace")
    }
    if any(r["type"] == "kubernetes:kustomize/v2:Directory" for r in plan["resources"]):
        created_outside.add(TRAINING_OPERATOR_NAMESPACE)
    missing = used - declared
    assert missing <= created_outside, f"namespaces nobody creates: {missing - created_outside}"
    return missing


def _namespaces(names: set[str]) -> str:
    docs = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}} for n in names]
    return yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": docs})


def test_nodes_stand_for_the_plan(applied: Applied) -> None:
    live = {n["metadata"]["name"]: n for n in applied.cp.kubectl.json("nodes")["items"]}
    assert set(live) == {n["metadata"]["name"] for n in applied.nodes}
    for want in applied.nodes:
        got = live[want["metadata"]["name"]]
        ready = [c for c in got["status"]["conditions"] if c["type"] == "Ready"]
        assert ready and ready[0]["status"] == "True", got["metadata"]["name"]
        assert got["metadata"]["labels"].items() >= want["metadata"]["labels"].items()
        # (less the node lifecycle controller's own node.kubernetes.io/* taints)
        taints = [
            t
            for t in got["spec"].get("taints", [])
            if not t["key"].startswith("node.kubernetes.io/")
        ]
        assert taints == want["spec"]["taints"]
        assert {k: parse_quantity(v) for k, v in got["status"]["allocatable"].items()} == {
            k: parse_quantity(v) for k, v in want["status"]["allocatable"].items()
        }
    if applied.stack != "local":
        groups = [
            r for r in applied.plan["resources"] if r["type"] == "aws:eks/nodeGroup:NodeGroup"
        ]
        system = [
            n for n in live.values() if "eks.amazonaws.com/nodegroup" in n["metadata"]["labels"]
        ]
        assert len(system) == sum(g["inputs"]["scalingConfig"]["desiredSize"] for g in groups)
        pools = {m["metadata"]["name"] for m in applied.manifests if m["kind"] == "NodePool"}
        assert {
            n["metadata"]["labels"].get("karpenter.sh/nodepool") for n in live.values()
        } >= pools


def test_every_object_is_accepted(applied: Applied) -> None:
    """Built-in kinds against the API server's schemas, custom resources against their real CRDs
    (OpenAPI schema and CEL rules): nothing is rejected."""
    assert applied.apply.returncode == 0, applied.apply.stderr
    assert checks.missing_objects(applied.cp.kubectl, applied.manifests) == []
    kinds = {m["kind"] for m in applied.manifests}
    if applied.stack != "local":
        assert {"NodePool", "EC2NodeClass", "PrometheusRule", "ClusterQueue"} <= kinds


def test_pods_pass_pod_security_restricted(applied: Applied) -> None:
    assert checks.workloads(applied.manifests)
    assert checks.pod_security_problems(applied.cp.kubectl, applied.manifests) == []


def test_workloads_run_on_the_right_pool(applied: Applied) -> None:
    skip = known(applied.stack, "placement")
    assert checks.placement_problems(applied.cp.kubectl, applied.manifests, skip=skip) == []


def test_claims_bind_through_a_class_that_exists(applied: Applied) -> None:
    skip = known(applied.stack, "claims")
    assert checks.claim_problems(applied.cp.kubectl, applied.manifests, skip=skip) == []


# --- Each check fails where it should -----------------------------------------------------------

BROKEN_NS = "broken"
AMD64_IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/churn-serving:0.1.0"
HARDENED_POD = {
    "securityContext": {
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "seccompProfile": {"type": "RuntimeDefault"},
    },
    "containers": [
        {
            "name": "app",
            "image": AMD64_IMAGE,
            "securityContext": {
                "allowPrivilegeEscalation": False,
                "readOnlyRootFilesystem": True,
                "capabilities": {"drop": ["ALL"]},
            },
            "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}},
        }
    ],
}


def deployment(name: str, pod: dict[str, Any], namespace: str = BROKEN_NS) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": pod},
        },
    }


def namespace(name: str, level: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {checks.PSA_ENFORCE: level}},
    }


def claim(name: str, storage_class: str | None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": "1Gi"}},
    }
    if storage_class is not None:
        spec["storageClassName"] = storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": BROKEN_NS},
        "spec": spec,
    }


@pytest.fixture(scope="module")
def broken(control_planes: ControlPlanes) -> Iterator[ControlPlane]:
    """A control plane with an arm64 and an amd64 node, a GPU node and an immediate class."""
    cp = control_planes.get("broken")
    try:
        cp.install_crds(crds_dir())
        plain = {"cpu": "2", "memory": "8Gi", "pods": "30", "ephemeral-storage": "20Gi"}
        gpu = {**plain, "nvidia.com/gpu": "1"}
        cp.add_nodes(
            [
                node(
                    "arm",
                    {"kubernetes.io/arch": "arm64", "kubernetes.io/os": "linux"},
                    [],
                    plain,
                    plain,
                ),
                node(
                    "amd",
                    {"kubernetes.io/arch": "amd64", "kubernetes.io/os": "linux"},
                    [],
                    plain,
                    plain,
                ),
                node(
                    "gpu",
                    {
                        "kubernetes.io/arch": "amd64",
                        "kubernetes.io/os": "linux",
                        checks.ACCELERATOR_LABEL: "nvidia-l4",
                    },
                    [{"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"}],
                    gpu,
                    gpu,
                ),
            ]
        )
        immediate = {
            **KIND_STORAGE_CLASS,
            "metadata": {"name": "fast"},
            "volumeBindingMode": "Immediate",
        }
        assert cp.kubectl.apply([immediate, namespace(BROKEN_NS, "restricted")]).returncode == 0
        yield cp
    finally:
        control_planes.stop("broken")


def test_checks_catch_a_rejected_custom_resource(broken: ControlPlane, tmp_path: Path) -> None:
    pool = next(m for m in offline_plan("dev", tmp_path)["manifests"] if m["kind"] == "NodePool")
    bad = json.loads(json.dumps(pool))
    bad["metadata"]["name"] = "restricted-label"
    bad["spec"]["template"]["metadata"]["labels"]["karpenter.sh/nodepool"] = "x"  # a CEL rule
    result = broken.kubectl.apply([bad])
    assert result.returncode != 0
    assert 'label "karpenter.sh/nodepool" is restricted' in result.stderr
    assert checks.missing_objects(broken.kubectl, [bad]) != []


def test_checks_catch_pod_security(broken: ControlPlane) -> None:
    root = deployment("root", {"containers": [{"name": "app", "image": AMD64_IMAGE}]})
    privileged_ns = namespace("anything-goes", "privileged")
    lax = deployment("lax", HARDENED_POD, namespace="anything-goes")
    assert broken.kubectl.apply([privileged_ns, root, lax]).returncode == 0
    problems = checks.pod_security_problems(broken.kubectl, [root, lax])
    assert len(problems) == 2, problems
    assert "violates PodSecurity" in problems[0] and "runAsNonRoot" in problems[0]
    assert "enforces 'privileged', not 'restricted'" in problems[1]
    hardened = deployment("hardened", HARDENED_POD)
    assert checks.pod_security_problems(broken.kubectl, [hardened]) == []


def test_checks_catch_wrong_pools(broken: ControlPlane) -> None:
    on_arm = deployment("on-arm", {**HARDENED_POD, "nodeSelector": {"kubernetes.io/arch": "arm64"}})
    anywhere = deployment("anywhere", HARDENED_POD)
    gpu_pod = json.loads(json.dumps(HARDENED_POD))
    gpu_pod["containers"][0]["resources"]["limits"] = {"nvidia.com/gpu": "1"}
    untolerated = deployment("no-toleration", gpu_pod)
    pinned = deployment("pinned", {**HARDENED_POD, "nodeSelector": {"kubernetes.io/arch": "amd64"}})
    assert broken.kubectl.apply([on_arm, anywhere, untolerated, pinned]).returncode == 0
    broken.settle(timeout_s=30)
    problems = "\n".join(checks.placement_problems(broken.kubectl, [on_arm]))
    assert "runs on arm: arm64 node" in problems
    problems = "\n".join(checks.placement_problems(broken.kubectl, [anywhere]))
    assert "nothing keeps its pods off arm (arm64 node" in problems
    problems = "\n".join(checks.placement_problems(broken.kubectl, [untolerated]))
    assert "is Pending on no node" in problems
    assert checks.placement_problems(broken.kubectl, [pinned]) == []


def test_checks_catch_claims_that_cannot_bind(broken: ControlPlane) -> None:
    no_class = claim("no-class", None)
    missing = claim("missing-class", "gp3-nowhere")
    good = claim("good", "fast")
    assert broken.kubectl.apply([no_class, missing, good]).returncode == 0
    broken.settle(timeout_s=15)
    problems = checks.claim_problems(broken.kubectl, [no_class, missing])
    assert any("no-class names no StorageClass" in p for p in problems), problems
    assert any("'gp3-nowhere', which does not exist" in p for p in problems), problems
    assert any("missing-class is Pending" in p for p in problems), problems
    assert checks.claim_problems(broken.kubectl, [good]) == []


@pytest.fixture(scope="module")
def multi_node_prod(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """prod's offline plan with its commented multi-node (LeaderWorkerSet) endpoint turned on."""
    from mlplatform.report import run_stack
    from tests.serving.test_model_loading_and_multinode import _raw_with_example

    folder = tmp_path_factory.mktemp("stacks-lws")
    (folder / "Pulumi.prod.yaml").write_text(yaml.safe_dump({"config": _raw_with_example()}))
    return run_stack("prod", folder)[0]


def test_verify_reads_a_leader_worker_set_through_the_real_crd(
    broken: ControlPlane, multi_node_prod: Any
) -> None:
    """`mlplatform verify` on the plan's LeaderWorkerSet endpoint, against the LWS CRD the tests
    install: the object from the plan, its status written through the status subresource in the
    shape the LWS 0.10 controller writes (tests/verify/lws_status.py), read by the real client."""
    from kubernetes import config

    from mlplatform import verify
    from tests.verify.lws_status import lws_status

    spec = multi_node_prod.outputs["servingEndpoints"]["llama-405b"]
    assert spec["workload"] == "LeaderWorkerSet"
    manifests = multi_node_prod.manifests()
    lws = next(m for m in manifests if m["kind"] == "LeaderWorkerSet")
    ns = next(
        m
        for m in manifests
        if m["kind"] == "Namespace" and m["metadata"]["name"] == spec["namespace"]
    )
    applied = broken.kubectl.apply([ns, lws])
    assert applied.returncode == 0, applied.stderr
    kube = verify.Kube(config.new_client_from_config(config_file=str(broken.kubeconfig)))
    name = lws["metadata"]["name"]

    def status(state: str, ready: int) -> verify.CheckResult:
        body = {"status": lws_status(name, state, ready=ready, replicas=1)}
        broken.kubectl(
            "patch",
            "leaderworkerset",
            name,
            "-n",
            spec["namespace"],
            "--subresource=status",
            "--type=merge",
            "-p",
            json.dumps(body),
        )
        return verify.check_serving_ready(kube, "llama-405b", spec)

    # Created, no controller yet: no status.
    fresh = verify.check_serving_ready(kube, "llama-405b", spec)
    assert not fresh.ok and "no status yet" in fresh.detail
    up = status("available", 1)
    assert up.ok, up.detail
    # CRD defaults: one group (spec.replicas) of the plan's two nodes.
    assert up.detail.endswith("Available, 1/1 groups of 2 pods ready")
    down = status("progressing", 0)
    assert not down.ok and "Progressing: Replicas are progressing" in down.detail
    gone = verify.check_serving_ready(kube, "llama-405b", {**spec, "deployment": "nope"})
    assert not gone.ok and "not found" in gone.detail
