"""Remove the files that the chosen options turned off.

As in the pre-generation hook, only the block below is rendered by cookiecutter; the logic is
plain Python. The hook runs inside the newly generated project directory.
"""

import shutil
import sys
from pathlib import Path

OPTIONS = {
    "project_slug": {{ cookiecutter.project_slug | tojson }},
    "framework": {{ cookiecutter.framework | tojson }},
    "accelerator": {{ cookiecutter.accelerator | tojson }},
    "serving": {{ cookiecutter.serving | tojson }},
    "ci": {{ cookiecutter.ci | tojson }},
}

# ---- no Jinja below this line ----


def paths_to_remove(opts: dict[str, str]) -> list[str]:
    slug = opts["project_slug"]
    remove: list[str] = []
    if opts["serving"] == "no":
        remove += [f"src/{slug}/serve.py", "tests/test_serve.py"]
    if opts["framework"] != "pytorch":
        remove += ["tests/test_cuda.py"]
    if opts["ci"] == "none":
        remove += [".github"]
    return remove


def main() -> int:
    root = Path.cwd()
    for rel in paths_to_remove(OPTIONS):
        target = root / rel
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    slug = OPTIONS["project_slug"]
    print(
        f"\nCreated {root.name}. Next steps:\n"
        f"  cd {root.name}\n"
        "  make requirements   # uv sync: creates uv.lock (commit it)\n"
        "  make test\n"
        f"  make train          # writes models/{slug}/<version>/\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
