"""Human views of a plan: a component tree, a pull-request comment, and manifests on disk."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import yaml


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
    if plan.get("placement"):
        lines.append("Where workloads can run (images' architectures -> node groups, NodePools):")
        lines += [f"  {_placement_line(p)}" for p in plan["placement"]]
    if "cost" in plan:
        lines.append(f"Estimated idle cost: ${plan['cost']['monthlyIdle']:.2f}/month")
    if "policy" in plan:
        v = plan["policy"]["violations"]
        lines.append(f"Policy violations: {len(v)}")
        lines += [
            f"  [{x['enforcementLevel']}] {x['policy']}: {x['message']} ({x['urn'].rsplit('::', 1)[-1]})"
            for x in v
        ]
        lines += _compliance_lines(plan["policy"].get("compliance"))
    lines.append("")
    lines.append("Outputs:")
    lines += [f"  {k}: {v}" for k, v in plan["outputs"].items()]
    return "\n".join(lines)


def _params(rule: dict[str, Any]) -> str:
    return ", ".join(
        f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}"
        for k, v in rule["parameters"].items()
    )


def _compliance_lines(report: dict[str, Any] | None) -> list[str]:
    """Which rules each enabled profile added, the control each implements, and its status."""
    if not report or not report["profiles"]:
        return ["Compliance profiles: none"]
    lines = [f"Compliance profiles: {', '.join(p['name'] for p in report['profiles'])}"]
    for profile in report["profiles"]:
        lines.append(
            f"  {profile['name']} ({profile['framework']}, {profile['version']}) adds "
            f"{len(profile['rules'])} rules:"
        )
        for rule in profile["rules"]:
            status = "ok" if not rule["violations"] else f"{rule['violations']} violation(s)"
            params = f"  [{_params(rule)}]" if rule["parameters"] else ""
            lines.append(f"    {status:>16}  {rule['policy']}: {rule['controls']}{params}")
    if report.get("auditTrailArn"):
        lines.append(
            f"  audit trail: {report['auditTrailArn']} (account/organization trail; the pack "
            "cannot see it)"
        )
    return lines


def _compliance_markdown(report: dict[str, Any] | None) -> list[str]:
    if not report or not report["profiles"]:
        return []
    out = ["", "| profile | rule | control | parameters | violations |", "|---|---|---|---|---:|"]
    for profile in report["profiles"]:
        out += [
            f"| {profile['name']} | `{r['policy']}` | {r['controls']} | {_params(r)} | "
            f"{r['violations']} |"
            for r in profile["rules"]
        ]
    if report.get("auditTrailArn"):
        out += ["", f"Audit trail (outside the stack): `{report['auditTrailArn']}`."]
    return out


def _placement_line(p: dict[str, Any]) -> str:
    archs = "/".join(p["architectures"] or ["unknown"])
    nodes = ", ".join(p["nodes"]) or "NOWHERE"
    unsafe = (
        f"  [could land on the wrong architecture in {', '.join(p['unsafe'])}]"
        if p.get("unsafe")
        else ""
    )
    return f"{p['workload']} ({archs}) -> {nodes}{unsafe}"


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
        out += _compliance_markdown(plan["policy"].get("compliance"))
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
        path.write_text(yaml.safe_dump(m, sort_keys=False))
        written.append(path)
    return written
