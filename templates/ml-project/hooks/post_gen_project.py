"""Remove the files that the chosen options turned off, and make `.cruft.json` point at the
template's git repository.

As in the pre-generation hook, only the block below is rendered by cookiecutter; the logic is
plain Python. The hook runs inside the newly generated project directory.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

OPTIONS = {
    "project_slug": {{ cookiecutter.project_slug | tojson }},
    "framework": {{ cookiecutter.framework | tojson }},
    "accelerator": {{ cookiecutter.accelerator | tojson }},
    "serving": {{ cookiecutter.serving | tojson }},
    "ci": {{ cookiecutter.ci | tojson }},
    "platform_requirement": {{ cookiecutter.platform_requirement | tojson }},
    "_template_repo": {{ cookiecutter._template_repo | tojson }},
    "_repo_dir": {{ (cookiecutter._repo_dir if cookiecutter._repo_dir is defined else "") | tojson }},
    "_under_cruft": {{ (cookiecutter._commit is defined) | string | tojson }},
}

# ---- no Jinja below this line ----


def paths_to_remove(opts: dict) -> list:
    slug = opts["project_slug"]
    remove = []
    if opts["serving"] == "no":
        remove += [f"src/{slug}/serve.py", "tests/test_serve.py", "tests/test_alerts.py"]
        # The alerts, the drift CronJob and its tests read metrics only the server exports.
        remove += ["monitoring", "infra/quality.py", "infra/tests/test_quality.py"]
        remove += ["infra/retraining.py", "infra/tests/test_retraining.py"]
    if opts["framework"] != "pytorch":
        pkg = f"src/{slug}"
        remove += ["tests/test_cuda.py", "tests/test_distributed.py"]
        remove += [f"{pkg}/distributed.py", f"{pkg}/checkpoint.py"]
    if opts["ci"] == "none":
        remove += [".github"]
    return remove


def _git(path: str, *args: str) -> str:
    try:
        out = subprocess.run(  # noqa: S603 - git on the template's own folder
            ["git", "-C", path, *args],  # noqa: S607 - git from PATH, as cookiecutter runs it
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def template_origin(repo_dir: str) -> dict:
    """The git repository, folder and commit of a template folder (plain cookiecutter)."""
    top = _git(repo_dir, "rev-parse", "--show-toplevel") if repo_dir else ""
    commit = _git(repo_dir, "rev-parse", "HEAD") if top else ""
    if not top or not commit:
        return {}
    directory = Path(repo_dir).resolve().relative_to(Path(top).resolve()).as_posix()
    remote = _git(repo_dir, "remote", "get-url", "origin")
    local = not remote or remote.startswith(("/", "file:"))
    return {
        "template": top if local else remote,
        "directory": None if directory == "." else directory,
        "commit": commit,
    }


def fix_cruft_file(root: Path, opts: dict) -> None:
    cruft = root / ".cruft.json"
    if opts["_under_cruft"] == "True":
        # cruft create/update writes its own .cruft.json; two would collide.
        cruft.unlink(missing_ok=True)
        return
    if opts["_template_repo"]:
        return  # `mlplatform new-project` named the repository, folder and commit
    origin = template_origin(opts["_repo_dir"])
    if origin:
        state = json.loads(cruft.read_text())
        state.update(origin)
        cruft.write_text(json.dumps(state, indent=2) + "\n")


def main() -> int:
    root = Path.cwd()
    for rel in paths_to_remove(OPTIONS):
        target = root / rel
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    fix_cruft_file(root, OPTIONS)
    slug = OPTIONS["project_slug"]
    if not OPTIONS["platform_requirement"]:
        print(
            "\nWARNING: platform_requirement is not set, so infra/ cannot install the platform "
            "library and `make infra_test` fails until it is. Set the dependency in "
            "infra/pyproject.toml to 'ml-platform @ git+https://<platform repo>@<tag>' "
            "(`mlplatform new-project` fills it in).",
            file=sys.stderr,
        )
    print(
        f"\nCreated {root.name}. Next steps:\n"
        f"  cd {root.name}\n"
        "  make requirements   # uv sync: creates uv.lock (commit it)\n"
        "  make test\n"
        "  make infra_test     # the infra program under mocks\n"
        f"  make train          # writes models/{slug}/<version>/\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
