"""How a generated project names the platform: a direct reference, and a template cruft can use.

The requirement must never be answerable by a package index (PyPI has an unrelated
`ml-platform`), and `.cruft.json` must name a git repository, commit and folder that `cruft
check` and `cruft update` really work with (they run here, on a scratch template repository).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mlplatform.new_project import new_project, offer_from_plan
from mlplatform.source import platform_source, public_git_url
from tests.conftest import missing_tool
from tests.shipped import shipped_plan
from tests.templates.helpers import REPO, TEMPLATE

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.com",
}


def git(cwd: Path, *args: str) -> str:
    if shutil.which("git") is None:
        missing_tool("git is not on PATH")
    out = subprocess.run(
        ["git", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **GIT_ENV},
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def template_repo(tmp_path: Path) -> Path:
    """A git repository holding a copy of the template at templates/ml-project."""
    repo = tmp_path / "platform"
    shutil.copytree(TEMPLATE, repo / "templates" / "ml-project")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "template v1")
    return repo


@pytest.mark.parametrize(
    ("remote", "url"),
    [
        ("https://github.com/acme/ml-platform.git", "git+https://github.com/acme/ml-platform.git"),
        (
            "https://bot:ghp_token@github.com/acme/ml-platform",
            "git+https://github.com/acme/ml-platform",
        ),
        ("git@github.com:acme/ml-platform.git", "git+ssh://git@github.com/acme/ml-platform.git"),
        (
            "ssh://git@git.example.com:2222/ml/platform",
            "git+ssh://git@git.example.com:2222/ml/platform",
        ),
        ("/srv/git/ml-platform", None),
        ("file:///srv/git/ml-platform", None),
    ],
)
def test_remotes_become_installable_urls_without_credentials(remote: str, url: str | None) -> None:
    assert public_git_url(remote) == url


def test_a_checkout_with_a_remote_gives_a_git_reference_at_its_tag(tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(REPO), str(clone))
    git(clone, "remote", "set-url", "origin", "https://bot:secret@github.com/acme/ml-platform.git")
    git(clone, "tag", "v1.2.3")
    source = platform_source(clone / "templates" / "ml-project", clone)
    assert source is not None
    assert source.requirement == "ml-platform @ git+https://github.com/acme/ml-platform.git@v1.2.3"
    assert "secret" not in repr(source)
    assert source.template_repo == "https://github.com/acme/ml-platform.git"
    assert source.template_directory == "templates/ml-project"
    assert source.template_commit == git(clone, "rev-parse", "HEAD")
    assert source.warnings == ()
    git(clone, "tag", "-d", "v1.2.3")
    untagged = platform_source(clone / "templates" / "ml-project", clone)
    assert untagged is not None
    assert untagged.requirement.endswith("@" + git(clone, "rev-parse", "HEAD"))


def test_a_checkout_without_a_remote_gives_a_path_and_says_ci_cannot_use_it(tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(REPO), str(clone))
    git(clone, "remote", "remove", "origin")
    source = platform_source(clone / "templates" / "ml-project", clone)
    assert source is not None
    assert source.requirement == f"ml-platform @ {clone.resolve().as_uri()}"
    assert any("CI cannot install it" in w for w in source.warnings)


def test_new_project_prints_the_path_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mlplatform.cli import main

    # This checkout: a path requirement unless it has a git remote.
    assert main(["new-project", "--stack", "dev", "--no-input", "--output-dir", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    requirement = json.loads((tmp_path / "churn_model" / ".cruft.json").read_text())["context"][
        "cookiecutter"
    ]["platform_requirement"]
    assert requirement.startswith("ml-platform @ ")
    if requirement.startswith("ml-platform @ file://"):
        assert "CI cannot install it" in err


def _cruft(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cruft = Path(sys.executable).parent / "cruft"
    if not cruft.exists():
        missing_tool("cruft is not installed in this environment (dev group)")
    return subprocess.run(
        [str(cruft), *args],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **GIT_ENV},
        check=False,
    )


def _commit_project(project: Path) -> None:
    git(project, "init", "-q", "-b", "main")
    git(project, "add", "-A")
    git(project, "commit", "-qm", "generated")


def _change_template(repo: Path) -> None:
    makefile = repo / "templates" / "ml-project" / "{{cookiecutter.project_slug}}" / "Makefile"
    makefile.write_text(makefile.read_text() + "\n# template v2\n")
    git(repo, "commit", "-qam", "template v2")


@pytest.mark.slow
def test_cruft_check_and_update_work_on_a_new_project(tmp_path: Path) -> None:
    repo = template_repo(tmp_path)
    offer = offer_from_plan(shipped_plan("dev"))
    project = new_project(
        offer,
        tmp_path / "out",
        {"project_name": "Demand Forecast"},
        template=repo / "templates" / "ml-project",
        warn=lambda _m: None,
    )
    state = json.loads((project / ".cruft.json").read_text())
    assert (state["template"], state["directory"]) == (str(repo.resolve()), "templates/ml-project")
    assert state["commit"] == git(repo, "rev-parse", "HEAD")
    _commit_project(project)
    check = _cruft(project, "check")
    assert check.returncode == 0, check.stdout + check.stderr
    _change_template(repo)
    assert _cruft(project, "check").returncode == 1, "a newer template is reported"
    update = _cruft(project, "update", "-y")
    assert update.returncode == 0, update.stdout + update.stderr
    assert "# template v2" in (project / "Makefile").read_text()
    assert json.loads((project / ".cruft.json").read_text())["commit"] == git(
        repo, "rev-parse", "HEAD"
    )
    # Answers that came from the stack survive the update.
    config = (project / "infra" / "Pulumi.dev.yaml").read_text()
    assert "demand-forecast:team: research" in config
    git(project, "add", "-A")
    git(project, "commit", "-qm", "update")
    assert _cruft(project, "check").returncode == 0


@pytest.mark.slow
def test_cruft_works_on_a_plain_cookiecutter_project(tmp_path: Path) -> None:
    repo = template_repo(tmp_path)
    from cookiecutter.main import cookiecutter

    project = Path(
        cookiecutter(
            str(repo / "templates" / "ml-project"),
            no_input=True,
            output_dir=str(tmp_path / "plain"),
            extra_context={"project_name": "Plain"},
        )
    )
    state = json.loads((project / ".cruft.json").read_text())
    assert state["directory"] == "templates/ml-project"
    assert state["commit"] == git(repo, "rev-parse", "HEAD")
    _commit_project(project)
    assert _cruft(project, "check").returncode == 0
    _change_template(repo)
    update = _cruft(project, "update", "-y")
    assert update.returncode == 0, update.stdout + update.stderr
    assert "# template v2" in (project / "Makefile").read_text()
