"""Where each workload of a plan can run: its pod templates against the plan's nodes.

The nodes a plan can have are its EKS node groups and Karpenter NodePools (on the local stack:
the existing cluster, one untainted Linux node of either architecture). A pod template fits a
node group when the node's labels satisfy its nodeSelector and required node affinity, it
tolerates every NoSchedule/NoExecute taint, and the node's architecture is one its images are
built for. A workload is *unsafe* where it could land on a node of an architecture its images
lack (``exec format error``): the scheduler and Karpenter only honour what the pod requires.

Pod templates come from the plan's manifests and, for Helm releases and kustomize directories
(whose pods the plan does not render), from :data:`CHART_WORKLOADS`: where each chart takes a
workload's nodeSelector, tolerations and affinity, and the platforms of its images.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mlplatform.graph import Graph

ARCH = "kubernetes.io/arch"
BOTH = frozenset({"amd64", "arm64"})
AMD64 = frozenset({"amd64"})
NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
KUSTOMIZE = "kubernetes:kustomize/v2:Directory"
POD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet")

# The platforms images are published for, by repository. Where each was confirmed:
IMAGE_PLATFORMS: dict[str, frozenset[str]] = {
    # mlflow/mlflow .github/workflows/push-images.yml: platforms linux/amd64,linux/arm64
    "ghcr.io/mlflow/mlflow": BOTH,
    # docker-library/postgres versions.json: arches amd64, arm64 (and ppc64el)
    "docker.io/library/postgres": BOTH,
    # vLLM's OpenAI server image: x86 CUDA builds (GPU pools are amd64 anyway)
    "vllm/vllm-openai": AMD64,
}
# Images of the platform's own projects (ECR): the project template's CI builds linux/amd64.
PROJECT_IMAGE_PLATFORMS = AMD64


def image_platforms(image: str) -> frozenset[str] | None:
    """The platforms of an image reference; None when the catalogue does not know it."""
    repo = image.split("@", 1)[0]
    head, _, last = repo.rpartition("/")
    repo = f"{head}/{last.split(':', 1)[0]}" if head else last.split(":", 1)[0]
    if ".dkr.ecr." in repo.split("/", 1)[0]:
        return PROJECT_IMAGE_PLATFORMS
    return IMAGE_PLATFORMS.get(repo)


@dataclass(frozen=True)
class ChartWorkload:
    """One workload a chart (or kustomize overlay) runs, and where its values place it."""

    name: str
    platforms: frozenset[str]
    node_selector: tuple[str, ...] | None = None  # values path, None: not configurable
    tolerations: tuple[str, ...] | None = None
    affinity: tuple[str, ...] | None = None
    daemonset: bool = False
    # What the chart sets when the values leave them out.
    default_tolerations: tuple[dict[str, Any], ...] = ()


# By chart name (the last path part of the chart reference) or kustomize repository. Platforms:
# Kueue's Makefile builds linux/amd64,arm64,s390x,ppc64le; the other controllers' images are
# published for amd64 and arm64 by their projects (Karpenter, AWS Load Balancer Controller,
# Prometheus/Grafana/kube-state-metrics, NVIDIA's device plugin, DCGM exporter, GPU Operator and
# the EFA device plugin, MinIO, Kubeflow's training operator).
CHART_WORKLOADS: dict[str, tuple[ChartWorkload, ...]] = {
    # CRD-only charts: no pods to place.
    "karpenter-crd": (),
    "prometheus-operator-crds": (),
    "karpenter": (
        ChartWorkload("controller", BOTH, ("nodeSelector",), ("tolerations",), ("affinity",)),
    ),
    "aws-load-balancer-controller": (
        ChartWorkload("controller", BOTH, ("nodeSelector",), ("tolerations",), ("affinity",)),
    ),
    "kueue": (
        ChartWorkload(
            "controller",
            BOTH,
            ("controllerManager", "nodeSelector"),
            ("controllerManager", "tolerations"),
            ("controllerManager", "affinity"),
        ),
    ),
    "kube-prometheus-stack": (
        ChartWorkload(
            "prometheus",
            BOTH,
            ("prometheus", "prometheusSpec", "nodeSelector"),
            ("prometheus", "prometheusSpec", "tolerations"),
            ("prometheus", "prometheusSpec", "affinity"),
        ),
        ChartWorkload(
            "alertmanager",
            BOTH,
            ("alertmanager", "alertmanagerSpec", "nodeSelector"),
            ("alertmanager", "alertmanagerSpec", "tolerations"),
            ("alertmanager", "alertmanagerSpec", "affinity"),
        ),
        ChartWorkload(
            "grafana",
            BOTH,
            ("grafana", "nodeSelector"),
            ("grafana", "tolerations"),
            ("grafana", "affinity"),
        ),
        ChartWorkload(
            "operator",
            BOTH,
            ("prometheusOperator", "nodeSelector"),
            ("prometheusOperator", "tolerations"),
            ("prometheusOperator", "affinity"),
        ),
        ChartWorkload(
            "kube-state-metrics",
            BOTH,
            ("kube-state-metrics", "nodeSelector"),
            ("kube-state-metrics", "tolerations"),
            ("kube-state-metrics", "affinity"),
        ),
        ChartWorkload(
            "node-exporter",
            BOTH,
            ("prometheus-node-exporter", "nodeSelector"),
            ("prometheus-node-exporter", "tolerations"),
            ("prometheus-node-exporter", "affinity"),
            daemonset=True,
            default_tolerations=({"effect": "NoSchedule", "operator": "Exists"},),
        ),
    ),
    "dcgm-exporter": (
        ChartWorkload(
            "exporter", BOTH, ("nodeSelector",), ("tolerations",), ("affinity",), daemonset=True
        ),
    ),
    "nvidia-device-plugin": (
        ChartWorkload(
            "device-plugin",
            BOTH,
            ("nodeSelector",),
            ("tolerations",),
            ("affinity",),
            daemonset=True,
        ),
    ),
    "aws-efa-k8s-device-plugin": (
        ChartWorkload(
            "device-plugin",
            BOTH,
            ("nodeSelector",),
            ("tolerations",),
            ("affinity",),
            daemonset=True,
        ),
    ),
    # The operator's own Deployment; the node components are DaemonSets it creates itself.
    "gpu-operator": (
        ChartWorkload(
            "operator",
            BOTH,
            ("operator", "nodeSelector"),
            ("operator", "tolerations"),
            ("operator", "affinity"),
        ),
    ),
    # LeaderWorkerSet's controller (charts/lws/values.yaml at v0.10.0; its Makefile builds
    # linux/arm64,amd64,s390x,ppc64le).
    "lws": (ChartWorkload("controller", BOTH, ("nodeSelector",), ("tolerations",), ("affinity",)),),
    "minio": (ChartWorkload("minio", BOTH, ("nodeSelector",), ("tolerations",), ("affinity",)),),
    # Kubeflow's training operator, from its kustomize overlay: no placement of its own.
    "kubeflow/trainer": (ChartWorkload("training-operator", BOTH),),
}


@dataclass(frozen=True)
class Nodes:
    """A group of alike nodes: an EKS node group, a NodePool, or the local cluster."""

    name: str
    kind: str
    # Each label the nodes carry, with the values it can take (a NodePool's requirements).
    labels: Mapping[str, frozenset[str]]
    taints: tuple[Mapping[str, Any], ...] = ()

    @property
    def archs(self) -> frozenset[str]:
        return frozenset(self.labels.get(ARCH, frozenset()))


@dataclass(frozen=True)
class Workload:
    """A pod template of the plan and the platforms its images run on (None: unknown)."""

    name: str
    spec: Mapping[str, Any]
    platforms: frozenset[str] | None
    daemonset: bool = False
    images: tuple[str, ...] = field(default=())


def _label_sets(labels: Mapping[str, str]) -> dict[str, frozenset[str]]:
    return {k: frozenset({str(v)}) for k, v in (labels or {}).items()}


def node_groups(graph: Graph) -> list[Nodes]:
    """Every group of nodes the plan can have."""
    found: list[Nodes] = []
    for r in graph.by_type(NODE_GROUP):
        ami = str(r.inputs.get("amiType") or "")
        labels = _label_sets(r.inputs.get("labels") or {})
        labels[ARCH] = frozenset({"arm64" if "ARM" in ami else "amd64"})
        labels["kubernetes.io/os"] = frozenset({"linux"})
        labels["node.kubernetes.io/instance-type"] = frozenset(r.inputs.get("instanceTypes") or [])
        taints = tuple(
            {**t, "effect": _effect(str(t.get("effect", "")))} for t in r.inputs.get("taints") or []
        )
        found.append(Nodes(r.name, "node group", labels, taints))
    for m in graph.manifests():
        if m["kind"] != "NodePool":
            continue
        template = m["spec"]["template"]
        labels = _label_sets((template.get("metadata") or {}).get("labels") or {})
        labels["karpenter.sh/nodepool"] = frozenset({m["metadata"]["name"]})
        labels.setdefault("kubernetes.io/os", frozenset({"linux"}))
        for req in template["spec"].get("requirements") or []:
            if req.get("operator") == "In":
                labels[req["key"]] = frozenset(map(str, req.get("values") or []))
        labels.setdefault(ARCH, BOTH)
        found.append(
            Nodes(
                m["metadata"]["name"],
                "NodePool",
                labels,
                tuple(template["spec"].get("taints") or ()),
            )
        )
    if graph.outputs.get("platform") == "local":
        # The existing cluster: Linux nodes of an architecture the plan cannot know, untainted.
        found.append(
            Nodes(
                "local cluster", "cluster", {ARCH: BOTH, "kubernetes.io/os": frozenset({"linux"})}
            )
        )
    return found


def _effect(effect: str) -> str:
    """EKS spells taint effects NO_SCHEDULE; Kubernetes NoSchedule."""
    return {
        "NO_SCHEDULE": "NoSchedule",
        "NO_EXECUTE": "NoExecute",
        "PREFER_NO_SCHEDULE": "PreferNoSchedule",
    }.get(effect, effect)


def _pod_specs(manifest: Mapping[str, Any]) -> Iterable[tuple[str, Mapping[str, Any]]]:
    kind, spec = manifest["kind"], manifest.get("spec") or {}
    if kind in POD_KINDS:
        yield "", spec["template"]["spec"]
    elif kind == "CronJob":
        yield "", spec["jobTemplate"]["spec"]["template"]["spec"]
    elif kind == "PyTorchJob":
        for role, replica in (spec.get("pytorchReplicaSpecs") or {}).items():
            yield f"/{role}", replica["template"]["spec"]
    elif kind == "LeaderWorkerSet":
        # A group's leader, and its workers (the leader's template when none is given).
        lwt = spec.get("leaderWorkerTemplate") or {}
        worker = lwt["workerTemplate"]["spec"]
        yield "/leader", (lwt.get("leaderTemplate") or {}).get("spec") or worker
        yield "/worker", worker


def _platforms(images: Iterable[str]) -> frozenset[str] | None:
    out: frozenset[str] | None = BOTH
    for image in images:
        p = image_platforms(image)
        if p is None:
            return None
        out = (out or BOTH) & p
    return out


def _get(values: Any, path: tuple[str, ...] | None) -> Any:
    if path is None:
        return None
    for part in path:
        if not isinstance(values, Mapping):
            return None
        values = values.get(part)
    return values


def chart_name(chart: str) -> str:
    return chart.rstrip("/").rsplit("/", 1)[-1]


def workloads(graph: Graph) -> list[Workload]:
    """Every pod template the plan runs, its own and its charts'."""
    found: list[Workload] = []
    for m in graph.manifests():
        for suffix, spec in _pod_specs(m):
            containers = [*spec.get("initContainers", []), *spec.get("containers", [])]
            images = tuple(str(c.get("image", "")) for c in containers)
            meta = m["metadata"]
            found.append(
                Workload(
                    f"{m['kind']} {meta.get('namespace', '')}/{meta['name']}{suffix}",
                    spec,
                    _platforms(images),
                    daemonset=m["kind"] == "DaemonSet",
                    images=images,
                )
            )
    for h in graph.helm_releases():
        chart = chart_name(h["chart"])
        for w in CHART_WORKLOADS.get(chart, ()):
            values = h["values"]
            tolerations = _get(values, w.tolerations)
            spec = {
                "nodeSelector": _get(values, w.node_selector) or {},
                "tolerations": list(
                    tolerations if tolerations is not None else w.default_tolerations
                ),
                "affinity": _get(values, w.affinity) or {},
            }
            found.append(Workload(f"helm {h['name']}: {w.name}", spec, w.platforms, w.daemonset))
        if chart not in CHART_WORKLOADS:
            found.append(Workload(f"helm {h['name']}: (unknown chart {chart})", {}, None))
    for r in graph.by_type(KUSTOMIZE):
        directory = str(r.inputs.get("directory", ""))
        key = next((k for k in CHART_WORKLOADS if f"github.com/{k}//" in directory), None)
        for w in CHART_WORKLOADS.get(key or "", ()) or (
            ChartWorkload(f"(unknown {directory})", frozenset()),
        ):
            found.append(Workload(f"kustomize {r.name}: {w.name}", {}, w.platforms or None))
    return found


def _tolerates(tolerations: Iterable[Mapping[str, Any]], taint: Mapping[str, Any]) -> bool:
    for t in tolerations:
        if t.get("effect") and t["effect"] != taint.get("effect"):
            continue
        op = t.get("operator", "Equal")
        if op == "Exists" and (not t.get("key") or t.get("key") == taint.get("key")):
            return True
        if (
            op == "Equal"
            and t.get("key") == taint.get("key")
            and str(t.get("value", "")) == str(taint.get("value", ""))
        ):
            return True
    return False


def _expression_ok(expr: Mapping[str, Any], labels: Mapping[str, frozenset[str]]) -> bool:
    key, op = expr["key"], expr["operator"]
    have = labels.get(key)
    values = frozenset(map(str, expr.get("values") or []))
    if op == "In":
        return have is not None and bool(have & values)
    if op == "NotIn":
        return have is None or bool(have - values)
    if op == "Exists":
        return have is not None
    if op == "DoesNotExist":
        return have is None
    return have is not None  # Gt / Lt: a numeric label the node carries


def _narrow(spec: Mapping[str, Any], nodes: Nodes) -> dict[str, frozenset[str]] | None:
    """The node labels left once the pod's requirements are applied; None if none fit."""
    labels = {k: frozenset(v) for k, v in nodes.labels.items()}
    for key, value in (spec.get("nodeSelector") or {}).items():
        if str(value) not in labels.get(key, frozenset()):
            return None
        labels[key] = frozenset({str(value)})
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    terms = required.get("nodeSelectorTerms") or []
    if terms:
        fitting = [
            t
            for t in terms
            if all(_expression_ok(e, labels) for e in t.get("matchExpressions") or [])
        ]
        if not fitting:
            return None
        archs: set[str] = set()
        for term in fitting:
            allowed = set(labels.get(ARCH, frozenset()))
            for e in term.get("matchExpressions") or []:
                if e["key"] == ARCH and e["operator"] == "In":
                    allowed &= set(e.get("values") or [])
            archs |= allowed
        labels[ARCH] = frozenset(archs)
    return labels


def fits(workload: Workload, nodes: Nodes) -> frozenset[str]:
    """The architectures the scheduler could give the workload on these nodes (empty: it
    cannot be scheduled there). The scheduler does not look at the images' platforms."""
    labels = _narrow(workload.spec, nodes)
    if labels is None:
        return frozenset()
    blocking = [t for t in nodes.taints if t.get("effect") in ("NoSchedule", "NoExecute")]
    if not all(_tolerates(workload.spec.get("tolerations") or [], t) for t in blocking):
        return frozenset()
    return frozenset(labels.get(ARCH, frozenset()))


@dataclass
class Placement:
    workload: Workload
    # Node groups where it can be scheduled and run.
    places: list[str]
    # Node groups where it can be scheduled on an architecture its images lack.
    unsafe: list[str]


def placement(graph: Graph) -> list[Placement]:
    groups = node_groups(graph)
    out = []
    for w in workloads(graph):
        platforms = w.platforms or frozenset()
        places, unsafe = [], []
        for g in groups:
            archs = fits(w, g)
            if archs & platforms:
                places.append(g.name)
            if archs - platforms:
                unsafe.append(g.name)
        out.append(Placement(w, places, unsafe))
    return out


def placement_report(graph: Graph) -> list[dict[str, Any]]:
    """The plan's ``placement`` section: where each workload can run."""
    return [
        {
            "workload": p.workload.name,
            "architectures": sorted(p.workload.platforms) if p.workload.platforms else None,
            "nodes": p.places,
            **({"unsafe": p.unsafe} if p.unsafe else {}),
        }
        for p in placement(graph)
    ]
