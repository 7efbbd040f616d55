"""ProjectCi: a registered ML project's own CI runner and roles, scoped to that project.

One CodeBuild runner project serves one GitHub repository, so a project that names its repository
in the stack config (``projects.projects[].repository``) gets its own ``CiRunners`` in the
platform's VPC (its cluster jobs reach the private API endpoint from there) and two roles its
workflows assume through GitHub OIDC:

* **deploy**, trusted by the repository's ``<stack>`` and ``<stack>-promote`` environments: edit
  rights in the project's namespaces only (``AmazonEKSEditPolicy`` with a namespace access scope,
  plus an RBAC group for the custom resources a project declares), read-write on
  ``projects/<project>/`` in the model bucket, push and pull on the platform's registries;
* **preview**, trusted by the ``preview`` environment: view rights in the same namespaces, read
  on the prefix; it pushes a pull request's images (immutable tags) so the preview shows them.

Both read this platform stack's state in the Pulumi backend (its ``StackReference`` outputs) and
keep their own project's state there, nothing else. Neither can create a namespace, an IAM role
or a Pod Identity association: the platform declares those when the project is registered.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components.ci_runners import CiRunners, CiRunnersArgs
from components.common import InvalidArgsError, Issue, KubeTarget, merge_tags
from components.project_access import (
    ECR_PULL_ACTIONS,
    ECR_PUSH_ACTIONS,
    AccessLevel,
    StoreRefs,
    s3_prefix_policy,
)

# The template's workflows whose jobs talk to the cluster (their `name:`), and so run here.
PROJECT_WORKFLOWS = ("deploy", "infra-preview", "train", "promote")
GITHUB_OIDC_HOST = "token.actions.githubusercontent.com"
# EKS access policies (EKS user guide, "Review access policy permissions"): the Kubernetes
# user-facing edit and view roles, here scoped to the project's namespaces.
EDIT_POLICY = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSEditPolicy"
VIEW_POLICY = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSViewPolicy"
# The platform's own Pulumi project: its stacks' state is what a project's StackReference reads.
PLATFORM_PROJECT = "ml-platform"
IAM_ROLE_NAME_MAX = 64


class CiRole(StrEnum):
    DEPLOY = "deploy"
    PREVIEW = "preview"


def ci_role_name(runner_project: str, role: CiRole) -> str:
    return f"{runner_project}-{role.value}"


def role_name_issues(runner_project: str) -> list[Issue]:
    """IAM role names are at most 64 characters: the longest of the project's must fit."""
    longest = max((ci_role_name(runner_project, r) for r in CiRole), key=len)
    if len(longest) <= IAM_ROLE_NAME_MAX:
        return []
    return [
        Issue(
            ("projects", "name"),
            f"CI role name {longest!r} is longer than {IAM_ROLE_NAME_MAX} characters; use a "
            "shorter project (or cluster) name",
        )
    ]


def environments(role: CiRole, stack: str) -> list[str]:
    """The GitHub environments whose jobs may assume ``role`` (the template's workflows use them)."""
    if role is CiRole.DEPLOY:
        return [stack, f"{stack}-promote"]
    return ["preview"]


def github_oidc_trust(
    *, partition: str, account_id: str, repository: str, environments: Sequence[str]
) -> dict[str, Any]:
    """Trust for jobs of ``repository`` running in one of ``environments``, through GitHub OIDC.

    The ``sub`` claim of a job that names an environment is ``repo:<owner>/<name>:environment:<env>``;
    a fork's pull request gets no token, and a job without the environment matches nothing here.
    """
    provider = f"arn:{partition}:iam::{account_id}:oidc-provider/{GITHUB_OIDC_HOST}"
    subjects = [f"repo:{repository}:environment:{env}" for env in environments]
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "GitHubActionsOidc",
                "Effect": "Allow",
                "Principal": {"Federated": provider},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {
                    "StringEquals": {
                        f"{GITHUB_OIDC_HOST}:aud": "sts.amazonaws.com",
                        f"{GITHUB_OIDC_HOST}:sub": subjects if len(subjects) > 1 else subjects[0],
                    }
                },
            }
        ],
    }


def state_statements(
    *, partition: str, bucket: str, platform_stack: str, project: str, write: bool
) -> list[dict[str, Any]]:
    """Read the platform stack's checkpoint; read (or write) the project's own stacks' files.

    The DIY backend keeps a stack's checkpoint at ``.pulumi/stacks/<project>/<stack>.json`` and
    its locks, history and backups under ``.pulumi/{locks,history,backups}/<project>/``.
    """
    arn = f"arn:{partition}:s3:::{bucket}"
    own = [f"{arn}/.pulumi/{d}/{project}/*" for d in ("stacks", "locks", "history", "backups")]
    platform = f"{arn}/.pulumi/stacks/{PLATFORM_PROJECT}/{platform_stack}.json*"
    statements: list[dict[str, Any]] = [
        {
            "Sid": "ListState",
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": arn,
            "Condition": {
                "StringLike": {
                    "s3:prefix": [
                        ".pulumi/meta.yaml",
                        f".pulumi/stacks/{PLATFORM_PROJECT}/{platform_stack}.json*",
                        *[
                            f".pulumi/{d}/{project}/*"
                            for d in ("stacks", "locks", "history", "backups")
                        ],
                    ]
                }
            },
        },
        {
            "Sid": "ReadPlatformState",
            "Effect": "Allow",
            "Action": "s3:GetObject",
            "Resource": sorted([f"{arn}/.pulumi/meta.yaml", platform]),
        },
        {
            "Sid": "WriteProjectState" if write else "ReadProjectState",
            "Effect": "Allow",
            # A preview takes the stack's lock too: the lock prefix is writable for both roles.
            "Action": ["s3:DeleteObject", "s3:GetObject", "s3:PutObject"]
            if write
            else ["s3:GetObject"],
            "Resource": sorted(own),
        },
    ]
    if not write:
        statements.append(
            {
                "Sid": "LockProjectStack",
                "Effect": "Allow",
                "Action": ["s3:DeleteObject", "s3:PutObject"],
                "Resource": f"{arn}/.pulumi/locks/{project}/*",
            }
        )
    return statements


def project_ci_policy(
    *,
    role: CiRole,
    project: str,
    partition: str,
    region: str,
    account_id: str,
    cluster_name: str,
    bucket_arn: str,
    kms_key_arn: str,
    ecr_repository_arns: Sequence[str],
    state_bucket: str | None,
    platform_stack: str,
) -> dict[str, Any]:
    """The role's identity policy: the project's prefix and registries, its cluster, its state."""
    access = AccessLevel.READ_WRITE if role is CiRole.DEPLOY else AccessLevel.READ
    doc = s3_prefix_policy(
        bucket_arn=bucket_arn,
        prefix=f"projects/{project}/",
        access=access,
        kms_key_arn=kms_key_arn,
        region=region,
    )
    # Both push: a pull request's preview builds and pushes its images (image.yml) before it
    # previews them. Tags are immutable, so a push can add an image, never replace one.
    doc["Statement"] += [
        {
            "Sid": "EcrLogin",
            "Effect": "Allow",
            # GetAuthorizationToken has no resource-level permissions: "*" is the only form.
            "Action": "ecr:GetAuthorizationToken",
            "Resource": "*",
        },
        {
            "Sid": "EcrPushPull",
            "Effect": "Allow",
            "Action": sorted(ECR_PULL_ACTIONS + ECR_PUSH_ACTIONS),
            "Resource": sorted(ecr_repository_arns),
        },
    ]
    doc["Statement"].append(
        {
            # The image workflow waits for the scan on push and reads its findings; a pull
            # request's images are pushed too (immutable tags), so the preview shows them.
            "Sid": "EcrScanResults",
            "Effect": "Allow",
            "Action": ["ecr:DescribeImageScanFindings", "ecr:DescribeImages"],
            "Resource": sorted(ecr_repository_arns),
        }
    )
    doc["Statement"].append(
        {
            # The kubeconfig's `aws eks get-token` needs no IAM action; describing the cluster
            # is what `aws eks update-kubeconfig` and the platform's checks call.
            "Sid": "DescribeCluster",
            "Effect": "Allow",
            "Action": "eks:DescribeCluster",
            "Resource": f"arn:{partition}:eks:{region}:{account_id}:cluster/{cluster_name}",
        }
    )
    if state_bucket:
        doc["Statement"] += state_statements(
            partition=partition,
            bucket=state_bucket,
            platform_stack=platform_stack,
            project=project,
            write=role is CiRole.DEPLOY,
        )
    return doc


def custom_resources_role(name: str, *, write: bool) -> dict[str, Any]:
    """What a project deploys (``write``) or previews beyond the edit or view policy: the custom
    resources its program declares (alerts, scrape targets, training and multi-node serving
    workloads), and its queue's status (read only for both)."""
    read = ["get", "list", "watch"]
    verbs = [*read, "create", "delete", "patch", "update"] if write else read
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": "ml-platform"}},
        "rules": [
            {
                "apiGroups": ["monitoring.coreos.com"],
                "resources": ["prometheusrules", "servicemonitors", "podmonitors"],
                "verbs": sorted(verbs),
            },
            {"apiGroups": ["kubeflow.org"], "resources": ["pytorchjobs"], "verbs": sorted(verbs)},
            {
                "apiGroups": ["leaderworkerset.x-k8s.io"],
                "resources": ["leaderworkersets"],
                "verbs": sorted(verbs),
            },
            {
                "apiGroups": ["kueue.x-k8s.io"],
                "resources": ["localqueues", "workloads"],
                "verbs": read,
            },
        ],
    }


def group_binding(name: str, namespace: str, cluster_role: str, group: str) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": name, "namespace": namespace},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": cluster_role,
        },
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group}],
    }


@dataclass(frozen=True)
class ProjectCiNetwork:
    """Where the project's runner runs: the platform's VPC, admitted by the cluster."""

    vpc_id: pulumi.Input[str]
    private_subnet_ids: pulumi.Input[Sequence[str]]
    cluster_security_group_id: pulumi.Input[str]
    log_retention_days: int
    network_anchor: Sequence[pulumi.Resource] = ()


class ProjectCi(pulumi.ComponentResource):
    """A registered project's runner project, deploy and preview roles, and cluster access."""

    runner_project: pulumi.Output[str]
    label: pulumi.Output[str]
    deploy_role_arn: pulumi.Output[str]
    preview_role_arn: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        project: str,
        repository: str,
        namespaces: Sequence[str],
        stack: str,
        runners: CiRunnersArgs,
        runner_project_name: str,
        network: ProjectCiNetwork,
        cluster_name: pulumi.Input[str],
        store: StoreRefs,
        target: KubeTarget,
        namespace_resources: Mapping[str, pulumi.Resource] | None = None,
        tags: Mapping[str, str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """``runners``: the platform's CI settings (connection, size, image, limits); the
        repository, project name and workflows are the project's."""
        if not namespaces:
            raise ValueError(f"ProjectCi {name}: a project needs at least one namespace")
        found = role_name_issues(runner_project_name)
        if found:
            raise InvalidArgsError(f"ProjectCi {name}", found)
        super().__init__("mlplatform:ci:ProjectCi", name, None, opts)
        tags = merge_tags(tags, {"mlplatform.io/project": project})
        args = runners.model_copy(
            update={
                "repository": repository,
                "project_name": runner_project_name,
                "workflows": list(PROJECT_WORKFLOWS),
            }
        )
        self.runners = CiRunners(
            f"{name}-runners",
            args,
            project_name=runner_project_name,
            vpc_id=network.vpc_id,
            private_subnet_ids=network.private_subnet_ids,
            cluster_security_group_id=network.cluster_security_group_id,
            log_retention_days=network.log_retention_days,
            network_anchor=network.network_anchor,
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        k8s_opts = pulumi.ResourceOptions(
            parent=self, provider=target.provider, depends_on=list(target.depends_on)
        )
        groups = {role: f"mlplatform:project:{project}:{role.value}" for role in CiRole}
        for role in CiRole:
            self._rbac(name, project, role, groups[role], namespaces, namespace_resources, k8s_opts)

        invoke = pulumi.InvokeOutputOptions(parent=self)
        account = aws.get_caller_identity_output(opts=invoke).account_id
        partition = aws.get_partition_output(opts=invoke).partition
        region = aws.get_region_output(opts=invoke).region
        arns: dict[CiRole, pulumi.Output[str]] = {}
        for role in CiRole:

            def trust_json(a: list[str], r: CiRole = role) -> str:
                doc = github_oidc_trust(
                    partition=a[0],
                    account_id=a[1],
                    repository=repository,
                    environments=environments(r, stack),
                )
                return json.dumps(doc, sort_keys=True)

            def policy_json(a: list[Any], r: CiRole = role) -> str:
                doc = project_ci_policy(
                    role=r,
                    project=project,
                    partition=a[0],
                    region=a[1],
                    account_id=a[2],
                    cluster_name=a[3],
                    bucket_arn=a[4],
                    kms_key_arn=a[5],
                    ecr_repository_arns=a[6:],
                    state_bucket=runners.state_bucket,
                    platform_stack=stack,
                )
                return json.dumps(doc, sort_keys=True)

            trust = pulumi.Output.all(partition, account).apply(trust_json)
            iam_role = aws.iam.Role(
                f"{name}-{role.value}-role",
                # A fixed name: the project's workflows name the role before they can read
                # anything from the stack (new-project writes it into them).
                name=ci_role_name(runner_project_name, role),
                assume_role_policy=trust,
                description=f"{role.value} CI of project {project} ({repository}) on {stack}",
                max_session_duration=3600,
                tags=tags,
                opts=pulumi.ResourceOptions(parent=self),
            )
            repos = list(store.ecr_repository_arns.values())
            policy = pulumi.Output.all(
                partition,
                region,
                account,
                cluster_name,
                store.bucket_arn,
                store.kms_key_arn,
                *repos,
            ).apply(policy_json)
            role_policy = aws.iam.RolePolicy(
                f"{name}-{role.value}-policy",
                role=iam_role.name,
                policy=policy,
                opts=pulumi.ResourceOptions(parent=iam_role),
            )
            entry = aws.eks.AccessEntry(
                f"{name}-{role.value}-access",
                cluster_name=cluster_name,
                principal_arn=iam_role.arn,
                type="STANDARD",
                # Its group is bound, in the project's namespaces only, to the custom resources
                # the edit (view) policy does not cover.
                kubernetes_groups=[groups[role]],
                tags=tags,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[role_policy]),
            )
            aws.eks.AccessPolicyAssociation(
                f"{name}-{role.value}-access-policy",
                cluster_name=cluster_name,
                principal_arn=iam_role.arn,
                policy_arn=EDIT_POLICY if role is CiRole.DEPLOY else VIEW_POLICY,
                access_scope=aws.eks.AccessPolicyAssociationAccessScopeArgs(
                    type="namespace", namespaces=sorted(namespaces)
                ),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[entry]),
            )
            arns[role] = iam_role.arn

        self.runner_project = self.runners.project_name
        self.label = self.runners.label
        self.deploy_role_arn = arns[CiRole.DEPLOY]
        self.preview_role_arn = arns[CiRole.PREVIEW]
        self.register_outputs(
            {
                "runnerProject": self.runner_project,
                "label": self.label,
                "deployRoleArn": self.deploy_role_arn,
                "previewRoleArn": self.preview_role_arn,
            }
        )

    def _rbac(
        self,
        name: str,
        project: str,
        role: CiRole,
        group: str,
        namespaces: Sequence[str],
        namespace_resources: Mapping[str, pulumi.Resource] | None,
        k8s_opts: pulumi.ResourceOptions,
    ) -> None:
        cluster_role = f"mlplatform-project-{project}-ci-{role.value}"
        doc = custom_resources_role(cluster_role, write=role is CiRole.DEPLOY)
        role_res = k8s.rbac.v1.ClusterRole(
            f"{name}-{role.value}-cluster-role",
            metadata=doc["metadata"],
            rules=doc["rules"],
            opts=k8s_opts,
        )
        for ns in namespaces:
            binding = group_binding(f"{project}-ci-{role.value}", ns, cluster_role, group)
            ns_res = (namespace_resources or {}).get(ns)
            k8s.rbac.v1.RoleBinding(
                f"{name}-{ns}-{role.value}-binding",
                metadata=binding["metadata"],
                role_ref=binding["roleRef"],
                subjects=binding["subjects"],
                opts=pulumi.ResourceOptions.merge(
                    k8s_opts,
                    pulumi.ResourceOptions(
                        depends_on=[role_res, *([ns_res] if ns_res is not None else [])]
                    ),
                ),
            )
