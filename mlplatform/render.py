"""Human views of a plan: a component tree, a pull-request comment, and manifests on disk."""

from __future__ import annotations

import base64
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
# Written into every DIR that `plan --out` fills: it may then replace that DIR's files.
OUT_MARKER = ".mlplatform-plan"
_APPLIED_SUFFIXES = (".yaml", ".yml", ".json")  # what `kubectl apply -f DIR` reads
HELM_VALUES_DIR = "helm-values"
SECRET_B64 = base64.b64encode(SECRET_PLACEHOLDER.encode()).decode()


class OutDirError(Exception):
    """``--out`` cannot be used as given (a file, or a folder of someone else's files)."""


def prepare_out_dir(out_dir: Path, *, force: bool = False) -> Path:
    """Check ``out_dir`` before anything runs: a folder that is empty, new, or ours (or forced)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise OutDirError(f"--out {out_dir}: is a file; name a folder")
    foreign = out_dir.is_dir() and not (out_dir / OUT_MARKER).is_file()
    if foreign and not force and any(out_dir.iterdir()):
        raise OutDirError(
            f"--out {out_dir}: the folder is not empty and an earlier `mlplatform plan --out` "
            "did not write it; name an empty folder, or add --force to replace its "
            "YAML/JSON files and README.md"
        )
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutDirError(f"--out {out_dir}: cannot create it: {exc.strerror or exc}") from None
    return out_dir


def _clear(out_dir: Path) -> None:
    """Remove what an earlier run wrote: every file `kubectl apply -f DIR` would read."""
    for path in out_dir.iterdir():
        if path.is_file() and path.suffix in _APPLIED_SUFFIXES:
            path.unlink()
    values = out_dir / HELM_VALUES_DIR
    if values.is_dir():
        for path in values.glob("*.yaml"):
            path.unlink()


def redact_secrets(manifest: dict[str, Any], keys: dict[str, list[str]]) -> dict[str, Any]:
    """A Secret with each value replaced by ``[secret]`` but its keys kept, so it stays valid."""
    if manifest.get("kind") != "Secret":
        return manifest
    out = dict(manifest)
    for field, placeholder in (("stringData", SECRET_PLACEHOLDER), ("data", SECRET_B64)):
        value = out.get(field)
        if isinstance(value, dict):
            out[field] = {k: placeholder if v is not None else None for k, v in value.items()}
        elif value == SECRET_PLACEHOLDER:
            out[field] = dict.fromkeys(keys.get(field, []), placeholder)
    return out


def _secret_keys(plan: dict[str, Any]) -> dict[tuple[str, str], dict[str, list[str]]]:
    """(namespace, name) of each Secret -> its secret fields' keys, from the recorded resources."""
    out: dict[tuple[str, str], dict[str, list[str]]] = {}
    for r in plan.get("resources", []):
        if r.get("type") == "kubernetes:core/v1:Secret" and r.get("secretKeys"):
            meta = (r.get("inputs") or {}).get("metadata") or {}
            name = meta.get("name") or r["urn"].rsplit("::", 1)[-1]
            out[(meta.get("namespace", "default"), name)] = r["secretKeys"]
    return out


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
    """One YAML file per object, named so that `kubectl apply -f DIR` applies namespaces first.

    Files an earlier run left are removed first; ``README.md`` lists what is not rendered here.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    _clear(out_dir)
    secret_keys = _secret_keys(plan)
    written = []
    for i, m in enumerate(plan["manifests"]):
        meta = m.get("metadata", {})
        if m["kind"] == "Secret":
            key = (meta.get("namespace", "default"), meta.get("name", ""))
            m = redact_secrets(m, secret_keys.get(key, {}))
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
    values_dir = out_dir / HELM_VALUES_DIR
    if plan["helmReleases"]:
        values_dir.mkdir(exist_ok=True)
        for h in plan["helmReleases"]:
            name = _UNSAFE.sub("-", h["name"])
            (values_dir / f"{name}.yaml").write_text(yaml.safe_dump(h["values"], sort_keys=False))
    (out_dir / "README.md").write_text(out_dir_readme(plan, len(written)))
    (out_dir / OUT_MARKER).write_text(f"stack: {plan['stack']}\n")
    return written


def _helm_command(h: dict[str, Any]) -> str:
    chart, repo = h["chart"], h.get("repository") or ""
    source = chart if chart.startswith("oci://") else (f"{chart} --repo {repo}" if repo else chart)
    return (
        f"helm upgrade --install {h['name']} {source} --version {h['version']} "
        f"--namespace {h['namespace']} --create-namespace "
        f"-f {HELM_VALUES_DIR}/{_UNSAFE.sub('-', h['name'])}.yaml"
    )


def out_dir_readme(plan: dict[str, Any], count: int) -> str:
    """What `plan --out` wrote, and what it did not render (and how to get that)."""
    stack = plan["stack"]
    secrets = [m for m in plan["manifests"] if m["kind"] == "Secret"]
    kustomize = [
        r for r in plan["resources"] if str(r.get("type", "")).startswith("kubernetes:kustomize")
    ]
    yaml_files = [
        r for r in plan["resources"] if str(r.get("type", "")).startswith("kubernetes:yaml")
    ]
    cloud = [
        r
        for r in plan["resources"]
        if r.get("custom") and not r["type"].startswith(("kubernetes:", "pulumi:"))
    ]
    lines = [
        f"# Kubernetes objects of stack `{stack}`",
        "",
        f"Written by `mlplatform plan --stack {stack} --out DIR`: {count} files, one object each, "
        "for `kubectl apply -f DIR` or a GitOps repository. Namespaces and CRDs sort first. "
        "Running it again replaces these files.",
        "",
        "## Not rendered here",
        "",
    ]
    if secrets:
        lines += [
            f"- **Secret values** ({len(secrets)} Secrets): every value is `[secret]` "
            "(base64 of it under `data`); the keys are real. Apply the real values from your "
            "secret store, or let `pulumi up` create them.",
        ]
    if plan["helmReleases"]:
        lines += [
            f"- **Helm releases** ({len(plan['helmReleases'])}): install them first, since "
            "some objects here are custom resources of their CRDs. Their values are in "
            f"`{HELM_VALUES_DIR}/` (secret values `[secret]`, as above):",
            "",
            "  | release | chart | version | namespace |",
            "  |---|---|---|---|",
        ]
        lines += [
            f"  | {h['name']} | {h['chart']} | {h['version']} | {h['namespace']} |"
            for h in plan["helmReleases"]
        ]
        lines += ["", "  ```sh"] + [f"  {_helm_command(h)}" for h in plan["helmReleases"]]
        lines += ["  ```"]
    if kustomize:
        lines += [f"- **Kustomize directories** ({len(kustomize)}): apply each with kubectl:", ""]
        lines += (
            ["  ```sh"]
            + [
                f"  kubectl apply --server-side -k '{r['inputs'].get('directory')}'"
                for r in kustomize
            ]
            + ["  ```"]
        )
    if yaml_files:
        lines += [f"- **YAML files or URLs** ({len(yaml_files)}), applied as they are:", ""]
        lines += [
            f"  - `{r['inputs'].get('file') or r['inputs'].get('files') or r['inputs'].get('url')}`"
            for r in yaml_files
        ]
    if cloud:
        lines += [
            f"- **Cloud resources** ({len(cloud)}: the cluster, network, IAM, storage): "
            "`pulumi up` creates them; `mlplatform plan` lists them.",
        ]
    return "\n".join(lines) + "\n"
