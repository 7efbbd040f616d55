"""Each compliance profile rule against a compliant stack and against one broken thing.

The stacks go through ``mlplatform.policy.evaluate_policies``, the path ``mlplatform plan`` takes:
profiles from the plan's exported settings, the pack's real policies, references resolved through
recorded property dependencies.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pulumi_policy import PolicyResource, PolicyResourceOptions
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, unknown_checking_proxy

from mlplatform.policy import evaluate_policies
from policies import compliance
from policies import compliance_checks as checks
from policies import compliance_resources as resources
from tests.policies.compliance_stack import KEY, baseline, named, plan, rds, res

BOTH = ["gdpr", "hipaa"]
PREFIXES = ("gdpr-", "hipaa-", "compliance-")


def findings(
    resources: list[dict[str, Any]], profiles: list[str], **kw: Any
) -> list[dict[str, str]]:
    found = evaluate_policies(plan(resources, profiles, **kw), "prod")
    return [v for v in found if v["policy"].startswith(PREFIXES)]


def _set(name: str, *path: str, value: Any) -> Callable[[list[dict[str, Any]]], None]:
    def mutate(resources: list[dict[str, Any]]) -> None:
        node = named(resources, name)["inputs"]
        for part in path[:-1]:
            node = node[part]
        if value is _DELETE:
            node.pop(path[-1])
        else:
            node[path[-1]] = value

    return mutate


def _drop(name: str) -> Callable[[list[dict[str, Any]]], None]:
    def mutate(resources: list[dict[str, Any]]) -> None:
        resources.remove(named(resources, name))

    return mutate


def _replace(new: dict[str, Any]) -> Callable[[list[dict[str, Any]]], None]:
    def mutate(resources: list[dict[str, Any]]) -> None:
        old = named(resources, new["urn"].rsplit("::", 1)[-1])
        resources[resources.index(old)] = new

    return mutate


def _lifecycle_rule(bucket: str, rule_id: str, **changes: Any) -> Callable[[list], None]:
    def mutate(resources: list[dict[str, Any]]) -> None:
        rules = named(resources, f"{bucket}-lifecycle")["inputs"]["rules"]
        rule = next(r for r in rules if r["id"] == rule_id)
        for key, value in changes.items():
            if value is _DELETE:
                rule.pop(key)
            else:
                rule[key] = value

    return mutate


_DELETE = object()
SSE_RULES = ("rules", 0, "applyServerSideEncryptionByDefault")

# (id, mutation, profiles enabled, policies expected to fire, text in a message)
CASES: list[tuple[str, Callable[[list[dict[str, Any]]], None], list[str], set[str], str]] = [
    # data residency --------------------------------------------------------------------
    (
        "provider-outside-eea",
        lambda rs: rs[0]["inputs"].update(region="us-east-1"),
        BOTH,
        {"gdpr-data-residency"},
        "places 23 resources in us-east-1",
    ),
    (
        "resource-region-override",
        _set("key", "region", value="us-west-2"),
        ["gdpr"],
        {"gdpr-data-residency"},
        "is placed in us-west-2",
    ),
    (
        "provider-without-region",
        lambda rs: rs[0]["inputs"].pop("region"),
        ["gdpr"],
        {"gdpr-data-residency"},
        "sets no region",
    ),
    # encryption with customer-managed keys ------------------------------------------------
    (
        "bucket-sse-s3",
        lambda rs: named(rs, "models-sse")["inputs"]["rules"][0].update(
            applyServerSideEncryptionByDefault={"sseAlgorithm": "AES256"}
        ),
        BOTH,
        {"gdpr-encryption-cmk", "hipaa-encryption-cmk"},
        "uses AES256",
    ),
    (
        "bucket-aws-managed-key",
        lambda rs: named(rs, "models-sse")["inputs"]["rules"][0].update(
            applyServerSideEncryptionByDefault={"sseAlgorithm": "aws:kms"}
        ),
        BOTH,
        {"gdpr-encryption-cmk", "hipaa-encryption-cmk"},
        "aws/s3",
    ),
    (
        "launch-template-aws-ebs-key",
        lambda rs: named(rs, "system-lt")["inputs"]["blockDeviceMappings"][0]["ebs"].pop(
            "kmsKeyId"
        ),
        BOTH,
        {"gdpr-encryption-cmk", "hipaa-encryption-cmk"},
        "blockDeviceMappings[0] uses the AWS-managed EBS key; set kmsKeyId",
    ),
    (
        "launch-template-no-volume",
        _set("system-lt", "blockDeviceMappings", value=[]),
        ["hipaa"],
        {"hipaa-encryption-cmk"},
        "declares no EBS block device",
    ),
    (
        "nodeclass-aws-ebs-key",
        lambda rs: named(rs, "default-nodeclass")["inputs"]["spec"]["blockDeviceMappings"][0][
            "ebs"
        ].pop("kmsKeyID"),
        ["hipaa"],
        {"hipaa-encryption-cmk"},
        "set kmsKeyID",
    ),
    (
        "storage-class-no-key",
        lambda rs: named(rs, "gp3")["inputs"]["parameters"].pop("kmsKeyId"),
        ["gdpr"],
        {"gdpr-encryption-cmk"},
        "StorageClass 'gp3' must set parameters",
    ),
    (
        "rds-aws-managed-key",
        _replace(rds(kmsKeyId="alias/aws/rds")),
        ["hipaa"],
        {"hipaa-encryption-cmk"},
        "storageEncrypted=true and kmsKeyId",
    ),
    (
        "sns-aws-managed-key",
        _set("alarms", "kmsMasterKeyId", value="alias/aws/sns"),
        ["hipaa"],
        {"hipaa-encryption-cmk"},
        "Topic 'alarms'",
    ),
    (
        "sqs-managed-sse",
        _replace(res("aws:sqs/queue:Queue", "interruptions", {"sqsManagedSseEnabled": True})),
        ["hipaa"],
        {"hipaa-encryption-cmk"},
        "SQS-managed SSE is not a CMK",
    ),
    (
        "log-group-unencrypted",
        _set("logs", "kmsKeyId", value=_DELETE),
        ["gdpr"],
        {"gdpr-encryption-cmk"},
        "LogGroup 'logs'",
    ),
    (
        "ecr-aes256",
        _set("serving", "encryptionConfigurations", value=[{"encryptionType": "AES256"}]),
        ["hipaa"],
        {"hipaa-encryption-cmk"},
        "Repository 'serving'",
    ),
    (
        "secret-aws-managed-key",
        _set("db-secret", "kmsKeyId", value=_DELETE),
        ["hipaa"],
        {"hipaa-encryption-cmk"},
        "Secret 'db-secret'",
    ),
    (
        "key-without-rotation",
        _set("key", "enableKeyRotation", value=False),
        ["gdpr"],
        {"gdpr-encryption-cmk"},
        "must rotate",
    ),
    (
        "eks-secrets-unencrypted",
        _set("eks", "encryptionConfig", value=_DELETE),
        ["hipaa"],
        {"hipaa-encryption-cmk"},
        "envelope-encrypt secrets",
    ),
    (
        # Without the BucketLogging the SSE-S3 log bucket is an ordinary bucket: no exemption.
        "sse-s3-bucket-that-receives-no-logs",
        lambda rs: (
            _drop("models-access-logs")(rs),
            named(rs, "models-logs")["inputs"]["tags"].pop("mlplatform.io/component"),
        ),
        ["hipaa"],
        {"hipaa-encryption-cmk", "hipaa-audit-logging"},
        "'models-logs-sse' uses AES256",
    ),
    # audit logging ----------------------------------------------------------------------
    (
        "eks-without-audit-log",
        _set("eks", "enabledClusterLogTypes", value=["api"]),
        BOTH,
        {"gdpr-audit-logging", "hipaa-audit-logging"},
        "audit, authenticator",
    ),
    (
        "vpc-without-flow-log",
        _drop("flow-log"),
        BOTH,
        {"gdpr-audit-logging", "hipaa-audit-logging"},
        "Vpc 'vpc' has no flow log",
    ),
    (
        "rds-without-log-exports",
        _replace(rds(enabledCloudwatchLogsExports=[])),
        ["hipaa"],
        {"hipaa-audit-logging"},
        "exports no logs",
    ),
    # log retention ------------------------------------------------------------------------
    (
        "log-group-90-days",
        _set("logs", "retentionInDays", value=90),
        BOTH,
        {"gdpr-log-retention", "hipaa-log-retention"},
        "keeps logs 90 days",
    ),
    (
        "log-group-400-days",
        _set("logs", "retentionInDays", value=400),
        BOTH,
        {"hipaa-log-retention"},
        "the minimum is 2190",
    ),
    (
        "access-logs-one-year",
        _lifecycle_rule("models-logs", "expire", expiration={"days": 365}),
        BOTH,
        {"hipaa-log-retention"},
        "expires access-logs/ after 365 days",
    ),
    # raw inference logs -------------------------------------------------------------------
    (
        "inference-log-never-expires",
        lambda rs: named(rs, "models-lifecycle")["inputs"]["rules"].pop(1),
        BOTH,
        {"gdpr-inference-log-retention", "hipaa-inference-log-retention"},
        "keeps projects/churn/inference-logs/ forever",
    ),
    (
        "inference-log-noncurrent-kept",
        _lifecycle_rule("models", "inference-logs-churn", noncurrentVersionExpiration=_DELETE),
        ["hipaa"],
        {"hipaa-inference-log-retention"},
        "forever",
    ),
    (
        "inference-log-100-days",
        _lifecycle_rule("models", "inference-logs-churn", expiration={"days": 100}),
        BOTH,
        {"gdpr-inference-log-retention", "hipaa-inference-log-retention"},
        "up to 101 days",
    ),
    (
        "inference-log-40-days",
        _lifecycle_rule("models", "inference-logs-churn", expiration={"days": 40}),
        BOTH,
        {"gdpr-inference-log-retention"},
        "the maximum is 30",
    ),
    (
        "object-lock-outlives-inference-logs",
        lambda rs: named(rs, "models-object-lock")["inputs"]["rule"]["defaultRetention"].update(
            days=60
        ),
        BOTH,
        {"gdpr-inference-log-retention"},
        "object lock retains every version 60 days",
    ),
    (
        "inference-log-rule-disabled",
        _lifecycle_rule("models", "inference-logs-churn", status="Disabled"),
        ["gdpr"],
        {"gdpr-inference-log-retention"},
        "forever",
    ),
    # no public endpoints ----------------------------------------------------------------
    (
        "eks-public-endpoint",
        _set("eks", "vpcConfig", "endpointPublicAccess", value=True),
        BOTH,
        {"gdpr-no-public-endpoints", "hipaa-no-public-endpoints"},
        "public API endpoint",
    ),
    (
        "internet-facing-ingress",
        _set(
            "scorer",
            "metadata",
            "annotations",
            "alb.ingress.kubernetes.io/scheme",
            value="internet-facing",
        ),
        ["hipaa"],
        {"hipaa-no-public-endpoints"},
        "internet-facing ALB",
    ),
    (
        "load-balancer-service",
        _set("scorer-svc", "spec", "type", value="LoadBalancer"),
        ["gdpr"],
        {"gdpr-no-public-endpoints"},
        "of type LoadBalancer",
    ),
    (
        "public-database",
        _replace(rds(publiclyAccessible=True)),
        ["hipaa"],
        {"hipaa-no-public-endpoints"},
        "publicly accessible",
    ),
    (
        "subnet-public-ips",
        _set("public-0", "mapPublicIpOnLaunch", value=True),
        ["gdpr"],
        {"gdpr-no-public-endpoints"},
        "mapPublicIpOnLaunch",
    ),
    (
        "nodes-with-public-ips",
        _set("default-nodeclass", "spec", "associatePublicIPAddress", value=True),
        ["hipaa"],
        {"hipaa-no-public-endpoints"},
        "public IPs",
    ),
    # backups ----------------------------------------------------------------------------
    (
        "rds-two-weeks-of-backups",
        _replace(rds(backupRetentionPeriod=14)),
        BOTH,
        {"hipaa-backups"},
        "keeps automated backups 14 days; the minimum is 30",
    ),
    (
        "rds-three-days-of-backups",
        _replace(rds(backupRetentionPeriod=3)),
        BOTH,
        {"gdpr-backups", "hipaa-backups"},
        "3 days",
    ),
    (
        "rds-skips-final-snapshot",
        _replace(rds(skipFinalSnapshot=True)),
        ["gdpr"],
        {"gdpr-backups"},
        "final snapshot",
    ),
    (
        "rds-deletes-automated-backups",
        _replace(rds(deleteAutomatedBackups=True)),
        ["hipaa"],
        {"hipaa-backups"},
        "deleteAutomatedBackups",
    ),
    (
        "versioning-suspended",
        _set("models-versioning", "versioningConfiguration", "status", value="Suspended"),
        ["gdpr"],
        {"gdpr-backups"},
        "does not version new writes",
    ),
    (
        "model-bucket-without-object-lock",
        lambda rs: (
            named(rs, "models")["inputs"].update(objectLockEnabled=False),
            _drop("models-object-lock")(rs),
        ),
        BOTH,
        {"hipaa-backups"},
        "needs object lock",
    ),
]


def test_the_baseline_passes_every_profile() -> None:
    assert findings(baseline(), BOTH) == []


@pytest.mark.parametrize(
    ("mutate", "profiles", "expected", "text"),
    [pytest.param(*c[1:], id=c[0]) for c in CASES],
)
def test_a_broken_stack_violates_exactly_the_rules_that_cover_it(
    mutate: Callable[[list[dict[str, Any]]], None],
    profiles: list[str],
    expected: set[str],
    text: str,
) -> None:
    resources = baseline()
    mutate(resources)
    found = findings(resources, profiles)
    assert {v["policy"] for v in found} == expected, found
    assert any(text in v["message"] for v in found), [v["message"] for v in found]
    assert all(v["enforcementLevel"] == "mandatory" for v in found)
    # the finding names its control, e.g. "HIPAA Security Rule 164.312(a)(2)(iv): ..."
    for v in found:
        profile = compliance.PROFILES[compliance.ProfileName(v["policy"].split("-", 1)[0])]
        assert v["message"].startswith(profile.framework)


def test_every_profile_rule_has_a_violating_case() -> None:
    every = compliance.Settings(
        profiles=tuple(compliance.ProfileName), allowed_regions=("eu-west-1",)
    )
    rules = {r.policy_name for r in compliance.profile_rules(every)}
    covered = {p for c in CASES for p in c[3]} | {"hipaa-data-residency"}
    assert rules <= covered, rules - covered


def test_allowed_regions_replace_the_gdpr_default_and_bind_hipaa() -> None:
    resources = baseline()
    resources[0]["inputs"]["region"] = "us-east-1"
    assert findings(resources, ["gdpr"], allowed_regions=["us-east-1"]) == []
    assert findings(resources, ["hipaa"]) == []  # hipaa has no default residency
    found = findings(resources, ["hipaa"], allowed_regions=["us-west-2"])
    assert [v["policy"] for v in found] == ["hipaa-data-residency"]
    assert "allowed regions: us-west-2" in found[0]["message"]


def test_no_profiles_no_compliance_rules() -> None:
    resources = baseline()
    resources[0]["inputs"]["region"] = "us-east-1"
    named(resources, "logs")["inputs"]["retentionInDays"] = 1
    assert findings(resources, []) == []


def test_dev_reports_the_same_findings_as_advisory() -> None:
    resources = baseline()
    named(resources, "logs")["inputs"]["retentionInDays"] = 90
    found = [
        v
        for v in evaluate_policies(plan(resources, ["hipaa"]), "dev")
        if v["policy"].startswith(PREFIXES)
    ]
    assert [(v["policy"], v["enforcementLevel"]) for v in found] == [
        ("hipaa-log-retention", "advisory")
    ]


def test_an_unknown_profile_in_the_exported_settings_is_reported() -> None:
    p = plan(baseline(), ["hipaa", "sox"])
    found = [v for v in evaluate_policies(p, "prod") if v["policy"] == "compliance-profiles"]
    assert len(found) == 1
    assert "unknown compliance profile 'sox'; allowed: gdpr, hipaa" in found[0]["message"]


# ----------------------------------------------------------------------------------------
# the checks under the engine's preview: values not known yet


def _resource(rtype: str, name: str, props: dict[str, Any], **deps: Any) -> PolicyResource:
    opts = PolicyResourceOptions(False, [], None, [], None, [])  # type: ignore[arg-type]
    return PolicyResource(
        rtype,
        unknown_checking_proxy(props),
        f"urn:pulumi:prod::p::{rtype}::{name}",
        name,
        opts,
        None,
        None,
        list(deps.get("dependencies", [])),
        dict(deps.get("property_dependencies", {})),
    )


def test_values_unknown_at_preview_are_not_violations() -> None:
    unknown = UNKNOWN_STRING_VALUE
    bucket = _resource("aws:s3/bucket:Bucket", "models", {})
    sse = _resource(
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
        "models-sse",
        {
            "bucket": unknown,
            "rules": [
                {
                    "applyServerSideEncryptionByDefault": {
                        "sseAlgorithm": "aws:kms",
                        "kmsMasterKeyId": unknown,
                    }
                }
            ],
        },
        property_dependencies={"bucket": [bucket]},
    )
    lt = _resource(
        "aws:ec2/launchTemplate:LaunchTemplate",
        "lt",
        {"blockDeviceMappings": [{"ebs": {"encrypted": "true", "kmsKeyId": unknown}}]},
    )
    topic = _resource("aws:sns/topic:Topic", "t", {"kmsMasterKeyId": unknown})
    stack = resources.Stack([bucket, sse, lt, topic])
    limits = compliance.PROFILES[compliance.ProfileName.HIPAA].limits
    assert list(checks.check_encryption(stack, limits)) == []
    # ...while a known AWS-managed key through the same proxies is reported
    plain = _resource("aws:sns/topic:Topic", "t", {"kmsMasterKeyId": "alias/aws/sns"})
    assert [m for _, m in checks.check_encryption(resources.Stack([plain]), limits)]


def test_retention_counts_noncurrent_versions_and_object_lock() -> None:
    bucket = _resource("aws:s3/bucket:Bucket", "b", {})
    versioning = _resource(
        "aws:s3/bucketVersioning:BucketVersioning",
        "v",
        {"versioningConfiguration": {"status": "Enabled"}},
        property_dependencies={"bucket": [bucket]},
    )
    lifecycle = _resource(
        "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
        "lc",
        {
            "rules": [
                {
                    "id": "all",
                    "status": "Enabled",
                    "filter": {"prefix": "projects/"},
                    "expiration": {"days": 10},
                    "noncurrentVersionExpiration": {"noncurrentDays": 5},
                },
                {  # a tag filter does not cover every object under the prefix
                    "id": "tagged",
                    "status": "Enabled",
                    "filter": {"tag": {"key": "k", "value": "v"}},
                    "expiration": {"days": 1},
                    "noncurrentVersionExpiration": {"noncurrentDays": 1},
                },
            ]
        },
        property_dependencies={"bucket": [bucket]},
    )
    stack = resources.Stack([bucket, versioning, lifecycle])
    days, why = resources.retention_of(stack, bucket, "projects/churn/inference-logs/") or (0, "")
    assert days == 15 and "rule 'all'" in why
    lock = _resource(
        "aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration",
        "lock",
        {"rule": {"defaultRetention": {"years": 1}}},
        property_dependencies={"bucket": [bucket]},
    )
    locked = resources.retention_of(
        resources.Stack([bucket, versioning, lifecycle, lock]), bucket, "projects/x/"
    )
    assert locked is not None and locked[0] == 365
    # unversioned: the expiration alone bounds it
    assert (
        resources.retention_of(resources.Stack([bucket, lifecycle]), bucket, "projects/a/") or (0,)
    )[0] == 10


def test_references_resolve_by_property_not_by_any_dependency() -> None:
    """A BucketLogging depends on both buckets; only `targetBucket` makes one a log target."""
    source = _resource("aws:s3/bucket:Bucket", "src", {})
    target = _resource("aws:s3/bucket:Bucket", "dst", {})
    logging = _resource(
        "aws:s3/bucketLogging:BucketLogging",
        "l",
        {"targetPrefix": "x/"},
        dependencies=[source, target],
        property_dependencies={"bucket": [source], "targetBucket": [target]},
    )
    stack = resources.Stack([source, target, logging])
    assert [b.name for b in stack.access_log_targets()] == ["dst"]
    assert stack.logged_buckets() == {source.urn}
    assert KEY  # the shared fixture key is a full ARN (cross-service use needs one)


def test_a_region_output_equal_to_the_providers_counts_once_under_the_provider() -> None:
    """pulumi-aws 7 reports every resource's region as an output (what the engine's stack
    analysis sees): the finding stays one per provider, not one per resource."""
    resources = baseline()
    resources[0]["inputs"]["region"] = "us-east-1"
    for r in resources[1:]:
        if r["type"].startswith("aws:"):
            r["inputs"]["region"] = "us-east-1"
    found = findings(resources, ["gdpr"])
    assert [v["urn"].rsplit("::", 1)[-1] for v in found] == ["aws"]
