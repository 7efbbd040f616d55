"""ModelStore: every hardening property of the bucket, log bucket, key and repositories."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mlplatform.graph import Graph
from mlplatform.plan import run_program

from .helpers import (
    CLUSTER,
    CLUSTER_SG,
    STATEFUL,
    iam_findings,
    policy_docs,
    statements,
    store_program,
)

PROD: dict[str, Any] = {
    "protect": True,
    "bucketName": "acme-ml-prod-models",
    "objectLock": {"enabled": True, "retentionDays": 90},
    "mountpoint": {"enabled": True},
    "fsx": {"enabled": True},
}
DEV: dict[str, Any] = {"protect": False, "forceDestroy": True}


@pytest.fixture(scope="module")
def prod() -> Graph:
    return run_program(store_program(PROD), stack="prod")


@pytest.fixture(scope="module")
def dev() -> Graph:
    return run_program(store_program(DEV), stack="dev")


def model_bucket(g: Graph) -> Any:
    (b,) = [r for r in g.by_type("aws:s3/bucket:Bucket") if r.name == "models"]
    return b


def log_bucket(g: Graph) -> Any:
    return g.by_name("models-logs")


def bucket_id(g: Graph, name: str) -> str:
    (b,) = [r for r in g.by_type("aws:s3/bucket:Bucket") if r.name == name]
    return b.inputs["bucket"]


# --- model bucket --------------------------------------------------------------------------


def test_bucket_name_and_outputs(prod: Graph) -> None:
    assert model_bucket(prod).inputs["bucket"] == "acme-ml-prod-models"
    assert log_bucket(prod).inputs["bucket"] == "acme-ml-prod-models-logs"
    assert prod.outputs["modelBucket"] == "acme-ml-prod-models"
    assert prod.outputs["kmsKeyArn"].startswith("arn:aws:kms:")
    assert set(prod.outputs["ecrRepositories"]) == {"training", "serving"}


@pytest.mark.parametrize("name", ["models-versioning", "models-logs-versioning"])
def test_both_buckets_are_versioned(prod: Graph, name: str) -> None:
    r = prod.by_name(name)
    assert r.inputs["versioningConfiguration"]["status"] == "Enabled"


def test_kms_key_rotates(prod: Graph) -> None:
    key = prod.one("aws:kms/key:Key")
    assert key.inputs["enableKeyRotation"] is True
    assert key.inputs["deletionWindowInDays"] == 30


def test_model_bucket_uses_sse_kms_with_bucket_key(prod: Graph) -> None:
    rule = prod.by_name("models-sse").inputs["rules"][0]
    assert rule["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "aws:kms"
    assert (
        rule["applyServerSideEncryptionByDefault"]["kmsMasterKeyId"] == (prod.outputs["kmsKeyArn"])
    )
    assert rule["bucketKeyEnabled"] is True


def test_log_bucket_uses_sse_s3_because_log_delivery_requires_it(prod: Graph) -> None:
    rule = prod.by_name("models-logs-sse").inputs["rules"][0]
    assert rule["applyServerSideEncryptionByDefault"] == {"sseAlgorithm": "AES256"}


@pytest.mark.parametrize("prefix", ["models", "models-logs"])
def test_public_access_fully_blocked(prod: Graph, prefix: str) -> None:
    pab = prod.by_name(f"{prefix}-public-access-block").inputs
    for key in (
        "blockPublicAcls",
        "blockPublicPolicy",
        "ignorePublicAcls",
        "restrictPublicBuckets",
    ):
        assert pab[key] is True, key


@pytest.mark.parametrize("prefix", ["models", "models-logs"])
def test_bucket_owner_enforced(prod: Graph, prefix: str) -> None:
    own = prod.by_name(f"{prefix}-ownership").inputs
    assert own["rule"]["objectOwnership"] == "BucketOwnerEnforced"


@pytest.mark.parametrize("prefix", ["models", "models-logs"])
def test_bucket_policy_denies_plain_http_and_old_tls(prod: Graph, prefix: str) -> None:
    policy = json.loads(prod.by_name(f"{prefix}-policy").inputs["policy"])
    arn = f"arn:aws:s3:::{bucket_id(prod, prefix)}"
    s = statements(policy)
    tls = s["DenyInsecureTransport"]
    assert tls["Effect"] == "Deny" and tls["Principal"] == "*" and tls["Action"] == "s3:*"
    assert tls["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert sorted(tls["Resource"]) == [arn, f"{arn}/*"]


def test_model_bucket_refuses_other_encryption(prod: Graph) -> None:
    s = statements(json.loads(prod.by_name("models-policy").inputs["policy"]))
    cond = s["DenyOtherKmsKey"]["Condition"]["StringNotEqualsIfExists"]
    assert cond["s3:x-amz-server-side-encryption-aws-kms-key-id"] == prod.outputs["kmsKeyArn"]
    assert s["DenyOtherEncryption"]["Effect"] == "Deny"


def test_lifecycle_moves_then_expires_noncurrent_and_aborts_uploads(prod: Graph) -> None:
    rules = {r["id"]: r for r in prod.by_name("models-lifecycle").inputs["rules"]}
    nc = rules["noncurrent-versions"]
    assert nc["status"] == "Enabled"
    assert nc["noncurrentVersionTransitions"] == [
        {"noncurrentDays": 30, "storageClass": "STANDARD_IA"}
    ]
    assert nc["noncurrentVersionExpiration"] == {"noncurrentDays": 365}
    abort = rules["abort-incomplete-multipart"]["abortIncompleteMultipartUpload"]
    assert abort == {"daysAfterInitiation": 7}


def test_lifecycle_follows_args() -> None:
    data = {
        "protect": False,
        "lifecycle": {
            "noncurrentTransitionDays": 10,
            "noncurrentStorageClass": "GLACIER_IR",
            "noncurrentExpirationDays": 60,
            "abortIncompleteMultipartDays": 2,
        },
    }
    g = run_program(store_program(data))
    rules = {r["id"]: r for r in g.by_name("models-lifecycle").inputs["rules"]}
    assert rules["noncurrent-versions"]["noncurrentVersionTransitions"] == [
        {"noncurrentDays": 10, "storageClass": "GLACIER_IR"}
    ]
    assert rules["noncurrent-versions"]["noncurrentVersionExpiration"] == {"noncurrentDays": 60}
    assert rules["abort-incomplete-multipart"]["abortIncompleteMultipartUpload"] == {
        "daysAfterInitiation": 2
    }


def test_log_bucket_lifecycle_expires_logs(prod: Graph) -> None:
    (rule,) = prod.by_name("models-logs-lifecycle").inputs["rules"]
    assert rule["expiration"] == {"days": 365}
    assert rule["abortIncompleteMultipartUpload"] == {"daysAfterInitiation": 7}


def test_access_logs_go_to_the_log_bucket(prod: Graph) -> None:
    logging = prod.one("aws:s3/bucketLogging:BucketLogging").inputs
    assert logging["bucket"] == "acme-ml-prod-models"
    assert logging["targetBucket"] == "acme-ml-prod-models-logs"
    assert logging["targetPrefix"] == "access-logs/"


def test_log_bucket_accepts_only_this_buckets_logs(prod: Graph) -> None:
    s = statements(json.loads(prod.by_name("models-logs-policy").inputs["policy"]))
    allow = s["AllowS3ServerAccessLogs"]
    assert allow["Principal"] == {"Service": "logging.s3.amazonaws.com"}
    assert allow["Action"] == "s3:PutObject"
    assert allow["Resource"] == "arn:aws:s3:::acme-ml-prod-models-logs/access-logs/*"
    assert allow["Condition"]["ArnLike"] == {"aws:SourceArn": "arn:aws:s3:::acme-ml-prod-models"}
    assert allow["Condition"]["StringEquals"] == {"aws:SourceAccount": "123456789012"}


def test_logging_waits_for_log_bucket_policy(prod: Graph) -> None:
    logging = prod.one("aws:s3/bucketLogging:BucketLogging")
    assert prod.depends_on(logging, prod.by_name("models-logs-policy"))


# --- object lock ------------------------------------------------------------------------------


def test_object_lock_governance(prod: Graph) -> None:
    assert model_bucket(prod).inputs["objectLockEnabled"] is True
    lock = prod.one("aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration")
    assert lock.inputs["objectLockEnabled"] == "Enabled"
    assert lock.inputs["rule"]["defaultRetention"] == {"mode": "GOVERNANCE", "days": 90}
    assert not log_bucket(prod).inputs.get("objectLockEnabled")


def test_object_lock_is_off_by_default(dev: Graph) -> None:
    assert not dev.by_type("aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration")
    assert not model_bucket(dev).inputs.get("objectLockEnabled")


# --- ECR --------------------------------------------------------------------------------------


@pytest.mark.parametrize("repo", ["training", "serving"])
def test_ecr_repositories_are_immutable_scanned_and_kms_encrypted(prod: Graph, repo: str) -> None:
    r = prod.by_name(f"models-ecr-{repo}").inputs
    assert r["name"] == f"ml-platform/prod/{repo}"
    assert r["imageTagMutability"] == "IMMUTABLE"
    assert r["imageScanningConfiguration"] == {"scanOnPush": True}
    assert r["encryptionConfigurations"] == [
        {"encryptionType": "KMS", "kmsKey": prod.outputs["kmsKeyArn"]}
    ]
    assert r.get("forceDelete") is not True
    policy = json.loads(prod.by_name(f"models-ecr-{repo}-lifecycle").inputs["policy"])
    (untagged,) = [x for x in policy["rules"] if x["selection"]["tagStatus"] == "untagged"]
    assert untagged["selection"]["countType"] == "sinceImagePushed"
    assert untagged["selection"]["countNumber"] == 7
    assert untagged["action"] == {"type": "expire"}


# --- protection per environment ---------------------------------------------------------------


def test_prod_protects_and_retains_stateful_resources(prod: Graph) -> None:
    stateful = [r for r in prod.resources if r.type in STATEFUL]
    assert {r.type for r in stateful} == set(STATEFUL)
    for r in stateful:
        assert r.protect and r.retain_on_delete, r.name
        assert r.inputs.get("forceDestroy") is not True, r.name
        assert r.inputs.get("forceDelete") is not True, r.name


def test_prod_protects_bucket_security_settings(prod: Graph) -> None:
    for name in ("models-sse", "models-public-access-block", "models-versioning"):
        r = prod.by_name(name)
        assert r.protect and r.retain_on_delete, name


def test_dev_choice_is_explicit_and_honoured(dev: Graph) -> None:
    stateful = [r for r in dev.resources if r.type in STATEFUL]
    assert stateful
    for r in stateful:
        assert not r.protect and not r.retain_on_delete, r.name
    assert model_bucket(dev).inputs["forceDestroy"] is True
    assert dev.by_name("models-ecr-training").inputs["forceDelete"] is True


def test_unprotected_store_without_force_destroy_keeps_data() -> None:
    g = run_program(store_program({"protect": False}))
    assert model_bucket(g).inputs.get("forceDestroy") is not True


# --- Mountpoint and FSx -----------------------------------------------------------------------


def test_mountpoint_addon_is_pinned_with_pod_identity(prod: Graph) -> None:
    addon = prod.one("aws:eks/addon:Addon").inputs
    assert addon["addonName"] == "aws-mountpoint-s3-csi-driver"
    assert addon["addonVersion"] == "v2.0.0-eksbuild.1"
    assert addon["clusterName"] == CLUSTER
    (assoc,) = addon["podIdentityAssociations"]
    assert assoc["serviceAccount"] == "s3-csi-driver-sa"
    assert assoc["roleArn"] == prod.by_name("models-mountpoint-role").inputs.get(
        "arn", assoc["roleArn"]
    )
    trust = json.loads(prod.by_name("models-mountpoint-role").inputs["assumeRolePolicy"])
    assert trust["Statement"][0]["Principal"] == {"Service": "pods.eks.amazonaws.com"}


def test_mountpoint_role_is_read_only(prod: Graph) -> None:
    doc = json.loads(prod.by_name("models-mountpoint-policy").inputs["policy"])
    actions = {a for s in doc["Statement"] for a in _list(s["Action"])}
    assert "s3:GetObject" in actions
    assert not {"s3:PutObject", "s3:DeleteObject", "kms:GenerateDataKey"} & actions


def test_mountpoint_and_fsx_are_off_by_default(dev: Graph) -> None:
    assert not dev.by_type("aws:eks/addon:Addon")
    assert not dev.by_type("aws:fsx/lustreFileSystem:LustreFileSystem")


def test_fsx_is_linked_to_the_bucket_and_encrypted(prod: Graph) -> None:
    fs = prod.one("aws:fsx/lustreFileSystem:LustreFileSystem").inputs
    assert fs["deploymentType"] == "PERSISTENT_2"
    assert fs["kmsKeyId"] == prod.outputs["kmsKeyArn"]
    assert fs["skipFinalBackup"] is False
    dra = prod.one("aws:fsx/dataRepositoryAssociation:DataRepositoryAssociation").inputs
    assert dra["dataRepositoryPath"] == "s3://acme-ml-prod-models/projects/"
    assert dra["fileSystemPath"] == "/data"
    assert dra["deleteDataInFilesystem"] is False
    assert set(dra["s3"]["autoImportPolicy"]["events"]) == {"NEW", "CHANGED", "DELETED"}


def test_fsx_accepts_lustre_only_from_itself_and_the_cluster(prod: Graph) -> None:
    rules = prod.by_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
    sources = {r.inputs["referencedSecurityGroupId"] for r in rules}
    assert CLUSTER_SG in sources
    assert not any("cidrIpv4" in r.inputs for r in rules)
    assert {(r.inputs["fromPort"], r.inputs["toPort"]) for r in rules} == {(988, 988), (1018, 1023)}


def test_fsx_service_role_may_use_the_key_only_through_s3(prod: Graph) -> None:
    s = statements(json.loads(prod.one("aws:kms/key:Key").inputs["policy"]))
    fsx = s["FsxLustreS3LinkThroughS3"]
    assert fsx["Condition"]["StringEquals"]["kms:ViaService"] == "s3.us-east-1.amazonaws.com"
    assert "AWSServiceRoleForFSxS3Access_" in fsx["Condition"]["ArnLike"]["aws:PrincipalArn"]


# --- IAM documents ----------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["prod", "dev"])
def test_every_policy_passes_parliament(prod: Graph, dev: Graph, which: str) -> None:
    g = prod if which == "prod" else dev
    docs = policy_docs(g)
    assert len(docs) >= 3
    for name, doc, trust in docs:
        assert iam_findings(doc, trust=trust) == [], name


def test_parliament_check_can_fail() -> None:
    bad = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b"}],
    }
    assert iam_findings(bad)


def _list(x: str | list[str]) -> list[str]:
    return [x] if isinstance(x, str) else x
