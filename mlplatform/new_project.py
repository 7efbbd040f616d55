"""Generate an ML project from ``templates/ml-project``, wired to what one platform stack offers.

``platform_offer(stack)`` runs the stack's offline plan and reads its project-facing outputs
(``mlplatform.contract``): region, registries, training teams with their queues and GPU pools,
and the namespaces the platform already uses. ``new_project(offer, ...)`` turns the caller's
options into the template's context: defaults are values that exist on that stack (its first
team, the team's pool for the chosen accelerator), and a choice the stack cannot honour is
refused with the valid ones listed, before anything is written. Only AWS stacks are offered:
projects need the stack's registries and Pod Identity.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.ci_runners import repository_issues
from mlplatform.contract import (
    ContractError,
    ProjectOutputs,
    describe_pools,
    project_problems,
    validate_outputs,
)
from mlplatform.registration import ci_values, registration
from mlplatform.source import PLATFORM_PROJECT, platform_source

# Pulumi's self-managed (DIY) backends name every stack's organization "organization".
DEFAULT_ORG = "organization"
_PACKAGE_DIR = Path(__file__).resolve().parent
# A source checkout keeps the template at the repo root; a wheel ships it inside the package.
_TEMPLATE_CANDIDATES = (
    _PACKAGE_DIR.parent / "templates" / "ml-project",
    _PACKAGE_DIR / "_templates" / "ml-project",
)


class NewProjectError(ValueError):
    """The options were rejected; the message names each bad option."""


@dataclass(frozen=True)
class PlatformOffer:
    """What a platform stack offers projects, read from its plan."""

    stack: str
    platform_stack: str  # org/ml-platform/<stack>: what the project's StackReference names
    outputs: ProjectOutputs
    taken_namespaces: frozenset[str]  # every namespace the platform's plan uses
    # The platform's own CI deploy role, as the stack config names it (a real ARN, where the
    # offline plan's resources carry a stand-in account): new-project takes the account from it.
    platform_ci_role_arn: str | None = None

    @property
    def region(self) -> str:
        return self.outputs.region

    @property
    def environment(self) -> str:
        return self.outputs.environment


def template_dir() -> Path:
    for candidate in _TEMPLATE_CANDIDATES:
        if (candidate / "cookiecutter.json").is_file():
            return candidate
    raise NewProjectError("the ml-project template is missing from this installation")


def template_options(template: Path | None = None) -> dict[str, Any]:
    """The template's options and defaults (cookiecutter.json, without private keys)."""
    raw = json.loads(((template or template_dir()) / "cookiecutter.json").read_text())
    return {k: v for k, v in raw.items() if not k.startswith("_")}


def _plan_namespaces(plan: Mapping[str, Any]) -> set[str]:
    names = {h["namespace"] for h in plan.get("helmReleases") or []}
    for m in plan.get("manifests") or []:
        meta = m.get("metadata") or {}
        if m.get("kind") == "Namespace":
            names.add(meta.get("name", ""))
        elif meta.get("namespace"):
            names.add(meta["namespace"])
    return names - {""}


def offer_from_plan(plan: Mapping[str, Any], *, org: str = DEFAULT_ORG) -> PlatformOffer:
    """The offer of a plan (``mlplatform plan --format json``'s object)."""
    stack = str(plan.get("stack", ""))
    outputs = plan.get("outputs") or {}
    if outputs.get("platform") != "aws":
        raise NewProjectError(_aws_only(stack, str(outputs.get("platform"))))
    try:
        parsed = validate_outputs(outputs)
    except ContractError as exc:
        raise NewProjectError(f"stack {stack!r}: {exc}") from None
    return PlatformOffer(
        stack=stack,
        platform_stack=f"{org}/{PLATFORM_PROJECT}/{stack}",
        outputs=parsed,
        taken_namespaces=frozenset(_plan_namespaces(plan)),
        platform_ci_role_arn=(outputs.get("ciRunner") or {}).get("deployRoleArn"),
    )


def _aws_only(stack: str, platform: str) -> str:
    return (
        f"new-project supports AWS stacks only: stack {stack!r} is platform {platform!r}, which "
        "has no container registry or Pod Identity for a project to use; pick an AWS stack "
        "such as dev"
    )


def platform_offer(stack: str, stacks_dir: Path, *, org: str = DEFAULT_ORG) -> PlatformOffer:
    """Validate ``stack``'s config, run its offline plan and read what it offers projects."""
    from mlplatform.config import Platform, load_stack
    from mlplatform.report import build_plan

    settings = load_stack(stack, stacks_dir)  # ConfigError: the caller reports it (exit 2)
    if settings.config.platform is not Platform.aws:
        raise NewProjectError(_aws_only(stack, settings.config.platform.value))
    return offer_from_plan(build_plan(stack, stacks_dir), org=org)


def slug_of(options: Mapping[str, str], defaults: Mapping[str, Any]) -> str:
    """The project slug the template will derive (its cookiecutter.json expression)."""
    if options.get("project_slug"):
        return options["project_slug"]
    name = options.get("project_name") or str(defaults.get("project_name", ""))
    return name.lower().strip().replace(" ", "_").replace("-", "_")


def stack_choices(
    offer: PlatformOffer, options: Mapping[str, str], defaults: Mapping[str, Any]
) -> tuple[dict[str, str], list[str]]:
    """The stack-derived template options, and each problem with the caller's choices."""
    out = offer.outputs
    problems: list[str] = []
    chosen: dict[str, str] = {
        "platform_stack": offer.platform_stack,
        "aws_region": offer.region,
    }
    if not out.trainingQueues:
        problems.append(
            f"team: stack {offer.stack!r} has no training teams; add one under "
            "ml-platform:trainingQueues.teams"
        )
        return chosen, problems
    project = slug_of(options, defaults).replace("_", "-")
    entry = out.projects.get(project)
    registered_team = entry.team if entry is not None else None
    team = options.get("team") or registered_team or next(iter(out.trainingQueues))
    chosen["team"] = team
    queue = out.trainingQueues.get(team)
    accelerator = options.get("accelerator", "none") or "none"
    pool = options.get("gpu_pool", "")
    if queue is None:
        problems += project_problems(out, stack=offer.stack, team=team)
    elif pool:
        found = project_problems(out, stack=offer.stack, team=team, gpu_pool=pool)
        problems += [p.replace("gpuPool:", "gpu_pool:", 1) for p in found]
        if not found:
            has = queue.gpuPools[pool].accelerator
            if accelerator not in ("none", has):
                problems.append(
                    f"accelerator: {accelerator!r} does not match gpu_pool {pool!r}, which has "
                    f"{has!r}; leave accelerator out or set it to {has}"
                )
            accelerator = has
    elif accelerator != "none":
        pools = [p for p, q in queue.gpuPools.items() if q.accelerator == accelerator]
        if not pools:
            problems.append(
                f"accelerator: team {team!r} of stack {offer.stack!r} has no GPU pool with "
                f"{accelerator!r}; it can use: {describe_pools(queue)}"
            )
        pool = pools[0] if pools else ""
    chosen.update(accelerator=accelerator, gpu_pool=pool)
    key = "project_slug" if options.get("project_slug") else "project_name"
    if entry is None:
        # Not registered (yet): the namespace must not be one the platform uses for others.
        found = project_problems(
            out,
            stack=offer.stack,
            team=team,
            namespace=project,
            taken_namespaces=set(offer.taken_namespaces),
        )
        problems += [
            f"{key}: {p.removeprefix('namespace: ')}" for p in found if p.startswith("namespace")
        ]
    elif entry.namespace != project:
        problems.append(
            f"{key}: {offer.stack} registers project {project!r} in namespace "
            f"{entry.namespace!r}; the project's namespace is its name: register it as "
            f"namespace {project!r}"
        )
    elif registered_team is not None and team != registered_team:
        problems.append(
            f"team: {offer.stack} registers {project!r} with team {registered_team!r}, not "
            f"{team!r}; leave team out or set it to {registered_team}"
        )
    chosen.update(ci_values(offer, project))
    if offer.environment == "prod" and options.get("serving", "yes") == "yes":
        # Production endpoints survive a node drain: two replicas at least, unless asked.
        chosen.setdefault("serving_min_replicas", options.get("serving_min_replicas") or "2")
        chosen.setdefault("serving_max_replicas", options.get("serving_max_replicas") or "3")
    return chosen, problems


@contextlib.contextmanager
def _capture_fd2() -> Iterator[list[str]]:
    """Capture what child processes (the template's hooks) write to stderr."""
    captured: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield captured
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            captured.append(tmp.read().decode(errors="replace"))


def build_context(
    offer: PlatformOffer,
    extra_context: Mapping[str, Any] | None,
    template: Path,
    warn: Callable[[str], None],
) -> dict[str, str]:
    """The cookiecutter context: the caller's options, checked against the template and the
    stack, with stack-derived values filled in."""
    options = template_options(template)
    extra = {k: str(v) for k, v in (extra_context or {}).items()}
    problems = [
        f"{key}: unknown option; options are: {', '.join(options)}"
        for key in extra
        if key not in options
    ]
    for key, allowed in options.items():
        if isinstance(allowed, list) and key in extra and extra[key] not in allowed:
            problems.append(f"{key}: {extra[key]!r} is not one of {', '.join(allowed)}")
    chosen, stack_problems = stack_choices(offer, extra, options)
    problems += stack_problems
    if extra.get("aws_region", offer.region) != offer.region:
        problems.append(
            f"aws_region: stack {offer.stack!r} runs in {offer.region}, not {extra['aws_region']}"
        )
    # Team, pool and accelerator are resolved together (the caller's choice checked against
    # the stack); the rest of the stack's values are defaults the caller may override.
    resolved = ("team", "accelerator", "gpu_pool", "aws_region")
    context = {**chosen, **{k: v for k, v in extra.items() if k not in resolved}}
    notes: list[str] = []
    if "platform_requirement" not in extra:
        source = platform_source(template, _PACKAGE_DIR.parent)
        if source is None:
            problems.append(
                "platform_requirement: cannot tell where this platform library was installed "
                f"from; pass --set platform_requirement='{PLATFORM_PROJECT} @ "
                "git+https://<platform repo>@<tag>'"
            )
        else:
            context["platform_requirement"] = source.requirement
            context.update(
                _template_repo=source.template_repo,
                _template_directory=source.template_directory or "",
                _template_commit=source.template_commit or "",
            )
            notes += source.warnings
    # The template's own checks on the answers cookiecutter will render, so one run reports
    # every problem (once per option: accelerator and gpu_pool count as one).
    seen = {q.split(":", 1)[0] for q in problems}
    if seen & {"team", "accelerator"}:
        seen.add("gpu_pool")  # the pool follows from those two
    valid = {k: v for k, v in context.items() if not _bad_choice(k, v, options)}
    answers = _answers(template, valid)
    problems += [p for p in _hook_problems(template, answers) if p.split(":", 1)[0] not in seen]
    if problems:
        raise NewProjectError(
            "invalid template options:\n" + "\n".join(f"  - {p}" for p in problems)
        )
    for message in notes:
        warn(message)
    return context


def _bad_choice(key: str, value: str, options: Mapping[str, Any]) -> bool:
    allowed = options.get(key)
    return isinstance(allowed, list) and value not in allowed


def _answers(template: Path, context: Mapping[str, str]) -> dict[str, str]:
    """The options as cookiecutter will render them (its defaults' expressions evaluated)."""
    from cookiecutter.generate import generate_context
    from cookiecutter.prompt import prompt_for_config

    ctx = generate_context(
        context_file=str(template / "cookiecutter.json"), extra_context=dict(context)
    )
    rendered = prompt_for_config(ctx, no_input=True)
    return {k: str(v) for k, v in rendered.items() if not k.startswith("_")}


def _hook_problems(template: Path, options: Mapping[str, str]) -> list[str]:
    """The pre-generation hook's checks (its Jinja-free part) run on plain values."""
    hook = (template / "hooks" / "pre_gen_project.py").read_text()
    marker = "# ---- no Jinja below this line ----"
    if marker not in hook:
        return []
    namespace: dict[str, Any] = {"__name__": "mlplatform_pre_gen"}
    code = compile("import keyword, re, sys\n" + hook.split(marker, 1)[1], str(template), "exec")
    exec(code, namespace)  # noqa: S102 - the checks of our own template, no user code
    return [str(p) for p in namespace["problems"](dict(options))]


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def _inform(message: str) -> None:
    print(message, file=sys.stderr)


def new_project(
    offer: PlatformOffer,
    output_dir: str | Path,
    extra_context: Mapping[str, Any] | None = None,
    *,
    no_input: bool = True,
    overwrite: bool = False,
    template: str | Path | None = None,
    warn: Callable[[str], None] = _warn,
    repository: str | None = None,
    inform: Callable[[str], None] | None = None,
) -> Path:
    """Generate a project under ``output_dir`` and return its path.

    ``offer``: what the platform stack offers (``platform_offer`` / ``offer_from_plan``).
    ``extra_context``: template options (``project_name``, ``framework``, ``accelerator``,
    ``gpu_pool``, ``team``, ``serving``, ...). Raises ``NewProjectError`` naming every bad
    option; ``warn`` receives what the caller should know (for example a platform requirement
    that CI cannot install).
    """
    from cookiecutter.exceptions import CookiecutterException, FailedHookException
    from cookiecutter.main import cookiecutter

    tpl = Path(template) if template else template_dir()
    if repository is not None and repository_issues(("repository",), repository):
        raise NewProjectError(
            f"invalid template options:\n  - repository: must be owner/name, got {repository!r}"
        )
    context = build_context(offer, extra_context, tpl, warn)
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    try:
        with _capture_fd2() as stderr:
            path = cookiecutter(
                str(tpl),
                no_input=no_input,
                extra_context=context,
                output_dir=str(output_dir),
                overwrite_if_exists=overwrite,
                accept_hooks=True,
            )
    except FailedHookException as exc:
        # Keep the hook's own message; drop cookiecutter's log lines and traceback after it.
        text = "".join(stderr).split("Stopping generation because", 1)[0].strip()
        raise NewProjectError(text.removeprefix("ERROR: ") or str(exc)) from None
    except (CookiecutterException, ValueError, OSError) as exc:
        raise NewProjectError(str(exc)) from None
    status = registration(
        offer,
        project=slug_of(context, template_options(tpl)).replace("_", "-"),
        team=context["team"],
        serving=context.get("serving", "yes") == "yes",
        repository=repository,
    )
    # Not registered: generated all the same (registration is the platform team's change),
    # but never silently; the project's preview fails with the same message until it is.
    ((inform or _inform) if status.registered else warn)(status.message())
    return Path(path)
