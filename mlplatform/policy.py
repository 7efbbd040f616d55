"""Run the policy pack's rules over an offline plan, without the Pulumi engine.

The rules are the same objects the engine loads (``policies.rules.build_policies`` and the
compliance profiles' ``policies.compliance.build_policies``); each recorded resource becomes a real
``pulumi_policy.ResourceValidationArgs`` and the whole plan a ``StackValidationArgs``, so a rule
cannot behave differently here and under ``pulumi preview``.

The stack's compliance profiles come from the plan itself (the program exports its validated
``compliance`` settings), so a saved plan JSON is evaluated exactly as it was planned.
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
from pulumi_policy.policy import _NotApplicableError

from policies import compliance
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
        node.property_dependencies = {
            prop: [built[u] for u in urns if u in built]
            for prop, urns in (res.get("propertyDependencies") or {}).items()
        }
    return StackValidationArgs(list(built.values()))


def _violation(policy: Any, urn: str, message: str) -> dict[str, str]:
    level = policy.enforcement_level
    return {
        "policy": policy.name,
        "enforcementLevel": level.value if level is not None else "advisory",
        "urn": urn,
        "message": message,
    }


def compliance_settings(plan: Mapping[str, Any]) -> compliance.Settings:
    """The compliance settings the plan's program exported (none for plans without them)."""
    return compliance.parse_settings((plan.get("outputs") or {}).get("compliance"))


def evaluate_policies(plan: Mapping[str, Any], environment: str) -> list[dict[str, str]]:
    """Violations of the environment's policy pack, and of the stack's compliance profiles, by the
    plan's resources.

    Returns ``[{policy, enforcementLevel, urn, message}]``; a rule that crashes on a resource is
    reported as a violation of that rule rather than hidden.
    """
    settings = compliance_settings(plan)
    policies = build_policies(environment) + compliance.build_policies(
        environment, lambda: settings, only=compliance.profile_rules(settings)
    )
    resources = [
        r
        for r in plan.get("resources") or []
        if not str(r.get("type", "")).startswith("pulumi:providers:")
    ]
    providers = _providers(list(plan.get("resources") or []))
    violations: list[dict[str, str]] = []
    for policy in policies:
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
    except _NotApplicableError:
        return
    except Exception as exc:  # a crashing rule must surface, not vanish
        violations.append(_violation(policy, urn, f"rule failed to evaluate: {exc!r}"))


def mandatory(violations: list[dict[str, str]]) -> list[dict[str, str]]:
    return [v for v in violations if v["enforcementLevel"] == "mandatory"]


def compliance_report(plan: Mapping[str, Any], violations: list[dict[str, str]]) -> dict[str, Any]:
    """Which rules each enabled profile added (control, parameters) and what violates them."""
    settings = compliance_settings(plan)
    by_policy: dict[str, list[str]] = {}
    for v in violations:
        by_policy.setdefault(v["policy"], []).append(v["urn"])
    profiles = []
    for name in settings.profiles:
        profile = compliance.PROFILES[name]
        rules = [
            {
                "policy": r.policy_name,
                "check": r.check.name,
                "description": r.check.description,
                "controls": r.controls,
                "parameters": r.parameters(),
                "violations": len(by_policy.get(r.policy_name, [])),
                "resources": sorted(set(by_policy.get(r.policy_name, []))),
            }
            for r in compliance.profile_rules(settings)
            if r.profile.name is name
        ]
        profiles.append(
            {
                "name": name.value,
                "framework": profile.framework,
                "version": profile.version,
                "rules": rules,
            }
        )
    return {
        "profiles": profiles,
        "allowedRegions": list(settings.allowed_regions) if settings.allowed_regions else None,
        "auditTrailArn": settings.audit_trail_arn,
    }
