"""Run the policy pack's rules over an offline plan, without the Pulumi engine.

The rules are the same objects the engine loads (``policies.rules.build_policies``); each recorded
resource becomes a real ``pulumi_policy.ResourceValidationArgs`` and the whole plan a
``StackValidationArgs``, so a rule cannot behave differently here and under ``pulumi preview``.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from pulumi_policy import (
    PolicyCustomTimeouts,
    PolicyProviderResource,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from policies.rules import build_policies


def urn_name(urn: str) -> str:
    """The logical name at the end of a URN (``urn:pulumi:stack::proj::type::name``)."""
    return urn.rsplit("::", 1)[-1]


def urn_type(urn: str) -> str:
    """The resource's own type from a URN (the last segment of a ``parent$child`` type chain)."""
    parts = urn.split("::")
    return parts[2].rsplit("$", 1)[-1] if len(parts) >= 4 else ""


def _opts(res: Mapping[str, Any]) -> PolicyResourceOptions:
    return PolicyResourceOptions(
        protect=bool(res.get("protect")),
        ignore_changes=list(res.get("ignoreChanges") or []),
        delete_before_replace=res.get("deleteBeforeReplace"),
        aliases=list(res.get("aliases") or []),
        custom_timeouts=PolicyCustomTimeouts(0, 0, 0),
        additional_secret_outputs=[],
        parent=res.get("parent") or None,
    )


def _providers(resources: list[Mapping[str, Any]]) -> dict[str, PolicyProviderResource]:
    """Provider references (``<urn>::<id>``) mapped to the provider resources they name."""
    out: dict[str, PolicyProviderResource] = {}
    by_urn = {r["urn"]: r for r in resources}
    for res in resources:
        ref = res.get("provider") or ""
        if not ref or ref in out:
            continue
        urn = ref.rsplit("::", 1)[0]
        prov = by_urn.get(urn)
        if prov is not None:
            out[ref] = PolicyProviderResource(
                prov["type"], prov.get("inputs") or {}, prov["urn"], urn_name(prov["urn"])
            )
    return out


def _validation_args(
    res: Mapping[str, Any], providers: Mapping[str, PolicyProviderResource]
) -> ResourceValidationArgs:
    return ResourceValidationArgs(
        resource_type=res["type"],
        props=res.get("inputs") or {},
        urn=res["urn"],
        name=urn_name(res["urn"]),
        opts=_opts(res),
        provider=providers.get(res.get("provider") or ""),
    )


def _stack_args(
    resources: list[Mapping[str, Any]], providers: Mapping[str, PolicyProviderResource]
) -> StackValidationArgs:
    built: dict[str, PolicyResource] = {}
    for res in resources:
        built[res["urn"]] = PolicyResource(
            resource_type=res["type"],
            props=res.get("inputs") or {},
            urn=res["urn"],
            name=urn_name(res["urn"]),
            opts=_opts(res),
            provider=providers.get(res.get("provider") or ""),
            parent=None,
            dependencies=[],
            property_dependencies={},
        )
    for res in resources:
        node = built[res["urn"]]
        node.parent = built.get(res.get("parent") or "")
        node.dependencies = [built[d] for d in res.get("dependencies") or [] if d in built]
    return StackValidationArgs(list(built.values()))


def _violation(policy: Any, urn: str, message: str) -> dict[str, str]:
    level = policy.enforcement_level
    return {
        "policy": policy.name,
        "enforcementLevel": level.value if level is not None else "advisory",
        "urn": urn,
        "message": message,
    }


def evaluate_policies(plan: Mapping[str, Any], environment: str) -> list[dict[str, str]]:
    """Violations of the environment's policy pack by the plan's resources.

    Returns ``[{policy, enforcementLevel, urn, message}]``; a rule that crashes on a resource is
    reported as a violation of that rule rather than hidden.
    """
    resources = [
        r
        for r in plan.get("resources") or []
        if not str(r.get("type", "")).startswith("pulumi:providers:")
    ]
    providers = _providers(list(plan.get("resources") or []))
    violations: list[dict[str, str]] = []
    for policy in build_policies(environment):
        if isinstance(policy, ResourceValidationPolicy):
            for res in resources:
                urn = res["urn"]

                def report(message: str, _urn: str | None = None, *, p=policy, u=urn) -> None:
                    violations.append(_violation(p, u, message))

                _run(policy, _validation_args(res, providers), report, urn, violations)
        elif isinstance(policy, StackValidationPolicy):

            def report_stack(message: str, urn: str | None = None, *, p=policy) -> None:
                violations.append(_violation(p, urn or "", message))

            _run(policy, _stack_args(resources, providers), report_stack, "", violations)
    return violations


def _run(policy: Any, args: Any, report: Any, urn: str, violations: list[dict[str, str]]) -> None:
    try:
        result = policy.validate(args, report)
        if inspect.isawaitable(result):  # none of ours are async; guard against a future rule
            raise TypeError("async rules are not supported offline")
    except Exception as exc:  # a crashing rule must surface, not vanish
        violations.append(_violation(policy, urn, f"rule failed to evaluate: {exc!r}"))


def mandatory(violations: list[dict[str, str]]) -> list[dict[str, str]]:
    return [v for v in violations if v["enforcementLevel"] == "mandatory"]
