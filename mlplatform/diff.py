"""Compare two offline plans: resources added, removed and changed, cost delta, new violations.

``diff(base, head)`` works on plan dicts (the ``mlplatform plan --format json`` contract) and
returns plain data; ``render_markdown`` turns that into a PR comment that always fits GitHub's
65,536-character limit (we keep to 60,000), trimming detail rows but never the summary.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

MARKDOWN_LIMIT = 60_000
COMMENT_MARKER = "<!-- mlplatform-plan-diff -->"
_MAX_KEYS_PER_RESOURCE = 12
_MAX_DEPTH = 3

# Input keys whose change makes the provider replace the resource (delete + create), by type.
# Taken from the providers' ForceNew/immutable fields for the types the platform declares.
REPLACE_KEYS: dict[str, frozenset[str]] = {
    "aws:eks/cluster:Cluster": frozenset(
        {"name", "roleArn", "kubernetesNetworkConfig", "bootstrapSelfManagedAddons"}
    ),
    "aws:eks/nodeGroup:NodeGroup": frozenset(
        {
            "clusterName",
            "nodeGroupName",
            "nodeGroupNamePrefix",
            "nodeRoleArn",
            "subnetIds",
            "instanceTypes",
            "capacityType",
            "amiType",
            "diskSize",
            "remoteAccess",
        }
    ),
    "aws:ec2/vpc:Vpc": frozenset({"cidrBlock", "instanceTenancy"}),
    "aws:ec2/subnet:Subnet": frozenset(
        {"cidrBlock", "vpcId", "availabilityZone", "availabilityZoneId"}
    ),
    "aws:ec2/natGateway:NatGateway": frozenset({"subnetId", "allocationId", "connectivityType"}),
    "aws:ec2/vpcEndpoint:VpcEndpoint": frozenset({"vpcId", "serviceName", "vpcEndpointType"}),
    "aws:ec2/securityGroup:SecurityGroup": frozenset(
        {"name", "namePrefix", "description", "vpcId"}
    ),
    "aws:ec2/launchTemplate:LaunchTemplate": frozenset({"name", "namePrefix"}),
    "aws:s3/bucket:Bucket": frozenset({"bucket", "bucketPrefix", "objectLockEnabled"}),
    "aws:s3/bucketV2:BucketV2": frozenset({"bucket", "bucketPrefix", "objectLockEnabled"}),
    "aws:rds/instance:Instance": frozenset(
        {
            "engine",
            "identifier",
            "identifierPrefix",
            "dbName",
            "kmsKeyId",
            "storageEncrypted",
            "username",
            "availabilityZone",
            "characterSetName",
        }
    ),
    "aws:rds/cluster:Cluster": frozenset(
        {
            "engine",
            "engineMode",
            "clusterIdentifier",
            "databaseName",
            "kmsKeyId",
            "storageEncrypted",
            "masterUsername",
        }
    ),
    "aws:kms/key:Key": frozenset({"customerMasterKeySpec", "keyUsage", "multiRegion"}),
    "aws:ecr/repository:Repository": frozenset({"name"}),
    "aws:iam/role:Role": frozenset({"name", "namePrefix", "path"}),
    "aws:iam/policy:Policy": frozenset({"name", "namePrefix", "path", "description"}),
    "aws:cloudwatch/logGroup:LogGroup": frozenset({"name", "namePrefix"}),
    "aws:efs/fileSystem:FileSystem": frozenset(
        {"encrypted", "kmsKeyId", "performanceMode", "creationToken"}
    ),
    "aws:lb/loadBalancer:LoadBalancer": frozenset(
        {"name", "namePrefix", "internal", "loadBalancerType"}
    ),
    "kubernetes:helm.sh/v3:Release": frozenset({"name", "namespace"}),
}
# Kubernetes: names and namespaces always; plus fields the API server refuses to update.
K8S_IMMUTABLE: dict[str, frozenset[str]] = {
    "Deployment": frozenset({"spec.selector"}),
    "StatefulSet": frozenset({"spec.selector", "spec.serviceName", "spec.volumeClaimTemplates"}),
    "DaemonSet": frozenset({"spec.selector"}),
    "Job": frozenset({"spec.template", "spec.selector"}),
    "Service": frozenset({"spec.clusterIP"}),
    "PersistentVolumeClaim": frozenset({"spec.storageClassName", "spec.accessModes"}),
    "StorageClass": frozenset({"provisioner", "parameters", "reclaimPolicy"}),
}


def _name(urn: str) -> str:
    return urn.rsplit("::", 1)[-1]


class DifferentStacksError(ValueError):
    """The two plans are of different stacks: their difference is not a change to either."""


def _lookup(value: Any, path: str) -> Any:
    """The value at a dotted path produced by ``changed_paths`` (None where it is absent)."""
    if path == "(value)":
        return value
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _stack_free(urn: str) -> str:
    """A URN without its stack (``urn:pulumi:<stack>::``), to match resources across stacks."""
    parts = urn.split("::", 1)
    return parts[1] if len(parts) == 2 and parts[0].startswith("urn:pulumi:") else urn


def changed_paths(a: Any, b: Any, prefix: str = "", depth: int = 0) -> list[str]:
    """Dotted input paths whose values differ (descending into dicts up to a fixed depth)."""
    if a == b:
        return []
    if isinstance(a, Mapping) and isinstance(b, Mapping) and depth < _MAX_DEPTH:
        out: list[str] = []
        for key in sorted(set(a) | set(b), key=str):
            out += changed_paths(a.get(key), b.get(key), f"{prefix}{key}.", depth + 1)
        return out
    return [prefix.rstrip(".") or "(value)"]


def _replace_keys(rtype: str, paths: Iterable[str]) -> list[str]:
    keys = set(REPLACE_KEYS.get(rtype, frozenset()))
    if rtype.startswith("kubernetes:") and not rtype.startswith("kubernetes:helm.sh/"):
        kind = rtype.rsplit(":", 1)[-1]
        keys |= {"metadata.name", "metadata.namespace", "apiVersion", "kind"}
        keys |= K8S_IMMUTABLE.get(kind, frozenset())
    hits = []
    for path in paths:
        if any(path == k or path.startswith(f"{k}.") for k in keys):
            hits.append(path)
    return hits


def _provider_urn(res: Mapping[str, Any]) -> str:
    return str(res.get("provider") or "").rsplit("::", 1)[0]


def _index(plan: Mapping[str, Any], across: bool = False) -> dict[str, Mapping[str, Any]]:
    return {
        (_stack_free(r["urn"]) if across else r["urn"]): r
        for r in plan.get("resources") or []
        if not str(r.get("type", "")).startswith("pulumi:providers:")
    }


def _cost_of(plan: Mapping[str, Any]) -> Mapping[str, Any]:
    if plan.get("cost"):
        return plan["cost"]
    from mlplatform.cost import estimate_cost

    return estimate_cost(plan)


def _violations_of(plan: Mapping[str, Any]) -> list[Mapping[str, Any]] | None:
    policy = plan.get("policy")
    if isinstance(policy, Mapping):
        return list(policy.get("violations") or [])
    env = plan.get("environment")
    if not env:
        return None
    from mlplatform.policy import evaluate_policies

    return list(evaluate_policies(plan, str(env)))


def _vkey(v: Mapping[str, Any]) -> tuple[str, str, str]:
    return (str(v.get("policy")), _stack_free(str(v.get("urn"))), str(v.get("message")))


def diff(
    base_plan: Mapping[str, Any], head_plan: Mapping[str, Any], *, across_stacks: bool = False
) -> dict[str, Any]:
    """What changes from ``base_plan`` to ``head_plan``, as plain data (see module docstring).

    Plans of two different stacks raise ``DifferentStacksError`` unless ``across_stacks``: then
    resources are matched by their URN without the stack, and nothing is called a replacement
    or a move (neither stack changes).
    """
    stacks = (base_plan.get("stack"), head_plan.get("stack"))
    across = stacks[0] != stacks[1]
    if across and not across_stacks:
        raise DifferentStacksError(
            f"the plans are of different stacks ({stacks[0]!r} and {stacks[1]!r}): a diff "
            "compares one stack before and after a change. To compare two stacks anyway, "
            "pass --across-stacks."
        )
    base, head = _index(base_plan, across), _index(head_plan, across)
    added = [u for u in head if u not in base]
    removed = [u for u in base if u not in head]
    changed: list[dict[str, Any]] = []
    for urn in head:
        if urn not in base:
            continue
        b, h = base[urn], head[urn]
        paths = changed_paths(b.get("inputs") or {}, h.get("inputs") or {})
        for opt in ("protect", "retainOnDelete", "parent"):
            if b.get(opt) != h.get(opt):
                paths.append(f"(option) {opt}")
        # A different provider instance (not just its id) replaces the resource.
        provider_moved = _stack_free(_provider_urn(b)) != _stack_free(_provider_urn(h))
        if provider_moved:
            paths.append("(option) provider")
        if not paths:
            continue
        hits = [] if across else _replace_keys(str(h.get("type")), paths)
        if provider_moved and not across:
            hits.append("(option) provider")
        changed.append(
            {
                "urn": h["urn"],
                "type": h.get("type"),
                "name": _name(h["urn"]),
                "keys": paths,
                "values": [_old_new(b, h, p) for p in paths],
                "replace": bool(hits),
                "replaceKeys": hits,
            }
        )
    # Same type and name under a new URN (new parent or project): a move that replaces
    # the resource unless the program adds an alias.
    moved = []
    by_type_name = {(base[u].get("type"), _name(u)): u for u in removed}
    for u in [] if across else added:
        key = (head[u].get("type"), _name(u))
        if key in by_type_name:
            moved.append({"from": by_type_name[key], "to": u, "type": key[0], "name": key[1]})

    def entry(res: Mapping[str, Any]) -> dict[str, Any]:
        return {"urn": res["urn"], "type": res.get("type"), "name": _name(res["urn"])}

    base_cost, head_cost = _cost_of(base_plan), _cost_of(head_plan)
    base_lines = {ln["item"]: ln["monthly"] for ln in base_cost.get("lines") or []}
    head_lines = {ln["item"]: ln["monthly"] for ln in head_cost.get("lines") or []}
    line_deltas = [
        {
            "item": item,
            "base": base_lines.get(item, 0.0),
            "head": head_lines.get(item, 0.0),
            "delta": round(head_lines.get(item, 0.0) - base_lines.get(item, 0.0), 2),
        }
        for item in sorted(set(base_lines) | set(head_lines))
        if round(head_lines.get(item, 0.0) - base_lines.get(item, 0.0), 2) != 0
    ]
    base_v, head_v = _violations_of(base_plan), _violations_of(head_plan)
    if head_v is None:
        new_v: list[Mapping[str, Any]] = []
        resolved: list[Mapping[str, Any]] = []
    else:
        old = {_vkey(v) for v in base_v or []}
        now = {_vkey(v) for v in head_v}
        new_v = [v for v in head_v if _vkey(v) not in old]
        resolved = [v for v in base_v or [] if _vkey(v) not in now]
    base_total = float(base_cost.get("monthlyIdle") or 0.0)
    head_total = float(head_cost.get("monthlyIdle") or 0.0)
    return {
        "acrossStacks": across,
        "base": {"stack": base_plan.get("stack"), "resources": len(base)},
        "head": {"stack": head_plan.get("stack"), "resources": len(head)},
        "summary": {
            "added": len(added),
            "removed": len(removed),
            "changed": len(changed),
            "replacements": sum(1 for c in changed if c["replace"]) + len(moved),
            "moved": len(moved),
            "unchanged": len(head) - len(added) - len(changed),
            "baseMonthlyIdle": round(base_total, 2),
            "headMonthlyIdle": round(head_total, 2),
            "costDelta": round(head_total - base_total, 2),
            "newViolations": len(new_v),
            "newMandatoryViolations": sum(
                1 for v in new_v if v.get("enforcementLevel") == "mandatory"
            ),
            "resolvedViolations": len(resolved),
            "policyEvaluated": head_v is not None,
        },
        "added": [entry(head[u]) for u in added],
        "removed": [entry(base[u]) for u in removed],
        "changed": changed,
        "moved": moved,
        "cost": {
            "base": round(base_total, 2),
            "head": round(head_total, 2),
            "delta": round(head_total - base_total, 2),
            "lines": line_deltas,
        },
        "policy": {"new": new_v, "resolved": resolved},
    }


def _old_new(base: Mapping[str, Any], head: Mapping[str, Any], path: str) -> dict[str, Any]:
    if path.startswith("(option) "):
        opt = path.removeprefix("(option) ")
        old, new = (
            (_provider_urn(base), _provider_urn(head))
            if opt == "provider"
            else (base.get(opt), head.get(opt))
        )
    else:
        old, new = _lookup(base.get("inputs") or {}, path), _lookup(head.get("inputs") or {}, path)
    return {"path": path, "old": old, "new": new}


# --------------------------------------------------------------------------------------------
# markdown


def _cell(value: Any) -> str:
    text = str(value).replace("|", "\\|").replace("\n", " ").replace("`", "'")
    return text if len(text) <= 300 else text[:297] + "..."


def _money(x: float) -> str:
    sign = "+" if x > 0 else ("-" if x < 0 else "±")
    return f"{sign}${abs(x):,.2f}"


def _summary(d: Mapping[str, Any]) -> list[str]:
    s = d["summary"]
    stack = d["head"].get("stack") or "?"
    title = f"## Plan diff for `{_cell(stack)}`"
    if d.get("acrossStacks"):
        title = (
            f"## Plan comparison: `{_cell(d['base'].get('stack'))}` → `{_cell(stack)}` "
            "(different stacks: resources matched by name, nothing is replaced)"
        )
    flags = []
    if s["replacements"]:
        flags.append(f"⚠️ **{s['replacements']} likely replacement(s)**")
    if s["newMandatoryViolations"]:
        flags.append(f"⛔ **{s['newMandatoryViolations']} new mandatory policy violation(s)**")
    lines = [
        COMMENT_MARKER,
        title,
        "",
        f"**{s['added']}** to add, **{s['changed']}** to change, **{s['removed']}** to remove, "
        f"{s['unchanged']} unchanged. Idle cost: ${s['baseMonthlyIdle']:,.2f} → "
        f"${s['headMonthlyIdle']:,.2f}/month (**{_money(s['costDelta'])}**).",
    ]
    if s["policyEvaluated"]:
        lines.append(
            f"Policy: {s['newViolations']} new violation(s) "
            f"({s['newMandatoryViolations']} mandatory), {s['resolvedViolations']} resolved."
        )
    if flags:
        lines += ["", " · ".join(flags)]
    return lines


def _rule(header: str) -> str:
    return "|" + "---|" * (header.count("|") - 1)


def render_markdown(d: Mapping[str, Any], limit: int = MARKDOWN_LIMIT) -> str:
    """The diff as a PR comment of at most ``limit`` characters; the summary is never trimmed."""
    sections: list[tuple[str, str, list[str]]] = []
    replace_rows = [
        f"| `{_cell(c['name'])}` | `{_cell(c['type'])}` | {_cell(', '.join(c['replaceKeys']))} |"
        for c in d.get("changed") or []
        if c["replace"]
    ] + [
        f"| `{_cell(m['name'])}` | `{_cell(m['type'])}` | moved (URN changed): add an alias |"
        for m in d.get("moved") or []
    ]
    sections.append(("Likely replacements", "| resource | type | because of |", replace_rows))
    pol = d.get("policy") or {}
    sections.append(
        (
            "New policy violations",
            "| level | policy | resource | message |",
            [
                f"| {_cell(v.get('enforcementLevel'))} | {_cell(v.get('policy'))} | "
                f"`{_cell(_name(str(v.get('urn') or 'stack')))}` | {_cell(v.get('message'))} |"
                for v in sorted(
                    pol.get("new") or [], key=lambda v: v.get("enforcementLevel") != "mandatory"
                )
            ],
        )
    )
    sections.append(
        (
            "Cost delta by line",
            "| item | base $/mo | head $/mo | delta |",
            [
                f"| {_cell(ln['item'])} | {ln['base']:,.2f} | {ln['head']:,.2f} | "
                f"{_money(ln['delta'])} |"
                for ln in (d.get("cost") or {}).get("lines") or []
            ],
        )
    )
    sections.append(
        (
            "Changed",
            "| resource | type | inputs changed |",
            [
                f"| `{_cell(c['name'])}` | `{_cell(c['type'])}` | "
                f"{_cell(_changes(c))}{' ⚠️ replace' if c['replace'] else ''} |"
                for c in d.get("changed") or []
            ],
        )
    )
    for title, key in (("Added", "added"), ("Removed", "removed")):
        sections.append(
            (
                title,
                "| resource | type |",
                [f"| `{_cell(r['name'])}` | `{_cell(r['type'])}` |" for r in d.get(key) or []],
            )
        )
    if pol.get("resolved"):
        sections.append(
            (
                "Resolved policy violations",
                "| policy | resource |",
                [
                    f"| {_cell(v.get('policy'))} | `{_cell(_name(str(v.get('urn') or 'stack')))}` |"
                    for v in pol["resolved"]
                ],
            )
        )
    return _assemble(_summary(d), sections, limit)


_MAX_VALUE_CHARS = 60


def _short(value: Any) -> str:
    import json

    text = "(none)" if value is None else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= _MAX_VALUE_CHARS else text[: _MAX_VALUE_CHARS - 1] + "…"


def _changes(c: Mapping[str, Any]) -> str:
    """``path: old → new`` for each changed input (the paths alone for older diff JSON)."""
    values = c.get("values")
    if not values:
        return _keys(c["keys"])
    shown = [f"{v['path']}: {_short(v['old'])} → {_short(v['new'])}" for v in values]
    return _keys(shown)


def _keys(keys: list[str]) -> str:
    shown = keys[:_MAX_KEYS_PER_RESOURCE]
    more = len(keys) - len(shown)
    return ", ".join(shown) + (f" (+{more} more)" if more > 0 else "")


def _assemble(summary: list[str], sections: list[tuple[str, str, list[str]]], limit: int) -> str:
    out = "\n".join(summary)
    footer_room = 200  # the trimming note must always fit
    budget = limit - footer_room
    omitted = 0

    def size(lines: list[str]) -> int:
        return sum(len(x) + 1 for x in lines)

    for title, header, rows in sections:
        if not rows:
            continue
        head = ["", f"### {title} ({len(rows)})", "", header, _rule(header)]
        if len(out) + size(head) + 200 > budget:
            omitted += len(rows)
            continue
        block = list(head)
        used = len(out) + size(block)
        shown = 0
        for row in rows:
            if used + len(row) + 1 + 120 > budget:  # leave room for the "more" line
                break
            block.append(row)
            used += len(row) + 1
            shown += 1
        if shown < len(rows):
            block.append(f"| … {len(rows) - shown} more not shown | |")
            omitted += len(rows) - shown
        out += "\n" + "\n".join(block)
    if omitted:
        out += (
            f"\n\n_{omitted} detail row(s) trimmed to stay under {limit:,} characters; "
            "run `mlplatform diff BASE.json HEAD.json --format json` for everything._"
        )
    return out[:limit]


# Names the lead's CLI imports.
def diff_plans(
    base: Mapping[str, Any], head: Mapping[str, Any], *, across_stacks: bool = False
) -> dict[str, Any]:
    return diff(base, head, across_stacks=across_stacks)


def render_diff_markdown(d: Mapping[str, Any]) -> str:
    return render_markdown(d)


def render_comment(diffs: Sequence[Mapping[str, Any]], limit: int = MARKDOWN_LIMIT) -> str:
    """One PR comment for several stacks: one marker, each stack's diff in an equal share."""
    if not diffs:
        return COMMENT_MARKER
    share = (limit - 10 * len(diffs)) // len(diffs)
    parts = [render_markdown(d, limit=share) for d in diffs]
    parts = [parts[0], *(p.replace(COMMENT_MARKER + "\n", "", 1) for p in parts[1:])]
    return "\n\n".join(parts)[:limit]


def main(argv: list[str] | None = None) -> int:
    """``python -m mlplatform.diff BASE HEAD [BASE HEAD ...]``: the combined PR comment."""
    import sys

    paths = list(sys.argv[1:] if argv is None else argv)
    if not paths or len(paths) % 2:
        print(
            "usage: python -m mlplatform.diff BASE.json HEAD.json [BASE HEAD ...]", file=sys.stderr
        )
        return 2
    from mlplatform.cli import UsageError, read_plan_file

    diffs = []
    try:
        for base, head in zip(paths[::2], paths[1::2], strict=True):
            diffs.append(diff(read_plan_file(base), read_plan_file(head)))
    except (UsageError, DifferentStacksError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(render_comment(diffs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
