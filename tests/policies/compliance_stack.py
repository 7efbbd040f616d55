"""A small stack, in plan shape, that passes every compliance profile; tests break one thing."""

from __future__ import annotations

import copy
import json
from typing import Any

from tests.policies.helpers import TAGS

STACK = "urn:pulumi:prod::ml-platform::"
KEY = "arn:aws:kms:eu-west-1:123456789012:key/0a1b2c3d-4e5f-6789-abcd-ef0123456789"
TRAIL = "arn:aws:cloudtrail:eu-west-1:123456789012:trail/organization-trail"
PROVIDER = f"{STACK}pulumi:providers:aws::aws"


def urn(rtype: str, name: str) -> str:
    return f"{STACK}{rtype}::{name}"


def res(rtype: str, name: str, inputs: dict[str, Any], **refs: str | list[str]) -> dict[str, Any]:
    """A recorded resource; ``refs`` maps an input to the resource name(s) it is computed from."""
    prop_deps = {
        prop: [_by_name(r) for r in (names if isinstance(names, list) else [names])]
        for prop, names in refs.items()
    }
    return {
        "urn": urn(rtype, name),
        "type": rtype,
        "custom": True,
        "parent": "",
        "inputs": inputs,
        "protect": True,
        "retainOnDelete": True,
        "dependencies": sorted({u for urns in prop_deps.values() for u in urns}),
        "propertyDependencies": prop_deps,
        "provider": f"{PROVIDER}::provider-id",
    }


_TYPES = {
    "key": "aws:kms/key:Key",
    "models": "aws:s3/bucket:Bucket",
    "models-logs": "aws:s3/bucket:Bucket",
    "vpc": "aws:ec2/vpc:Vpc",
}


def _by_name(name: str) -> str:
    return urn(_TYPES[name], name)


def rds(**over: Any) -> dict[str, Any]:
    inputs = {
        "storageEncrypted": True,
        "kmsKeyId": KEY,
        "backupRetentionPeriod": 30,
        "deleteAutomatedBackups": False,
        "deletionProtection": True,
        "skipFinalSnapshot": False,
        "publiclyAccessible": False,
        "enabledCloudwatchLogsExports": ["postgresql"],
        "tags": TAGS,
    }
    return res("aws:rds/instance:Instance", "db", {**inputs, **over})


def baseline() -> list[dict[str, Any]]:
    """Passes gdpr and hipaa (provider in eu-west-1)."""
    model_tags = {**TAGS, "mlplatform.io/component": "model-store"}
    ebs = {"volumeType": "gp3", "encrypted": "true", "kmsKeyId": KEY}
    return [
        {
            "urn": PROVIDER,
            "type": "pulumi:providers:aws",
            "custom": True,
            "parent": "",
            "inputs": {"region": "eu-west-1", "defaultTags": json.dumps({"tags": TAGS})},
            "protect": False,
            "retainOnDelete": False,
            "dependencies": [],
            "provider": "",
        },
        res("aws:kms/key:Key", "key", {"enableKeyRotation": True}),
        # model bucket and its companions
        res(
            "aws:s3/bucket:Bucket", "models", {"objectLockEnabled": True, "tags": dict(model_tags)}
        ),
        res(
            "aws:s3/bucketVersioning:BucketVersioning",
            "models-versioning",
            {"versioningConfiguration": {"status": "Enabled"}},
            bucket="models",
        ),
        res(
            "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
            "models-sse",
            {
                "rules": [
                    {
                        "applyServerSideEncryptionByDefault": {
                            "sseAlgorithm": "aws:kms",
                            "kmsMasterKeyId": KEY,
                        }
                    }
                ]
            },
            bucket="models",
        ),
        res(
            "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
            "models-lifecycle",
            {
                "rules": [
                    {
                        "id": "noncurrent-versions",
                        "status": "Enabled",
                        "filter": {},
                        "noncurrentVersionExpiration": {"noncurrentDays": 365},
                    },
                    {
                        "id": "inference-logs-churn",
                        "status": "Enabled",
                        "filter": {"prefix": "projects/churn/inference-logs/"},
                        "expiration": {"days": 14},
                        "noncurrentVersionExpiration": {"noncurrentDays": 1},
                    },
                ]
            },
            bucket="models",
        ),
        res(
            "aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration",
            "models-object-lock",
            {"objectLockEnabled": "Enabled", "rule": {"defaultRetention": {"days": 20}}},
            bucket="models",
        ),
        res(
            "aws:s3/bucketLogging:BucketLogging",
            "models-access-logs",
            {"targetPrefix": "access-logs/"},
            bucket="models",
            targetBucket="models-logs",
        ),
        # the access-log bucket: SSE-S3 is all S3 server access logging can deliver to
        res("aws:s3/bucket:Bucket", "models-logs", {"tags": dict(model_tags)}),
        res(
            "aws:s3/bucketVersioning:BucketVersioning",
            "models-logs-versioning",
            {"versioningConfiguration": {"status": "Enabled"}},
            bucket="models-logs",
        ),
        res(
            "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
            "models-logs-sse",
            {"rules": [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}}]},
            bucket="models-logs",
        ),
        res(
            "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
            "models-logs-lifecycle",
            {"rules": [{"id": "expire", "status": "Enabled", "expiration": {"days": 2192}}]},
            bucket="models-logs",
        ),
        res("aws:iam/role:Role", "churn-trainer", {"tags": {"mlplatform.io/project": "churn"}}),
        # network, cluster, nodes
        res("aws:ec2/vpc:Vpc", "vpc", {"cidrBlock": "10.0.0.0/16"}),
        res("aws:ec2/flowLog:FlowLog", "flow-log", {"trafficType": "ALL"}, vpcId="vpc"),
        res("aws:ec2/subnet:Subnet", "public-0", {"mapPublicIpOnLaunch": False}),
        res("aws:cloudwatch/logGroup:LogGroup", "logs", {"retentionInDays": 2192, "kmsKeyId": KEY}),
        res(
            "aws:eks/cluster:Cluster",
            "eks",
            {
                "vpcConfig": {"endpointPrivateAccess": True, "endpointPublicAccess": False},
                "encryptionConfig": {"resources": ["secrets"], "provider": {"keyArn": KEY}},
                "enabledClusterLogTypes": ["api", "audit", "authenticator"],
            },
        ),
        res(
            "aws:ec2/launchTemplate:LaunchTemplate",
            "system-lt",
            {"blockDeviceMappings": [{"deviceName": "/dev/xvda", "ebs": ebs}]},
        ),
        res(
            "kubernetes:karpenter.k8s.aws/v1:EC2NodeClass",
            "default-nodeclass",
            {
                "spec": {
                    "blockDeviceMappings": [
                        {"ebs": {"volumeType": "gp3", "encrypted": True, "kmsKeyID": KEY}}
                    ]
                }
            },
        ),
        res(
            "kubernetes:storage.k8s.io/v1:StorageClass",
            "gp3",
            {
                "provisioner": "ebs.csi.aws.com",
                "parameters": {"encrypted": "true", "kmsKeyId": KEY},
            },
        ),
        rds(),
        res("aws:sns/topic:Topic", "alarms", {"kmsMasterKeyId": KEY}),
        res("aws:sqs/queue:Queue", "interruptions", {"kmsMasterKeyId": KEY}),
        res("aws:secretsmanager/secret:Secret", "db-secret", {"kmsKeyId": KEY}),
        res(
            "aws:ecr/repository:Repository",
            "serving",
            {"encryptionConfigurations": [{"encryptionType": "KMS", "kmsKey": KEY}]},
        ),
        res(
            "kubernetes:networking.k8s.io/v1:Ingress",
            "scorer",
            {"metadata": {"annotations": {"alb.ingress.kubernetes.io/scheme": "internal"}}},
        ),
        res(
            "kubernetes:core/v1:Service",
            "scorer-svc",
            {"metadata": {}, "spec": {"type": "ClusterIP"}},
        ),
    ]


def plan(
    resources: list[dict[str, Any]],
    profiles: list[str],
    *,
    allowed_regions: list[str] | None = None,
) -> dict[str, Any]:
    settings = {"profiles": profiles, "allowedRegions": allowed_regions, "auditTrailArn": TRAIL}
    return {
        "stack": "prod",
        "environment": "prod",
        "resources": copy.deepcopy(resources),
        "outputs": {"compliance": settings},
    }


def named(resources: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(r for r in resources if r["urn"].endswith(f"::{name}"))
