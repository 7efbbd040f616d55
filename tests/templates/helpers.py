"""Baking the ml-project template for tests and benchmarks."""

from __future__ import annotations

import itertools
import json
import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from cookiecutter.main import cookiecutter

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "templates" / "ml-project"
OPTIONS: dict[str, Any] = json.loads((TEMPLATE / "cookiecutter.json").read_text())
CHOICES = {k: v for k, v in OPTIONS.items() if isinstance(v, list) and not k.startswith("_")}
LOCAL_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
# Generated projects install this checkout of the platform library.
PLATFORM_REQUIREMENT = f"ml-platform @ {REPO.as_uri()}"
DEFAULT_SLUG = "churn_model"


def is_valid(combo: Mapping[str, str]) -> bool:
    """The template's documented rule: a GPU accelerator needs framework=pytorch."""
    return combo["accelerator"] == "none" or combo["framework"] == "pytorch"


def valid_combinations() -> Iterator[dict[str, str]]:
    keys = list(CHOICES)
    for values in itertools.product(*(CHOICES[k] for k in keys)):
        combo = dict(zip(keys, values, strict=True))
        if is_valid(combo):
            yield combo


def combo_id(combo: Mapping[str, str]) -> str:
    return "-".join(f"{v}" for v in combo.values())


# Plain-cookiecutter bakes name a pool for GPU combinations (new-project takes it from a stack).
GPU_POOL = "gpu-pool"


def bake(output_dir: Path, **options: str) -> Path:
    context = {
        "python_version": LOCAL_PYTHON,
        "platform_requirement": PLATFORM_REQUIREMENT,
        **options,
    }
    if context.get("accelerator", "none") != "none":
        context.setdefault("gpu_pool", GPU_POOL)
    return Path(
        cookiecutter(
            str(TEMPLATE), no_input=True, extra_context=context, output_dir=str(output_dir)
        )
    )


def expected_files(
    combo: Mapping[str, str], slug: str = DEFAULT_SLUG, stack: str = "dev"
) -> set[str]:
    """The exact file set a combination must produce (written independently of the hooks)."""
    pkg = f"src/{slug}"
    files = {
        ".cruft.json",
        ".dockerignore",
        ".gitignore",
        ".pre-commit-config.yaml",
        "data/external/.gitkeep",
        "data/interim/.gitkeep",
        "data/processed/.gitkeep",
        "data/raw/.gitkeep",
        "notebooks/.gitkeep",
        ".python-version",
        "Dockerfile",
        "Makefile",
        "README.md",
        "pyproject.toml",
        f"{pkg}/__init__.py",
        f"{pkg}/data.py",
        f"{pkg}/drift.py",
        f"{pkg}/evaluate.py",
        f"{pkg}/fairness.py",
        f"{pkg}/gates.py",
        f"{pkg}/model.py",
        f"{pkg}/promote.py",
        f"{pkg}/model_card.py",
        f"{pkg}/registry.py",
        f"{pkg}/retrain.py",
        f"{pkg}/sample_data/churn.csv",
        f"{pkg}/settings.py",
        f"{pkg}/storage.py",
        f"{pkg}/tracking.py",
        f"{pkg}/train.py",
        f"{pkg}/validation.py",
        "tests/__init__.py",
        "tests/conftest.py",
        "tests/test_data.py",
        "tests/test_promote.py",
        "tests/test_drift.py",
        "tests/test_quality.py",
        "tests/test_registry.py",
        "tests/test_settings.py",
        "tests/test_storage.py",
        "tests/test_tracking.py",
        "tests/test_train.py",
        "tests/test_retrain.py",
        "infra/Pulumi.yaml",
        f"infra/Pulumi.{stack}.yaml",
        "infra/__main__.py",
        "infra/observability.py",
        "infra/program.py",
        "infra/pyproject.toml",
        "infra/runs.py",
        "infra/submit.py",
        "infra/tests/__init__.py",
        "infra/tests/conftest.py",
        "infra/tests/test_program.py",
        "infra/tests/test_submit.py",
    }
    if combo["serving"] == "yes":
        files |= {f"{pkg}/serve.py", "tests/test_serve.py", "tests/test_alerts.py"}
        # Model-quality alerts, runbook and drift CronJob read metrics only the server exports.
        files |= {
            f"monitoring/{n}" for n in ("model-alerts.yml", "model-alerts.test.yml", "RUNBOOK.md")
        }
        files |= {"infra/quality.py", "infra/tests/test_quality.py"}
        # Continuous training: the trigger reads the drift job's result.
        files |= {"infra/retraining.py", "infra/tests/test_retraining.py"}
    if combo["framework"] == "pytorch":
        files |= {"tests/test_cuda.py", "tests/test_distributed.py"}
        files |= {f"{pkg}/distributed.py", f"{pkg}/checkpoint.py"}
    if combo["ci"] == "github":
        workflows = ("ci", "infra-preview", "deploy", "image", "train", "promote")
        files |= {f".github/workflows/{n}.yml" for n in workflows}
    return files


def project_files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def uv_env(**extra: str) -> dict[str, str]:
    """Environment for uv in generated projects: this interpreter, the shared cache, no downloads."""
    # UV_LOCKED/UV_FROZEN (set by .ci/run for this repository) are not the generated project's:
    # its tests pass --locked where they mean it, and a fresh project locks first.
    dropped = ("VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT", "UV_LOCKED", "UV_FROZEN")
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    env.update(UV_PYTHON=sys.executable, UV_PYTHON_DOWNLOADS="never", UV_NO_PROGRESS="1")
    env.update(extra)
    return env


# The infra program's sibling modules: each project's own, never another project's cached copy.
INFRA_MODULES = ("runs", "observability", "quality", "retraining")


@contextmanager
def infra_on_path(infra: Path) -> Iterator[None]:
    """``infra/`` importable as `pulumi up` sees it (program.py imports its siblings)."""
    sys.path.insert(0, str(infra))
    for sibling in INFRA_MODULES:
        sys.modules.pop(sibling, None)
    try:
        yield
    finally:
        sys.path.remove(str(infra))
        for sibling in INFRA_MODULES:
            sys.modules.pop(sibling, None)


def import_program(infra: Path, name: str) -> ModuleType:
    """A generated ``infra/program.py`` as module ``name``."""
    import importlib.util

    with infra_on_path(infra):
        spec = importlib.util.spec_from_file_location(name, infra / "program.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while the class is built
        spec.loader.exec_module(module)
        return module


def load_package_module(root: Path, module: str) -> ModuleType:
    """``src/<package>/<module>.py`` of a generated project, loaded on its own: the trigger's
    pure parts (``retrain.py``) import nothing the platform's environment lacks."""
    import importlib.util

    path = root / "src" / root.name / f"{module}.py"
    spec = importlib.util.spec_from_file_location(f"{module}_{root.name}_{id(root)}", path)
    assert spec is not None
    assert spec.loader is not None
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = loaded  # dataclasses look their module up there
    spec.loader.exec_module(loaded)
    return loaded
