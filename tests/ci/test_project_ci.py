"""ProjectCi on the shipped prod stack (churn names its repository): the project's own runner,
its OIDC roles and their namespace-scoped cluster access, and the config checks around them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from components.ci_runners import runner_label, workflow_filter
from components.project_ci import (
    EDIT_POLICY,
    PROJECT_WORKFLOWS,
    VIEW_POLICY,
    CiRole,
    custom_resources_role,
    github_oidc_trust,
    project_ci_policy,
    role_name_issues,
)
from mlplatform.config import ConfigError, parse_config
from mlplatform.graph import Graph, RecordedResource
from mlplatform.report import run_stack
from tests.config.test_config_errors import BASE, problems
from tests.iam import iam_findings

ENTRY = "aws:eks/accessEntry:AccessEntry"
POLICY = "aws:eks/accessPolicyAssociation:AccessPolicyAssociation"
ROLE = "aws:iam/role:Role"
RUNNER = "mlp-prod-churn-ci"


@pytest.fixture(scope="module")
def prod() -> Graph:
    return run_stack("prod")[0]


def _github_provider(issue: str, detail: Any) -> bool:
    return issue == "UNKNOWN_FEDERATION_SOURCE" and "githubusercontent" in str(detail)


def _role(g: Graph, role: CiRole) -> RecordedResource:
    return g.one(ROLE, f"project-ci-churn-{role.value}-role")


def test_the_project_gets_its_own_runner_for_its_cluster_workflows(prod: Graph) -> None:
    project = prod.one("aws:codebuild/project:Project", "project-ci-churn-runners-project")
    assert project.inputs["name"] == RUNNER
    assert project.inputs["source"]["location"] == "https://github.com/example-org/churn.git"
    assert project.inputs["vpcConfig"]["subnets"] == prod.outputs["privateSubnetIds"]
    hook = prod.one("aws:codebuild/webhook:Webhook", "project-ci-churn-runners-webhook")
    patterns = {f["type"]: f["pattern"] for g in hook.inputs["filterGroups"] for f in g["filters"]}
    assert patterns["WORKFLOW_NAME"] == workflow_filter(PROJECT_WORKFLOWS)
    ci = prod.outputs["projects"]["churn"]["ci"]
    assert ci["runnerProject"] == RUNNER
    assert ci["label"] == runner_label(RUNNER)
    assert ci["repository"] == "example-org/churn"
    # the platform's own runner still serves the platform's repository only
    assert prod.outputs["ciRunner"]["repository"] == "example-org/ml-platform"


@pytest.mark.parametrize(
    ("role", "subjects"),
    [
        (CiRole.DEPLOY, ["environment:prod", "environment:prod-promote"]),
        (CiRole.PREVIEW, ["environment:preview"]),
    ],
)
def test_roles_trust_the_projects_repository_and_environments_only(
    prod: Graph, role: CiRole, subjects: list[str]
) -> None:
    res = _role(prod, role)
    assert res.inputs["name"] == f"{RUNNER}-{role.value}"
    trust = json.loads(res.inputs["assumeRolePolicy"])
    (stmt,) = trust["Statement"]
    assert stmt["Principal"]["Federated"].endswith(
        ":oidc-provider/token.actions.githubusercontent.com"
    )
    cond = stmt["Condition"]["StringEquals"]
    assert cond["token.actions.githubusercontent.com:aud"] == "sts.amazonaws.com"
    sub = cond["token.actions.githubusercontent.com:sub"]
    assert sorted([sub] if isinstance(sub, str) else sub) == [
        f"repo:example-org/churn:{s}" for s in subjects
    ]
    # parliament knows no GitHub OIDC provider: the provider is the account's own (docs/ci.md).
    assert iam_findings(trust, trust=True, ignore=_github_provider) == []


@pytest.mark.parametrize(
    ("role", "policy"), [(CiRole.DEPLOY, EDIT_POLICY), (CiRole.PREVIEW, VIEW_POLICY)]
)
def test_cluster_access_is_scoped_to_the_projects_namespace(
    prod: Graph, role: CiRole, policy: str
) -> None:
    arn = prod.outputs["projects"]["churn"]["ci"][f"{role.value}RoleArn"]
    assert arn.endswith(f":role/{RUNNER}-{role.value}")
    (entry,) = [e for e in prod.by_type(ENTRY) if e.inputs["principalArn"] == arn]
    assert entry.inputs["kubernetesGroups"] == [f"mlplatform:project:churn:{role.value}"]
    (assoc,) = [p for p in prod.by_type(POLICY) if p.inputs["principalArn"] == arn]
    assert assoc.inputs["policyArn"] == policy
    assert assoc.inputs["accessScope"] == {"type": "namespace", "namespaces": ["churn"]}
    assert prod.depends_on(assoc, entry)
    # Nothing cluster-wide: the only cluster-scoped associations are the platform's own roles.
    cluster_scoped = {
        p.inputs["principalArn"]
        for p in prod.by_type(POLICY)
        if p.inputs["accessScope"]["type"] == "cluster"
    }
    assert arn not in cluster_scoped

    bindings = [
        m for m in prod.manifests()
        if m["kind"] == "RoleBinding" and m["metadata"]["name"] == f"churn-ci-{role.value}"
    ]  # fmt: skip
    assert [b["metadata"]["namespace"] for b in bindings] == ["churn"]
    (binding,) = bindings
    assert binding["subjects"][0]["name"] == entry.inputs["kubernetesGroups"][0]
    (cluster_role,) = [
        m for m in prod.manifests()
        if m["kind"] == "ClusterRole" and m["metadata"]["name"] == binding["roleRef"]["name"]
    ]  # fmt: skip
    assert cluster_role["rules"] == custom_resources_role("x", write=role is CiRole.DEPLOY)["rules"]


def test_custom_resources_role_writes_only_for_deploy() -> None:
    deploy = custom_resources_role("d", write=True)["rules"]
    preview = custom_resources_role("p", write=False)["rules"]
    assert all(set(r["verbs"]) <= {"get", "list", "watch"} for r in preview)
    monitoring = next(r for r in deploy if r["apiGroups"] == ["monitoring.coreos.com"])
    assert "create" in monitoring["verbs"]
    kueue = next(r for r in deploy if r["apiGroups"] == ["kueue.x-k8s.io"])
    assert kueue["verbs"] == ["get", "list", "watch"]  # the platform declares the queue


def _policy(role: CiRole, state_bucket: str | None = "state") -> dict[str, Any]:
    return project_ci_policy(
        role=role,
        project="churn",
        partition="aws",
        region="us-east-1",
        account_id="123456789012",
        cluster_name="mlp-prod",
        bucket_arn="arn:aws:s3:::models",
        kms_key_arn="arn:aws:kms:us-east-1:123456789012:key/k",
        ecr_repository_arns=["arn:aws:ecr:us-east-1:123456789012:repository/t"],
        state_bucket=state_bucket,
        platform_stack="prod",
    )


def _actions(doc: dict[str, Any], sid: str) -> set[str]:
    (stmt,) = [s for s in doc["Statement"] if s["Sid"] == sid]
    a = stmt["Action"]
    return {a} if isinstance(a, str) else set(a)


def test_policies_are_scoped_to_the_project() -> None:
    deploy, preview = _policy(CiRole.DEPLOY), _policy(CiRole.PREVIEW)
    for doc in (deploy, preview):
        text = json.dumps(doc)
        assert "projects/churn/" in text
        assert '"*"' not in text.replace('"Resource": "*"', "")  # only ecr:GetAuthorizationToken
        assert "arn:aws:s3:::state/.pulumi/stacks/ml-platform/prod.json*" in text
        assert "iam:" not in text and "eks:CreatePodIdentityAssociation" not in text
        assert iam_findings(doc) == []
    assert "s3:PutObject" in _actions(deploy, "ReadWriteObjects")
    assert "ecr:PutImage" in _actions(deploy, "EcrPushPull")
    assert "ecr:PutImage" in _actions(preview, "EcrPushPull")  # a pull request's images
    assert _actions(preview, "EcrScanResults") == {
        "ecr:DescribeImageScanFindings", "ecr:DescribeImages"
    }  # fmt: skip
    assert "s3:PutObject" not in _actions(preview, "ReadObjects")
    assert _actions(preview, "ReadProjectState") == {"s3:GetObject"}
    (platform_state,) = [s for s in deploy["Statement"] if s["Sid"] == "ReadPlatformState"]
    assert platform_state["Action"] == "s3:GetObject"  # the platform's state is never written
    assert not [s for s in _policy(CiRole.DEPLOY, None)["Statement"] if "State" in s["Sid"]]


def test_trust_with_one_environment_is_a_plain_string() -> None:
    doc = github_oidc_trust(
        partition="aws", account_id="1" * 12, repository="o/r", environments=["preview"]
    )
    sub = doc["Statement"][0]["Condition"]["StringEquals"][
        "token.actions.githubusercontent.com:sub"
    ]
    assert sub == "repo:o/r:environment:preview"


CI = {
    "enabled": True,
    "repository": "example-org/ml-platform",
    "connectionArn": "arn:aws:codeconnections:us-east-1:123456789012:connection/"
    "4f1c2a9e-7b3d-4e8f-9a21-5c6d7e8f9a0b",
    "deployRoleArn": "arn:aws:iam::123456789012:role/deploy",
    "previewRoleArn": "arn:aws:iam::123456789012:role/preview",
}


def test_project_repositories_are_checked_all_at_once() -> None:
    projects = {
        "projects": [
            {"name": "a", "repository": "not-a-repo"},
            {"name": "b", "repository": "example-org/ml-platform"},
            {"name": "c", "repository": "example-org/c"},
            {"name": "d", "repository": "example-org/c"},
        ]
    }
    with pytest.raises(ConfigError) as info:
        parse_config(
            "t",
            {
                **BASE,
                "ml-platform:ci": json.dumps(CI),
                "ml-platform:projects": json.dumps(projects),
            },
        )
    got = info.value.problems
    key = "ml-platform:projects.projects"
    assert any(k == f"{key}[0].repository" and "owner/name" in m for k, m in got)
    assert any(k == f"{key}[1].repository" and "platform's own repository" in m for k, m in got)
    assert any(k == f"{key}[3].repository" and "projects.projects[2]'s" in m for k, m in got)
    assert any(k == "ml-platform:ci.stateBucket" and "names its repository" in m for k, m in got)


def test_a_project_repository_needs_the_stacks_ci() -> None:
    projects = {"projects": [{"name": "a", "repository": "example-org/a"}]}
    got = problems({**BASE, "ml-platform:projects": json.dumps(projects)})
    assert "needs ci.enabled: true" in got["ml-platform:projects.projects[0].repository"]
    ok = {**CI, "stateBucket": "example-org-pulumi-state"}
    settings = parse_config(
        "t",
        {**BASE, "ml-platform:ci": json.dumps(ok), "ml-platform:projects": json.dumps(projects)},
    )
    assert settings.config.projects.projects[0].repository == "example-org/a"


def test_role_names_must_fit_iam() -> None:
    assert role_name_issues("mlp-prod-churn-ci") == []
    (issue,) = role_name_issues("mlp-prod-" + "x" * 50 + "-ci")
    assert "longer than 64 characters" in issue.message
    assert role_name_issues("x" * 56) == []  # + "-preview" = 64
