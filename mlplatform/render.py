"""Human views of a plan: a component tree, a pull-request comment, and manifests on disk."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import yaml

from mlplatform.mocks import SECRET_PLACEHOLDER


def _short_type(token: str) -> str:
    return token


def _tree(plan: dict[str, Any]) -> tuple[dict[str, list[dict[str, Any]]], list[dict[str, Any]]]:
    children: dict[str, list[dict[str, Any]]] = defaultdict(list)
    urns = {r["urn"] for r in plan["resources"]}
    roots = []
    for r in plan["resources"]:
        if r["parent"] in urns:
            children[r["parent"]].append(r)
        else:
            roots.append(r)
    return children, roots


def _name(r: dict[str, Any]) -> str:
    return r["urn"].rsplit("::", 1)[-1]


def render_table(plan: dict[str, Any]) -> str:
    children, roots = _tree(plan)
    lines = [
        f"Stack {plan['stack']} ({plan.get('environment', '?')}): {len(plan['resources'])} resources"
    ]

    def walk(r: dict[str, Any], depth: int) -> None:
        kids = children.get(r["urn"], [])
        flags = []
        if r["protect"]:
            flags.append("protected")
        if r["retainOnDelete"]:
            flags.append("retained")
        suffix = f"  [{', '.join(flags)}]" if flags else ""
        count = f"  ({_count(r['urn'], children)} resources)" if kids else ""
        lines.append(
            f"{'  ' * depth}{'+ ' if r['custom'] else '- '}{r['type']}  {_name(r)}{count}{suffix}"
        )
        for k in kids:
            walk(k, depth + 1)

    for r in roots:
        walk(r, 1)
    counts = Counter(r["type"] for r in plan["resources"] if r["custom"])
    lines.append("")
    lines.append("Resources by type:")
    lines += [f"  {n:4d}  {t}" for t, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
    lines.append(
        f"Kubernetes manifests: {len(plan['manifests'])}; Helm releases: "
        + ", ".join(
            f"{h['name']} {h['chart'].rsplit('/', 1)[-1]}@{h['version']}"
            for h in plan["helmReleases"]
        )
    )
    if "cost" in plan:
        lines.append(f"Estimated idle cost: ${plan['cost']['monthlyIdle']:.2f}/month")
    if "policy" in plan:
        v = plan["policy"]["violations"]
        lines.append(f"Policy violations: {len(v)}")
        lines += [
            f"  [{x['enforcementLevel']}] {x['policy']}: {x['message']} ({x['urn'].rsplit('::', 1)[-1]})"
            for x in v
        ]
    lines.append("")
    lines.append("Outputs:")
    lines += [f"  {k}: {v}" for k, v in plan["outputs"].items()]
    return "\n".join(lines)


def _count(urn: str, children: dict[str, list[dict[str, Any]]]) -> int:
    return sum(1 + _count(c["urn"], children) for c in children.get(urn, []))


def render_markdown(plan: dict[str, Any]) -> str:
    counts = Counter(r["type"] for r in plan["resources"] if r["custom"])
    out = [f"### Offline plan: `{plan['stack']}`", ""]
    out.append(
        f"**{len(plan['resources'])} resources**, {len(plan['manifests'])} Kubernetes manifests, "
        f"{len(plan['helmReleases'])} Helm releases."
    )
    if "cost" in plan:
        out.append(f"Estimated idle cost: **${plan['cost']['monthlyIdle']:.2f}/month**.")
    if "policy" in plan:
        v = plan["policy"]["violations"]
        out.append(f"Policy: **{len(v)} violation(s)**.")
        out += [f"- `{x['enforcementLevel']}` **{x['policy']}**: {x['message']}" for x in v[:50]]
    out += ["", "| count | type |", "|---:|---|"]
    out += [f"| {n} | `{t}` |" for t, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
    if plan["helmReleases"]:
        out += ["", "| release | chart | version | namespace |", "|---|---|---|---|"]
        out += [
            f"| {h['name']} | {h['chart']} | {h['version']} | {h['namespace']} |"
            for h in plan["helmReleases"]
        ]
    return "\n".join(out)


_UNSAFE = re.compile(r"[^a-zA-Z0-9._-]+")


REDACTED_ANNOTATION = "mlplatform.io/redacted"


def applicable(manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest as the API server accepts it. A plan never holds secret values: where a whole
    ``data``/``stringData`` map is secret it reads "[secret]", which no API server takes for a
    map, so that field is left out and an annotation names it (``pulumi up`` sets it)."""
    redacted = [k for k in ("data", "stringData") if manifest.get(k) == SECRET_PLACEHOLDER]
    if not redacted:
        return manifest
    out = {k: v for k, v in manifest.items() if k not in redacted}
    meta = dict(out.get("metadata") or {})
    meta["annotations"] = {
        **(meta.get("annotations") or {}),
        REDACTED_ANNOTATION: ",".join(redacted),
    }
    out["metadata"] = meta
    return out


def write_manifests(plan: dict[str, Any], out_dir: Path) -> list[Path]:
    """One YAML file per object, named so that `kubectl apply -f DIR` applies namespaces first."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for i, m in enumerate(plan["manifests"]):
        meta = m.get("metadata", {})
        first = 0 if m["kind"] in ("Namespace", "CustomResourceDefinition") else 1
        parts = [
            f"{first}{i:04d}",
            m["kind"].lower(),
            meta.get("namespace", "cluster"),
            meta.get("name", ""),
        ]
        path = out_dir / (_UNSAFE.sub("-", "_".join(p for p in parts if p)) + ".yaml")
        path.write_text(yaml.safe_dump(applicable(m), sort_keys=False))
        written.append(path)
    return written
