"""The platform's outputs that projects build on: one schema, checked on both sides.

A project's infra program reads these through a ``pulumi.StackReference``; ``mlplatform
new-project`` reads them from the stack's offline plan. The platform's tests check every shipped
AWS stack's real plan outputs against :class:`ProjectOutputs`, and a generated project's tests
check their stand-in outputs against the same class, so a fake can only say what the platform
really exports.

:func:`project_problems` is the one place that decides whether a project's choices (team, GPU
pool, namespace, images) fit what a stack offers; ``new-project`` and the generated program's
preview-time check both call it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError

# Bump when a project-facing output changes shape; generated projects record what they expect.
CONTRACT_VERSION = 3
ECR_URL = re.compile(r"^\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/[a-z0-9][a-z0-9._/-]*$")
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


class ContractError(ValueError):
    """Outputs that do not follow the contract; the message names each bad key."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TeamPool(_Model):
    """A GPU pool a team has quota on."""

    accelerator: StrictStr
    # int, not StrictInt: numbers cross a StackReference as floats (2.0).
    gpus: int = Field(ge=0)


class TeamQueue(_Model):
    """``trainingQueues[team]``: what a project needs to be admitted by the team's queue."""

    clusterQueue: StrictStr = Field(pattern=DNS_LABEL)  # noqa: N815 - the output's own key
    localQueue: StrictStr = Field(pattern=DNS_LABEL)  # noqa: N815
    namespaceLabels: dict[StrictStr, StrictStr] = Field(min_length=1)  # noqa: N815
    namespaces: list[StrictStr]
    gpuPools: dict[StrictStr, TeamPool]  # noqa: N815


class Registries(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    training: StrictStr = Field(pattern=ECR_URL.pattern)
    serving: StrictStr = Field(pattern=ECR_URL.pattern)


class ProjectCiOutputs(_Model):
    """``projects[name].ci``: the project's own runner and the roles its workflows assume."""

    repository: StrictStr
    runnerProject: StrictStr  # noqa: N815 - the output's own key
    label: StrictStr
    deployRoleArn: StrictStr = Field(pattern=r"^arn:aws[a-z-]*:iam::\d{12}:role/")  # noqa: N815
    previewRoleArn: StrictStr = Field(pattern=r"^arn:aws[a-z-]*:iam::\d{12}:role/")  # noqa: N815


class MlflowSecret(_Model):
    """The Secret holding the project's MLflow user, in the project's namespace."""

    name: StrictStr = Field(pattern=DNS_LABEL)
    usernameKey: StrictStr  # noqa: N815 - the output's own key
    passwordKey: StrictStr  # noqa: N815


class ProjectEntry(_Model):
    """``projects[name]``: what the stack declares for a registered project. The platform owns
    the namespace (labelled for its team's queue, with its LocalQueue), the service accounts'
    Pod Identity roles and the MLflow user's Secret; the project declares workloads in it."""

    namespace: StrictStr = Field(pattern=DNS_LABEL)
    serviceAccounts: dict[StrictStr, StrictStr]  # noqa: N815 - account -> read | read-write
    team: StrictStr | None = None
    mlflowSecret: MlflowSecret | None = None  # noqa: N815
    ci: ProjectCiOutputs | None = None


class ProjectOutputs(BaseModel):
    """The outputs of an AWS platform stack that projects use (the stack exports more)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    platform: StrictStr = Field(pattern="^aws$")
    environment: StrictStr
    region: StrictStr
    clusterName: StrictStr  # noqa: N815
    kubeconfig: StrictStr
    modelBucket: StrictStr  # noqa: N815
    modelBucketArn: StrictStr = Field(pattern=r"^arn:aws[a-z-]*:s3:::")  # noqa: N815
    kmsKeyArn: StrictStr = Field(pattern=r"^arn:aws[a-z-]*:kms:")  # noqa: N815
    ecrRepositories: Registries  # noqa: N815
    trainingQueues: dict[StrictStr, TeamQueue]  # noqa: N815
    gpuPools: list[StrictStr]  # noqa: N815
    mlflowTrackingUri: StrictStr | None = None  # noqa: N815
    projects: dict[StrictStr, ProjectEntry] = Field(default_factory=dict)


def validate_outputs(outputs: Mapping[str, Any]) -> ProjectOutputs:
    """The outputs as a ``ProjectOutputs``, or a ``ContractError`` naming every bad key."""
    try:
        parsed = ProjectOutputs.model_validate(dict(outputs))
    except ValidationError as exc:
        lines = [
            f"  - {'.'.join(str(p) for p in err['loc']) or '(outputs)'}: {err['msg']}"
            for err in exc.errors()
        ]
        raise ContractError(
            "platform outputs break the project contract:\n" + "\n".join(lines)
        ) from None
    problems = []
    for name, team in parsed.trainingQueues.items():
        for pool in team.gpuPools:
            if pool not in parsed.gpuPools:
                problems.append(
                    f"  - trainingQueues.{name}.gpuPools.{pool}: not one of gpuPools "
                    f"({', '.join(parsed.gpuPools) or 'none'})"
                )
    if problems:
        raise ContractError("platform outputs break the project contract:\n" + "\n".join(problems))
    return parsed


def describe_pools(team: TeamQueue) -> str:
    return (
        ", ".join(f"{p} ({q.accelerator})" for p, q in team.gpuPools.items()) or "none (CPU only)"
    )


def platform_namespaces(outputs: ProjectOutputs) -> set[str]:
    """Namespaces the platform declares for its teams: a project must not redeclare them."""
    return {ns for team in outputs.trainingQueues.values() for ns in team.namespaces}


def _image_problem(key: str, image: str, repository: str) -> str | None:
    if image.startswith((f"{repository}:", f"{repository}@")):
        return None
    return f"{key}: {image!r} is not in the platform's {key.removesuffix('Image')} registry {repository}"


def project_problems(
    outputs: ProjectOutputs,
    *,
    stack: str,
    team: str,
    gpu_pool: str | None = None,
    namespace: str | None = None,
    taken_namespaces: set[str] | None = None,
    images: Mapping[str, str] | None = None,
    project: str | None = None,
    service_accounts: Mapping[str, str] | None = None,
) -> list[str]:
    """Each way a project's choices do not fit the stack, naming the key and the valid values.

    ``images``: ``{"trainingImage": ..., "servingImage": ...}``; each must come from the
    platform's matching ECR repository (the only ones its roles may pull).
    ``taken_namespaces``: namespaces the platform uses beyond its teams' (new-project knows them
    from the plan). ``project``: the project's name, which the stack must register (its
    namespace is then the project's, not taken), with ``service_accounts`` (account -> access).
    """
    found: list[str] = []
    own = None
    if project is not None:
        found += registration_problems(
            outputs,
            stack=stack,
            project=project,
            team=team,
            namespace=namespace,
            service_accounts=service_accounts or {},
        )
        entry = outputs.projects.get(project)
        own = entry.namespace if entry is not None else None
    queue = outputs.trainingQueues.get(team)
    if queue is None:
        found.append(
            f"team: {team!r} has no training queue on {stack}; teams: "
            f"{', '.join(outputs.trainingQueues) or 'none'}"
        )
    elif gpu_pool and gpu_pool not in queue.gpuPools:
        where = (
            f"team {team!r} has no quota on pool {gpu_pool!r}"
            if gpu_pool in outputs.gpuPools
            else f"{gpu_pool!r} is not a GPU pool of {stack}"
        )
        found.append(f"gpuPool: {where}; team {team!r} can use: {describe_pools(queue)}")
    if namespace:
        taken = platform_namespaces(outputs) | set(taken_namespaces or ())
        if namespace in taken and namespace != own:
            found.append(
                f"namespace: {namespace!r} belongs to the platform stack {stack} and is not "
                "this project's: choose another project name (or namespace)"
            )
    registries = {"trainingImage": outputs.ecrRepositories.training}
    registries["servingImage"] = outputs.ecrRepositories.serving
    for key, image in (images or {}).items():
        problem = _image_problem(key, image, registries[key]) if image else None
        if problem:
            found.append(problem)
    return found


def registration_problems(
    outputs: ProjectOutputs,
    *,
    stack: str,
    project: str,
    team: str,
    namespace: str | None,
    service_accounts: Mapping[str, str],
) -> list[str]:
    """How the stack's registration of ``project`` differs from what the project needs."""
    entry = outputs.projects.get(project)
    if entry is None:
        return [
            f"project: {project!r} is not registered on {stack}; the platform declares a "
            "project's namespace, access and MLflow user: add it under ml-platform:projects "
            f"in stacks/Pulumi.{stack}.yaml (`mlplatform new-project` prints the entry)"
        ]
    found = []
    if namespace and entry.namespace != namespace:
        found.append(
            f"namespace: {stack} registers {project!r} in namespace {entry.namespace!r}, not "
            f"{namespace!r}"
        )
    if entry.team != team:
        where = (
            f"in team {entry.team!r}'s"
            if entry.team
            else "in no team's (trainingQueues.teams[].namespaces)"
        )
        found.append(
            f"team: {stack} lists namespace {entry.namespace!r} {where} queue, not {team!r}'s"
        )
    for account, access in sorted(service_accounts.items()):
        has = entry.serviceAccounts.get(account)
        if has is None or (access == "read-write" and has != "read-write"):
            found.append(
                f"serviceAccounts: {stack} grants {entry.namespace}/{account} "
                f"{has or 'nothing'}; it needs {access} (projects.grants)"
            )
    return found
