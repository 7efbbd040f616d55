"""Each rule, called directly with a passing and a failing hand-built ResourceValidationArgs."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pulumi_policy import (
    EnforcementLevel,
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from policies import rules
from tests.policies.helpers import TAGS, args, violations

SECURE_CONTAINER = {
    "name": "app",
    "image": "ghcr.io/org/app:1.2.3",
    "securityContext": {"runAsNonRoot": True, "allowPrivilegeEscalation": False},
    "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
}


def deployment(**container: Any) -> dict[str, Any]:
    c = {**SECURE_CONTAINER, **container}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "app"},
        "spec": {"template": {"spec": {"containers": [c]}}},
    }


def policy_doc(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


TLS_ONLY = {
    "Effect": "Deny",
    "Principal": "*",
    "Action": "s3:*",
    "Resource": ["arn:aws:s3:::b", "arn:aws:s3:::b/*"],
    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
}

EKS_OK = {
    "vpcConfig": {"endpointPrivateAccess": True, "endpointPublicAccess": False},
    "encryptionConfig": {"resources": ["secrets"], "provider": {"keyArn": "arn:aws:kms:k"}},
}

GPU_POOL = {
    "spec": {
        "template": {
            "metadata": {"labels": {"mlplatform.io/accelerator": "nvidia-a10g"}},
            "spec": {
                "taints": [{"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"}]
            },
        },
        "limits": {"nvidia.com/gpu": 8},
    }
}

# (rule, passing args, failing args, text expected in the failure message)
CASES: list[tuple[Any, Any, Any, str]] = [
    (
        rules.validate_required_tags,
        args("aws:s3/bucket:Bucket", {"tags": TAGS}),
        args("aws:s3/bucket:Bucket", {"tags": {"project": "x"}}),
        "environment, owner, cost-center",
    ),
    (
        rules.validate_required_tags,
        # provider defaultTags count
        args("aws:ec2/vpc:Vpc", {}, provider_props={"defaultTags": {"tags": TAGS}}),
        args("aws:ec2/vpc:Vpc", {}, provider_props={"region": "us-east-1"}),
        "missing required tags",
    ),
    (
        rules.validate_s3_hardening,
        args(
            "aws:s3/bucketVersioning:BucketVersioning",
            {"versioningConfiguration": {"status": "Enabled"}},
        ),
        args(
            "aws:s3/bucketVersioning:BucketVersioning",
            {"versioningConfiguration": {"status": "Suspended"}},
        ),
        "must be 'Enabled'",
    ),
    (
        rules.validate_s3_hardening,
        args(
            rules.SSE_CONFIG,
            {"rules": [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "aws:kms"}}]},
        ),
        args(rules.SSE_CONFIG, {"rules": [{"bucketKeyEnabled": True}]}),
        "sseAlgorithm",
    ),
    (
        rules.validate_s3_hardening,
        args(
            "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
            dict.fromkeys(rules._PAB_KEYS, True),
        ),
        args(
            "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
            {**dict.fromkeys(rules._PAB_KEYS, True), "restrictPublicBuckets": False},
        ),
        "restrictPublicBuckets",
    ),
    (
        rules.validate_s3_hardening,
        args("aws:s3/bucketPolicy:BucketPolicy", {"policy": policy_doc(TLS_ONLY)}),
        args(
            "aws:s3/bucketPolicy:BucketPolicy",
            {"policy": policy_doc({"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject"})},
        ),
        "aws:SecureTransport",
    ),
    (
        rules.validate_s3_hardening,
        args("aws:s3/bucket:Bucket", {"bucket": "models"}),
        args("aws:s3/bucket:Bucket", {"bucket": "models", "acl": "public-read"}),
        "public ACL",
    ),
    (
        rules.validate_no_force_destroy,
        args("aws:s3/bucket:Bucket", {"forceDestroy": False}),
        args("aws:s3/bucket:Bucket", {"forceDestroy": True}),
        "forceDestroy",
    ),
    (
        rules.validate_no_force_destroy,
        args("aws:rds/instance:Instance", {"skipFinalSnapshot": False}),
        args("aws:rds/instance:Instance", {"skipFinalSnapshot": True}),
        "skipFinalSnapshot",
    ),
    (
        rules.validate_stateful_protected,
        args("aws:rds/instance:Instance", {}, protect=True),
        args("aws:rds/instance:Instance", {}, protect=False),
        "protect=True",
    ),
    (
        rules.validate_eks_cluster,
        args("aws:eks/cluster:Cluster", EKS_OK),
        args(
            "aws:eks/cluster:Cluster",
            {
                **EKS_OK,
                "vpcConfig": {"endpointPrivateAccess": False, "endpointPublicAccess": False},
            },
        ),
        "endpointPrivateAccess",
    ),
    (
        rules.validate_eks_cluster,
        args(
            "aws:eks/cluster:Cluster",
            {
                **EKS_OK,
                "vpcConfig": {
                    "endpointPrivateAccess": True,
                    "endpointPublicAccess": True,
                    "publicAccessCidrs": ["203.0.113.0/24"],
                },
            },
        ),
        # public endpoint with the API's default CIDR (0.0.0.0/0)
        args(
            "aws:eks/cluster:Cluster",
            {**EKS_OK, "vpcConfig": {"endpointPrivateAccess": True}},
        ),
        "0.0.0.0/0",
    ),
    (
        rules.validate_eks_cluster,
        args("aws:eks/cluster:Cluster", EKS_OK),
        args("aws:eks/cluster:Cluster", {"vpcConfig": EKS_OK["vpcConfig"]}),
        "encrypt secrets",
    ),
    (
        rules.validate_imdsv2,
        args(
            "aws:ec2/launchTemplate:LaunchTemplate", {"metadataOptions": {"httpTokens": "required"}}
        ),
        args(
            "aws:ec2/launchTemplate:LaunchTemplate", {"metadataOptions": {"httpTokens": "optional"}}
        ),
        "httpTokens",
    ),
    (
        rules.validate_imdsv2,
        args("aws:eks/nodeGroup:NodeGroup", {"launchTemplate": {"id": "lt-1", "version": "1"}}),
        args("aws:eks/nodeGroup:NodeGroup", {"instanceTypes": ["t3.large"]}),
        "launch template",
    ),
    (
        rules.validate_imdsv2,
        args("kubernetes:karpenter.k8s.aws/v1:EC2NodeClass", {"spec": {"amiFamily": "AL2023"}}),
        args(
            "kubernetes:karpenter.k8s.aws/v1:EC2NodeClass",
            {"spec": {"metadataOptions": {"httpTokens": "optional"}}},
        ),
        "httpTokens",
    ),
    (
        rules.validate_gpu_pool_limits,
        args("kubernetes:karpenter.sh/v1:NodePool", GPU_POOL),
        args(
            "kubernetes:karpenter.sh/v1:NodePool",
            {"spec": {**GPU_POOL["spec"], "limits": {"cpu": "100"}}},
        ),
        "nvidia.com/gpu",
    ),
    (
        rules.validate_gpu_pool_limits,
        args(
            "aws:eks/nodeGroup:NodeGroup",
            {"instanceTypes": ["g5.xlarge"], "scalingConfig": {"maxSize": 2}},
        ),
        args("aws:eks/nodeGroup:NodeGroup", {"instanceTypes": ["g5.xlarge"], "scalingConfig": {}}),
        "maxSize",
    ),
    (
        rules.validate_containers,
        args("kubernetes:apps/v1:Deployment", deployment()),
        args("kubernetes:apps/v1:Deployment", deployment(securityContext={"runAsUser": 0})),
        "non-root",
    ),
    (
        rules.validate_containers,
        args("kubernetes:apps/v1:Deployment", deployment()),
        args("kubernetes:apps/v1:Deployment", deployment(resources={"requests": {"cpu": "1"}})),
        "requests.memory, limits.memory",
    ),
    (
        rules.validate_image_tags,
        args("kubernetes:apps/v1:Deployment", deployment(image="repo/app@sha256:" + "a" * 64)),
        args("kubernetes:apps/v1:Deployment", deployment(image="repo/app:latest")),
        ":latest",
    ),
    (
        rules.validate_image_tags,
        args("kubernetes:apps/v1:Deployment", deployment(image="localhost:5000/app:0.1")),
        args("kubernetes:apps/v1:Deployment", deployment(image="localhost:5000/app")),
        "no tag",
    ),
    (
        rules.validate_iam_no_wildcard,
        args(
            "aws:iam/policy:Policy",
            {"policy": policy_doc({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"})},
        ),
        args(
            "aws:iam/policy:Policy",
            {"policy": policy_doc({"Effect": "Allow", "Action": ["*"], "Resource": "*"})},
        ),
        "Action '*'",
    ),
    (
        rules.validate_iam_no_wildcard,
        args(
            "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
            {"policyArn": "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy"},
        ),
        args(
            "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
            {"policyArn": "arn:aws:iam::aws:policy/AdministratorAccess"},
        ),
        "AdministratorAccess",
    ),
    (
        rules.validate_no_open_ingress,
        args(
            "aws:ec2/securityGroup:SecurityGroup",
            {
                "description": "public ALB",
                "ingress": [
                    {"fromPort": 443, "toPort": 443, "protocol": "tcp", "cidrBlocks": ["0.0.0.0/0"]}
                ],
            },
            name="serving-alb-sg",
        ),
        args(
            "aws:ec2/securityGroup:SecurityGroup",
            {
                "description": "nodes",
                "ingress": [
                    {"fromPort": 22, "toPort": 22, "protocol": "tcp", "cidrBlocks": ["0.0.0.0/0"]}
                ],
            },
            name="nodes-sg",
        ),
        "0.0.0.0/0",
    ),
    (
        rules.validate_no_nat_instance,
        args("aws:ec2/networkInterface:NetworkInterface", {"subnetId": "subnet-1"}),
        args(
            "aws:ec2/networkInterface:NetworkInterface",
            {"subnetId": "subnet-1", "sourceDestCheck": False},
            name="network-nat-eni",
        ),
        "gateway-per-az",
    ),
    (
        rules.validate_no_nat_instance,
        args("aws:ec2/instance:Instance", {"sourceDestCheck": True}),
        args("aws:ec2/instance:Instance", {"sourceDestCheck": False}, name="router"),
        "source/destination check",
    ),
    (
        rules.validate_no_open_ingress,
        args(
            "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
            {"cidrIpv4": "10.0.0.0/16", "fromPort": 22, "toPort": 22, "ipProtocol": "tcp"},
        ),
        # 443 is only allowed on a load balancer's group, and ::/0 counts as open too
        args(
            "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
            {"cidrIpv6": "::/0", "fromPort": 443, "toPort": 443, "ipProtocol": "tcp"},
            name="db-https",
        ),
        "::/0",
    ),
    (
        rules.validate_no_placement_group_on_reservations,
        args(
            "kubernetes:karpenter.k8s.aws/v1:EC2NodeClass",
            {"spec": {"capacityReservationSelectorTerms": [{"id": "cr-0123456789abcdef0"}]}},
        ),
        args(
            "kubernetes:karpenter.k8s.aws/v1:EC2NodeClass",
            {
                "spec": {
                    "capacityReservationSelectorTerms": [{"tags": {"pool": "h100"}}],
                    "placementGroupSelector": {"name": "spine"},
                }
            },
            name="gpu-h100",
        ),
        "forces a placement group",
    ),
]


@pytest.mark.parametrize(
    ("validate", "good", "bad", "expected"),
    CASES,
    ids=[f"{c[0].__name__}-{i}" for i, c in enumerate(CASES)],
)
def test_rule_passes_good_and_flags_bad(validate: Any, good: Any, bad: Any, expected: str) -> None:
    assert violations(validate, good) == []
    found = violations(validate, bad)
    assert found, "the failing case raised no violation"
    assert any(expected in msg for msg in found), found


def test_every_resource_rule_has_a_case() -> None:
    tested = {c[0] for c in CASES}
    resource_rules = {r.validate for r in rules.RULES if not r.stack}
    assert resource_rules <= tested, resource_rules - tested


def test_rules_ignore_unrelated_types() -> None:
    unrelated = args("random:index/randomPassword:RandomPassword", {"length": 16})
    for rule in rules.RULES:
        if not rule.stack:
            assert violations(rule.validate, unrelated) == [], rule.name


def test_required_tags_skip_untaggable_aws_types() -> None:
    assert (
        violations(
            rules.validate_required_tags,
            args("aws:iam/rolePolicyAttachment:RolePolicyAttachment", {"policyArn": "arn"}),
        )
        == []
    )
    assert "aws:eks/cluster:Cluster" in rules.taggable_types()


def test_v2_bucket_tokens_are_checked_like_v7_ones() -> None:
    bad = args(
        "aws:s3/bucketVersioningV2:BucketVersioningV2",
        {"versioningConfiguration": {"status": "Disabled"}},
    )
    assert violations(rules.validate_s3_hardening, bad)


def test_container_rules_cover_init_containers_and_cronjobs() -> None:
    cron = {
        "spec": {
            "jobTemplate": {
                "spec": {
                    "template": {
                        "spec": {
                            "initContainers": [{**SECURE_CONTAINER, "image": "busybox"}],
                            "containers": [SECURE_CONTAINER],
                        }
                    }
                }
            }
        }
    }
    found = violations(rules.validate_image_tags, args("kubernetes:batch/v1:CronJob", cron))
    assert found == ["container 'app' in 'res' image 'busybox' has no tag"]


def test_cpu_pools_that_exclude_gpus_need_no_gpu_limit() -> None:
    general = {
        "spec": {
            "template": {
                "spec": {
                    "requirements": [
                        {"key": "karpenter.k8s.aws/instance-gpu-count", "operator": "DoesNotExist"},
                        {
                            "key": "karpenter.k8s.aws/instance-category",
                            "operator": "In",
                            "values": ["m"],
                        },
                    ]
                }
            },
            "limits": {"cpu": "64"},
        }
    }
    a = args("kubernetes:karpenter.sh/v1:NodePool", general)
    assert violations(rules.validate_gpu_pool_limits, a) == []
    general["spec"]["template"]["spec"]["requirements"][0] = {
        "key": "karpenter.k8s.aws/instance-gpu-count",
        "operator": "Gt",
        "values": ["0"],
    }
    assert violations(rules.validate_gpu_pool_limits, a)


def test_pod_level_non_root_counts() -> None:
    c = {k: v for k, v in SECURE_CONTAINER.items() if k != "securityContext"}
    pod = {"spec": {"securityContext": {"runAsNonRoot": True}, "containers": [c]}}
    assert violations(rules.validate_containers, args("kubernetes:core/v1:Pod", pod)) == []


# -------------------------------------------------------------------------------------------
# the stack rule: every bucket has its companions


def _pres(
    rtype: str, name: str, deps: list[PolicyResource] | None = None, **props: Any
) -> PolicyResource:
    opts = PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])
    return PolicyResource(
        rtype, props, f"urn:pulumi:dev::p::{rtype}::{name}", name, opts, None, None, deps or [], {}
    )


def _stack_violations(resources: list[PolicyResource]) -> list[tuple[str, str | None]]:
    found: list[tuple[str, str | None]] = []
    rules.validate_s3_companions(
        StackValidationArgs(resources), lambda m, urn=None: found.append((m, urn))
    )
    return found


def test_bucket_with_all_companions_passes_and_missing_ones_are_named() -> None:
    bucket = _pres("aws:s3/bucket:Bucket", "models")
    companions = [
        _pres(t, f"models-{i}", [bucket], policy=policy_doc(TLS_ONLY))
        for i, t in enumerate(rules._S3_COMPANIONS)
    ]
    assert _stack_violations([bucket, *companions]) == []
    found = _stack_violations([bucket, *companions[:2]])
    assert len(found) == 1
    message, urn = found[0]
    assert urn == bucket.urn
    assert "public access block" in message and "TLS-only" in message


# -------------------------------------------------------------------------------------------
# the pack per environment


def test_dev_is_advisory_and_prod_is_mandatory_with_prod_only_rules() -> None:
    dev = rules.build_policies("dev")
    prod = rules.build_policies("prod")
    assert {p.enforcement_level for p in dev} == {EnforcementLevel.ADVISORY}
    assert {p.enforcement_level for p in prod} == {EnforcementLevel.MANDATORY}
    dev_names = {p.name for p in dev}
    prod_names = {p.name for p in prod}
    assert prod_names - dev_names == {
        "no-force-destroy-in-prod",
        "stateful-protected-in-prod",
        "no-nat-instance-in-prod",
    }
    assert all(isinstance(p, (ResourceValidationPolicy, StackValidationPolicy)) for p in prod)


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"MLPLATFORM_ENVIRONMENT": "dev"}, "dev"),
        ({"MLPLATFORM_ENVIRONMENT": "prod", "PULUMI_STACK": "dev"}, "prod"),
        ({"PULUMI_STACK": "acme/ml-platform/dev"}, "dev"),
        ({}, "prod"),
    ],
)
def test_environment_resolution_fails_closed(environ: dict[str, str], expected: str) -> None:
    assert rules.resolve_environment(environ)[0] == expected


def test_unknown_environment_is_mandatory() -> None:
    assert rules.enforcement_for("staging") is EnforcementLevel.MANDATORY
    assert rules.enforcement_for("local") is EnforcementLevel.ADVISORY


def test_rules_see_containers_through_the_engines_proxies() -> None:
    # Under `pulumi preview --policy-pack`, props arrive wrapped in pulumi_policy's read-only
    # proxies: arrays are Sequences but not lists. The rules must find containers there too.
    from pulumi_policy.proxy import unknown_checking_proxy

    props = unknown_checking_proxy(deployment(image="repo/app:latest"))
    a = args("kubernetes:apps/v1:Deployment", props)
    assert any(":latest" in m for m in violations(rules.validate_image_tags, a))
    unsafe = unknown_checking_proxy(
        {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "r/a:1"}]}}}}
    )
    assert violations(rules.validate_containers, args("kubernetes:apps/v1:Deployment", unsafe))


# -------------------------------------------------------------------------------------------
# reserved capacity: queued in Kueue, never pinned to a placement group


def _nodepool(name: str, capacity: list[str]) -> PolicyResource:
    spec = {
        "template": {
            "metadata": {"labels": {"mlplatform.io/pool": name}},
            "spec": {
                "requirements": [
                    {"key": "karpenter.sh/capacity-type", "operator": "In", "values": capacity}
                ]
            },
        }
    }
    return _pres("kubernetes:karpenter.sh/v1:NodePool", name, metadata={"name": name}, spec=spec)


def _flavor(name: str, pool: str) -> PolicyResource:
    return _pres(
        "kubernetes:kueue.x-k8s.io/v1beta2:ResourceFlavor",
        name,
        metadata={"name": name},
        spec={"nodeLabels": {"mlplatform.io/pool": pool}},
    )


def _queue(name: str, flavor: str, gpus: str) -> PolicyResource:
    resources = [
        {"name": "cpu", "nominalQuota": "8"},
        {"name": "nvidia.com/gpu", "nominalQuota": gpus},
    ]
    return _pres(
        "kubernetes:kueue.x-k8s.io/v1beta2:ClusterQueue",
        name,
        metadata={"name": name},
        spec={"resourceGroups": [{"flavors": [{"name": flavor, "resources": resources}]}]},
    )


def _queued_violations(resources: list[PolicyResource]) -> list[str]:
    found: list[str] = []
    rules.validate_reserved_pools_queued(
        StackValidationArgs(resources), lambda m, urn=None: found.append(m)
    )
    return found


def test_reserved_only_pool_needs_gpu_quota_in_kueue() -> None:
    pool = _nodepool("a100", ["reserved"])
    (found,) = _queued_violations([pool])
    assert "'a100' launches reserved capacity only" in found
    # a flavor with zero GPU quota does not count
    assert _queued_violations([pool, _flavor("a100", "a100"), _queue("team", "a100", "0")])
    assert _queued_violations([pool, _flavor("a100", "a100"), _queue("team", "a100", "8")]) == []
    # a block queue's flavor (named after the block, labelled with the pool) counts too
    block = _flavor("a100-cr-0aaaaaaaaaaaaaaaa", "a100")
    assert _queued_violations([pool, block, _queue("blk", "a100-cr-0aaaaaaaaaaaaaaaa", "16")]) == []
    # reserved-first pools fall back to on-demand: no queue needed
    assert _queued_violations([_nodepool("l4", ["reserved", "on-demand"])]) == []
