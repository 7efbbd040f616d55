"""The policy pack and our components under the real engine, with no cluster and no cloud account.

A Kubernetes provider with ``render_yaml_to_directory`` makes ``pulumi up`` write manifests instead
of applying them, so the real CLI, Python language host and Kubernetes provider run offline:

* ``pulumi preview --policy-pack policies`` for prod blocks an unsafe Deployment, naming the rules,
  and lets a hardened one through;
* ``pulumi up`` of a component (ProjectNamespaces; ServingEndpoint as on the local stack) renders exactly the manifests that ``mlplatform plan`` reports, so
  the offline plan shows what the engine would apply.

Skipped unless ``pulumi``, ``pulumi-language-python`` and ``pulumi-resource-kubernetes`` are on PATH
or in ``MLPLATFORM_ENGINE_DIR`` (see docs/integration-tests.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from mlplatform.plan import run_program
from tests.integration.engine_programs import PROGRAMS, RENDER_DIR_ENV
from tests.integration.engine_support import EngineProject, copy_policy_pack, engine_search_path

pytestmark = pytest.mark.engine

# Metadata the Kubernetes provider adds to every object it applies or renders.
PROVIDER_LABELS = frozenset({"app.kubernetes.io/managed-by"})
PROVIDER_ANNOTATION_PREFIXES = ("pulumi.com/",)


@pytest.fixture(scope="module")
def search_path() -> str:
    return engine_search_path()


def _project(root: Path, search_path: str, program: str, **env: str) -> EngineProject:
    return EngineProject(
        root=root,
        search_path=search_path,
        program=program,
        render_dir=root / "render",
        extra_env=env,
    )


@pytest.fixture(scope="module")
def pack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_policy_pack(tmp_path_factory.mktemp("pack"))


def test_prod_pack_blocks_unsafe_deployment(search_path: str, pack: Path, tmp_path: Path) -> None:
    project = _project(tmp_path, search_path, "unsafe_deployment", MLPLATFORM_ENVIRONMENT="prod")
    result = project.pulumi("preview", "--policy-pack", str(pack))
    out = result.output

    assert result.returncode != 0, "prod policies must fail the preview of an unsafe Deployment"
    assert "ml-platform policy pack: environment=prod" in out, "the pack did not run for prod"
    assert "mandatory" in out
    assert "no-latest-images" in out and "uses :latest" in out
    assert "containers-nonroot-resources" in out
    assert "must run as non-root" in out
    assert "must set resources requests.cpu, requests.memory, limits.memory" in out


def test_prod_pack_passes_hardened_deployment(search_path: str, pack: Path, tmp_path: Path) -> None:
    project = _project(tmp_path, search_path, "hardened_deployment", MLPLATFORM_ENVIRONMENT="prod")
    result = project.pulumi("preview", "--policy-pack", str(pack))

    assert "ml-platform policy pack: environment=prod" in result.output
    assert result.returncode == 0, "a hardened Deployment must pass the prod policies"
    assert "no-latest-images" not in result.output
    assert "containers-nonroot-resources" not in result.output


def _strip_provider_metadata(manifest: dict[str, Any]) -> dict[str, Any]:
    meta = dict(manifest.get("metadata") or {})
    labels = {k: v for k, v in (meta.get("labels") or {}).items() if k not in PROVIDER_LABELS}
    annotations = {
        k: v
        for k, v in (meta.get("annotations") or {}).items()
        if not k.startswith(PROVIDER_ANNOTATION_PREFIXES)
    }
    for key, value in (("labels", labels), ("annotations", annotations)):
        if value:
            meta[key] = value
        else:
            meta.pop(key, None)
    return {**manifest, "metadata": meta}


def _key(manifest: dict[str, Any]) -> tuple[str, str, str, str]:
    meta = manifest["metadata"]
    return (manifest["apiVersion"], manifest["kind"], meta.get("namespace", ""), meta["name"])


def _by_key(manifests: list[dict[str, Any]]) -> dict[tuple[str, str, str, str], dict[str, Any]]:
    out: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    for m in manifests:
        m = _strip_provider_metadata(m)
        assert _key(m) not in out, f"two manifests for {_key(m)}"
        out[_key(m)] = m
    return out


@pytest.mark.parametrize("program", ["project_namespaces", "serving_endpoint"])
def test_rendered_manifests_are_the_planned_ones(
    program: str, search_path: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = _project(tmp_path, search_path, program)
    result = project.pulumi("up", "--yes", "--skip-preview")
    assert result.returncode == 0, "pulumi up with the render provider failed"

    files = sorted(project.render_dir.rglob("*.yaml"))
    assert files, f"the provider rendered nothing into {project.render_dir}"
    rendered = [doc for f in files for doc in yaml.safe_load_all(f.read_text()) if doc]

    monkeypatch.setenv(RENDER_DIR_ENV, str(tmp_path / "plan-render"))
    planned = run_program(PROGRAMS[program]).manifests()

    engine, plan = _by_key(rendered), _by_key(planned)
    assert sorted(engine) == sorted(plan), "the engine and the plan declare different objects"
    for key in sorted(engine):
        assert engine[key] == plan[key], f"{key}: rendered manifest differs from the plan"
