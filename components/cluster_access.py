"""Who may use the training cluster's API: EKS access entries (builders for TrainingCluster).

Access is by access entries only (authentication mode API, no aws-auth ConfigMap). Admins, the
deployer included, get the cluster-admin access policy; readers (CI previews, drift checks) get
read-only access to every object. One entry per principal.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import pulumi
import pulumi_aws as aws

CLUSTER_ADMIN_POLICY = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
# get/list/watch on every resource, Secrets included (EKS access policy reference): what a
# refresh and a preview read. Nothing is written: pulumi-kubernetes previews a create or update
# it may not dry-run from its inputs, and a Helm release's preview installs nothing.
CLUSTER_READER_POLICY = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSAdminViewPolicy"


def admin_principals(
    admin_role_arns: Sequence[str], deployer: str | None
) -> list[tuple[str, int | None]]:
    """Each principal that gets cluster-admin once: (ARN, its index in adminRoleArns or None).

    The deployer is one more principal unless it is already listed (then it is that entry).
    """
    seen: dict[str, int | None] = {}
    for i, arn in enumerate(admin_role_arns):
        seen.setdefault(arn, i)
    if deployer is not None:
        seen.setdefault(deployer, None)
    return list(seen.items())


def principal_key(arn: str) -> str:
    """A resource-name part that names the principal: ``role-<path>-<name>`` (stable per ARN)."""
    resource = arn.split(":", 5)[-1]
    return re.sub(r"[^A-Za-z0-9-]+", "-", resource).strip("-")


def deployer_arn(parent: pulumi.Resource) -> str:
    """The IAM principal running this deployment: for an assumed role, the role's ARN (with its
    path), which is what an access entry names, not the session's STS ARN."""
    opts = pulumi.InvokeOptions(parent=parent)
    caller = aws.get_caller_identity(opts=opts)
    return aws.iam.get_session_context(arn=caller.arn, opts=opts).issuer_arn


def admin_access(
    parent: pulumi.Resource,
    name: str,
    cluster_name: pulumi.Input[str],
    admin_role_arns: Sequence[str],
    *,
    deployer: str | None,
    tags: dict[str, str],
) -> list[aws.eks.AccessPolicyAssociation]:
    # Cluster admins, the deployer included, are explicit access entries (EKS bootstraps
    # none): one per principal, so listing the deployer among the admins cannot collide.
    access: list[aws.eks.AccessPolicyAssociation] = []
    for principal, old_index in admin_principals(admin_role_arns, deployer):
        # Before entries were keyed by principal they were numbered: keep those in place.
        old = f"{name}-admin-{old_index}" if old_index is not None else None
        access.append(
            _entry(parent, name, cluster_name, principal, CLUSTER_ADMIN_POLICY, "admin", tags, old)
        )
    return access


def reader_access(
    parent: pulumi.Resource,
    name: str,
    cluster_name: pulumi.Input[str],
    reader_role_arns: Sequence[str],
    *,
    deployer: str | None,
    tags: dict[str, str],
) -> list[aws.eks.AccessPolicyAssociation]:
    if deployer is not None and deployer in reader_role_arns:
        # Its admin entry and its reader entry would be one principal's two entries.
        raise ValueError(
            f"TrainingCluster: the deployer {deployer} is in readerRoleArns; deploy with "
            "an admin role (the preview role cannot run pulumi up)"
        )
    return [
        _entry(parent, name, cluster_name, principal, CLUSTER_READER_POLICY, "reader", tags)
        for principal in dict.fromkeys(reader_role_arns)
    ]


def _entry(
    parent: pulumi.Resource,
    name: str,
    cluster_name: pulumi.Input[str],
    principal: str,
    policy_arn: str,
    role: str,
    tags: dict[str, str],
    old_name: str | None = None,
) -> aws.eks.AccessPolicyAssociation:
    """The principal's access entry and its policy association (``<name>-access-<principal>``
    and ``...-<role>``); ``old_name``: the entry's earlier name, kept through aliases."""
    key = f"{name}-access-{principal_key(principal)}"
    entry = aws.eks.AccessEntry(
        key,
        cluster_name=cluster_name,
        principal_arn=principal,
        type="STANDARD",
        tags=tags,
        opts=pulumi.ResourceOptions(
            parent=parent, aliases=[pulumi.Alias(name=old_name)] if old_name else None
        ),
    )
    return aws.eks.AccessPolicyAssociation(
        f"{key}-{role}",
        cluster_name=cluster_name,
        principal_arn=principal,
        policy_arn=policy_arn,
        access_scope=aws.eks.AccessPolicyAssociationAccessScopeArgs(type="cluster"),
        opts=pulumi.ResourceOptions(
            parent=parent,
            depends_on=[entry],
            aliases=[pulumi.Alias(name=f"{old_name}-policy")] if old_name else None,
        ),
    )
