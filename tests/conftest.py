"""Shared fixtures: run programs or single components under Pulumi's mock runtime."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from typing import Any, NoReturn

import pytest

from mlplatform.graph import Graph
from mlplatform.plan import run_program
from tests import kube_validate
from tests.kube_validate import KubectlValidate


@pytest.fixture
def run() -> Callable[..., Graph]:
    """``run(fn, stack=..., config=...)`` runs ``fn`` as a Pulumi program and returns its Graph."""

    def _run(fn: Callable[[], Any], **kwargs: Any) -> Graph:
        return run_program(fn, **kwargs)

    return _run


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def missing_tool(reason: str) -> NoReturn:
    """Skip on a developer's machine; fail in CI (``CI=true``), where .ci/run installs every tool
    and only tests that need AWS or a GPU may skip."""
    if in_ci():
        pytest.fail(f"{reason} [CI=true: a missing tool fails the run]", pytrace=False)
    pytest.skip(reason)


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        missing_tool(f"{name} is not on PATH (.ci/run installs it)")
    return path


@pytest.fixture(scope="session")
def kubectl_validate() -> KubectlValidate:
    """kubectl-validate with the pinned CRDs (tests/kube_validate.py); skips when not built."""
    return kube_validate.find()
