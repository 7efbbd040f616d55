"""CiRunners: GitHub Actions runners inside the platform's VPC, hosted by AWS CodeBuild.

Prod's API endpoint is private and dev's public one admits a few CIDRs, so the jobs that talk to
the cluster (`pulumi preview`, `up`, the drift check) run here: a CodeBuild project whose webhook
starts one ephemeral build per queued workflow job labelled
``codebuild-<project>-${{ github.run_id }}-${{ github.run_attempt }}``, in the private subnets,
behind a security group that the cluster's security group admits on 443.

The runner's own role can only write its logs and attach its network interfaces: a job gets
cloud and cluster rights by assuming the deploy or preview role through GitHub OIDC, whose trust
names the GitHub environment. Any job that lands on the runner (a pull request's, a new
workflow's) gets no more than the runner role. GitHub is reached through a CodeConnections
connection (a GitHub App), so no token is stored anywhere.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from enum import StrEnum
from typing import Any

import pulumi
import pulumi_aws as aws
from pydantic import Field

from components.common import ArgsModel, Environment, Issue, merge_tags, service_trust_policy
from components.flow_logs import logs_key_policy
from components.network import LOG_RETENTION_DAYS

# Amazon Linux 2023 standard image: AWS CLI v2 (the kubeconfig's `aws eks get-token`), git and
# Node.js (JavaScript actions). Confirmed in CodeBuild's "Compute images supported with the
# CodeBuild-hosted GitHub Actions runner" (linux 5.0) and aws/aws-codebuild-docker-images
# al/x86_64/standard/5.0/Dockerfile.
DEFAULT_IMAGE = "aws/codebuild/amazonlinux-x86_64-standard:5.0"
# The workflows in .github/workflows whose jobs run here (their `name:`); the webhook starts a
# build for no other workflow's job.
DEFAULT_WORKFLOWS = ("deploy", "preview", "drift")
WORKFLOW_JOB_QUEUED = "WORKFLOW_JOB_QUEUED"
# The label CodeBuild requires (run id and attempt make each job's runner its own).
LABEL_SUFFIX = "-${{ github.run_id }}-${{ github.run_attempt }}"
HTTPS = 443
# Who may start (or approve) a pull request's runner: people who can push to the repository.
APPROVER_ROLES = ("GITHUB_WRITE", "GITHUB_MAINTAIN", "GITHUB_ADMIN")

_REPOSITORY = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}$")
_CONNECTION_ARN = re.compile(
    r"^arn:aws[a-z-]*:(?P<service>codeconnections|codestar-connections):[a-z0-9-]+:\d{12}:"
    r"connection/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
)
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$")
_PROJECT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{1,99}$")
_WORKFLOW_NAME = re.compile(r"^[\w .-]{1,100}$")


_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def repository_issues(path: tuple[str | int, ...], repository: str | None) -> list[Issue]:
    """A GitHub repository given as owner/name (what a runner project's source names)."""
    if repository is None or _REPOSITORY.match(repository):
        return []
    return [Issue(path, f"must be a GitHub repository as owner/name, got {repository!r}")]


class ComputeSize(StrEnum):
    """CodeBuild on-demand Linux sizes (vCPU / memory)."""

    SMALL = "small"  # 2 vCPU, 3 GiB: previews and the drift check
    MEDIUM = "medium"  # 4 vCPU, 7 GiB
    LARGE = "large"  # 8 vCPU, 15 GiB

    @property
    def compute_type(self) -> str:
        return f"BUILD_GENERAL1_{self.name}"


class CiRunnersArgs(ArgsModel):
    """Where CI runs and which roles it deploys and previews with."""

    environment: Environment = Environment.DEV
    enabled: bool = Field(
        default=False,
        description="Declare the CodeBuild runner project and its webhook in this stack's VPC.",
    )
    repository: str | None = Field(
        default=None, description="The platform's GitHub repository, owner/name."
    )
    connection_arn: str | None = Field(
        default=None,
        description="An AVAILABLE CodeConnections (GitHub App) connection CodeBuild reaches "
        "GitHub through (created and approved once in the console; no token is stored).",
    )
    deploy_role_arn: str | None = Field(
        default=None,
        description="Role the deploy workflow assumes through GitHub OIDC: cluster admin.",
    )
    preview_role_arn: str | None = Field(
        default=None,
        description="Role the preview and drift workflows assume through GitHub OIDC: reads "
        "every cluster object (Secrets included, as a refresh must), writes nothing.",
    )
    project_name: str | None = Field(
        default=None,
        description="CodeBuild project name, part of the runner label (default <cluster>-ci).",
    )
    compute_size: ComputeSize = ComputeSize.SMALL
    image: str = DEFAULT_IMAGE
    timeout_minutes: int = Field(
        default=120, description="Longest a job may run (CodeBuild build timeout)."
    )
    concurrent_builds: int = Field(
        default=4, description="Jobs running at once; more wait in CodeBuild's queue."
    )
    workflows: list[str] = Field(
        default_factory=lambda: list(DEFAULT_WORKFLOWS),
        min_length=1,
        description="Names of the workflows whose jobs may start a runner.",
    )
    state_bucket: str | None = Field(
        default=None,
        description="S3 bucket of the Pulumi backend (PULUMI_BACKEND_URL s3://<bucket>): project "
        "CI roles read this stack's state there and keep their own project's state.",
    )

    def issues(self) -> list[Issue]:
        found = super().issues()
        found += repository_issues(("repository",), self.repository)
        if self.state_bucket is not None and not _BUCKET.match(self.state_bucket):
            found.append(
                Issue(("stateBucket",), f"must be an S3 bucket name, got {self.state_bucket!r}")
            )
        if self.connection_arn is not None and not _CONNECTION_ARN.match(self.connection_arn):
            found.append(
                Issue(
                    ("connectionArn",),
                    "must be a CodeConnections connection ARN "
                    "(arn:aws:codeconnections:<region>:<account>:connection/<uuid>), "
                    f"got {self.connection_arn!r}",
                )
            )
        for key, arn in (
            ("deployRoleArn", self.deploy_role_arn),
            ("previewRoleArn", self.preview_role_arn),
        ):
            if arn is not None and not _ROLE_ARN.match(arn):
                found.append(Issue((key,), f"must be an IAM role ARN, got {arn!r}"))
        if self.deploy_role_arn is not None and self.deploy_role_arn == self.preview_role_arn:
            found.append(
                Issue(
                    ("previewRoleArn",),
                    "must differ from deployRoleArn: previews of any branch would run as "
                    "cluster admin",
                )
            )
        if self.enabled:
            for key, value in (
                ("repository", self.repository),
                ("connectionArn", self.connection_arn),
                ("deployRoleArn", self.deploy_role_arn),
                ("previewRoleArn", self.preview_role_arn),
            ):
                if value is None:
                    found.append(Issue((key,), "required when enabled is true"))
        if self.project_name is not None and not _PROJECT_NAME.match(self.project_name):
            found.append(
                Issue(
                    ("projectName",),
                    "must be 2-100 letters, digits, '-' or '_', starting with a letter or "
                    f"digit, got {self.project_name!r}",
                )
            )
        if not 5 <= self.timeout_minutes <= 480:
            found.append(
                Issue(("timeoutMinutes",), f"must be 5 to 480, got {self.timeout_minutes}")
            )
        if not 1 <= self.concurrent_builds <= 100:
            found.append(
                Issue(("concurrentBuilds",), f"must be 1 to 100, got {self.concurrent_builds}")
            )
        for i, wf in enumerate(self.workflows):
            if not _WORKFLOW_NAME.match(wf):
                found.append(Issue(("workflows", i), f"not a workflow name: {wf!r}"))
        return found

    def roles(self) -> list[str]:
        return [*self.admin_roles(), *self.reader_roles()]

    def admin_roles(self) -> list[str]:
        """Cluster admin: the role the deploy workflow runs `pulumi up` as."""
        return [self.deploy_role_arn] if self.deploy_role_arn else []

    def reader_roles(self) -> list[str]:
        """Read everything, write nothing: the role previews and the drift check run as."""
        return [self.preview_role_arn] if self.preview_role_arn else []

    def project_for(self, cluster_name: str) -> str:
        return self.project_name or f"{cluster_name}-ci"


def runner_label(project_name: str) -> str:
    """The `runs-on` label that routes a job to this project's runner."""
    return f"codebuild-{project_name}{LABEL_SUFFIX}"


def workflow_filter(workflows: Sequence[str]) -> str:
    """The webhook's WORKFLOW_NAME pattern: exactly these workflows."""
    return "^(" + "|".join(re.escape(w) for w in workflows) + ")$"


def runner_policy(
    *,
    partition: str,
    region: str,
    account_id: str,
    log_group_arn: str,
    subnet_ids: Sequence[str],
    connection_arn: str,
) -> dict[str, Any]:
    """The runner role's only rights: its log streams, its ENIs in the private subnets, and the
    GitHub connection (CodeBuild fetches the runner's registration token through it)."""
    service = connection_arn.split(":")[2]
    subnet_arns = [f"arn:{partition}:ec2:{region}:{account_id}:subnet/{s}" for s in subnet_ids]
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "WriteBuildLogs",
                "Effect": "Allow",
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": [f"{log_group_arn}:*"],
            },
            {
                # CodeBuild's documented VPC permissions; these EC2 actions take no resource.
                "Sid": "ManageBuildNetworkInterfaces",
                "Effect": "Allow",
                "Action": [
                    "ec2:CreateNetworkInterface",
                    "ec2:DeleteNetworkInterface",
                    "ec2:DescribeDhcpOptions",
                    "ec2:DescribeNetworkInterfaces",
                    "ec2:DescribeSecurityGroups",
                    "ec2:DescribeSubnets",
                    "ec2:DescribeVpcs",
                ],
                "Resource": "*",
            },
            {
                "Sid": "AttachInterfacesInPrivateSubnets",
                "Effect": "Allow",
                "Action": "ec2:CreateNetworkInterfacePermission",
                "Resource": f"arn:{partition}:ec2:{region}:{account_id}:network-interface/*",
                "Condition": {
                    "StringEquals": {
                        "ec2:AuthorizedService": "codebuild.amazonaws.com",
                        "ec2:Subnet": subnet_arns,
                    }
                },
            },
            {
                # The action prefix must match the ARN's service (codeconnections or the older
                # codestar-connections).
                "Sid": "UseGitHubConnection",
                "Effect": "Allow",
                "Action": [f"{service}:GetConnection", f"{service}:GetConnectionToken"],
                "Resource": connection_arn,
            },
        ],
    }


class CiRunners(pulumi.ComponentResource):
    """A CodeBuild-hosted GitHub Actions runner project in the private subnets."""

    project_name: pulumi.Output[str]
    label: pulumi.Output[str]
    security_group_id: pulumi.Output[str]
    role_arn: pulumi.Output[str]
    project: aws.codebuild.Project

    def __init__(
        self,
        name: str,
        args: CiRunnersArgs,
        *,
        project_name: str,
        vpc_id: pulumi.Input[str],
        private_subnet_ids: pulumi.Input[Sequence[str]],
        cluster_security_group_id: pulumi.Input[str],
        log_retention_days: int,
        network_anchor: Sequence[pulumi.Resource] = (),
        tags: dict[str, str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        args.raise_if_invalid("CiRunners")
        if not args.enabled or args.repository is None or args.connection_arn is None:
            raise ValueError("CiRunners: declare it only when enabled (see CiRunnersArgs)")
        if log_retention_days not in LOG_RETENTION_DAYS:
            raise ValueError(f"CiRunners: log_retention_days {log_retention_days} not allowed")
        super().__init__("mlplatform:ci:CiRunners", name, None, opts)
        tags = dict(tags or {})
        log_group = self._logs(name, project_name, args, log_retention_days, tags)
        sg = self._security_group(
            name, project_name, vpc_id, cluster_security_group_id, network_anchor, tags
        )
        role, policy = self._role(
            name, project_name, log_group, private_subnet_ids, args.connection_arn, tags
        )
        connection_arn = args.connection_arn

        self.project = aws.codebuild.Project(
            f"{name}-project",
            name=project_name,
            description=f"GitHub Actions runners for {args.repository} in the platform's VPC",
            service_role=role.arn,
            source=aws.codebuild.ProjectSourceArgs(
                type="GITHUB",
                location=f"https://github.com/{args.repository}.git",
                auth=aws.codebuild.ProjectSourceAuthArgs(
                    type="CODECONNECTIONS", resource=connection_arn
                ),
            ),
            artifacts=aws.codebuild.ProjectArtifactsArgs(type="NO_ARTIFACTS"),
            environment=aws.codebuild.ProjectEnvironmentArgs(
                type="LINUX_CONTAINER",
                compute_type=args.compute_size.compute_type,
                image=args.image,
                image_pull_credentials_type="CODEBUILD",
                privileged_mode=False,
            ),
            vpc_config=aws.codebuild.ProjectVpcConfigArgs(
                vpc_id=vpc_id, subnets=private_subnet_ids, security_group_ids=[sg.id]
            ),
            logs_config=aws.codebuild.ProjectLogsConfigArgs(
                cloudwatch_logs=aws.codebuild.ProjectLogsConfigCloudwatchLogsArgs(
                    status="ENABLED", group_name=log_group.name
                ),
                s3_logs=aws.codebuild.ProjectLogsConfigS3LogsArgs(status="DISABLED"),
            ),
            build_timeout=args.timeout_minutes,
            # A job CodeBuild cannot start within the hour (concurrency limit) fails visibly.
            queued_timeout=60,
            concurrent_build_limit=args.concurrent_builds,
            tags=tags,
            # CodeBuild checks the role's VPC rights when the project is created.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[policy]),
        )
        self._webhook(name, args)

        self.project_name = self.project.name
        self.label = self.project.name.apply(runner_label)
        self.security_group_id = sg.id
        self.role_arn = role.arn
        self.register_outputs(
            {
                "projectName": self.project_name,
                "label": self.label,
                "securityGroupId": self.security_group_id,
                "roleArn": self.role_arn,
            }
        )

    def _logs(
        self,
        name: str,
        project_name: str,
        args: CiRunnersArgs,
        retention_days: int,
        tags: dict[str, str],
    ) -> aws.cloudwatch.LogGroup:
        log_group_name = f"/aws/codebuild/{project_name}"
        key = None
        if args.environment is Environment.PROD:
            # The logs record who deployed what: in prod under a key that outlives the stack.
            # Dev keeps CloudWatch's own at-rest encryption (a key is $1 a month of its budget).
            key = aws.kms.Key(
                f"{name}-logs-key",
                description=f"CodeBuild {project_name}: CI runner logs",
                enable_key_rotation=True,
                deletion_window_in_days=30,
                policy=logs_key_policy(log_group_name),
                tags=tags,
                opts=pulumi.ResourceOptions(parent=self, protect=True, retain_on_delete=True),
            )
        return aws.cloudwatch.LogGroup(
            f"{name}-logs",
            name=log_group_name,
            retention_in_days=retention_days,
            kms_key_id=key.arn if key is not None else None,
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _security_group(
        self,
        name: str,
        project_name: str,
        vpc_id: pulumi.Input[str],
        cluster_security_group_id: pulumi.Input[str],
        network_anchor: Sequence[pulumi.Resource],
        tags: dict[str, str],
    ) -> aws.ec2.SecurityGroup:
        sg = aws.ec2.SecurityGroup(
            f"{name}-sg",
            vpc_id=vpc_id,
            description=f"CI runners of {project_name}: HTTPS out only",
            tags=merge_tags(tags, {"Name": f"{project_name}-runners"}),
            # Deleted before the network's anchors: the VPC goes after its security groups.
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(network_anchor)),
        )
        # GitHub, package indexes, AWS APIs and the cluster endpoint are all HTTPS; DNS goes to
        # the VPC resolver, which security groups do not filter.
        aws.vpc.SecurityGroupEgressRule(
            f"{name}-https-out",
            security_group_id=sg.id,
            cidr_ipv4="0.0.0.0/0",
            ip_protocol="tcp",
            from_port=HTTPS,
            to_port=HTTPS,
            description="HTTPS to GitHub, package indexes, AWS APIs and the cluster endpoint",
            opts=pulumi.ResourceOptions(parent=sg),
        )
        aws.vpc.SecurityGroupIngressRule(
            f"{name}-to-cluster-api",
            security_group_id=cluster_security_group_id,
            referenced_security_group_id=sg.id,
            ip_protocol="tcp",
            from_port=HTTPS,
            to_port=HTTPS,
            description=f"Kubernetes API from the CI runners of {project_name}",
            opts=pulumi.ResourceOptions(parent=sg),
        )
        return sg

    def _role(
        self,
        name: str,
        project_name: str,
        log_group: aws.cloudwatch.LogGroup,
        private_subnet_ids: pulumi.Input[Sequence[str]],
        connection_arn: str,
        tags: dict[str, str],
    ) -> tuple[aws.iam.Role, aws.iam.RolePolicy]:
        invoke = pulumi.InvokeOutputOptions(parent=self)
        partition = aws.get_partition_output(opts=invoke).partition
        region = aws.get_region_output(opts=invoke).region
        account_id = aws.get_caller_identity_output(opts=invoke).account_id
        role = aws.iam.Role(
            f"{name}-role",
            description=f"CodeBuild {project_name}: logs and network interfaces only; jobs "
            "assume their deploy or preview role through GitHub OIDC",
            assume_role_policy=json.dumps(
                service_trust_policy("codebuild.amazonaws.com"), sort_keys=True
            ),
            max_session_duration=3600,
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        policy = aws.iam.RolePolicy(
            f"{name}-policy",
            role=role.id,
            policy=pulumi.Output.all(
                partition, region, account_id, log_group.arn, private_subnet_ids
            ).apply(
                lambda a: json.dumps(
                    runner_policy(
                        partition=a[0],
                        region=a[1],
                        account_id=a[2],
                        log_group_arn=a[3],
                        subnet_ids=list(a[4]),
                        connection_arn=connection_arn,
                    ),
                    sort_keys=True,
                )
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        return role, policy

    def _webhook(self, name: str, args: CiRunnersArgs) -> aws.codebuild.Webhook:
        return aws.codebuild.Webhook(
            f"{name}-webhook",
            project_name=self.project.name,
            build_type="BUILD",
            filter_groups=[
                aws.codebuild.WebhookFilterGroupArgs(
                    filters=[
                        aws.codebuild.WebhookFilterGroupFilterArgs(
                            type="EVENT", pattern=WORKFLOW_JOB_QUEUED
                        ),
                        aws.codebuild.WebhookFilterGroupFilterArgs(
                            type="WORKFLOW_NAME", pattern=workflow_filter(args.workflows)
                        ),
                    ]
                )
            ],
            # Defence in depth beside the workflows' same-repository guard: a pull request's
            # job reaches the VPC only if its author, or an approving comment's, can push.
            pull_request_build_policy=aws.codebuild.WebhookPullRequestBuildPolicyArgs(
                requires_comment_approval="ALL_PULL_REQUESTS",
                approver_roles=list(APPROVER_ROLES),
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
