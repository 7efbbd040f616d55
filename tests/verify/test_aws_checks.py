"""AWS checks against moto[server] on 127.0.0.1: a stack-shaped account passes, each broken setting
is named. Where moto does not answer as AWS does, the check is tested with botocore's Stubber,
which validates the canned response against the service model."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from components.training_cluster import CONTROL_PLANE_LOGS
from mlplatform import verify
from mlplatform.cli import main as cli_main


def by_name(results: list[verify.CheckResult]) -> dict[str, verify.CheckResult]:
    return {r.name: r for r in results}


def failing(results: list[verify.CheckResult]) -> dict[str, str]:
    return {r.name: r.detail for r in results if not r.ok}


EXPECTED_CHECKS = {
    "aws.s3.encryption",
    "aws.s3.versioning",
    "aws.s3.public-access-block",
    "aws.s3.tls-only-policy",
    "aws.eks.endpoint-access",
    "aws.eks.control-plane-logs",
    "aws.ecr.serving",
    "aws.ecr.training",
    "aws.budget",
}


def test_stack_shaped_account_passes(deployed: dict) -> None:
    results = verify.aws_checks(deployed)  # default boto3 session, pointed at moto by env
    assert failing(results) == {}
    assert set(by_name(results)) == EXPECTED_CHECKS
    assert "aws:kms" in by_name(results)["aws.s3.encryption"].detail
    assert "5000" in by_name(results)["aws.budget"].detail


def _s3(s: Any) -> Any:
    return s.client("s3", region_name="us-west-2")


def _eks(s: Any) -> Any:
    return s.client("eks", region_name="us-west-2")


def _ecr(s: Any) -> Any:
    return s.client("ecr", region_name="us-west-2")


def _policy_without_tls_deny(s: Any, out: dict) -> None:
    policy = json.loads(_s3(s).get_bucket_policy(Bucket=out["modelBucket"])["Policy"])
    policy["Statement"] = [
        st for st in policy["Statement"] if "aws:SecureTransport" not in json.dumps(st)
    ]
    _s3(s).put_bucket_policy(Bucket=out["modelBucket"], Policy=json.dumps(policy))


def _aes256(s: Any, out: dict) -> None:
    _s3(s).put_bucket_encryption(
        Bucket=out["modelBucket"],
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
        },
    )


def _other_key(s: Any, out: dict) -> None:
    other = s.client("kms", region_name="us-west-2").create_key()["KeyMetadata"]["Arn"]
    _s3(s).put_bucket_encryption(
        Bucket=out["modelBucket"],
        ServerSideEncryptionConfiguration={
            "Rules": [
                {
                    "ApplyServerSideEncryptionByDefault": {
                        "SSEAlgorithm": "aws:kms",
                        "KMSMasterKeyID": other,
                    }
                }
            ]
        },
    )


def _one_public_flag_off(s: Any, out: dict) -> None:
    _s3(s).put_public_access_block(
        Bucket=out["modelBucket"],
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": False,
        },
    )


BREAKS: list[tuple[str, Callable[[Any, dict], None], str, str]] = [
    (
        "versioning suspended",
        lambda s, o: _s3(s).put_bucket_versioning(
            Bucket=o["modelBucket"], VersioningConfiguration={"Status": "Suspended"}
        ),
        "aws.s3.versioning",
        "Suspended",
    ),
    ("SSE-S3 instead of KMS", _aes256, "aws.s3.encryption", "AES256"),
    ("another KMS key", _other_key, "aws.s3.encryption", "not the stack's key"),
    (
        "one public access flag off",
        _one_public_flag_off,
        "aws.s3.public-access-block",
        "RestrictPublicBuckets",
    ),
    (
        "public access block removed",
        lambda s, o: _s3(s).delete_public_access_block(Bucket=o["modelBucket"]),
        "aws.s3.public-access-block",
        "no public access block",
    ),
    (
        "policy allows plain HTTP",
        _policy_without_tls_deny,
        "aws.s3.tls-only-policy",
        "SecureTransport",
    ),
    (
        "bucket policy deleted",
        lambda s, o: _s3(s).delete_bucket_policy(Bucket=o["modelBucket"]),
        "aws.s3.tls-only-policy",
        "no bucket policy",
    ),
    (
        "mutable image tags",
        lambda s, o: _ecr(s).put_image_tag_mutability(
            repositoryName="ml-platform/serving", imageTagMutability="MUTABLE"
        ),
        "aws.ecr.serving",
        "imageTagMutability is MUTABLE",
    ),
    (
        "scan on push off",
        lambda s, o: _ecr(s).put_image_scanning_configuration(
            repositoryName="ml-platform/training",
            imageScanningConfiguration={"scanOnPush": False},
        ),
        "aws.ecr.training",
        "scanOnPush is false",
    ),
    (
        "audit log disabled",
        lambda s, o: _eks(s).update_cluster_config(
            name=o["clusterName"],
            logging={
                "clusterLogging": [
                    {"types": ["api", "authenticator"], "enabled": True},
                    {"types": ["audit"], "enabled": False},
                ]
            },
        ),
        "aws.eks.control-plane-logs",
        "audit",
    ),
    (
        "public endpoint open to the internet",
        lambda s, o: _eks(s).update_cluster_config(
            name=o["clusterName"],
            resourcesVpcConfig={
                "endpointPrivateAccess": True,
                "endpointPublicAccess": True,
                "publicAccessCidrs": ["0.0.0.0/0"],
            },
        ),
        "aws.eks.endpoint-access",
        "open to the internet",
    ),
    (
        "private endpoint off",
        lambda s, o: _eks(s).update_cluster_config(
            name=o["clusterName"],
            resourcesVpcConfig={
                "endpointPrivateAccess": False,
                "endpointPublicAccess": True,
                "publicAccessCidrs": ["203.0.113.0/24"],
            },
        ),
        "aws.eks.endpoint-access",
        "endpointPrivateAccess is false",
    ),
    (
        "budget deleted",
        lambda s, o: s.client("budgets", region_name="us-east-1").delete_budget(
            AccountId="123456789012", BudgetName=o["budgetName"]
        ),
        "aws.budget",
        "not found",
    ),
]


@pytest.mark.parametrize(
    ("breaks", "check", "detail"),
    [pytest.param(fn, check, detail, id=case) for case, fn, check, detail in BREAKS],
)
def test_broken_setting_is_named(
    session: boto3.session.Session,
    deployed: dict,
    breaks: Callable[[Any, dict], None],
    check: str,
    detail: str,
) -> None:
    breaks(session, deployed)
    results = verify.aws_checks(deployed)
    assert list(failing(results)) == [check]  # only the broken setting, every other check ran
    assert detail in failing(results)[check]
    assert set(by_name(results)) == EXPECTED_CHECKS


def test_public_endpoint_limited_to_cidrs_passes(session: Any, deployed: dict) -> None:
    _eks(session).update_cluster_config(
        name=deployed["clusterName"],
        resourcesVpcConfig={
            "endpointPrivateAccess": True,
            "endpointPublicAccess": True,
            "publicAccessCidrs": ["203.0.113.0/24"],
        },
    )
    result = by_name(verify.aws_checks(deployed))["aws.eks.endpoint-access"]
    assert result.ok, result.detail
    assert "203.0.113.0/24" in result.detail


def test_missing_resources_fail_without_hiding_the_rest(deployed: dict) -> None:
    outputs = {**deployed, "modelBucket": "no-such-bucket-x", "clusterName": "no-such-cluster"}
    results = by_name(verify.aws_checks(outputs))
    for name in ("aws.s3.encryption", "aws.s3.versioning", "aws.s3.public-access-block"):
        assert not results[name].ok
        assert "NoSuchBucket" in results[name].detail
    assert not results["aws.eks"].ok
    assert "no-such-cluster" in results["aws.eks"].detail
    assert all(results[n].ok for n in ("aws.ecr.training", "aws.ecr.serving", "aws.budget"))


def test_missing_outputs_are_named(deployed: dict) -> None:
    outputs = {
        k: v
        for k, v in deployed.items()
        if k not in ("modelBucket", "budgetName", "ecrRepositories")
    }
    fails = failing(verify.aws_checks(outputs))
    assert fails["aws.s3"] == "stack output `modelBucket` is missing"
    assert "`budgetName`" in fails["aws.budget"]
    assert "`ecrRepositories`" in fails["aws.ecr"]
    assert "aws.eks.endpoint-access" not in fails


def test_cli_json_names_the_failure(
    session: Any, deployed: dict, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps(deployed))
    argv = ["verify", "--stack", "prod", "--outputs", str(outputs), "--skip-kubernetes"]
    assert cli_main([*argv, "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True
    assert {c["name"] for c in report["checks"]} == EXPECTED_CHECKS | {"k8s"}

    _s3(session).put_bucket_versioning(
        Bucket=deployed["modelBucket"], VersioningConfiguration={"Status": "Suspended"}
    )
    assert cli_main(argv) == 1
    table = capsys.readouterr().out
    row = next(line for line in table.splitlines() if line.startswith("aws.s3.versioning"))
    assert "FAIL" in row
    assert "Suspended" in row
    assert "1 of 10 checks failed" in table


# --- Where moto differs from AWS -------------------------------------------------------------
# moto echoes resourcesVpcConfig as given and replaces (not merges) logging on update; EKS fills
# publicAccessCidrs ["0.0.0.0/0"] for a public endpoint and reports enabled and disabled log
# types as two entries. These responses are in AWS's shape, validated by the Stubber.


def _describe_cluster(vpc: dict, logging: list[dict]) -> dict:
    return {
        "cluster": {
            "name": "ml-platform-dev",
            "arn": "arn:aws:eks:us-west-2:123456789012:cluster/ml-platform-dev",
            "version": "1.31",
            "endpoint": "https://0123456789ABCDEF.gr7.us-west-2.eks.amazonaws.com",
            "roleArn": "arn:aws:iam::123456789012:role/ml-platform-dev-cluster",
            "resourcesVpcConfig": {
                "subnetIds": ["subnet-0a1b2c3d"],
                "securityGroupIds": [],
                "clusterSecurityGroupId": "sg-0123456789abcdef0",
                "vpcId": "vpc-0123456789abcdef0",
                **vpc,
            },
            "logging": {"clusterLogging": logging},
            "status": "ACTIVE",
            "platformVersion": "eks.12",
        }
    }


ALL_LOGS_OFF = ["controllerManager", "scheduler"]


@pytest.mark.parametrize(
    ("vpc", "logging", "failures"),
    [
        pytest.param(
            {"endpointPublicAccess": False, "endpointPrivateAccess": True, "publicAccessCidrs": []},
            [
                {"types": list(CONTROL_PLANE_LOGS), "enabled": True},
                {"types": ALL_LOGS_OFF, "enabled": False},
            ],
            {},
            id="as-deployed",
        ),
        pytest.param(
            # A public endpoint created without CIDRs: AWS reports 0.0.0.0/0.
            {
                "endpointPublicAccess": True,
                "endpointPrivateAccess": True,
                "publicAccessCidrs": ["0.0.0.0/0"],
            },
            [
                {"types": ["api", "audit"], "enabled": True},
                {"types": ["authenticator", *ALL_LOGS_OFF], "enabled": False},
            ],
            {
                "aws.eks.endpoint-access": "open to the internet",
                "aws.eks.control-plane-logs": "authenticator",
            },
            id="aws-defaults",
        ),
    ],
)
def test_eks_checks_on_aws_shaped_responses(vpc: dict, logging: list, failures: dict) -> None:
    eks = boto3.client(
        "eks",
        region_name="us-west-2",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        endpoint_url="http://127.0.0.1:9",  # never reached: the Stubber answers
    )
    with Stubber(eks) as stub:
        stub.add_response(
            "describe_cluster", _describe_cluster(vpc, logging), {"name": "ml-platform-dev"}
        )
        cluster = eks.describe_cluster(name="ml-platform-dev")["cluster"]
    results = [verify.check_eks_endpoint(cluster), verify.check_eks_logging(cluster)]
    got = failing(results)
    assert set(got) == set(failures)
    for name, text in failures.items():
        assert text in got[name]


def test_control_plane_logs_match_the_component() -> None:
    assert tuple(CONTROL_PLANE_LOGS) == verify.CONTROL_PLANE_LOGS
