"""The compliance profiles under the real engine: `pulumi preview --policy-pack policies` reads the
profiles from the stack's `ml-platform:compliance` config (sent by the engine, ConfigureStack).

Skipped unless the engine binaries are found (see tests/integration/engine_support.py); the first
two need only the CLI and the Python language host.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.integration.engine_support import (
    ENGINE_DIR_ENV,
    EngineProject,
    copy_policy_pack,
    engine_search_path,
)

pytestmark = pytest.mark.engine


def _cli_search_path() -> str:
    """PATH with the engine folder in front, when the CLI and the Python host are there."""
    path = os.environ.get("PATH", "")
    if os.environ.get(ENGINE_DIR_ENV):
        path = os.pathsep.join([str(Path(os.environ[ENGINE_DIR_ENV]).resolve()), path])
    missing = [b for b in ("pulumi", "pulumi-language-python") if not shutil.which(b, path=path)]
    if missing:
        pytest.skip(f"engine binaries not found: {', '.join(missing)} (scripts/build-engine.sh)")
    return path


@pytest.fixture(scope="module")
def pack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_policy_pack(tmp_path_factory.mktemp("pack"))


def _project(
    root: Path, program: str, *profiles: str, search_path: str | None = None
) -> EngineProject:
    project = EngineProject(
        root=root,
        search_path=search_path or engine_search_path(),
        program="hardened_deployment",
        render_dir=root / "render",
        extra_env={"MLPLATFORM_ENVIRONMENT": "prod"},
    )
    (project.work / "__main__.py").write_text(
        f"from tests.policies.engine_compliance import {program}\n\n{program}()\n"
    )
    for i, profile in enumerate(profiles):
        result = project.pulumi(
            "config", "set", "--path", f"ml-platform:compliance.profiles[{i}]", profile
        )
        assert result.returncode == 0, result.output
    return project


def test_the_pack_reads_the_profiles_from_the_stack_config(pack: Path, tmp_path: Path) -> None:
    """An unknown profile in the stack file reaches the pack only through the engine's
    ConfigureStack: reporting it proves the pack sees the stack's config."""
    path = _cli_search_path()
    project = _project(tmp_path, "component_only", "hipaa", "sox", search_path=path)
    result = project.pulumi("preview", "--policy-pack", str(pack))
    assert result.returncode != 0, "an unknown profile must fail a prod preview"
    assert "[mandatory]  compliance-profiles" in result.output
    assert "unknown compliance profile 'sox'; allowed: gdpr, hipaa" in result.output


def test_known_profiles_and_nothing_to_violate_pass(pack: Path, tmp_path: Path) -> None:
    project = _project(tmp_path, "component_only", "hipaa", search_path=_cli_search_path())
    result = project.pulumi("preview", "--policy-pack", str(pack))
    assert result.returncode == 0, "hipaa with nothing declared to check must pass"
    assert "compliance-profiles" not in result.output  # the config arrived: nothing to say


def test_stack_config_profile_blocks_the_preview(pack: Path, tmp_path: Path) -> None:
    project = _project(tmp_path, "aws_managed_key_and_public_lb", "hipaa")
    result = project.pulumi("preview", "--policy-pack", str(pack))
    out = result.output
    assert result.returncode != 0, "hipaa must fail the preview"
    assert "hipaa-encryption-cmk" in out and "mandatory" in out
    assert "StorageClass 'gp3' must set parameters" in out
    assert "hipaa-no-public-endpoints" in out and "of type LoadBalancer" in out
    assert "164.312(a)(2)(iv)" in out
    assert "gdpr-" not in out
    assert "compliance-profiles" not in out


def test_without_profiles_the_same_program_passes(pack: Path, tmp_path: Path) -> None:
    project = _project(tmp_path, "aws_managed_key_and_public_lb")
    result = project.pulumi("preview", "--policy-pack", str(pack))
    assert "hipaa-" not in result.output
    assert result.returncode == 0, "no profile enabled: nothing of theirs applies"


def test_a_compliant_program_passes_the_profile(pack: Path, tmp_path: Path) -> None:
    project = _project(tmp_path, "cmk_and_no_lb", "hipaa", "gdpr")
    result = project.pulumi("preview", "--policy-pack", str(pack))
    assert result.returncode == 0, "a CMK-encrypted class and no load balancer pass hipaa and gdpr"
    assert "hipaa-" not in result.output and "gdpr-" not in result.output
