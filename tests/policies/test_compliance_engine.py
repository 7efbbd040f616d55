"""The compliance policies as the engine drives them: the pack's analyzer servicer, real protobuf
requests, the stack config arriving through ConfigureStack (kept by capture_stack_config)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from google.protobuf import struct_pb2
from pulumi.runtime.proto import analyzer_pb2 as proto
from pulumi_policy import EnforcementLevel
from pulumi_policy import policy as sdk

from policies import compliance, rules
from tests.policies.compliance_stack import baseline, named


@pytest.fixture
def servicer(monkeypatch: pytest.MonkeyPatch) -> Any:
    cls = sdk._PolicyAnalyzerServicer
    monkeypatch.setattr(cls, "ConfigureStack", cls.ConfigureStack)  # undone after the test
    monkeypatch.setattr(compliance, "RECEIVED", compliance._Received())
    monkeypatch.delenv(compliance.ENV_VAR, raising=False)
    compliance.capture_stack_config()
    policies = rules.build_policies("prod") + compliance.build_policies(
        "prod", compliance.engine_settings
    )
    return cls("ml-platform", "0.1.0", policies, EnforcementLevel.MANDATORY)


def _struct(value: dict[str, Any]) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.update(value)
    return out


def _request(resources: list[dict[str, Any]]) -> Any:
    """What the engine sends for a stack analysis, from plan-shaped resources."""
    out = []
    for r in resources:
        if r["type"].startswith("pulumi:providers:"):
            continue
        out.append(
            proto.AnalyzerResource(
                type=r["type"],
                properties=_struct(r["inputs"]),
                urn=r["urn"],
                name=r["urn"].rsplit("::", 1)[-1],
                options=proto.AnalyzerResourceOptions(protect=r["protect"]),
                provider=proto.AnalyzerProviderResource(
                    type="pulumi:providers:aws",
                    properties=_struct({"region": "eu-west-1"}),
                    urn=r["provider"].rsplit("::", 1)[0],
                    name="aws",
                ),
                dependencies=r["dependencies"],
                propertyDependencies={
                    k: proto.AnalyzerPropertyDependencies(urns=v)
                    for k, v in (r.get("propertyDependencies") or {}).items()
                },
            )
        )
    return proto.AnalyzeStackRequest(resources=out)


def _configure(servicer: Any, config: dict[str, str]) -> None:
    servicer.ConfigureStack(proto.AnalyzerStackConfigureRequest(stack="prod", config=config), None)


def _analyze(servicer: Any, resources: list[dict[str, Any]]) -> tuple[list[Any], set[str]]:
    response = servicer.AnalyzeStack(_request(resources), None)
    return list(response.diagnostics), {n.policy_name for n in response.not_applicable}


def test_the_stack_config_selects_the_profiles(servicer: Any) -> None:
    settings = {"profiles": ["hipaa"], "auditTrailArn": "arn:aws:cloudtrail:x"}
    _configure(servicer, {compliance.CONFIG_KEY: json.dumps(settings), "aws:region": "eu-west-1"})
    resources = baseline()
    named(resources, "logs")["inputs"]["retentionInDays"] = 365
    diagnostics, not_applicable = _analyze(servicer, resources)
    hits = [(d.policyName, d.enforcementLevel) for d in diagnostics if "-" in d.policyName]
    assert ("hipaa-log-retention", proto.MANDATORY) in hits
    assert all(not name.startswith("gdpr-") for name, _ in hits)
    assert {"gdpr-log-retention", "gdpr-encryption-cmk", "hipaa-data-residency"} <= not_applicable
    retention = next(d for d in diagnostics if d.policyName == "hipaa-log-retention")
    assert "LogGroup 'logs' keeps logs 365 days; the minimum is 2190" in retention.message
    assert retention.urn.endswith("::logs")


def test_references_resolve_through_the_engines_property_dependencies(servicer: Any) -> None:
    """The access-log bucket's SSE-S3 is exempt only as the BucketLogging's targetBucket."""
    _configure(servicer, {compliance.CONFIG_KEY: json.dumps({"profiles": ["hipaa"]})})
    diagnostics, _ = _analyze(servicer, baseline())
    assert [d.policyName for d in diagnostics if d.policyName.startswith("hipaa-")] == []
    swapped = baseline()
    logging = named(swapped, "models-access-logs")
    deps = logging["propertyDependencies"]
    deps["bucket"], deps["targetBucket"] = deps["targetBucket"], deps["bucket"]
    diagnostics, _ = _analyze(servicer, swapped)
    assert "hipaa-encryption-cmk" in {d.policyName for d in diagnostics}


def test_the_environment_variable_adds_profiles(
    servicer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _configure(servicer, {compliance.CONFIG_KEY: json.dumps({"profiles": ["hipaa"]})})
    monkeypatch.setenv(compliance.ENV_VAR, "gdpr")
    settings = compliance.engine_settings()
    assert settings is not None
    assert settings.profiles == (compliance.ProfileName.GDPR, compliance.ProfileName.HIPAA)


def test_without_the_stack_config_the_pack_says_so(
    servicer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No ConfigureStack call (an engine that does not send the config): profiles unknown.
    diagnostics, not_applicable = _analyze(servicer, baseline())
    config = [d for d in diagnostics if d.policyName == compliance.CONFIG_POLICY]
    assert len(config) == 1 and config[0].enforcementLevel == proto.MANDATORY
    assert compliance.ENV_VAR in config[0].message
    assert "hipaa-encryption-cmk" in not_applicable
    monkeypatch.setenv(compliance.ENV_VAR, "none")
    diagnostics, _ = _analyze(servicer, baseline())
    assert not [d for d in diagnostics if d.policyName == compliance.CONFIG_POLICY]


def test_an_unknown_profile_in_the_stack_config_is_a_violation(servicer: Any) -> None:
    _configure(servicer, {compliance.CONFIG_KEY: '{"profiles": ["pci"]}'})
    diagnostics, _ = _analyze(servicer, baseline())
    messages = [d.message for d in diagnostics if d.policyName == compliance.CONFIG_POLICY]
    assert any("unknown compliance profile 'pci'; allowed: gdpr, hipaa" in m for m in messages)


def test_capture_fails_loudly_if_the_sdk_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(sdk, "_PolicyAnalyzerServicer")
    with pytest.raises(RuntimeError, match="cannot read the stack config"):
        compliance.capture_stack_config()


def test_every_profile_policy_is_registered_for_the_engine() -> None:
    names = {p.name for p in compliance.build_policies("prod", lambda: None)}
    expected = {f"{p.value}-{c}" for p in compliance.ProfileName for c in compliance.CHECKS}
    assert names == expected | {compliance.CONFIG_POLICY}
    framework = {
        p.name: p.framework.reference
        for p in compliance.build_policies("prod", lambda: None)
        if p.framework is not None
    }
    assert framework["hipaa-encryption-cmk"] == "164.312(a)(2)(iv) (encryption and decryption)"
