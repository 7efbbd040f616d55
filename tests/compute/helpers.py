"""Lookups on the Karpenter custom resources of a recorded graph."""

from __future__ import annotations

from typing import Any

from mlplatform.graph import Graph


def crs(graph: Graph, kind: str) -> list[dict[str, Any]]:
    return [m for m in graph.manifests() if m["kind"] == kind]


def _named(graph: Graph, kind: str, name: str) -> dict[str, Any]:
    found = [m for m in crs(graph, kind) if m["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def node_pool(graph: Graph, name: str) -> dict[str, Any]:
    return _named(graph, "NodePool", name)


def node_class(graph: Graph, name: str) -> dict[str, Any]:
    return _named(graph, "EC2NodeClass", name)


def requirements(pool: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["key"]: r for r in pool["spec"]["template"]["spec"]["requirements"]}
