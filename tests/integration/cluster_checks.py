"""What the control-plane tests assert about applied manifests, each as a function that returns
the problems it finds (an empty list when all is well), so a deliberately broken manifest can show
that each one fails.

The cluster's own components do the judging: the API server admits or rejects (schemas, CRD
validation and CEL rules, Pod Security), the scheduler places, the PV controller provisions.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from mlplatform.cost import GPU_RESOURCE, parse_quantity
from tests.integration.control_plane import Kubectl

ACCELERATOR_LABEL = "mlplatform.io/accelerator"
ARCH_LABEL = "kubernetes.io/arch"
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job")
PSA_ENFORCE = "pod-security.kubernetes.io/enforce"
# Architectures an image is published for. An image not listed is taken to be amd64 only: that is
# what the ml-project template builds (the churn-serving images in the stacks), and it is the safe
# assumption for any other.
IMAGE_ARCHES: dict[str, frozenset[str]] = {
    # Docker Official Image: published for amd64, arm64v8 and others (hub.docker.com/_/postgres).
    "docker.io/library/postgres": frozenset({"amd64", "arm64"}),
}
DEFAULT_ARCHES = frozenset({"amd64"})


def ref(m: Mapping[str, Any]) -> str:
    meta = m["metadata"]
    ns = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{m['kind']} {ns}{meta['name']}"


def image_arches(image: str) -> frozenset[str]:
    repo = image.split("@", 1)[0].rsplit(":", 1)[0] if "/" in image else image
    return IMAGE_ARCHES.get(repo, DEFAULT_ARCHES)


def pod_arches(spec: Mapping[str, Any]) -> frozenset[str]:
    """Architectures every container and init container of a pod can run on."""
    arches = frozenset({"amd64", "arm64"})
    for c in [*(spec.get("initContainers") or []), *spec["containers"]]:
        arches &= image_arches(c["image"])
    return arches


def gpus_requested(spec: Mapping[str, Any]) -> float:
    total = 0.0
    for c in spec["containers"]:
        res = c.get("resources") or {}
        total += parse_quantity(
            (res.get("limits") or res.get("requests") or {}).get(GPU_RESOURCE, 0)
        )
    return total


def wrong_node_reason(pod_spec: Mapping[str, Any], node: Mapping[str, Any]) -> str | None:
    """Why a pod with this spec must not run on this node, or None when it may."""
    labels = node["metadata"].get("labels") or {}
    arch = labels.get(ARCH_LABEL)
    if arch not in pod_arches(pod_spec):
        images = ", ".join(c["image"] for c in pod_spec["containers"])
        return f"{arch} node, but {images} is built for {'/'.join(sorted(pod_arches(pod_spec)))}"
    gpu_node = ACCELERATOR_LABEL in labels
    if gpu_node and not gpus_requested(pod_spec):
        return "a GPU node, and the pod asks for no GPU"
    if gpus_requested(pod_spec) and not gpu_node:
        return "not a GPU node, and the pod asks for a GPU"
    return None


def workloads(manifests: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [m for m in manifests if m["kind"] in WORKLOAD_KINDS]


# --- The API server accepts every object ----------------------------------------------------------


def missing_objects(kubectl: Kubectl, manifests: Iterable[Mapping[str, Any]]) -> list[str]:
    """Objects of the manifests that the API server does not hold (it rejected them)."""
    problems = []
    for m in manifests:
        meta = m["metadata"]
        args = [
            f"{m['kind']}.{m['apiVersion'].split('/')[0]}" if "/" in m["apiVersion"] else m["kind"],
            meta["name"],
        ]
        if meta.get("namespace"):
            args += ["-n", meta["namespace"]]
        got = kubectl("get", *args, "-o", "name", check=False)
        if got.returncode != 0:
            problems.append(f"{ref(m)}: not on the API server ({got.stderr.strip()})")
    return problems


# --- Pod Security ---------------------------------------------------------------------------------


def pod_from_template(workload: Mapping[str, Any], name: str) -> dict[str, Any]:
    spec = workload["spec"]
    if workload["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    template = spec["template"]
    pod_spec = dict(template["spec"])
    # A StatefulSet's pods also mount a claim per volumeClaimTemplate (as its controller adds).
    claims = [
        {
            "name": t["metadata"]["name"],
            "persistentVolumeClaim": {
                "claimName": f"{t['metadata']['name']}-{workload['metadata']['name']}-0"
            },
        }
        for t in spec.get("volumeClaimTemplates") or []
    ]
    if claims:
        pod_spec["volumes"] = [*(pod_spec.get("volumes") or []), *claims]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": workload["metadata"].get("namespace", "default"),
            "labels": dict(template.get("metadata", {}).get("labels") or {}),
        },
        "spec": pod_spec,
    }


def pod_security_problems(kubectl: Kubectl, manifests: Iterable[Mapping[str, Any]]) -> list[str]:
    """Every workload's namespace enforces Pod Security ``restricted``, and its pod passes that
    admission there (a server-side dry run: the API server's own PodSecurity plugin judges)."""
    problems = []
    for w in workloads(manifests):
        ns = w["metadata"].get("namespace", "default")
        labels = kubectl.json("namespace", ns)["metadata"].get("labels") or {}
        if labels.get(PSA_ENFORCE) != "restricted":
            problems.append(
                f"{ref(w)}: namespace {ns} enforces {labels.get(PSA_ENFORCE, 'nothing')!r}, "
                "not 'restricted'"
            )
        pod = pod_from_template(w, f"psa-{w['metadata']['name']}")
        got = kubectl(
            "create", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump(pod), check=False
        )
        if got.returncode != 0 or "Warning" in got.stderr:
            problems.append(f"{ref(w)}: its pod is refused: {got.stderr.strip()}")
    return problems


# --- Scheduling: the right pool, Running -----------------------------------------------------------


def pods_of(kubectl: Kubectl, workload: Mapping[str, Any]) -> list[dict[str, Any]]:
    ns = workload["metadata"].get("namespace", "default")
    if workload["kind"] == "Job":  # the Job controller labels its pods (Kubernetes >= 1.27)
        selector = {"batch.kubernetes.io/job-name": workload["metadata"]["name"]}
    else:
        selector = workload["spec"]["selector"]["matchLabels"]
    label = ",".join(f"{k}={v}" for k, v in selector.items())
    return list(kubectl.json("pods", "-n", ns, "-l", label)["items"])


def _restricted_to(spec: dict[str, Any], nodes: list[str]) -> dict[str, Any]:
    """The pod spec, allowed only onto ``nodes``, without resource requests, spreading rules or
    claims (a probe asks whether labels, taints and selectors keep the pod off those nodes, not
    whether it fits or how it spreads)."""
    only = {"key": "kubernetes.io/hostname", "operator": "In", "values": nodes}
    affinity = dict(spec.get("affinity") or {})
    node_affinity = dict(affinity.get("nodeAffinity") or {})
    required = dict(node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or {})
    terms = [dict(t) for t in required.get("nodeSelectorTerms") or [{}]]
    for t in terms:
        t["matchExpressions"] = [*(t.get("matchExpressions") or []), only]
    node_affinity["requiredDuringSchedulingIgnoredDuringExecution"] = {"nodeSelectorTerms": terms}
    affinity["nodeAffinity"] = node_affinity
    containers = [{k: v for k, v in c.items() if k != "resources"} for c in spec["containers"]]
    affinity.pop("podAntiAffinity", None)  # spreading, not pool choice
    return {
        **{k: v for k, v in spec.items() if k != "topologySpreadConstraints"},
        "affinity": affinity,
        "containers": containers,
        "initContainers": [
            {k: v for k, v in c.items() if k != "resources"}
            for c in spec.get("initContainers") or []
        ],
        "volumes": [v for v in spec.get("volumes") or [] if "persistentVolumeClaim" not in v],
    }


def probe_schedules(kubectl: Kubectl, pod: dict[str, Any], timeout_s: float = 20) -> bool:
    """Create the pod and report whether the scheduler binds it (then delete it)."""
    for c in [*pod["spec"]["containers"], *(pod["spec"].get("initContainers") or [])]:
        c["volumeMounts"] = [
            m
            for m in c.get("volumeMounts") or []
            if m["name"] in {v["name"] for v in pod["spec"]["volumes"]}
        ]
    kubectl("create", "-f", "-", stdin=yaml.safe_dump(pod))
    ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            got = kubectl.json("pod", name, "-n", ns)
            if got["spec"].get("nodeName"):
                return True
            scheduled = next(
                (c for c in got["status"].get("conditions") or [] if c["type"] == "PodScheduled"),
                None,
            )
            if scheduled and scheduled.get("reason") == "Unschedulable":
                return False
            time.sleep(0.5)
        raise AssertionError(f"the scheduler neither bound nor refused probe {ns}/{name}")
    finally:
        kubectl("delete", "pod", name, "-n", ns, "--wait=false", check=False)


def placement_problems(
    kubectl: Kubectl, manifests: Iterable[Mapping[str, Any]], *, skip: Iterable[str] = ()
) -> list[str]:
    """Every pod of every workload is Running on a node of the right pool (architecture of its
    images, GPU or not), and no node of a wrong pool would take it either (a probe copy of the
    pod, allowed only onto the wrong nodes, stays unschedulable)."""
    nodes = kubectl.json("nodes")["items"]
    problems = []
    for w in workloads(manifests):
        if ref(w) in skip:
            continue
        spec = w["spec"]["template"]["spec"]
        pods = pods_of(kubectl, w)
        if not pods:
            problems.append(f"{ref(w)}: no pods")
        for p in pods:
            where = p["spec"].get("nodeName")
            phase = p["status"].get("phase")
            done = w["kind"] == "Job" and phase == "Succeeded"
            if not where or (phase != "Running" and not done):
                why = [
                    c.get("message", "")
                    for c in p["status"].get("conditions") or []
                    if c.get("status") == "False"
                ]
                problems.append(
                    f"{ref(w)}: pod {p['metadata']['name']} is {phase} on {where or 'no node'} {why}"
                )
                continue
            node = next(n for n in nodes if n["metadata"]["name"] == where)
            if reason := wrong_node_reason(p["spec"], node):
                problems.append(f"{ref(w)}: pod {p['metadata']['name']} runs on {where}: {reason}")
        wrong = {n["metadata"]["name"]: r for n in nodes if (r := wrong_node_reason(spec, n))}
        if wrong:
            probe = pod_from_template(w, f"probe-{w['metadata']['name']}")
            # Labels of its own, so the workload's controller does not adopt it.
            probe["metadata"]["labels"] = {"mlplatform.io/probe": w["metadata"]["name"]}
            probe["spec"] = _restricted_to(probe["spec"], sorted(wrong))
            if probe_schedules(kubectl, probe):
                problems.append(
                    f"{ref(w)}: nothing keeps its pods off {', '.join(f'{n} ({r})' for n, r in sorted(wrong.items()))}"
                )
    return problems


# --- Volumes --------------------------------------------------------------------------------------


def claims_of(manifests: Iterable[Mapping[str, Any]]) -> list[tuple[str, str, str]]:
    """(namespace, claim name, what declares it) for every PVC and StatefulSet claim template."""
    out = []
    for m in manifests:
        ns = m["metadata"].get("namespace", "default")
        if m["kind"] == "PersistentVolumeClaim":
            out.append((ns, m["metadata"]["name"], ref(m)))
        elif m["kind"] == "StatefulSet":
            for t in m["spec"].get("volumeClaimTemplates") or []:
                for i in range(int(m["spec"].get("replicas", 1))):
                    out.append((ns, f"{t['metadata']['name']}-{m['metadata']['name']}-{i}", ref(m)))
    return out


def claim_problems(
    kubectl: Kubectl, manifests: Iterable[Mapping[str, Any]], *, skip: Iterable[str] = ()
) -> list[str]:
    """Every claim names a StorageClass that exists (itself, or through the default class) and is
    Bound to a volume."""
    classes = {c["metadata"]["name"] for c in kubectl.json("storageclass")["items"]}
    problems = []
    for ns, name, owner in claims_of(manifests):
        if f"{ns}/{name}" in skip:
            continue
        got = kubectl("get", "pvc", name, "-n", ns, "-o", "json", check=False)
        if got.returncode != 0:
            problems.append(f"{owner}: claim {ns}/{name} does not exist")
            continue
        pvc = json.loads(got.stdout)
        cls = pvc["spec"].get("storageClassName")
        if not cls:
            problems.append(f"{owner}: claim {ns}/{name} names no StorageClass and none is default")
        elif cls not in classes:
            problems.append(
                f"{owner}: claim {ns}/{name} names StorageClass {cls!r}, which does not exist"
            )
        if pvc["status"].get("phase") != "Bound":
            problems.append(
                f"{owner}: claim {ns}/{name} is {pvc['status'].get('phase')}, not Bound"
            )
    return problems
