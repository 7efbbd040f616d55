"""Create in moto what the AWS stack creates, with the settings and documents the components use."""

from __future__ import annotations

import json
from typing import Any

from components.model_store import bucket_policy
from components.training_cluster import CONTROL_PLANE_LOGS

ACCOUNT = "123456789012"  # moto's default account


def deploy_like_stack(session: Any, *, region: str, environment: str) -> dict[str, Any]:
    bucket = f"ml-platform-{environment}-models"
    kms = session.client("kms", region_name=region)
    key_arn = kms.create_key(Description="model store")["KeyMetadata"]["Arn"]

    s3 = session.client("s3", region_name=region)
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
    bucket_arn = f"arn:aws:s3:::{bucket}"
    s3.put_bucket_encryption(
        Bucket=bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [
                {
                    "ApplyServerSideEncryptionByDefault": {
                        "SSEAlgorithm": "aws:kms",
                        "KMSMasterKeyID": key_arn,
                    },
                    "BucketKeyEnabled": True,
                }
            ]
        },
    )
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_public_access_block(
        Bucket=bucket,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )
    s3.put_bucket_policy(
        Bucket=bucket, Policy=json.dumps(bucket_policy(bucket_arn=bucket_arn, kms_key_arn=key_arn))
    )

    cluster = f"ml-platform-{environment}"
    eks = session.client("eks", region_name=region)
    eks.create_cluster(
        name=cluster,
        roleArn=f"arn:aws:iam::{ACCOUNT}:role/{cluster}-cluster",
        resourcesVpcConfig={
            "subnetIds": ["subnet-0a1b2c3d", "subnet-0e1f2a3b"],
            "endpointPrivateAccess": True,
            "endpointPublicAccess": False,
        },
        logging={"clusterLogging": [{"types": list(CONTROL_PLANE_LOGS), "enabled": True}]},
    )

    ecr = session.client("ecr", region_name=region)
    repos = {}
    for role in ("training", "serving"):
        repo = ecr.create_repository(
            repositoryName=f"ml-platform/{role}",
            imageTagMutability="IMMUTABLE",
            imageScanningConfiguration={"scanOnPush": True},
            encryptionConfiguration={"encryptionType": "KMS", "kmsKey": key_arn},
        )["repository"]
        repos[role] = repo["repositoryUri"]

    budget = f"ml-platform-{environment}-monthly"
    session.client("budgets", region_name="us-east-1").create_budget(
        AccountId=ACCOUNT,
        Budget={
            "BudgetName": budget,
            "BudgetLimit": {"Amount": "5000", "Unit": "USD"},
            "TimeUnit": "MONTHLY",
            "BudgetType": "COST",
        },
    )
    return {
        "environment": environment,
        "platform": "aws",
        "region": region,
        "clusterName": cluster,
        "modelBucket": bucket,
        "modelBucketArn": bucket_arn,
        "kmsKeyArn": key_arn,
        "ecrRepositories": repos,
        "budgetName": budget,
    }
