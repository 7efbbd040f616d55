"""Least-privilege access for ML projects to the model store, through EKS Pod Identity.

Each grant (project + namespace + service account) gets its own IAM role, trusted only by the EKS
Pod Identity service for this account and cluster, and a ``PodIdentityAssociation`` binding it to
the service account. Pods then get short-lived credentials without static keys.

Given a Kubernetes target, the component also declares each grant's ServiceAccount, so an
association never names an account nobody creates; a grant whose account another component
declares (a ``ServingEndpoint``'s ``<endpoint>-server``) says ``createServiceAccount: false``.
Projects name their accounts ``<project>-<role>`` (``churn-trainer``), as generated projects do.

The IAM documents are built by the pure functions below (plain dicts), so the tests feed exactly
what is deployed to ``parliament``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
from pydantic import Field

from components.ci_runners import repository_issues
from components.common import POD_IDENTITY_PRINCIPAL as POD_IDENTITY_PRINCIPAL
from components.common import (
    ArgsModel,
    InvalidArgsError,
    Issue,
    KubeTarget,
    check_dns_label,
    merge_tags,
    pod_identity_trust_json,
)
from components.common import cluster_arn as cluster_arn
from components.common import pod_identity_trust_policy as pod_identity_trust_policy

# The "X as X" imports above are re-exports: these lived here, and callers import them from here.

# ECR actions: pull is what a kubelet or a build needs to read an image; push adds the upload.
ECR_PULL_ACTIONS = [
    "ecr:BatchCheckLayerAvailability",
    "ecr:BatchGetImage",
    "ecr:GetDownloadUrlForLayer",
]
ECR_PUSH_ACTIONS = [
    "ecr:CompleteLayerUpload",
    "ecr:InitiateLayerUpload",
    "ecr:PutImage",
    "ecr:UploadLayerPart",
]
S3_READ_ACTIONS = ["s3:GetObject", "s3:GetObjectTagging", "s3:GetObjectVersion"]
# Write-only prefixes (a server's inference log): new objects, nothing read back, listed or removed.
S3_WRITE_ONLY_ACTIONS = ["s3:PutObject"]
# Where a project's serving app writes its sampled inference log, under projects/<project>/
# (components/model_store.py expires it; policies/compliance_resources.py checks that it does).
INFERENCE_LOG_DIR = "inference-logs/"
# No s3:DeleteObjectVersion: a project can add delete markers, never erase history.
S3_WRITE_ACTIONS = [
    "s3:AbortMultipartUpload",
    "s3:DeleteObject",
    "s3:ListMultipartUploadParts",
    "s3:PutObject",
    "s3:PutObjectTagging",
]


class AccessLevel(StrEnum):
    READ = "read"
    READ_WRITE = "read-write"


# --- IAM documents as data -----------------------------------------------------------------


def s3_prefix_policy(
    *,
    bucket_arn: str,
    prefix: str | Sequence[str],
    access: AccessLevel,
    kms_key_arn: str,
    region: str,
    ecr_repository_arns: Sequence[str] = (),
    write_only_prefixes: Sequence[str] = (),
) -> dict[str, Any]:
    """Identity policy for ``access`` on ``s3://<bucket>/<prefix>*`` (``prefix`` "" = whole bucket;
    several prefixes: each of them), plus ``s3:PutObject`` alone on each ``write_only_prefixes``
    (full keys' prefixes; for a read grant that must write, say, a log it never reads back).

    KMS use is limited to S3 in this region (``kms:ViaService``) and to this bucket's encryption
    context, so the grant cannot decrypt anything else protected by the same key.
    """
    prefixes = [prefix] if isinstance(prefix, str) else sorted(prefix)
    for p in prefixes:
        if p and not p.endswith("/"):
            raise ValueError(f"prefix must end with '/', got {p!r}")
    object_arns = [f"{bucket_arn}/{p}*" for p in prefixes]
    objects: str | list[str] = object_arns[0] if len(object_arns) == 1 else object_arns
    list_stmt: dict[str, Any] = {
        "Sid": "ListPrefix",
        "Effect": "Allow",
        "Action": "s3:ListBucket",
        "Resource": bucket_arn,
    }
    if all(prefixes):
        listed = [x for p in prefixes for x in (p, f"{p}*")]
        list_stmt["Condition"] = {"StringLike": {"s3:prefix": listed}}
    write = access == AccessLevel.READ_WRITE
    statements: list[dict[str, Any]] = [
        list_stmt,
        {
            "Sid": "ReadWriteObjects" if write else "ReadObjects",
            "Effect": "Allow",
            "Action": sorted(S3_READ_ACTIONS + (S3_WRITE_ACTIONS if write else [])),
            "Resource": objects,
        },
        {
            "Sid": "UseBucketKeyThroughS3",
            "Effect": "Allow",
            # Decrypt to read; GenerateDataKey to write (multipart uploads also need Decrypt).
            "Action": ["kms:Decrypt", "kms:GenerateDataKey"] if write else ["kms:Decrypt"],
            "Resource": kms_key_arn,
            "Condition": {
                "StringEquals": {"kms:ViaService": f"s3.{region}.amazonaws.com"},
                # With an S3 Bucket Key the context is the bucket ARN, otherwise the object ARN.
                # The context is a string key (parliament: ArnLike would be a type mismatch).
                "StringLike": {"kms:EncryptionContext:aws:s3:arn": [bucket_arn, *object_arns]},
            },
        },
    ]
    if write_only_prefixes:
        for p in write_only_prefixes:
            if not p or not p.endswith("/"):
                raise ValueError(f"write-only prefix must be non-empty and end with '/', got {p!r}")
        log_arns = [f"{bucket_arn}/{p}*" for p in sorted(write_only_prefixes)]
        statements += [
            {
                "Sid": "WriteOnlyObjects",
                "Effect": "Allow",
                "Action": S3_WRITE_ONLY_ACTIONS,
                "Resource": log_arns[0] if len(log_arns) == 1 else log_arns,
            },
            {
                # SSE-KMS puts need a data key; no Decrypt: what is written is never read back.
                "Sid": "EncryptWritesThroughS3",
                "Effect": "Allow",
                "Action": "kms:GenerateDataKey",
                "Resource": kms_key_arn,
                "Condition": {
                    "StringEquals": {"kms:ViaService": f"s3.{region}.amazonaws.com"},
                    "StringLike": {"kms:EncryptionContext:aws:s3:arn": [bucket_arn, *log_arns]},
                },
            },
        ]
    if ecr_repository_arns:
        statements += [
            {
                "Sid": "EcrLogin",
                "Effect": "Allow",
                # GetAuthorizationToken has no resource-level permissions: "*" is the only form.
                "Action": "ecr:GetAuthorizationToken",
                "Resource": "*",
            },
            {
                "Sid": "EcrPushPull" if write else "EcrPull",
                "Effect": "Allow",
                "Action": sorted(ECR_PULL_ACTIONS + (ECR_PUSH_ACTIONS if write else [])),
                "Resource": sorted(ecr_repository_arns),
            },
        ]
    return {"Version": "2012-10-17", "Statement": statements}


# --- Runtime references to the store ---------------------------------------------------------


@dataclass(frozen=True)
class StoreRefs:
    """What ProjectAccess needs from a ModelStore (``ModelStore.refs()`` builds it)."""

    bucket_arn: Any  # pulumi.Input[str]
    kms_key_arn: Any  # pulumi.Input[str]
    ecr_repository_arns: Mapping[str, Any] = field(default_factory=dict)  # key -> Input[str]


def pod_identity_role(
    parent: pulumi.Resource,
    name: str,
    *,
    cluster_name: pulumi.Input[str],
    policy_for: Any,
    description: str,
    tags: Mapping[str, str] | None = None,
) -> tuple[aws.iam.Role, aws.iam.RolePolicy]:
    """Create a Pod Identity role whose inline policy is ``policy_for(region) -> Output[dict]``.

    Shared by ProjectAccess, the MLflow registry and the Mountpoint add-on so every role has the
    same trust policy.
    """
    opts = pulumi.InvokeOutputOptions(parent=parent)
    account = aws.get_caller_identity_output(opts=opts).account_id
    partition = aws.get_partition_output(opts=opts).partition
    region = aws.get_region_output(opts=opts).region
    trust = pod_identity_trust_json(
        partition=partition, region=region, account_id=account, cluster_name=cluster_name
    )
    role = aws.iam.Role(
        f"{name}-role",
        assume_role_policy=trust,
        description=description,
        max_session_duration=3600,
        tags=dict(tags or {}),
        opts=pulumi.ResourceOptions(parent=parent),
    )
    policy = aws.iam.RolePolicy(
        f"{name}-policy",
        role=role.name,
        policy=pulumi.Output.from_input(policy_for(region)).apply(
            lambda doc: json.dumps(doc, sort_keys=True)
        ),
        opts=pulumi.ResourceOptions(parent=role),
    )
    return role, policy


# --- Args --------------------------------------------------------------------------------------


class ProjectSpec(ArgsModel):
    """A project known to the platform; its data lives under ``projects/<name>/``."""

    name: str
    namespace: str | None = None  # defaults to the project name
    # The project's GitHub repository (owner/name): it gets its own CI runner and roles
    # (components/project_ci.py), scoped to this project.
    repository: str | None = None

    @property
    def effective_namespace(self) -> str:
        return self.namespace or self.name

    def issues(self) -> list[Issue]:
        return [
            *super().issues(),
            *check_dns_label("name", self.name),
            *check_dns_label("namespace", self.namespace),
            *repository_issues(("repository",), self.repository),
        ]


class AccessGrant(ArgsModel):
    """Give one service account of a project read or read-write access."""

    project: str
    service_account: str
    access: AccessLevel = AccessLevel.READ
    namespace: str | None = None  # defaults to the project's namespace
    # Keys of the ModelStore's ECR repositories (e.g. "training"): pull for read, push for write.
    ecr_repositories: list[str] = Field(default_factory=list)
    # False when another component declares the ServiceAccount (a ServingEndpoint, a chart).
    create_service_account: bool = True
    # Narrower than the project: only these prefixes under projects/<project>/ ("models/x/").
    prefixes: list[str] = Field(default_factory=list)
    # A read grant may also put (never read, list or delete) objects under these prefixes of
    # projects/<project>/: a serving app's sampled inference log (INFERENCE_LOG_DIR).
    write_only_prefixes: list[str] = Field(default_factory=list)

    def issues(self) -> list[Issue]:
        found = [
            *super().issues(),
            *check_dns_label("serviceAccount", self.service_account),
            *check_dns_label("namespace", self.namespace),
        ]
        for key, values in (
            ("prefixes", self.prefixes),
            ("writeOnlyPrefixes", self.write_only_prefixes),
        ):
            found += [
                Issue((key, i), f"{p!r} must be a relative path ending in '/'")
                for i, p in enumerate(values)
                if not p.endswith("/") or p.startswith("/") or ".." in p.split("/")
            ]
        if self.write_only_prefixes and self.access is AccessLevel.READ_WRITE:
            found.append(
                Issue(
                    ("writeOnlyPrefixes",),
                    "only for access 'read': a read-write grant already writes its whole scope",
                )
            )
        return found


class ProjectAccessArgs(ArgsModel):
    projects: list[ProjectSpec] = Field(default_factory=list)
    grants: list[AccessGrant] = Field(default_factory=list)

    def issues(self) -> list[Issue]:
        found = super().issues()
        names = [p.name for p in self.projects]
        seen: set[str] = set()
        for i, n in enumerate(names):
            if n in seen:
                found.append(Issue(("projects", i, "name"), f"duplicate project {n!r}"))
            seen.add(n)
        allowed = ", ".join(sorted(seen)) or "(none declared)"
        bindings: dict[tuple[str, str], int] = {}
        for i, g in enumerate(self.grants):
            if g.project not in seen:
                found.append(
                    Issue(
                        ("grants", i, "project"),
                        f"unknown project {g.project!r}; declared projects: {allowed}",
                    )
                )
                continue
            key = (self.namespace_of(g), g.service_account)
            if key in bindings:
                found.append(
                    Issue(
                        ("grants", i, "serviceAccount"),
                        f"{key[0]}/{key[1]} is already granted by grants[{bindings[key]}] "
                        "(one Pod Identity association per service account)",
                    )
                )
            bindings.setdefault(key, i)
        return found

    def namespace_of(self, grant: AccessGrant) -> str:
        if grant.namespace:
            return grant.namespace
        project = next((p for p in self.projects if p.name == grant.project), None)
        return project.effective_namespace if project else grant.project


# --- Component ---------------------------------------------------------------------------------


class ProjectAccess(pulumi.ComponentResource):
    """One Pod Identity role + association per grant, scoped to ``projects/<project>/``."""

    role_arns: pulumi.Output[dict[str, str]]

    def __init__(
        self,
        name: str,
        args: ProjectAccessArgs,
        *,
        store: StoreRefs,
        cluster_name: pulumi.Input[str],
        service_accounts: KubeTarget | None = None,
        namespace_resources: Mapping[str, pulumi.Resource] | None = None,
        tags: Mapping[str, str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ):
        """``service_accounts``: where to declare the grants' ServiceAccounts (None: the caller
        declares them); ``namespace_resources``: namespaces they wait for, by name."""
        args.raise_if_invalid("ProjectAccess")
        unknown = [
            Issue(
                ("grants", i, "ecrRepositories", j),
                f"unknown repository {key!r}; the model store has: "
                + (", ".join(sorted(store.ecr_repository_arns)) or "(none)"),
            )
            for i, g in enumerate(args.grants)
            for j, key in enumerate(g.ecr_repositories)
            if key not in store.ecr_repository_arns
        ]
        if unknown:
            raise InvalidArgsError("ProjectAccess", unknown)
        super().__init__("mlplatform:storage:ProjectAccess", name, None, opts)

        arns: dict[str, pulumi.Output[str]] = {}
        self.service_accounts: dict[str, k8s.core.v1.ServiceAccount] = {}
        for grant in args.grants:
            ns = args.namespace_of(grant)
            key = f"{grant.project}-{grant.service_account}"
            if service_accounts is not None and grant.create_service_account:
                self.service_accounts[key] = _service_account(
                    self, f"{name}-{key}", service_accounts, namespace_resources, ns, grant
                )
            repo_arns = [store.ecr_repository_arns[k] for k in grant.ecr_repositories]

            def policy_for(
                region: pulumi.Output[str], g: AccessGrant = grant, repos: list[Any] = repo_arns
            ) -> pulumi.Output[dict[str, Any]]:
                def build(a: list[Any]) -> dict[str, Any]:
                    return s3_prefix_policy(
                        bucket_arn=a[1],
                        prefix=[f"projects/{g.project}/{p}" for p in g.prefixes]
                        or f"projects/{g.project}/",
                        access=g.access,
                        kms_key_arn=a[2],
                        region=a[0],
                        ecr_repository_arns=a[3:],
                        write_only_prefixes=[
                            f"projects/{g.project}/{p}" for p in g.write_only_prefixes
                        ],
                    )

                return pulumi.Output.all(region, store.bucket_arn, store.kms_key_arn, *repos).apply(
                    build
                )

            role_tags = merge_tags(
                tags, {"mlplatform.io/project": grant.project, "mlplatform.io/namespace": ns}
            )
            role, policy = pod_identity_role(
                self,
                f"{name}-{key}",
                cluster_name=cluster_name,
                policy_for=policy_for,
                description=f"{grant.access.value} access for {ns}/{grant.service_account} "
                f"to projects/{grant.project}/{'{' + ','.join(grant.prefixes) + '}' if grant.prefixes else ''}"
                + (
                    f"; put-only {','.join(grant.write_only_prefixes)}"
                    if grant.write_only_prefixes
                    else ""
                ),
                tags=role_tags,
            )
            aws.eks.PodIdentityAssociation(
                f"{name}-{key}-pod-identity",
                cluster_name=cluster_name,
                namespace=ns,
                service_account=grant.service_account,
                role_arn=role.arn,
                tags=role_tags,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[policy]),
            )
            arns[key] = role.arn

        self.role_arns = pulumi.Output.all(**arns) if arns else pulumi.Output.from_input({})
        self.register_outputs({"role_arns": self.role_arns})


def _service_account(
    parent: pulumi.Resource,
    name: str,
    target: KubeTarget,
    namespaces: Mapping[str, pulumi.Resource] | None,
    namespace: str,
    grant: AccessGrant,
) -> k8s.core.v1.ServiceAccount:
    ns = (namespaces or {}).get(namespace)
    return k8s.core.v1.ServiceAccount(
        f"{name}-sa",
        metadata={
            "name": grant.service_account,
            "namespace": namespace,
            "labels": {"mlplatform.io/project": grant.project},
        },
        # Pod Identity needs no token in the pod; workloads that call the API opt in themselves.
        automount_service_account_token=False,
        opts=pulumi.ResourceOptions(
            parent=parent,
            provider=target.provider,
            depends_on=[*target.depends_on, *([ns] if ns is not None else [])],
        ),
    )
