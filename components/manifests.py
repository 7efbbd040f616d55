"""Declare a manifest dict as the typed pulumi_kubernetes resource of its kind.

Builders return plain manifests (what tests and validators read); this turns one into a resource.
Top-level fields become the resource's keyword arguments (snake_case, as the typed classes take
them); nested values stay as the manifest has them.
"""

from __future__ import annotations

import re
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

KINDS: dict[str, Any] = {
    "Namespace": k8s.core.v1.Namespace,
    "ServiceAccount": k8s.core.v1.ServiceAccount,
    "PriorityClass": k8s.scheduling.v1.PriorityClass,
    "NetworkPolicy": k8s.networking.v1.NetworkPolicy,
    "Deployment": k8s.apps.v1.Deployment,
    "CronJob": k8s.batch.v1.CronJob,
    "Role": k8s.rbac.v1.Role,
    "RoleBinding": k8s.rbac.v1.RoleBinding,
    "ClusterRole": k8s.rbac.v1.ClusterRole,
    "ClusterRoleBinding": k8s.rbac.v1.ClusterRoleBinding,
    "ValidatingAdmissionPolicy": k8s.admissionregistration.v1.ValidatingAdmissionPolicy,
    "ValidatingAdmissionPolicyBinding": (
        k8s.admissionregistration.v1.ValidatingAdmissionPolicyBinding
    ),
}


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def declare_manifest(
    resource_name: str, manifest: dict[str, Any], opts: pulumi.ResourceOptions
) -> pulumi.Resource:
    kind = manifest["kind"]
    if kind not in KINDS:
        raise ValueError(f"no typed resource for kind {kind!r}; known: {sorted(KINDS)}")
    body = {_snake(k): v for k, v in manifest.items() if k not in ("apiVersion", "kind")}
    resource: pulumi.Resource = KINDS[kind](resource_name, **body, opts=opts)
    return resource
