"""ProjectAccess: one least-privilege Pod Identity role per grant, scoped to its project prefix."""

from __future__ import annotations

import json
from typing import Any

import pytest

from components.common import InvalidArgsError
from components.project_access import (
    INFERENCE_LOG_DIR,
    AccessLevel,
    ProjectAccessArgs,
    pod_identity_trust_policy,
    s3_prefix_policy,
)
from mlplatform.graph import Graph
from mlplatform.plan import run_program

from .helpers import ACCESS, CLUSTER, iam_findings, merged, statements, store_program

BUCKET = "arn:aws:s3:::acme-ml-prod-models"
KEY = "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555"
REPO = "arn:aws:ecr:us-east-1:123456789012:repository/ml-platform/prod/training"


@pytest.fixture(scope="module")
def graph() -> Graph:
    return run_program(
        store_program({"protect": True, "bucketName": "acme-ml-prod-models"}, access=ACCESS),
        stack="prod",
    )


def role_policy(g: Graph, key: str) -> dict[str, Any]:
    return json.loads(g.by_name(f"access-{key}-policy").inputs["policy"])


def actions(doc: dict[str, Any]) -> set[str]:
    out: set[str] = set()
    for s in doc["Statement"]:
        out |= {s["Action"]} if isinstance(s["Action"], str) else set(s["Action"])
    return out


def test_one_role_and_association_per_grant(graph: Graph) -> None:
    roles = {r.name for r in graph.by_type("aws:iam/role:Role")}
    assert {"access-churn-trainer-role", "access-vision-inference-role"} <= roles
    assocs = {
        (r.inputs["namespace"], r.inputs["serviceAccount"]): r.inputs
        for r in graph.by_type("aws:eks/podIdentityAssociation:PodIdentityAssociation")
    }
    assert set(assocs) == {("churn", "trainer"), ("team-vision", "inference")}
    for a in assocs.values():
        assert a["clusterName"] == CLUSTER


def test_trust_is_pod_identity_for_this_cluster_only(graph: Graph) -> None:
    trust = json.loads(graph.by_name("access-churn-trainer-role").inputs["assumeRolePolicy"])
    (s,) = trust["Statement"]
    assert s["Principal"] == {"Service": "pods.eks.amazonaws.com"}
    assert sorted(s["Action"]) == ["sts:AssumeRole", "sts:TagSession"]
    assert s["Condition"]["StringEquals"] == {"aws:SourceAccount": "123456789012"}
    assert s["Condition"]["ArnEquals"] == {
        "aws:SourceArn": f"arn:aws:eks:us-east-1:123456789012:cluster/{CLUSTER}"
    }


def test_read_write_grant_is_limited_to_its_prefix(graph: Graph) -> None:
    s = statements(role_policy(graph, "churn-trainer"))
    assert s["ListPrefix"]["Resource"] == BUCKET
    assert s["ListPrefix"]["Condition"] == {
        "StringLike": {"s3:prefix": ["projects/churn/", "projects/churn/*"]}
    }
    assert s["ReadWriteObjects"]["Resource"] == f"{BUCKET}/projects/churn/*"
    assert "s3:PutObject" in s["ReadWriteObjects"]["Action"]
    # History can be hidden with a delete marker, never erased.
    assert "s3:DeleteObjectVersion" not in s["ReadWriteObjects"]["Action"]


def test_read_grant_cannot_write(graph: Graph) -> None:
    doc = role_policy(graph, "vision-inference")
    s = statements(doc)
    assert s["ReadObjects"]["Resource"] == f"{BUCKET}/projects/vision/*"
    assert not {"s3:PutObject", "s3:DeleteObject", "kms:GenerateDataKey"} & actions(doc)
    assert not any(a.startswith("ecr:Put") for a in actions(doc))


def test_kms_only_through_s3_for_this_bucket(graph: Graph) -> None:
    kms = statements(role_policy(graph, "churn-trainer"))["UseBucketKeyThroughS3"]
    assert kms["Resource"] == graph.outputs["kmsKeyArn"]
    assert sorted(kms["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey"]
    assert kms["Condition"]["StringEquals"] == {"kms:ViaService": "s3.us-east-1.amazonaws.com"}
    ctx = kms["Condition"]["StringLike"]["kms:EncryptionContext:aws:s3:arn"]
    assert ctx == [BUCKET, f"{BUCKET}/projects/churn/*"]


def test_ecr_access_is_limited_to_granted_repositories(graph: Graph) -> None:
    churn = statements(role_policy(graph, "churn-trainer"))
    assert churn["EcrPushPull"]["Resource"] == [
        "arn:aws:ecr:us-east-1:123456789012:repository/ml-platform/prod/training"
    ]
    assert "ecr:PutImage" in churn["EcrPushPull"]["Action"]
    vision = statements(role_policy(graph, "vision-inference"))
    assert vision["EcrPull"]["Resource"] == [
        "arn:aws:ecr:us-east-1:123456789012:repository/ml-platform/prod/serving"
    ]
    assert "ecr:PutImage" not in vision["EcrPull"]["Action"]


def test_no_wildcard_beyond_ecr_login(graph: Graph) -> None:
    for key in ("churn-trainer", "vision-inference"):
        for s in role_policy(graph, key)["Statement"]:
            if s["Resource"] == "*":
                assert s["Action"] == "ecr:GetAuthorizationToken", s
            acts = [s["Action"]] if isinstance(s["Action"], str) else s["Action"]
            assert not any(a.endswith("*") for a in acts), s


def test_association_waits_for_the_policy(graph: Graph) -> None:
    assoc = next(
        r
        for r in graph.by_type("aws:eks/podIdentityAssociation:PodIdentityAssociation")
        if r.inputs["serviceAccount"] == "trainer"
    )
    assert graph.depends_on(assoc, graph.by_name("access-churn-trainer-policy"))


def test_every_deployed_document_passes_parliament(graph: Graph) -> None:
    for key in ("churn-trainer", "vision-inference"):
        assert iam_findings(role_policy(graph, key)) == [], key
        trust = graph.by_name(f"access-{key}-role").inputs["assumeRolePolicy"]
        assert iam_findings(trust, trust=True) == [], key


@pytest.mark.parametrize("access", list(AccessLevel))
@pytest.mark.parametrize("repos", [[], [REPO]])
@pytest.mark.parametrize("prefix", ["", "projects/churn/"])
def test_policy_builder_passes_parliament(
    access: AccessLevel, repos: list[str], prefix: str
) -> None:
    doc = s3_prefix_policy(
        bucket_arn=BUCKET,
        prefix=prefix,
        access=access,
        kms_key_arn=KEY,
        region="eu-west-1",
        ecr_repository_arns=repos,
    )
    assert iam_findings(doc) == []


def test_trust_builder_passes_parliament() -> None:
    doc = pod_identity_trust_policy(
        account_id="123456789012", cluster_arn="arn:aws:eks:eu-west-1:123456789012:cluster/x"
    )
    assert iam_findings(doc, trust=True) == []


def test_prefix_must_be_a_folder() -> None:
    with pytest.raises(ValueError, match="end with '/'"):
        s3_prefix_policy(
            bucket_arn=BUCKET,
            prefix="projects/churn",
            access=AccessLevel.READ,
            kms_key_arn=KEY,
            region="us-east-1",
        )


# --- validation -----------------------------------------------------------------------------


def issue_paths(args: ProjectAccessArgs) -> dict[tuple[Any, ...], str]:
    return {i.path: i.message for i in args.issues()}


def test_grant_for_unknown_project_is_reported_with_allowed_names() -> None:
    data = merged(ACCESS, grants=[*ACCESS["grants"], {"project": "fraud", "serviceAccount": "x"}])
    found = issue_paths(ProjectAccessArgs.model_validate(data))
    msg = found[("grants", 2, "project")]
    assert "'fraud'" in msg and "churn" in msg and "vision" in msg


def test_duplicate_projects_and_bindings_are_reported() -> None:
    data = {
        "projects": [{"name": "churn"}, {"name": "churn"}],
        "grants": [
            {"project": "churn", "serviceAccount": "trainer"},
            {"project": "churn", "serviceAccount": "trainer", "access": "read-write"},
        ],
    }
    found = issue_paths(ProjectAccessArgs.model_validate(data))
    assert ("projects", 1, "name") in found
    assert ("grants", 1, "serviceAccount") in found


def test_invalid_names_are_reported() -> None:
    data = {
        "projects": [{"name": "Churn_Model"}],
        "grants": [{"project": "Churn_Model", "serviceAccount": "Bad SA"}],
    }
    found = issue_paths(ProjectAccessArgs.model_validate(data))
    assert ("projects", 0, "name") in found
    assert ("grants", 0, "serviceAccount") in found


def test_unknown_repository_key_fails_the_component() -> None:
    data = merged(
        ACCESS, grants=[{"project": "churn", "serviceAccount": "t", "ecrRepositories": ["nope"]}]
    )
    with pytest.raises(InvalidArgsError, match=r"grants\[0\]\.ecrRepositories\[0\]"):
        run_program(store_program({"protect": False}, access=data))


def test_invalid_grants_fail_before_any_resource() -> None:
    data = merged(ACCESS, grants=[{"project": "ghost", "serviceAccount": "t"}])
    with pytest.raises(InvalidArgsError, match=r"grants\[0\]\.project: unknown project 'ghost'"):
        run_program(store_program({"protect": False}, access=data))


# --- write-only prefixes: a server's inference log ------------------------------------------

LOGGING = merged(
    ACCESS,
    grants=[
        *ACCESS["grants"],
        {
            "project": "churn",
            "serviceAccount": "churn-server",
            "writeOnlyPrefixes": [INFERENCE_LOG_DIR],
            "createServiceAccount": False,
        },
    ],
)


@pytest.fixture(scope="module")
def logging_graph() -> Graph:
    return run_program(
        store_program({"protect": True, "bucketName": "acme-ml-prod-models"}, access=LOGGING),
        stack="prod",
    )


def test_server_puts_its_inference_log_and_nothing_else(logging_graph: Graph) -> None:
    doc = role_policy(logging_graph, "churn-churn-server")
    s = statements(doc)
    log = f"{BUCKET}/projects/churn/inference-logs/*"
    # Reads stay read-only on the project; the only write is PutObject under inference-logs/.
    assert s["ReadObjects"]["Resource"] == f"{BUCKET}/projects/churn/*"
    assert s["WriteOnlyObjects"] == {
        "Sid": "WriteOnlyObjects",
        "Effect": "Allow",
        "Action": ["s3:PutObject"],
        "Resource": log,
    }
    writes = {"s3:PutObject", "s3:DeleteObject", "s3:PutObjectTagging", "s3:AbortMultipartUpload"}
    for stmt in doc["Statement"]:
        if stmt["Sid"] != "WriteOnlyObjects":
            assert not writes & actions({"Statement": [stmt]}), stmt
    # A data key to encrypt with the bucket's KMS key, through S3, for this bucket's objects only;
    # no Decrypt beyond the read statement's.
    kms = s["EncryptWritesThroughS3"]
    assert kms["Action"] == "kms:GenerateDataKey"
    assert kms["Resource"] == logging_graph.outputs["kmsKeyArn"]
    assert kms["Condition"] == {
        "StringEquals": {"kms:ViaService": "s3.us-east-1.amazonaws.com"},
        "StringLike": {"kms:EncryptionContext:aws:s3:arn": [BUCKET, log]},
    }
    assert s["UseBucketKeyThroughS3"]["Action"] == ["kms:Decrypt"]
    assert iam_findings(doc) == []
    role = logging_graph.by_name("access-churn-churn-server-role")
    assert role.inputs["description"].endswith("; put-only inference-logs/")


def test_other_grants_get_no_write_only_statement(logging_graph: Graph) -> None:
    for key in ("churn-trainer", "vision-inference"):
        s = statements(role_policy(logging_graph, key))
        assert "WriteOnlyObjects" not in s and "EncryptWritesThroughS3" not in s


def test_the_log_prefix_is_the_one_the_store_expires() -> None:
    # The store's lifecycle expires the directory project_access grants writes to.
    from components.model_store_policies import INFERENCE_LOG_DIR as STORE_DIR
    from policies.compliance_resources import inference_log_prefix

    assert INFERENCE_LOG_DIR == STORE_DIR
    assert inference_log_prefix("churn") == f"projects/churn/{INFERENCE_LOG_DIR}"


@pytest.mark.parametrize("access", list(AccessLevel))
def test_write_only_builder_passes_parliament(access: AccessLevel) -> None:
    doc = s3_prefix_policy(
        bucket_arn=BUCKET,
        prefix="projects/churn/",
        access=access,
        kms_key_arn=KEY,
        region="eu-west-1",
        write_only_prefixes=["projects/churn/inference-logs/", "projects/churn/audit/"],
    )
    assert iam_findings(doc) == []
    assert statements(doc)["WriteOnlyObjects"]["Resource"] == [
        f"{BUCKET}/projects/churn/audit/*",
        f"{BUCKET}/projects/churn/inference-logs/*",
    ]
    with pytest.raises(ValueError, match="end with '/'"):
        s3_prefix_policy(
            bucket_arn=BUCKET,
            prefix="projects/churn/",
            access=access,
            kms_key_arn=KEY,
            region="eu-west-1",
            write_only_prefixes=["projects/churn/inference-logs"],
        )


def test_write_only_prefixes_are_checked() -> None:
    data = {
        "projects": [{"name": "churn"}],
        "grants": [
            {"project": "churn", "serviceAccount": "a", "writeOnlyPrefixes": ["/abs/", "x"]},
            {
                "project": "churn",
                "serviceAccount": "b",
                "access": "read-write",
                "writeOnlyPrefixes": ["inference-logs/"],
            },
        ],
    }
    found = issue_paths(ProjectAccessArgs.model_validate(data))
    assert ("grants", 0, "writeOnlyPrefixes", 0) in found
    assert ("grants", 0, "writeOnlyPrefixes", 1) in found
    assert "only for access 'read'" in found[("grants", 1, "writeOnlyPrefixes")]
