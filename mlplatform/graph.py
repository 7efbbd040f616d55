"""The resource graph recorded from a program run under mocks, with queries for tests and tools."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from mlplatform.mocks import RecordedResource

K8S_PREFIX = "kubernetes:"
HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
CUSTOM_RESOURCE_API = "apiextensions.k8s.io"


@dataclass
class Graph:
    stack: str
    resources: list[RecordedResource]
    outputs: dict[str, Any] = field(default_factory=dict)
    secret_outputs: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._by_urn = {r.urn: r for r in self.resources}

    # Lookups ----------------------------------------------------------------------------
    def get(self, urn: str) -> RecordedResource:
        return self._by_urn[urn]

    def by_type(self, type_token: str) -> list[RecordedResource]:
        return [r for r in self.resources if r.type == type_token]

    def by_name(self, name: str) -> RecordedResource:
        matches = [r for r in self.resources if r.name == name]
        if len(matches) != 1:
            raise LookupError(f"expected one resource named {name!r}, found {len(matches)}")
        return matches[0]

    def one(self, type_token: str, name_contains: str | None = None) -> RecordedResource:
        matches = [
            r for r in self.by_type(type_token) if name_contains is None or name_contains in r.name
        ]
        if len(matches) != 1:
            names = [r.name for r in matches]
            raise LookupError(f"expected one {type_token} ({name_contains!r}), found {names}")
        return matches[0]

    def children(self, urn: str) -> list[RecordedResource]:
        return [r for r in self.resources if r.parent == urn]

    def descendants(self, urn: str) -> Iterator[RecordedResource]:
        for child in self.children(urn):
            yield child
            yield from self.descendants(child.urn)

    def where(self, **inputs: Any) -> list[RecordedResource]:
        return [r for r in self.resources if all(r.inputs.get(k) == v for k, v in inputs.items())]

    # Dependencies -----------------------------------------------------------------------
    def dependency_closure(self, urn: str) -> set[str]:
        """Every URN the resource waits for: its own dependencies, theirs, and their children.

        A dependency on a component means waiting for all of the component's descendants; a
        custom resource's children (a role's inline policy) are not waited for, as in the engine.
        """
        seen: set[str] = set()
        stack = list(self._by_urn[urn].dependencies) if urn in self._by_urn else []
        while stack:
            dep = stack.pop()
            if dep in seen:
                continue
            seen.add(dep)
            node = self._by_urn.get(dep)
            if node is None:
                continue
            stack.extend(node.dependencies)
            if not node.custom:
                stack.extend(c.urn for c in self.children(dep))
        return seen

    def depends_on(self, a: RecordedResource | str, b: RecordedResource | str) -> bool:
        a_urn = a if isinstance(a, str) else a.urn
        b_urn = b if isinstance(b, str) else b.urn
        return b_urn in self.dependency_closure(a_urn)

    # Kubernetes views -------------------------------------------------------------------
    def manifests(self) -> list[dict[str, Any]]:
        """Every Kubernetes object the program declares, as a complete manifest."""
        out = []
        for r in self.resources:
            if not r.custom or not r.type.startswith(K8S_PREFIX):
                continue
            if r.type in (HELM_RELEASE, "pulumi:providers:kubernetes"):
                continue
            if r.type.startswith("kubernetes:helm.sh") or r.type.startswith("kubernetes:yaml"):
                continue
            out.append(to_manifest(r))
        return out

    def helm_releases(self) -> list[dict[str, Any]]:
        out = []
        for r in self.by_type(HELM_RELEASE):
            repo = (r.inputs.get("repositoryOpts") or {}).get("repo", "")
            chart = r.inputs.get("chart", "")
            out.append(
                {
                    "name": r.inputs.get("name") or r.name,
                    "chart": chart,
                    "version": r.inputs.get("version"),
                    "repository": repo
                    or (chart.rsplit("/", 1)[0] if chart.startswith("oci://") else ""),
                    "namespace": r.inputs.get("namespace", "default"),
                    "values": r.inputs.get("values", {}),
                }
            )
        return out


def to_manifest(r: RecordedResource) -> dict[str, Any]:
    """Turn a recorded Kubernetes resource's inputs into the manifest the provider would apply."""
    body = {k: v for k, v in r.inputs.items() if not k.startswith("__")}
    if "apiVersion" not in body or "kind" not in body:
        # typed resources carry these as inputs too; derive from the token as a fallback
        _, mod, kind = r.type.split(":")
        group, _, version = mod.rpartition("/")
        group = "" if group in ("core", "") else group
        body.setdefault("apiVersion", f"{group}/{version}" if group else version)
        body.setdefault("kind", kind)
    meta = dict(body.get("metadata") or {})
    meta.setdefault("name", r.name)
    body["metadata"] = meta
    ordered = {
        "apiVersion": body.pop("apiVersion"),
        "kind": body.pop("kind"),
        "metadata": body.pop("metadata"),
    }
    ordered.update(body)
    return ordered
