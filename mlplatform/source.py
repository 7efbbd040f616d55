"""Where this platform library (and its ml-project template) came from, as a generated project
should name it.

A generated project's ``infra/`` installs the platform library, and its ``.cruft.json`` points
at the template's repository. Both must name *this* code exactly: a bare ``ml-platform==0.1.0``
would let a package index answer with PyPI's unrelated ``ml-platform``. So the requirement is
always a direct reference (PEP 508 ``name @ url``):

* a git checkout with a remote: ``ml-platform @ git+<remote>@<tag or commit>`` (credentials in
  the remote URL are dropped), and the template at that repository, commit and folder;
* a checkout without a remote, or a wheel installed from a file: that path, with a warning that
  CI cannot install it;
* a wheel installed from git (PEP 610 ``direct_url.json``): that URL at the installed commit.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

PLATFORM_PROJECT = "ml-platform"
TEMPLATE_PATH = "templates/ml-project"  # the template's folder in the platform repository
_SCP_LIKE = re.compile(r"^(?P<user>[\w.-]+)@(?P<host>[\w.-]+):(?P<path>.+)$")


@dataclass(frozen=True)
class Source:
    """How a generated project names the platform: its requirement and its template's origin."""

    requirement: str
    template_repo: str  # what `git clone` (and so cruft) accepts
    template_directory: str | None  # the template's folder inside that repository
    template_commit: str | None
    warnings: tuple[str, ...] = ()


def _git(path: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(path), *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def public_git_url(remote: str) -> str | None:
    """A pip/uv-installable ``git+`` URL for a git remote, without credentials; None for a
    remote that only this machine can reach (a local path or ``file://``)."""
    scp = _SCP_LIKE.match(remote)
    if scp and "://" not in remote:
        return f"git+ssh://{scp['user']}@{scp['host']}/{scp['path']}"
    parts = urlsplit(remote)
    if parts.scheme in ("https", "http", "ssh", "git"):
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
        # Keep ssh's user (git@); drop any https user and token.
        user = f"{parts.username}@" if parts.scheme == "ssh" and parts.username else ""
        return "git+" + urlunsplit((parts.scheme, user + host, parts.path, "", ""))
    return None


@dataclass(frozen=True)
class _GitInfo:
    top: Path
    commit: str
    ref: str  # an exact tag of HEAD, else the commit
    dirty: bool
    url: str | None  # a git+ URL CI can reach, None for none


def _git_info(path: Path) -> _GitInfo | None:
    top = _git(path, "rev-parse", "--show-toplevel")
    commit = _git(path, "rev-parse", "HEAD")
    if not top or not commit:
        return None
    remotes = (_git(path, "remote") or "").split()
    remote = "origin" if "origin" in remotes else (remotes[0] if remotes else None)
    url = _git(path, "remote", "get-url", remote) if remote else None
    return _GitInfo(
        top=Path(top).resolve(),
        commit=commit,
        ref=_git(path, "describe", "--tags", "--exact-match", "HEAD") or commit,
        dirty=bool(_git(path, "status", "--porcelain", "--untracked-files=no")),
        url=public_git_url(url) if url else None,
    )


_NO_CI = (
    "fine on this machine, but the project's CI cannot install it; push the platform to a git "
    "server, or pass --set platform_requirement="
    f"'{PLATFORM_PROJECT} @ git+https://<platform repo>@<tag>'"
)


def _requirement(package_root: Path) -> tuple[str, list[str]] | None:
    """The requirement for the platform library whose source tree is ``package_root``."""
    if not (package_root / "pyproject.toml").is_file():
        return None
    git = _git_info(package_root)
    if git is None or git.top != package_root.resolve():
        where = package_root.resolve()
        return f"{PLATFORM_PROJECT} @ {where.as_uri()}", [
            f"the project installs the platform library from the path {where}: {_NO_CI}"
        ]
    if git.url is None:
        return f"{PLATFORM_PROJECT} @ {git.top.as_uri()}", [
            f"the platform checkout {git.top} has no git remote, so the project installs the "
            f"platform library from that path: {_NO_CI}"
        ]
    warnings = []
    if git.dirty:
        warnings.append(
            f"the platform checkout {git.top} has uncommitted changes: the project's "
            f"platform library is {git.ref[:12]}, without them"
        )
    return f"{PLATFORM_PROJECT} @ {git.url}@{git.ref}", warnings


def _template_origin(template: Path) -> tuple[str, str | None, str | None] | None:
    """(repository, folder in it, commit) of a template inside a git work tree."""
    git = _git_info(template)
    if git is None:
        return None
    directory = template.resolve().relative_to(git.top).as_posix()
    repo = git.url.removeprefix("git+") if git.url else str(git.top)
    return repo, (None if directory == "." else directory), git.commit


def _installed_source(template: Path) -> Source | None:
    """The platform as installed (``uv tool install``, pipx): PEP 610 says from where."""
    try:
        raw = metadata.distribution(PLATFORM_PROJECT).read_text("direct_url.json")
    except metadata.PackageNotFoundError:
        return None
    info = json.loads(raw) if raw else None
    if not isinstance(info, dict) or not info.get("url"):
        return None
    url = str(info["url"])
    vcs = info.get("vcs_info") or {}
    if vcs.get("vcs") == "git" and vcs.get("commit_id"):
        git_url = public_git_url(url) or f"git+{url}"
        commit = str(vcs["commit_id"])
        return Source(
            requirement=f"{PLATFORM_PROJECT} @ {git_url}@{commit}",
            template_repo=git_url.removeprefix("git+"),
            template_directory="/".join(
                p for p in (str(info.get("subdirectory") or "").strip("/"), TEMPLATE_PATH) if p
            ),
            template_commit=commit,
        )
    local = url.startswith("file://")
    warnings = []
    if local:
        warnings.append(
            f"the platform library was installed from {url}, a path on this machine: the "
            "project's CI cannot install it; pass --set platform_requirement="
            f"'{PLATFORM_PROJECT} @ git+https://<platform repo>@<tag>'"
        )
    warnings.append(
        "`cruft update` needs the template's git repository; this installation has only a copy "
        f"of the template ({template})"
    )
    return Source(
        requirement=f"{PLATFORM_PROJECT} @ {url}",
        template_repo=str(template),
        template_directory=None,
        template_commit=None,
        warnings=tuple(warnings),
    )


def platform_source(template: Path, package_root: Path) -> Source | None:
    """How a project generated from ``template`` names the platform whose source tree is
    ``package_root`` (a checkout) or that is installed; None when it cannot tell (a wheel from a
    package index: the caller must ask for the requirement)."""
    from_checkout = _requirement(package_root)
    if from_checkout is None:
        return _installed_source(template)
    requirement, warnings = from_checkout
    origin = _template_origin(template)
    if origin is None:
        warnings.append(
            f"the template {template} is not in a git repository: `cruft update` will not work"
        )
        origin = (str(template), None, None)
    return Source(requirement, *origin, warnings=tuple(warnings))
