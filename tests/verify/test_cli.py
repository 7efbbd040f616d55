"""`mlplatform verify` as a user runs it: where outputs come from, usage errors, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlplatform import verify
from mlplatform.cli import main as cli_main

REPO = Path(__file__).resolve().parents[2]
SKIP_ALL = ["--skip-aws", "--skip-kubernetes"]


def fake_pulumi(bin_dir: Path, *, stdout: str = "", stderr: str = "", rc: int = 0) -> Path:
    """A `pulumi` on PATH that records its argv and cwd and prints what it is told."""
    log = bin_dir / "pulumi.log"
    script = bin_dir / "pulumi"
    script.write_text(
        "#!/bin/sh\n"
        f'printf "%s\\n" "$PWD" "$@" > {log}\n'
        f"printf '%s' '{stdout}'\n"  # builtins only: PATH holds nothing else
        f"printf '%s' '{stderr}' >&2\n"
        f"exit {rc}\n"
    )
    script.chmod(0o755)
    return log


def test_no_pulumi_and_no_outputs_is_a_usage_error(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(tmp_path)}  # no pulumi on PATH
    proc = subprocess.run(
        [sys.executable, "-m", "mlplatform.cli", "verify", "--stack", "dev"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "the pulumi CLI is not on PATH" in proc.stderr
    assert "--outputs FILE" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_outputs_come_from_pulumi_stack_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    log = fake_pulumi(tmp_path, stdout=json.dumps({"platform": "local", "kubeContext": "kind-x"}))
    monkeypatch.setenv("PATH", str(tmp_path))
    assert cli_main(["verify", "--stack", "staging", *SKIP_ALL]) == 0
    cwd, *argv = log.read_text().splitlines()
    assert argv == ["stack", "output", "--json", "--show-secrets", "--stack", "staging"]
    assert (Path(cwd) / "Pulumi.yaml").is_file()  # run in the project, wherever verify ran
    assert "all 2 checks passed" in capsys.readouterr().out


def test_pulumi_failure_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_pulumi(tmp_path, stderr="error: no stack named staging found", rc=255)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert cli_main(["verify", "--stack", "staging", *SKIP_ALL]) == 2
    err = capsys.readouterr().err
    assert "no stack named staging found" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read --outputs"),
        ("{not json", "is not valid JSON"),
        ('["a"]', "must be a JSON object"),
        ("{}", "has no outputs"),
    ],
)
def test_bad_outputs_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, message: str
) -> None:
    path = tmp_path / "outputs.json"
    if content is not None:
        path.write_text(content)
    assert cli_main(["verify", "--outputs", str(path), *SKIP_ALL]) == 2
    assert message in capsys.readouterr().err


def test_local_platform_skips_aws(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps({"platform": "local", "kubeContext": "kind-mlplatform"}))
    assert (
        cli_main(["verify", "--outputs", str(path), "--skip-kubernetes", "--format", "json"]) == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert report["checks"][0] == {
        "name": "aws",
        "ok": True,
        "detail": "platform is local: no AWS resources",
        "skipped": True,
        "status": "skip",
    }


def test_table_lists_every_check_and_exit_code_follows_failures() -> None:
    results = [
        verify.passed("aws.s3.versioning", "b: versioning Enabled"),
        verify.failed("k8s.nodes-ready", "1/3 not Ready: n2"),
        verify.skipped("k8s.gpu-allocatable", "no GPU node is up"),
    ]
    lines = verify.render_table(results).splitlines()
    assert lines[0].split() == ["CHECK", "RESULT", "DETAIL"]
    assert lines[1].split()[:2] == ["aws.s3.versioning", "PASS"]
    assert lines[2].split()[:2] == ["k8s.nodes-ready", "FAIL"]
    assert lines[3].split()[:2] == ["k8s.gpu-allocatable", "SKIP"]
    assert lines[-1] == "1 of 3 checks failed"
    assert json.loads(verify.render_json("dev", results))["ok"] is False
