"""Compliance profiles: policy rules a stack opts into with ``compliance: {profiles: [...]}``.

A profile (``gdpr``, ``hipaa``) turns on a set of stack policies, each one check from
``compliance_checks.py`` with the profile's parameters (minimum log retention, maximum retention of
raw inference logs, allowed regions...) and the control it implements. Policies are named
``<profile>-<check>`` so a finding says which regulation it serves; two profiles may report the
same resource, each against its own control.

The same policies run in two places:

* ``mlplatform plan`` (``mlplatform.policy``) passes the settings from the validated stack config;
* ``pulumi preview --policy-pack policies``: the pack registers every profile's policies, and each
  one reads the stack's ``ml-platform:compliance`` config, which the engine sends to analyzers
  (``ConfigureStack``) but pulumi-policy drops; :func:`capture_stack_config` keeps it. A policy of
  a profile the stack does not enable reports itself not applicable.
  ``MLPLATFORM_COMPLIANCE=gdpr,hipaa`` adds profiles (never removes one); ``none`` says the stack
  enables none when the engine sends no config.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyComplianceFramework,
    ReportViolation,
    StackValidationArgs,
    StackValidationPolicy,
)

if __package__:
    from . import compliance_checks as checks
    from . import compliance_resources as resources
else:  # the engine runs the pack's files as top-level modules from the pack's directory
    import compliance_checks as checks  # type: ignore[no-redef]
    import compliance_resources as resources  # type: ignore[no-redef]

CONFIG_KEY = "ml-platform:compliance"
ENV_VAR = "MLPLATFORM_COMPLIANCE"
CONFIG_POLICY = "compliance-profiles"

# The EEA regions. London (eu-west-2) and Zurich (eu-central-2) have adequacy decisions
# (Art. 45) but are outside the EEA: list them in allowedRegions to use them.
EEA_REGIONS = ("eu-central-1", "eu-north-1", "eu-south-1", "eu-south-2", "eu-west-1", "eu-west-3")


class ProfileName(StrEnum):
    GDPR = "gdpr"
    HIPAA = "hipaa"


@dataclass(frozen=True)
class Check:
    name: str
    description: str
    run: Callable[[resources.Stack, resources.Limits], Iterable[resources.Finding]]


CHECKS: dict[str, Check] = {
    c.name: c
    for c in (
        Check(
            "data-residency",
            "AWS resources are created only in the allowed regions.",
            checks.check_regions,
        ),
        Check(
            "encryption-cmk",
            "Data at rest (S3, EBS volumes and gp3 classes, RDS, EKS secrets, SNS, SQS, log "
            "groups, ECR, secrets) is encrypted with rotating customer-managed KMS keys.",
            checks.check_encryption,
        ),
        Check(
            "audit-logging",
            "EKS audit/api/authenticator logs, S3 server access logs, VPC flow logs and database "
            "logs are on; declared CloudTrail trails are multi-region and validated.",
            checks.check_audit_logging,
        ),
        Check(
            "log-retention",
            "Log groups and access-log buckets keep logs at least the profile's minimum.",
            checks.check_log_retention,
        ),
        Check(
            "inference-log-retention",
            "Each project's raw inference log (projects/<p>/inference-logs/ in the model bucket) "
            "expires, noncurrent versions and object lock included, within the profile's maximum.",
            checks.check_inference_logs,
        ),
        Check(
            "no-public-endpoints",
            "No public EKS API endpoint, internet-facing load balancer, public IP or publicly "
            "accessible database.",
            checks.check_public_endpoints,
        ),
        Check(
            "backups",
            "Databases keep automated backups and a final snapshot; data buckets are versioned "
            "(and object-locked where the profile requires it).",
            checks.check_backups,
        ),
    )
}


@dataclass(frozen=True)
class Profile:
    name: ProfileName
    framework: str
    version: str
    limits: resources.Limits
    # check name -> the control(s) it implements
    controls: Mapping[str, str]
    # data residency applies only when the stack lists allowedRegions (no default list)
    residency_needs_config: bool = False


PROFILES: dict[ProfileName, Profile] = {
    ProfileName.GDPR: Profile(
        name=ProfileName.GDPR,
        framework="GDPR",
        version="Regulation (EU) 2016/679",
        limits=resources.Limits(
            allowed_regions=EEA_REGIONS,
            audit_log_min_days=365,
            inference_log_max_days=30,
            backup_min_days=7,
            object_lock=False,
        ),
        controls={
            "data-residency": "Art. 44-46 (transfers to third countries)",
            "encryption-cmk": "Art. 32(1)(a) (encryption of personal data)",
            "audit-logging": "Art. 32(1)(b),(d) (security of processing); Art. 33(5) (breach records)",
            "log-retention": "Art. 33(5) (breach records); Art. 5(2) (accountability)",
            "inference-log-retention": "Art. 5(1)(e) (storage limitation); Art. 5(1)(c) (minimisation)",
            "no-public-endpoints": "Art. 25(1) (protection by design); Art. 32(1)(b) (confidentiality)",
            "backups": "Art. 32(1)(c) (restore availability and access in a timely manner)",
        },
    ),
    ProfileName.HIPAA: Profile(
        name=ProfileName.HIPAA,
        framework="HIPAA Security Rule",
        version="45 CFR Part 164 Subpart C",
        limits=resources.Limits(
            allowed_regions=None,
            audit_log_min_days=2190,
            inference_log_max_days=90,
            backup_min_days=30,
            object_lock=True,
        ),
        controls={
            "data-residency": "no HIPAA residency rule: the stack's allowedRegions (BAA, policy)",
            "encryption-cmk": "164.312(a)(2)(iv) (encryption and decryption)",
            "audit-logging": "164.312(b) (audit controls); 164.308(a)(1)(ii)(D) (activity review)",
            "log-retention": "164.312(b) (audit controls); 164.316(b)(2)(i) (6-year retention)",
            "inference-log-retention": "164.502(b), 164.514(d) (minimum necessary)",
            "no-public-endpoints": "164.312(a)(1) (access control); 164.312(e)(1) (transmission)",
            "backups": "164.308(a)(7)(ii)(A) (data backup plan); 164.312(c)(1) (integrity)",
        },
        residency_needs_config=True,
    ),
}


# --------------------------------------------------------------------------------------------
# settings: what the stack enables


@dataclass(frozen=True)
class Settings:
    profiles: tuple[ProfileName, ...] = ()
    allowed_regions: tuple[str, ...] | None = None
    audit_trail_arn: str | None = None
    problems: tuple[str, ...] = field(default=(), compare=False)


def parse_settings(raw: Any, extra_profiles: str = "") -> Settings:
    """Settings from the stack's ``compliance`` value (JSON text as the engine sends it, or the
    parsed object) plus a comma list of extra profiles; unknown names become ``problems``."""
    problems: list[str] = []
    data = raw
    if isinstance(raw, str):
        try:
            data = json.loads(raw) if raw.strip() else {}
        except ValueError:
            problems.append(f"{CONFIG_KEY} is not valid JSON: {raw[:80]!r}")
            data = {}
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        problems.append(f"{CONFIG_KEY} must be an object, got {type(data).__name__}")
        data = {}
    names = list(resources.items(data.get("profiles")))
    names += [n.strip() for n in extra_profiles.split(",") if n.strip() and n.strip() != "none"]
    allowed = ", ".join(p.value for p in ProfileName)
    profiles: list[ProfileName] = []
    for name in names:
        try:
            profile = ProfileName(str(name).lower())
        except ValueError:
            problems.append(f"unknown compliance profile {name!r}; allowed: {allowed}")
            continue
        if profile not in profiles:
            profiles.append(profile)
    regions = data.get("allowedRegions")
    return Settings(
        profiles=tuple(sorted(profiles)),
        allowed_regions=tuple(str(r) for r in regions) if regions else None,
        audit_trail_arn=data.get("auditTrailArn") or None,
        problems=tuple(problems),
    )


@dataclass(frozen=True)
class ProfileRule:
    """One check as one profile configures it."""

    profile: Profile
    check: Check
    limits: resources.Limits

    @property
    def policy_name(self) -> str:
        return f"{self.profile.name.value}-{self.check.name}"

    @property
    def controls(self) -> str:
        return self.profile.controls[self.check.name]

    def parameters(self) -> dict[str, Any]:
        lim = self.limits
        by_check: dict[str, dict[str, Any]] = {
            "data-residency": {"allowedRegions": list(lim.allowed_regions or [])},
            "log-retention": {"minimumDays": lim.audit_log_min_days},
            "inference-log-retention": {"maximumDays": lim.inference_log_max_days},
            "backups": {"minimumBackupDays": lim.backup_min_days, "objectLock": lim.object_lock},
        }
        return by_check.get(self.check.name, {})


def rule_for(profile: Profile, check_name: str, settings: Settings) -> ProfileRule | None:
    """The profile's rule for a check under these settings, or None when it does not apply."""
    if profile.name not in settings.profiles or check_name not in profile.controls:
        return None
    limits = profile.limits
    if check_name == "data-residency":
        if settings.allowed_regions is not None:
            limits = replace(limits, allowed_regions=settings.allowed_regions)
        elif profile.residency_needs_config:
            return None
    return ProfileRule(profile, CHECKS[check_name], limits)


def profile_rules(settings: Settings) -> list[ProfileRule]:
    """The rules the enabled profiles add, profile by profile."""
    out = []
    for name in settings.profiles:
        profile = PROFILES[name]
        for check_name in profile.controls:
            rule = rule_for(profile, check_name, settings)
            if rule is not None:
                out.append(rule)
    return out


# --------------------------------------------------------------------------------------------
# policies

SettingsSource = Callable[[], Settings | None]


def _level(environment: str) -> EnforcementLevel:
    # One source for "dev is advisory, anything else mandatory": the base pack's rule.
    if __package__:
        from .rules import enforcement_for
    else:
        from rules import enforcement_for  # type: ignore[no-redef]
    return enforcement_for(environment)


def _profile_policy(
    profile: Profile, check_name: str, source: SettingsSource, level: EnforcementLevel
) -> Policy:
    check = CHECKS[check_name]
    controls = profile.controls[check_name]

    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        settings = source()
        rule = rule_for(profile, check_name, settings) if settings is not None else None
        if rule is None:
            args.not_applicable(f"profile {profile.name.value} is not enabled for this stack")
            return
        stack = resources.Stack(args.resources)
        for urn, message in rule.check.run(stack, rule.limits):
            report_violation(f"{profile.framework} {controls}: {message}", urn)

    return StackValidationPolicy(
        name=f"{profile.name.value}-{check_name}",
        description=f"{profile.framework} {controls}: {check.description}",
        validate=validate,
        enforcement_level=level,
        framework=PolicyComplianceFramework(
            name=profile.framework, version=profile.version, reference=controls
        ),
    )


def _config_policy(source: SettingsSource, level: EnforcementLevel) -> Policy:
    def validate(_args: StackValidationArgs, report_violation: ReportViolation) -> None:
        settings = source()
        if settings is None:
            report_violation(
                "the engine sent no stack config, so the stack's compliance profiles are "
                f"unknown; set {ENV_VAR}=<profiles> (or {ENV_VAR}=none)",
                None,
            )
            return
        for problem in settings.problems:
            report_violation(problem, None)

    return StackValidationPolicy(
        name=CONFIG_POLICY,
        description="The stack's compliance profiles are known and valid.",
        validate=validate,
        enforcement_level=level,
    )


def build_policies(
    environment: str, source: SettingsSource, only: Sequence[ProfileRule] | None = None
) -> list[Policy]:
    """The compliance policies at the environment's enforcement level.

    ``only``: just these rules (the offline plan passes the stack's); by default every rule of
    every profile, each deciding at run time from ``source()`` whether it applies (the engine).
    """
    level = _level(environment)
    pairs = (
        [(r.profile, r.check.name) for r in only]
        if only is not None
        else [(p, c) for p in PROFILES.values() for c in p.controls]
    )
    return [_config_policy(source, level)] + [
        _profile_policy(p, c, source, level) for p, c in pairs
    ]


# --------------------------------------------------------------------------------------------
# the engine: the stack config reaches the pack through ConfigureStack


@dataclass
class _Received:
    stack: str = ""
    config: dict[str, str] | None = None


RECEIVED = _Received()


def capture_stack_config() -> None:
    """Keep the stack name and config the engine sends with ``ConfigureStack``.

    pulumi-policy 1.x answers that call but keeps only the stack's tags. Fails loudly if the
    SDK's analyzer class changes shape, rather than silently running without the profiles.
    """
    from pulumi_policy import policy as sdk

    servicer = getattr(sdk, "_PolicyAnalyzerServicer", None)
    original = getattr(servicer, "ConfigureStack", None)
    if servicer is None or original is None:
        raise RuntimeError(
            "pulumi-policy has no _PolicyAnalyzerServicer.ConfigureStack: the compliance "
            "profiles cannot read the stack config; pin pulumi-policy to a tested 1.x"
        )

    def configure_stack(self: Any, request: Any, context: Any) -> Any:
        RECEIVED.stack = str(request.stack)
        RECEIVED.config = {str(k): str(v) for k, v in request.config.items()}
        return original(self, request, context)

    servicer.ConfigureStack = configure_stack


def engine_settings(environ: Mapping[str, str] = os.environ) -> Settings | None:
    """The stack's settings from the received config and ``MLPLATFORM_COMPLIANCE``; None when
    neither says anything (the profiles are unknown)."""
    extra = environ.get(ENV_VAR, "").strip()
    if RECEIVED.config is None and not extra:
        return None
    raw = (RECEIVED.config or {}).get(CONFIG_KEY)
    return parse_settings(raw, extra)
