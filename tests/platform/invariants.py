"""Platform-level invariants over a whole plan: where the parts meet, they must agree.

Each check takes the recorded graph of a stack and returns its problems (empty: it holds). They
are written once, against the plan ``mlplatform plan`` produces, so a new component or stack is
covered without a test of its own.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from mlplatform.graph import Graph
from mlplatform.placement import Nodes, node_groups, placement

DEFAULT_CLASS = "storageclass.kubernetes.io/is-default-class"
STORAGE_CLASS_KEYS = ("storageClassName", "storageClass")


# --- storage --------------------------------------------------------------------------------


def _claims(graph: Graph) -> Iterator[tuple[str, str | None]]:
    """(where, class named or None) for every claim the plan makes: PVCs, volume claim templates
    and chart values that size a volume."""
    for m in graph.manifests():
        where = f"{m['kind']} {m['metadata'].get('namespace', '')}/{m['metadata']['name']}"
        if m["kind"] == "PersistentVolumeClaim":
            yield where, m["spec"].get("storageClassName")
        for tpl in (m.get("spec") or {}).get("volumeClaimTemplates") or []:
            yield f"{where} claim {tpl['metadata']['name']}", tpl["spec"].get("storageClassName")
    for h in graph.helm_releases():
        for path, value in _walk(h["values"]):
            if path[-1] in STORAGE_CLASS_KEYS and isinstance(value, str):
                yield f"helm {h['name']} {'.'.join(path)}", value or None


def _walk(values: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    if isinstance(values, dict):
        for k, v in values.items():
            yield (*path, str(k)), v
            yield from _walk(v, (*path, str(k)))
    elif isinstance(values, list):
        for i, v in enumerate(values):
            yield from _walk(v, (*path, str(i)))


def storage_problems(graph: Graph) -> list[str]:
    """Every claim binds to a StorageClass the plan creates, or to the one default class."""
    classes = {m["metadata"]["name"]: m for m in graph.manifests() if m["kind"] == "StorageClass"}
    defaults = [
        n
        for n, m in classes.items()
        if (m["metadata"].get("annotations") or {}).get(DEFAULT_CLASS) == "true"
    ]
    local = graph.outputs.get("platform") == "local"
    problems = []
    if len(defaults) > 1:
        problems.append(f"more than one default StorageClass: {sorted(defaults)}")
    for where, name in _claims(graph):
        if name is not None and name not in classes:
            problems.append(f"{where} names StorageClass {name!r}, which the plan does not create")
        if name is None and not defaults and not local:
            # EKS (>= 1.30) marks no class default: an unnamed claim would never bind.
            problems.append(f"{where} names no StorageClass and the plan makes none default")
    return problems


# --- network policy -------------------------------------------------------------------------


def _vpc_cni_enforces(graph: Graph) -> bool:
    for r in graph.by_type("aws:eks/addon:Addon"):
        if r.inputs.get("addonName") == "vpc-cni":
            config = json.loads(r.inputs.get("configurationValues") or "{}")
            return str(config.get("enableNetworkPolicy", "false")).lower() == "true"
    return False


def network_policy_problems(graph: Graph) -> list[str]:
    """NetworkPolicies exist only where the CNI configuration of the plan enforces them."""
    policies = [m for m in graph.manifests() if m["kind"] == "NetworkPolicy"]
    if not policies:
        return []
    if graph.outputs.get("platform") == "local":
        enforced = bool(graph.outputs.get("networkPolicyEnforcement"))
        how = "the local cluster is not declared to enforce them (kubeNetworkPolicies)"
    else:
        enforced = _vpc_cni_enforces(graph)
        how = 'vpc-cni has no enableNetworkPolicy: "true"'
    if enforced:
        return []
    names = sorted(f"{m['metadata'].get('namespace')}/{m['metadata']['name']}" for m in policies)
    return [f"{len(policies)} NetworkPolicies ({', '.join(names[:3])}, ...) but {how}"]


# --- scheduling -----------------------------------------------------------------------------


def scheduling_problems(graph: Graph) -> list[str]:
    """Every pod template can run on some node group or NodePool, and on none can it land on
    an architecture its images lack."""
    problems = []
    for p in placement(graph):
        w = p.workload
        if w.platforms is None:
            problems.append(f"{w.name}: images of unknown platforms {list(w.images)}")
            continue
        if not p.places:
            problems.append(f"{w.name}: fits no node group or NodePool of the plan")
        if p.unsafe:
            problems.append(
                f"{w.name}: images for {sorted(w.platforms)} could land on other architectures "
                f"in {p.unsafe} (exec format error)"
            )
    return problems


# --- queues ---------------------------------------------------------------------------------


def _taint_set(taints: Any) -> set[tuple[str, str, str]]:
    return {
        (t.get("key", ""), str(t.get("value", "")), t.get("effect", ""))
        for t in taints or []
        if t.get("effect") in ("NoSchedule", "NoExecute")
    }


def _flavor_matches(flavor: dict[str, Any], nodes: Nodes) -> bool:
    spec = flavor.get("spec") or {}
    labels_ok = all(
        str(v) in nodes.labels.get(k, frozenset())
        for k, v in (spec.get("nodeLabels") or {}).items()
    )
    return labels_ok and _taint_set(spec.get("nodeTaints")) == _taint_set(nodes.taints)


def queue_problems(graph: Graph) -> list[str]:
    """Every LocalQueue's ClusterQueue exists, every ClusterQueue's flavors exist, and every
    ResourceFlavor matches the labels and taints of some node group or NodePool."""
    manifests = graph.manifests()
    cqs = {m["metadata"]["name"]: m for m in manifests if m["kind"] == "ClusterQueue"}
    flavors = {m["metadata"]["name"]: m for m in manifests if m["kind"] == "ResourceFlavor"}
    groups = node_groups(graph)
    problems = []
    for m in manifests:
        if m["kind"] == "LocalQueue" and m["spec"]["clusterQueue"] not in cqs:
            problems.append(
                f"LocalQueue {m['metadata']['namespace']}/{m['metadata']['name']} points at "
                f"ClusterQueue {m['spec']['clusterQueue']!r}, which the plan does not create"
            )
    for name, cq in cqs.items():
        for group in cq["spec"].get("resourceGroups") or []:
            for f in group.get("flavors") or []:
                if f["name"] not in flavors:
                    problems.append(
                        f"ClusterQueue {name} uses missing ResourceFlavor {f['name']!r}"
                    )
    for name, flavor in flavors.items():
        if not any(_flavor_matches(flavor, g) for g in groups):
            problems.append(
                f"ResourceFlavor {name}: no node group or NodePool has its labels and taints"
            )
    return problems


# --- ordering -------------------------------------------------------------------------------

POLICY_TYPES = (
    "aws:iam/rolePolicy:RolePolicy",
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
)


def ordering_problems(graph: Graph) -> list[str]:
    """Resources that need a policy wait for it: a Pod Identity association (and an add-on's)
    for every policy of its role (credentials are issued when a pod starts), and a budget for
    the topic policy that lets AWS Budgets publish."""
    problems = []
    roles = {r.urn for r in graph.by_type("aws:iam/role:Role")}
    policies_of: dict[str, list[str]] = {}
    for p in graph.resources:
        if p.type in POLICY_TYPES:
            for role in roles & set(p.dependencies):
                policies_of.setdefault(role, []).append(p.urn)
    users = [
        *graph.by_type("aws:eks/podIdentityAssociation:PodIdentityAssociation"),
        *[
            a
            for a in graph.by_type("aws:eks/addon:Addon")
            if a.inputs.get("podIdentityAssociations")
        ],
    ]
    for user in users:
        closure = graph.dependency_closure(user.urn)
        # its own role: the one its roleArn comes from (a direct dependency)
        for role in roles & set(user.dependencies):
            for policy in policies_of.get(role, []):
                if policy not in closure:
                    problems.append(
                        f"{user.name} does not wait for {policy.rsplit('::', 1)[-1]} of its role"
                    )
    topic_policies = graph.by_type("aws:sns/topicPolicy:TopicPolicy")
    for budget in graph.by_type("aws:budgets/budget:Budget"):
        closure = graph.dependency_closure(budget.urn)
        for tp in topic_policies:
            if tp.parent == budget.parent and tp.urn not in closure:
                problems.append(f"{budget.name} does not wait for {tp.name}")
    return problems


CHECKS = {
    "storage": storage_problems,
    "network-policy": network_policy_problems,
    "scheduling": scheduling_problems,
    "queues": queue_problems,
    "ordering": ordering_problems,
}
