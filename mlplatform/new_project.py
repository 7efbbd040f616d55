"""Generate an ML project from ``templates/ml-project``, wired to one platform stack.

``new_project`` takes the stack's values as plain data (or the ``StackSettings`` the CLI loads):
the stack reference, region and accelerator presets come from the stack; everything else from
``extra_context`` or the template's defaults. The template's own pre-generation hook checks the
options; its message is turned into a ``NewProjectError`` naming each bad option.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

PLATFORM_PROJECT = "ml-platform"
# Pulumi's self-managed (DIY) backends name every stack's organization "organization".
DEFAULT_ORG = "organization"
ACCELERATOR_PRESETS = (
    "nvidia-t4",
    "nvidia-a10g",
    "nvidia-l4",
    "nvidia-l40s",
    "nvidia-a100",
    "nvidia-h100",
)
_PACKAGE_DIR = Path(__file__).resolve().parent
# A source checkout keeps the template at the repo root; a wheel ships it inside the package.
_TEMPLATE_CANDIDATES = (
    _PACKAGE_DIR.parent / "templates" / "ml-project",
    _PACKAGE_DIR / "_templates" / "ml-project",
)


class NewProjectError(ValueError):
    """The options were rejected; the message names each bad option."""


def template_dir() -> Path:
    for candidate in _TEMPLATE_CANDIDATES:
        if (candidate / "cookiecutter.json").is_file():
            return candidate
    raise NewProjectError("the ml-project template is missing from this installation")


def template_options(template: Path | None = None) -> dict[str, Any]:
    """The template's options and defaults (cookiecutter.json, without private keys)."""
    raw = json.loads(((template or template_dir()) / "cookiecutter.json").read_text())
    return {k: v for k, v in raw.items() if not k.startswith("_")}


def _find_accelerators(value: Any) -> set[str]:
    """Every accelerator preset named anywhere in a stack config (pools, quotas, serving)."""
    found: set[str] = set()
    if hasattr(value, "model_dump"):
        value = value.model_dump(mode="json")
    if isinstance(value, Mapping):
        for item in value.values():
            found |= _find_accelerators(item)
    elif isinstance(value, (list, tuple, set)):
        for item in value:
            found |= _find_accelerators(item)
    elif isinstance(value, str) and value in ACCELERATOR_PRESETS:
        found.add(value)
    return found


def stack_values(stack_config: Any) -> dict[str, Any]:
    """Normalise a stack's config to ``{"stack", "region", "accelerators", "platform_stack"}``.

    Accepts a plain mapping (``stack``, ``region``, optional ``accelerators``, ``org``,
    ``platform_stack``) or an object with ``stack``, ``region`` and ``config`` attributes.
    """
    if isinstance(stack_config, Mapping):
        stack = str(stack_config.get("stack", ""))
        region = str(stack_config.get("region", ""))
        accelerators = stack_config.get("accelerators")
        if accelerators is None:
            accelerators = _find_accelerators(stack_config.get("config", {}))
        org = str(stack_config.get("org") or DEFAULT_ORG)
        ref = stack_config.get("platform_stack")
    else:
        stack = str(getattr(stack_config, "stack", ""))
        region = str(getattr(stack_config, "region", ""))
        accelerators = _find_accelerators(getattr(stack_config, "config", None))
        org, ref = DEFAULT_ORG, None
    problems = []
    if not stack:
        problems.append("stack: the platform stack's name is required")
    if not region:
        problems.append("region: the platform stack has no aws:region")
    if problems:
        raise NewProjectError("invalid stack config:\n" + "\n".join(f"  - {p}" for p in problems))
    return {
        "stack": stack,
        "region": region,
        "accelerators": sorted(set(accelerators)),
        "platform_stack": ref or f"{org}/{PLATFORM_PROJECT}/{stack}",
    }


def _platform_requirement() -> str:
    """A pip requirement that installs this very platform library."""
    root = _PACKAGE_DIR.parent
    if (root / "pyproject.toml").is_file() and (root / "components").is_dir():
        return f"{PLATFORM_PROJECT} @ {root.as_uri()}"
    try:
        from importlib.metadata import version

        return f"{PLATFORM_PROJECT}=={version(PLATFORM_PROJECT)}"
    except Exception:
        return PLATFORM_PROJECT


def _git_commit(path: Path) -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


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
    stack_config: Any, extra_context: Mapping[str, Any] | None, template: Path
) -> dict[str, str]:
    """The cookiecutter context: stack values first, then the caller's options (which win)."""
    values = stack_values(stack_config)
    options = template_options(template)
    extra = {k: str(v) for k, v in (extra_context or {}).items()}
    problems = [
        f"{key}: unknown option; options are: {', '.join(options)}"
        for key in extra
        if key not in options
    ]
    accelerator = extra.get("accelerator", "none")
    if accelerator in ACCELERATOR_PRESETS and accelerator not in values["accelerators"]:
        offered = ", ".join(values["accelerators"]) or "none (no GPU pools)"
        problems.append(
            f"accelerator: {accelerator!r} is not offered by stack {values['stack']!r}; "
            f"it offers: {offered}"
        )
    for key, allowed in options.items():
        if isinstance(allowed, list) and key in extra and extra[key] not in allowed:
            problems.append(f"{key}: {extra[key]!r} is not one of {', '.join(allowed)}")
    if problems:
        # Also run the template's own checks now, so one run reports every problem.
        merged = {k: (v[0] if isinstance(v, list) else str(v)) for k, v in options.items()}
        merged.update(platform_stack=values["platform_stack"], aws_region=values["region"])
        merged.update(extra)
        # (only about options the caller set: the others are the template's own defaults)
        seen = {q.split(":", 1)[0] for q in problems}
        for p in _hook_problems(template, merged):
            key = p.split(":", 1)[0]
            if key in extra and key not in seen:
                problems.append(p)
    if problems:
        raise NewProjectError(
            "invalid template options:\n" + "\n".join(f"  - {p}" for p in problems)
        )
    context = {
        "platform_stack": values["platform_stack"],
        "aws_region": values["region"],
        "platform_requirement": _platform_requirement(),
        "_template_source": str(template),
        "_template_commit": _git_commit(template),
    }
    context.update(extra)
    return context


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


def new_project(
    stack_config: Any,
    output_dir: str | Path,
    extra_context: Mapping[str, Any] | None = None,
    *,
    no_input: bool = True,
    overwrite: bool = False,
    template: str | Path | None = None,
) -> Path:
    """Generate a project under ``output_dir`` and return its path.

    ``stack_config``: a mapping with ``stack`` (e.g. "dev"), ``region`` and optionally
    ``accelerators`` (the presets of the stack's GPU pools), ``org`` or a full ``platform_stack``
    reference; or the CLI's ``StackSettings``. ``extra_context``: template options
    (``project_name``, ``framework``, ``accelerator``, ``serving``, ...), which override the
    stack-derived values. Raises ``NewProjectError`` naming every bad option.
    """
    from cookiecutter.exceptions import CookiecutterException, FailedHookException
    from cookiecutter.main import cookiecutter

    tpl = Path(template) if template else template_dir()
    context = build_context(stack_config, extra_context, tpl)
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
    except (CookiecutterException, ValueError) as exc:
        raise NewProjectError(str(exc)) from None
    return Path(path)
