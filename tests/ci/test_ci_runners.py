"""CiRunners and CI's access entries on the shipped stacks: where the cluster jobs run, with
which rights, and what the workflows can read back."""

from __future__ import annotations

import json

import pytest

from components.ci_runners import (
    WORKFLOW_JOB_QUEUED,
    CiRunnersArgs,
    ComputeSize,
    runner_label,
    runner_policy,
    workflow_filter,
)
from components.training_cluster import (
    CLUSTER_ADMIN_POLICY,
    CLUSTER_READER_POLICY,
    TrainingClusterArgs,
)
from mlplatform.graph import Graph
from mlplatform.mocks import DEPLOYER_ROLE_ARN
from mlplatform.plan import run_program
from mlplatform.report import run_stack
from tests.compute.stacks import DEV, program

ENTRY = "aws:eks/accessEntry:AccessEntry"
POLICY = "aws:eks/accessPolicyAssociation:AccessPolicyAssociation"
PROJECT = "aws:codebuild/project:Project"
WEBHOOK = "aws:codebuild/webhook:Webhook"
CLUSTER = "aws:eks/cluster:Cluster"
DEPLOY = {
    "dev": "arn:aws:iam::123456789012:role/ml-platform-deploy-dev",
    "prod": "arn:aws:iam::123456789012:role/ml-platform-deploy-prod",
}
PREVIEW = "arn:aws:iam::123456789012:role/ml-platform-preview"


@pytest.fixture(scope="module")
def graphs() -> dict[str, Graph]:
    return {s: run_stack(s)[0] for s in ("dev", "prod")}


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_runner_project_runs_in_the_private_subnets(graphs: dict[str, Graph], stack: str) -> None:
    g = graphs[stack]
    project = g.one(PROJECT, "ci-runners-project")
    vpc = project.inputs["vpcConfig"]
    assert vpc["vpcId"] == g.outputs["vpcId"]
    assert vpc["subnets"] == g.outputs["privateSubnetIds"]
    sg = g.one("aws:ec2/securityGroup:SecurityGroup", "ci-runners-sg")
    assert vpc["securityGroupIds"] == [g.outputs["ciRunner"]["securityGroupId"]]
    assert sg.urn in project.property_dependencies["vpcConfig"]
    env = project.inputs["environment"]
    assert env["type"] == "LINUX_CONTAINER"
    assert env["computeType"] == "BUILD_GENERAL1_SMALL"
    assert env["privilegedMode"] is False
    # GitHub through a CodeConnections connection: no token in the project or the stack
    assert project.inputs["source"]["auth"]["type"] == "CODECONNECTIONS"
    assert project.inputs["source"]["location"] == "https://github.com/example-org/ml-platform.git"
    # the role's VPC rights exist before CodeBuild checks them at creation
    assert g.depends_on(project, g.one("aws:iam/rolePolicy:RolePolicy", "ci-runners-policy"))


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_webhook_starts_runners_for_the_platform_workflows_only(
    graphs: dict[str, Graph], stack: str
) -> None:
    hook = graphs[stack].one(WEBHOOK, "ci-runners-webhook")
    assert hook.inputs["buildType"] == "BUILD"
    [group] = hook.inputs["filterGroups"]
    filters = {f["type"]: f["pattern"] for f in group["filters"]}
    assert filters == {"EVENT": WORKFLOW_JOB_QUEUED, "WORKFLOW_NAME": "^(deploy|preview|drift)$"}
    policy = hook.inputs["pullRequestBuildPolicy"]
    assert policy["requiresCommentApproval"] == "ALL_PULL_REQUESTS"
    assert "GITHUB_READ" not in policy["approverRoles"]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_only_the_runners_reach_the_api_over_https(graphs: dict[str, Graph], stack: str) -> None:
    g = graphs[stack]
    sg = g.one("aws:ec2/securityGroup:SecurityGroup", "ci-runners-sg")
    ingress = g.one("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", "ci-runners")
    cluster = g.one(CLUSTER)
    assert ingress.property_dependencies["securityGroupId"] == [cluster.urn]
    assert ingress.property_dependencies["referencedSecurityGroupId"] == [sg.urn]
    assert (ingress.inputs["fromPort"], ingress.inputs["toPort"]) == (443, 443)
    egress = g.one("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule", "ci-runners")
    assert (egress.inputs["fromPort"], egress.inputs["toPort"]) == (443, 443)
    assert not sg.inputs.get("ingress")


def test_runner_role_writes_logs_and_attaches_interfaces_only(graphs: dict[str, Graph]) -> None:
    g = graphs["prod"]
    role = g.one("aws:iam/role:Role", "ci-runners-role")
    trust = json.loads(role.inputs["assumeRolePolicy"])
    assert [s["Principal"] for s in trust["Statement"]] == [{"Service": "codebuild.amazonaws.com"}]
    policy = json.loads(
        g.one("aws:iam/rolePolicy:RolePolicy", "ci-runners-policy").inputs["policy"]
    )
    actions = {a for s in policy["Statement"] for a in _list(s["Action"])}
    # no sts:AssumeRole, no eks:*, no iam:*: a job's rights come from the role it assumes by OIDC
    assert not {a for a in actions if a.split(":")[0] in {"sts", "eks", "iam", "s3", "kms"}}
    assert {a.split(":")[0] for a in actions} == {"logs", "ec2", "codeconnections"}
    [eni] = [s for s in policy["Statement"] if s["Sid"] == "AttachInterfacesInPrivateSubnets"]
    subnets = g.outputs["privateSubnetIds"]
    assert eni["Condition"]["StringEquals"]["ec2:Subnet"] == [
        f"arn:aws:ec2:us-east-1:123456789012:subnet/{s}" for s in subnets
    ]
    [logs] = [s for s in policy["Statement"] if s["Sid"] == "WriteBuildLogs"]
    assert logs["Resource"] == [
        "arn:aws:logs:us-east-1:123456789012:log-group:/aws/codebuild/mlp-prod-ci:*"
    ]


def test_prod_runner_logs_are_encrypted_kept_and_retained(graphs: dict[str, Graph]) -> None:
    g = graphs["prod"]
    group = g.one("aws:cloudwatch/logGroup:LogGroup", "ci-runners-logs")
    key = g.one("aws:kms/key:Key", "ci-runners-logs-key")
    assert group.property_dependencies["kmsKeyId"] == [key.urn]
    assert group.inputs["retentionInDays"] == 2192  # as long as the cluster's audit log
    assert key.protect and key.retain_on_delete
    # dev: CloudWatch's own at-rest encryption, no $1 key in its budget
    assert not [k for k in graphs["dev"].by_type("aws:kms/key:Key") if "ci-runners" in k.name]
    dev_group = graphs["dev"].one("aws:cloudwatch/logGroup:LogGroup", "ci-runners-logs")
    assert not dev_group.inputs.get("kmsKeyId")


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_ci_roles_get_their_access_entries(graphs: dict[str, Graph], stack: str) -> None:
    g = graphs[stack]
    cluster = g.one(CLUSTER)
    # EKS makes no entry for the creator: none can collide with the ones declared here
    assert cluster.inputs["accessConfig"]["bootstrapClusterCreatorAdminPermissions"] is False
    entries = g.by_type(ENTRY)
    principals = [e.inputs["principalArn"] for e in entries]
    assert len(principals) == len(set(principals)), "one entry per principal"
    policies = {p.inputs["principalArn"]: p for p in g.by_type(POLICY)}
    assert policies[DEPLOY[stack]].inputs["policyArn"] == CLUSTER_ADMIN_POLICY
    reader = policies[PREVIEW]
    assert reader.inputs["policyArn"] == CLUSTER_READER_POLICY
    assert reader.inputs["accessScope"] == {"type": "cluster"}
    [entry] = [e for e in entries if e.inputs["principalArn"] == PREVIEW]
    assert g.depends_on(reader, entry)
    assert not entry.inputs.get("kubernetesGroups")  # no write rights through RBAC either
    # the preview role has exactly one association: read, never admin
    assert [
        p.inputs["policyArn"] for p in g.by_type(POLICY) if p.inputs["principalArn"] == PREVIEW
    ] == [CLUSTER_READER_POLICY]
    assert DEPLOYER_ROLE_ARN in principals


def _cluster_with(admins: list[str], readers: list[str]) -> Graph:
    cfg = json.loads(json.dumps(DEV))
    cfg["cluster"]["adminRoleArns"] = admins
    cfg["cluster"]["readerRoleArns"] = readers
    return run_program(program(cfg))


def test_deploy_role_as_the_deployer_gets_one_entry() -> None:
    """When CI deploys, the deployer is the deploy role: its admin entry is declared once."""
    g = _cluster_with([DEPLOYER_ROLE_ARN], [PREVIEW])
    principals = [
        e.inputs["principalArn"] for e in g.by_type(ENTRY) if e.inputs["type"] == "STANDARD"
    ]
    assert sorted(principals) == sorted([DEPLOYER_ROLE_ARN, PREVIEW])


def test_preview_role_as_the_deployer_is_refused() -> None:
    """Its admin entry and its reader entry would collide (ResourceInUseException)."""
    with pytest.raises(Exception, match="readerRoleArns"):
        _cluster_with([], [DEPLOYER_ROLE_ARN])


def test_a_reader_that_is_also_an_admin_is_refused() -> None:
    args = TrainingClusterArgs(admin_role_arns=[PREVIEW], reader_role_arns=[PREVIEW, "x"])
    got = {i.path: i.message for i in args.issues()}
    assert "also in adminRoleArns" in got[("readerRoleArns", 0)]
    assert "must be an IAM role ARN" in got[("readerRoleArns", 1)]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_runner_output_names_what_a_workflow_needs(graphs: dict[str, Graph], stack: str) -> None:
    out = graphs[stack].outputs["ciRunner"]
    project = f"mlp-{stack}-ci"
    assert out["project"] == project
    assert (
        out["label"]
        == f"codebuild-{project}-${{{{ github.run_id }}}}-${{{{ github.run_attempt }}}}"
    )
    assert out["deployRoleArn"] == DEPLOY[stack]
    assert out["previewRoleArn"] == PREVIEW


def test_label_and_filter_builders() -> None:
    assert runner_label("p") == "codebuild-p-${{ github.run_id }}-${{ github.run_attempt }}"
    assert workflow_filter(["a.b", "c"]) == r"^(a\.b|c)$"
    assert ComputeSize.LARGE.compute_type == "BUILD_GENERAL1_LARGE"


def test_old_codestar_connection_gets_its_own_action_prefix() -> None:
    arn = "arn:aws:codestar-connections:us-east-1:1:connection/x"
    policy = runner_policy(
        partition="aws",
        region="us-east-1",
        account_id="1",
        log_group_arn="arn:aws:logs:us-east-1:1:log-group:g",
        subnet_ids=["s"],
        connection_arn=arn,
    )
    [conn] = [s for s in policy["Statement"] if s["Sid"] == "UseGitHubConnection"]
    assert conn["Action"] == [
        "codestar-connections:GetConnection",
        "codestar-connections:GetConnectionToken",
    ]


def test_args_collect_every_problem() -> None:
    args = CiRunnersArgs(
        enabled=True,
        repository="not a repo",
        connection_arn="arn:aws:codeconnections:us-east-1:1:connection/nope",
        deploy_role_arn="arn:aws:iam::123456789012:user/deploy",
        project_name="-x",
        timeout_minutes=1,
        concurrent_builds=0,
        workflows=["bad|name"],
    )
    got = {".".join(map(str, i.path)): i.message for i in args.issues()}
    assert set(got) == {
        "repository",
        "connectionArn",
        "deployRoleArn",
        "previewRoleArn",
        "projectName",
        "timeoutMinutes",
        "concurrentBuilds",
        "workflows.0",
    }
    assert "required when enabled" in got["previewRoleArn"]
    same = CiRunnersArgs(deploy_role_arn=PREVIEW, preview_role_arn=PREVIEW)
    assert [i.path for i in same.issues()] == [("previewRoleArn",)]
    assert CiRunnersArgs().issues() == []


def _list(x: str | list[str]) -> list[str]:
    return [x] if isinstance(x, str) else x
