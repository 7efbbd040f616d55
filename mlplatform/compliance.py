"""The stack's ``compliance`` config section: which profiles (gdpr, hipaa) the stack enables.

The profiles themselves (rules, parameters, controls) live in ``policies/compliance.py``, which the
policy pack also loads; this module only types and validates the stack's choice. The program
exports the validated settings (:meth:`ComplianceArgs.exported`) so that ``mlplatform plan`` and a
saved plan JSON evaluate exactly the profiles the stack declared.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from pydantic import Field

from components.common import ArgsModel, Issue
from policies.compliance import PROFILES, ProfileName

if TYPE_CHECKING:
    from mlplatform.config import PlatformConfig

TRAIL_ARN = re.compile(r"^arn:aws[a-z-]*:cloudtrail:[a-z0-9-]+:\d{12}:trail/[A-Za-z0-9._-]{3,128}$")


class ComplianceArgs(ArgsModel):
    profiles: list[ProfileName] = Field(
        default_factory=list,
        description="Compliance profiles whose policy rules the stack must pass: gdpr, hipaa.",
    )
    allowed_regions: list[str] | None = Field(
        default=None,
        description="Data residency: regions AWS resources may use (default for gdpr: the EEA "
        "regions; hipaa has no default).",
    )
    audit_trail_arn: str | None = Field(
        default=None,
        description="The account's or organization's CloudTrail trail (required with profiles: "
        "the platform does not declare one).",
    )

    def issues(self) -> list[Issue]:
        from mlplatform.config import AWS_REGIONS

        found = super().issues()
        if len(set(self.profiles)) != len(self.profiles):
            found.append(Issue(("profiles",), "lists a profile twice"))
        if self.allowed_regions is not None:
            if not self.profiles:
                found.append(Issue(("allowedRegions",), "only applies with compliance profiles"))
            if not self.allowed_regions:
                found.append(
                    Issue(("allowedRegions",), "lists no region; omit it for the profile default")
                )
            for i, region in enumerate(self.allowed_regions):
                if region not in AWS_REGIONS:
                    found.append(
                        Issue(
                            ("allowedRegions", i),
                            f"unknown region {region!r}; one of {', '.join(AWS_REGIONS)}",
                        )
                    )
        if self.profiles and not self.audit_trail_arn:
            found.append(
                Issue(
                    ("auditTrailArn",),
                    "required with compliance profiles: the ARN of the CloudTrail trail that "
                    "records this account (arn:aws:cloudtrail:<region>:<account>:trail/<name>); "
                    "the platform does not declare one",
                )
            )
        if self.audit_trail_arn and not TRAIL_ARN.match(self.audit_trail_arn):
            found.append(
                Issue(
                    ("auditTrailArn",),
                    f"not a CloudTrail trail ARN: {self.audit_trail_arn!r} "
                    "(arn:aws:cloudtrail:<region>:<account>:trail/<name>)",
                )
            )
        return found

    def exported(self) -> dict[str, Any]:
        """The settings as the policy pack reads them (camelCase, as in the stack file)."""
        return {
            "profiles": [p.value for p in self.profiles],
            "allowedRegions": self.allowed_regions,
            "auditTrailArn": self.audit_trail_arn,
        }


def compliance_issues(cfg: PlatformConfig) -> list[Issue]:
    """Checks across sections that the policy pack cannot make from declared resources."""
    from mlplatform.config import Platform

    profiles = cfg.compliance.profiles
    if not profiles:
        return []
    names = ", ".join(p.value for p in profiles)
    found: list[Issue] = []
    if cfg.platform is Platform.local:
        found.append(
            Issue(
                ("compliance", "profiles"),
                "only on the aws platform: the local platform has no KMS keys, audit logs or "
                "backups for the profiles to check",
            )
        )
    registry = cfg.model_registry
    if (
        cfg.platform is Platform.aws
        and registry is not None
        and registry.enabled
        and registry.database.kind != "rds"
    ):
        need = max(PROFILES[p].limits.backup_min_days for p in profiles)
        found.append(
            Issue(
                ("modelRegistry", "database", "kind"),
                f"must be rds with compliance profiles ({names}): the in-cluster database has no "
                f"automated backups (the profiles need >= {need} days)",
            )
        )
    return found
