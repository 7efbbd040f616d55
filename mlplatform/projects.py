"""What the stack declares for each registered project beyond its namespace and access: its CI
runner and roles (``ProjectCi``), and the ``projects`` output that generated projects read
(``mlplatform.contract.ProjectEntry``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pulumi

from components.project_ci import ProjectCi, ProjectCiNetwork
from components.registry_auth import CLIENT_PASSWORD_KEY, CLIENT_SECRET, CLIENT_USERNAME_KEY
from mlplatform.config import StackSettings

if TYPE_CHECKING:
    from components.model_store import ModelStore
    from components.network import Network
    from components.project_namespaces import ProjectNamespaces
    from components.training_cluster import TrainingCluster


def declare_project_ci(
    settings: StackSettings,
    network: Network,
    cluster: TrainingCluster,
    store: ModelStore,
    namespaces: ProjectNamespaces,
    tags: dict[str, str],
    opts: pulumi.ResourceOptions,
) -> dict[str, ProjectCi]:
    """A runner and CI roles for each registered project that names its repository."""
    cfg = settings.config
    where = ProjectCiNetwork(
        vpc_id=network.vpc_id,
        private_subnet_ids=network.private_subnet_ids,
        cluster_security_group_id=cluster.cluster_security_group_id,
        log_retention_days=cfg.cluster.log_retention_days,
        network_anchor=network.teardown_anchor,
    )
    out: dict[str, ProjectCi] = {}
    for p in cfg.projects.projects:
        if p.repository is None:
            continue
        out[p.name] = ProjectCi(
            f"project-ci-{p.name}",
            project=p.name,
            repository=p.repository,
            namespaces=[p.effective_namespace],
            stack=settings.stack,
            runners=cfg.ci,
            runner_project_name=project_runner_name(cluster.name, p.name),
            network=where,
            cluster_name=cluster.cluster_name,
            store=store.refs(),
            target=cluster.target,
            namespace_resources=namespaces.resources,
            tags=tags,
            opts=opts,
        )
    return out


def project_runner_name(cluster_name: str, project: str) -> str:
    """A project's CodeBuild runner project (part of its workflows' runs-on label)."""
    return f"{cluster_name}-{project}-ci"


def project_entries(
    settings: StackSettings, *, has_registry: bool, project_ci: Mapping[str, ProjectCi]
) -> dict[str, Any]:
    """What each registered project gets from the stack (the contract's ``projects``)."""
    cfg = settings.config
    # The team whose queue admits the namespace (its label; platform.namespace_teams).
    teams = {ns: t.name for t in cfg.training_queues.teams for ns in t.namespaces}
    out: dict[str, Any] = {}
    for p in cfg.projects.projects:
        ns = p.effective_namespace
        entry: dict[str, Any] = {
            "namespace": ns,
            "serviceAccounts": {
                g.service_account: g.access.value
                for g in cfg.projects.grants
                if g.project == p.name and cfg.projects.namespace_of(g) == ns
            },
        }
        if ns in teams:
            entry["team"] = teams[ns]
        if has_registry:
            entry["mlflowSecret"] = {
                "name": CLIENT_SECRET,
                "usernameKey": CLIENT_USERNAME_KEY,
                "passwordKey": CLIENT_PASSWORD_KEY,
            }
        ci = project_ci.get(p.name)
        if ci is not None:
            entry["ci"] = {
                "repository": p.repository,
                "runnerProject": ci.runner_project,
                "label": ci.label,
                "deployRoleArn": ci.deploy_role_arn,
                "previewRoleArn": ci.preview_role_arn,
            }
        out[p.name] = entry
    return out
