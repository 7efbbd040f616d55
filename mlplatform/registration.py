"""Whether a platform stack registers a project, and the stack-config entry that would.

The platform owns a registered project's namespace, queue, Pod Identity roles, MLflow user and CI
runner (its ``projects`` output, ``mlplatform.contract.ProjectEntry``). ``new-project`` uses
:func:`registration` to tell the user whether the project it generates is registered on the
stack and, when it is not, to print the exact entry to add; :func:`ci_values` fills the
project's workflows with its runner and roles.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from components.project_access import INFERENCE_LOG_DIR
from mlplatform.contract import registration_problems

if TYPE_CHECKING:
    from mlplatform.new_project import PlatformOffer


def ci_values(offer: PlatformOffer, project: str) -> dict[str, str]:
    """The project's runner and roles (``projects[project].ci``), for its workflows; empty when
    the stack gives the project no runner."""
    entry = offer.outputs.projects.get(project)
    if entry is None or entry.ci is None:
        return {"_ci_runner": "", "_ci_deploy_role_arn": "", "_ci_preview_role_arn": ""}
    ci = entry.ci
    return {
        "_ci_runner": ci.runnerProject,
        "_ci_deploy_role_arn": _in_platform_account(ci.deployRoleArn, offer.platform_ci_role_arn),
        "_ci_preview_role_arn": _in_platform_account(ci.previewRoleArn, offer.platform_ci_role_arn),
    }


def _in_platform_account(role_arn: str, platform_role_arn: str | None) -> str:
    """``role_arn`` in the account of the platform's configured CI role: the roles have fixed
    names, and the offline plan's own ARNs carry a stand-in account."""
    if not platform_role_arn:
        return role_arn
    prefix = platform_role_arn.split(":role/", 1)[0]
    return f"{prefix}:role/{role_arn.split(':role/', 1)[1]}"


def project_needs(serving: bool, project: str) -> dict[str, str]:
    """The service accounts a generated project runs as, and the access each needs."""
    needs = {f"{project}-trainer": "read-write"}
    if serving:
        needs[f"{project}-server"] = "read"
        needs[f"{project}-retrainer"] = "read"  # the retraining trigger reads drift results
    return needs


@dataclass(frozen=True)
class Registration:
    """Whether the stack registers a project, and what to add to its stack config if not."""

    stack: str
    project: str
    missing: tuple[str, ...]  # each problem of the registration (empty: registered)
    entry: str  # the stack-config entry that registers the project
    known: bool = False  # the stack lists the project (its registration may be incomplete)

    @property
    def registered(self) -> bool:
        return not self.missing

    def message(self) -> str:
        if self.registered:
            return (
                f"project {self.project!r} is registered on stack {self.stack!r}: the platform "
                "declares its namespace, queue, service accounts and MLflow user"
            )
        lines = "\n".join(f"  - {m}" for m in self.missing)
        state = (
            "is registered on stack {stack!r} without all it needs"
            if self.known
            else "is NOT registered on stack {stack!r}, so it has no namespace, MLflow user or "
            "cluster access there"
        ).format(stack=self.stack)
        return (
            f"project {self.project!r} {state}; its preview fails until it is:\n"
            f"{lines}\n"
            f"Add this to stacks/Pulumi.{self.stack}.yaml (merge with the lists already there) "
            f"and run `pulumi up --stack {self.stack}` for the platform:\n\n{self.entry}"
        )


def registration(
    offer: PlatformOffer,
    *,
    project: str,
    team: str,
    serving: bool,
    repository: str | None = None,
) -> Registration:
    """Check the stack's registration of ``project`` (its name, which is its namespace) for
    what a generated project needs; ``repository``: its GitHub repository (owner/name)."""
    needs = project_needs(serving, project)
    missing = registration_problems(
        offer.outputs,
        stack=offer.stack,
        project=project,
        team=team,
        namespace=project,
        service_accounts=needs,
    )
    entry = offer.outputs.projects.get(project)
    has_repo = entry is not None and entry.ci is not None
    if repository and not has_repo:
        missing.append(f"repository: {offer.stack} gives {repository} no CI runner")
    elif repository and entry and entry.ci and entry.ci.repository != repository:
        missing.append(
            f"repository: {offer.stack} gives the runner to {entry.ci.repository}, not {repository}"
        )
    spec: dict[str, Any] = {"name": project}
    if repository or has_repo:
        spec["repository"] = repository or (entry.ci.repository if entry and entry.ci else "")
    grants = [
        {"project": project, "serviceAccount": sa, "access": access}
        # The endpoint declares the server's account; the server writes its sampled inference
        # log (PutObject only) under the project's prefix.
        | (
            {"createServiceAccount": False, "writeOnlyPrefixes": [INFERENCE_LOG_DIR]}
            if sa.endswith("-server")
            else {}
        )
        for sa, access in needs.items()
    ]
    team_ns = (
        [*offer.outputs.trainingQueues[team].namespaces, project]
        if (team in offer.outputs.trainingQueues)
        else [project]
    )
    return Registration(
        stack=offer.stack,
        project=project,
        missing=tuple(missing),
        known=entry is not None,
        entry=_entry_yaml(spec, grants, team, sorted(set(team_ns))),
    )


def _entry_yaml(
    spec: Mapping[str, Any], grants: list[dict[str, Any]], team: str, namespaces: list[str]
) -> str:
    def scalar(v: Any) -> str:
        if isinstance(v, bool):
            return str(v).lower()
        if isinstance(v, list):
            return "[" + ", ".join(scalar(x) for x in v) + "]"
        return str(v)

    def flow(d: Mapping[str, Any]) -> str:
        return "{" + ", ".join(f"{k}: {scalar(v)}" for k, v in d.items()) + "}"

    lines = ["  ml-platform:projects:", "    projects:", f"      - name: {spec['name']}"]
    if spec.get("repository"):
        lines.append(f"        repository: {spec['repository']}")
    lines += ["    grants:", *[f"      - {flow(g)}" for g in grants]]
    lines += [
        "  ml-platform:trainingQueues:",
        "    teams:",
        f"      - name: {team}",
        f"        namespaces: [{', '.join(namespaces)}]",
    ]
    return "\n".join(lines) + "\n"
