"""The compliance profiles under the real engine: `pulumi preview --policy-pack policies` reads the
profiles from the stack's `ml-platform:compliance` config (sent by the engine, ConfigureStack).

Skipped unless the engine binaries are found (see tests/integration/engine_support.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.engine_support import EngineProject, copy_policy_pack, engine_search_path

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def pack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_policy_pack(tmp_path_factory.mktemp("pack"))


def _project(root: Path, program: str, *profiles: str) -> EngineProject:
    project = EngineProject(
        root=root,
        search_path=engine_search_path(),
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
