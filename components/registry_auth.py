"""The model registry's authentication: MLflow's basic-auth app, one user per project.

Part of :mod:`components.model_registry`. The tracking server runs ``--app-name basic-auth``
with ``default_permission = NO_PERMISSIONS``: a project's user sees the experiments and
registered models it created (MLflow makes the creator their manager) and nothing else, and the
artifact proxy checks the same permissions, so ``--serve-artifacts`` under one role no longer
crosses projects.

Credentials are generated (``GeneratedSecret``), never configured: the admin's go into the server's
auth config (a Secret); each project's user gets a Secret ``mlflow-tracking`` in each of its
namespaces, with ``username``, ``password`` and ``credentials`` (the ``~/.mlflow/credentials`` file
MLflow's client reads; mount it at ``$HOME/.mlflow``). A Job creates or updates the users through
MLflow's REST API once the server is up; it is replaced (and so runs again) when the set of users
changes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import pulumi
import pulumi_kubernetes as k8s

from components.common import ArgsModel, Issue, check_dns_label, container_security_context
from components.generated_secret import GeneratedSecret
from components.registry_database import (
    APP,
    DIGEST_SKIP,
    checkov_skips,
    labels,
    meta,
    pull_policy,
)

ASSETS = Path(__file__).parent / "assets" / "mlflow"
SCRIPTS_MOUNT = "/opt/mlplatform"
AUTH_CONFIG_DIR = "/etc/mlflow/auth"
AUTH_CONFIG_FILE = "basic_auth.ini"
ADMIN_SECRET = "mlflow-admin"  # noqa: S105 - a Secret's name
USERS_SECRET = "mlflow-users"  # noqa: S105 - a Secret's name
CLIENT_SECRET = "mlflow-tracking"  # noqa: S105 - a Secret's name
# The keys of CLIENT_SECRET a client reads (MLflow's MLFLOW_TRACKING_USERNAME / _PASSWORD);
# exported to projects (the ``projects`` output), so their jobs name exactly these.
CLIENT_USERNAME_KEY = "username"
CLIENT_PASSWORD_KEY = "password"  # noqa: S105 - a key's name
SCRIPTS = "mlflow-platform-scripts"


class RegistryAuth(ArgsModel):
    """MLflow authentication (basic-auth app). Off only for a sandbox without projects."""

    enabled: bool = True
    # What a user may do with resources it did not create: nothing, by default.
    default_permission: Literal["NO_PERMISSIONS", "READ", "EDIT", "MANAGE"] = "NO_PERMISSIONS"
    admin_username: str = "admin"

    def issues(self) -> list[Issue]:
        return super().issues() + check_dns_label("adminUsername", self.admin_username)


def render_auth_config(auth: RegistryAuth, admin_password: str, database_uri: str) -> str:
    """MLflow's basic_auth.ini (the keys of mlflow/server/auth/basic_auth.ini)."""
    return "\n".join(
        [
            "[mlflow]",
            f"default_permission = {auth.default_permission}",
            f"database_uri = {database_uri}",
            f"admin_username = {auth.admin_username}",
            f"admin_password = {admin_password}",
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth",
            "",
        ]
    )


def auth_config(auth: RegistryAuth, admin_password: Any, database_uri: Any) -> pulumi.Output[str]:
    """:func:`render_auth_config` of Inputs, as a secret (admin password, database URI)."""
    return pulumi.Output.secret(
        pulumi.Output.all(admin_password, database_uri).apply(
            lambda v: render_auth_config(auth, v[0], v[1])
        )
    )


def client_credentials(username: str, password: Any) -> pulumi.Output[str]:
    """The ``~/.mlflow/credentials`` file of MLflow's client."""
    return pulumi.Output.secret(
        pulumi.Output.from_input(password).apply(
            lambda p: (
                f"[mlflow]\nmlflow_tracking_username = {username}\nmlflow_tracking_password = {p}\n"
            )
        )
    )


def users_digest(users: list[str]) -> str:
    return hashlib.sha256(",".join(sorted(users)).encode()).hexdigest()[:8]


def script_volume() -> dict[str, Any]:
    return {"name": "scripts", "configMap": {"name": SCRIPTS, "defaultMode": 0o444}}


def script_mount() -> dict[str, Any]:
    return {"name": "scripts", "mountPath": SCRIPTS_MOUNT, "readOnly": True}


def create_auth_db_container(
    image: str, resources: dict[str, Any], uri_file: str, db_mounts: list[dict[str, Any]]
) -> dict[str, Any]:
    """Init container: the auth database exists before the server migrates it."""
    return {
        "name": "create-auth-db",
        "image": image,
        "imagePullPolicy": pull_policy(image),
        "command": ["python", f"{SCRIPTS_MOUNT}/create_auth_db.py"],
        "env": [
            {"name": "BACKEND_STORE_URI_FILE", "value": uri_file},
            {"name": "AUTH_DB_NAME", "value": "mlflow_auth"},
            {"name": "HOME", "value": "/tmp"},  # noqa: S108 - the pod's emptyDir
        ],
        "securityContext": container_security_context(),
        "resources": resources,
        "volumeMounts": [
            *db_mounts,
            script_mount(),
            {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108
        ],
    }


def sync_job(
    namespace: str,
    image: str,
    users: list[str],
    tracking_url: str,
    resources: dict[str, Any],
    node_selector: Mapping[str, str],
) -> dict[str, Any]:
    """The Job that creates or updates the users (named after the user set, so a new set is a
    new Job). It stays after it succeeds: refresh must not run it again (see TrainingJob)."""
    pod: dict[str, Any] = {
        "restartPolicy": "OnFailure",
        "serviceAccountName": f"{APP}-users",
        "automountServiceAccountToken": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "runAsGroup": 10001,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [
            {
                "name": "sync-users",
                "image": image,
                "imagePullPolicy": pull_policy(image),
                "command": ["python", f"{SCRIPTS_MOUNT}/sync_users.py"],
                "env": [
                    {"name": "MLFLOW_URL", "value": tracking_url},
                    {"name": "ADMIN_DIR", "value": "/etc/mlflow/admin"},
                    {"name": "USERS_DIR", "value": "/etc/mlflow/users"},
                ],
                "securityContext": container_security_context(),
                "resources": resources,
                "volumeMounts": [
                    script_mount(),
                    {"name": "admin", "mountPath": "/etc/mlflow/admin", "readOnly": True},
                    {"name": "users", "mountPath": "/etc/mlflow/users", "readOnly": True},
                ],
            }
        ],
        "volumes": [
            script_volume(),
            {"name": "admin", "secret": {"secretName": ADMIN_SECRET, "defaultMode": 0o440}},
            {"name": "users", "secret": {"secretName": USERS_SECRET, "defaultMode": 0o440}},
        ],
    }
    if node_selector:
        pod["nodeSelector"] = dict(node_selector)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta(
            f"{APP}-users-{users_digest(users)}",
            namespace,
            f"{APP}-users",
            annotations=checkov_skips(DIGEST_SKIP) if "@sha256:" not in image else None,
        ),
        "spec": {
            "backoffLimit": 6,
            "activeDeadlineSeconds": 1200,
            "template": {"metadata": {"labels": labels(f"{APP}-users")}, "spec": pod},
        },
    }


class AuthWiring:
    """Declares the auth Secrets, the client credentials and (after the server) the user Job."""

    def __init__(
        self,
        owner: pulumi.ComponentResource,
        name: str,
        auth: RegistryAuth,
        *,
        namespace: str,
        database_uri: Any,
        clients: Mapping[str, str],
        client_namespaces: Mapping[str, pulumi.Resource],
        k8s_opts: pulumi.ResourceOptions,
    ) -> None:
        """``clients``: namespace -> MLflow user (its project); ``client_namespaces``: the
        Namespace resources to wait for, where the platform declares them."""
        self.auth = auth
        self.namespace = namespace
        self.users = sorted(set(clients.values()))
        child = pulumi.ResourceOptions(parent=owner)
        admin_password = GeneratedSecret(f"{name}-admin-password", length=32, opts=child)
        self.config = k8s.core.v1.Secret(
            f"{name}-auth-config",
            metadata=meta(f"{APP}-auth", namespace),
            type="Opaque",
            string_data={AUTH_CONFIG_FILE: auth_config(auth, admin_password.result, database_uri)},
            opts=k8s_opts,
        )
        self.admin = k8s.core.v1.Secret(
            f"{name}-admin",
            metadata=meta(ADMIN_SECRET, namespace),
            type="Opaque",
            string_data={
                "username": auth.admin_username,
                "password": admin_password.result,  # secret: a GeneratedSecret's result
            },
            opts=k8s_opts,
        )
        passwords = {
            user: GeneratedSecret(f"{name}-user-{user}", length=32, opts=child)
            for user in self.users
        }
        self.passwords = {user: p.result for user, p in passwords.items()}
        self.users_secret = k8s.core.v1.Secret(
            f"{name}-users",
            metadata=meta(USERS_SECRET, namespace),
            type="Opaque",
            string_data={u: p.result for u, p in passwords.items()},
            opts=k8s_opts,
        )
        k8s.core.v1.ConfigMap(
            f"{name}-scripts",
            metadata=meta(SCRIPTS, namespace),
            data={p.name: p.read_text() for p in sorted(ASSETS.glob("*.py"))},
            opts=k8s_opts,
        )
        k8s.core.v1.ServiceAccount(
            f"{name}-users-sa",
            metadata=meta(f"{APP}-users", namespace, f"{APP}-users"),
            automount_service_account_token=False,
            opts=k8s_opts,
        )
        for ns, user in sorted(clients.items()):
            deps = [client_namespaces[ns]] if ns in client_namespaces else []
            k8s.core.v1.Secret(
                f"{name}-client-{ns}",
                metadata={
                    "name": CLIENT_SECRET,
                    "namespace": ns,
                    "labels": labels(f"{APP}-client"),
                },
                type="Opaque",
                string_data={
                    CLIENT_USERNAME_KEY: user,
                    CLIENT_PASSWORD_KEY: passwords[user].result,
                    "credentials": client_credentials(user, passwords[user].result),
                },
                opts=pulumi.ResourceOptions.merge(
                    k8s_opts, pulumi.ResourceOptions(depends_on=deps)
                ),
            )

    def volumes(self) -> list[dict[str, Any]]:
        return [
            {"name": "auth", "secret": {"secretName": f"{APP}-auth", "defaultMode": 0o440}},
            script_volume(),
        ]

    def mounts(self) -> list[dict[str, Any]]:
        return [{"name": "auth", "mountPath": AUTH_CONFIG_DIR, "readOnly": True}]

    def env(self) -> list[dict[str, Any]]:
        return [
            {"name": "MLFLOW_AUTH_CONFIG_PATH", "value": f"{AUTH_CONFIG_DIR}/{AUTH_CONFIG_FILE}"}
        ]

    def declare_sync(
        self,
        name: str,
        *,
        image: str,
        tracking_url: str,
        resources: dict[str, Any],
        node_selector: Mapping[str, str],
        k8s_opts: pulumi.ResourceOptions,
        after: list[pulumi.Resource],
    ) -> None:
        if not self.users:
            return
        job = sync_job(self.namespace, image, self.users, tracking_url, resources, node_selector)
        k8s.batch.v1.Job(
            f"{name}-sync-users",
            metadata=job["metadata"],
            spec=job["spec"],
            opts=pulumi.ResourceOptions.merge(
                k8s_opts,
                pulumi.ResourceOptions(
                    depends_on=[self.admin, self.users_secret, *after],
                    # A Job's pod template cannot change in place; a new user set is a new Job.
                    replace_on_changes=["spec"],
                    delete_before_replace=True,
                ),
            ),
        )
