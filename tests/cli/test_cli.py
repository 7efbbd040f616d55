"""`mlplatform` outside the happy path: help, version, where stacks come from, exit codes.

Exit 0 success, 1 only for a mandatory policy violation, 2 for usage and config errors; never a
Python traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlplatform.cli import find_stacks_dir, main, parser

REPO = Path(__file__).resolve().parents[2]
STACKS = REPO / "stacks"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("mlplatform 0.")


def _subparsers(p: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (action,) = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def test_every_command_and_option_has_help() -> None:
    p = parser()
    commands = _subparsers(p)
    assert set(commands) == {"plan", "cost", "diff", "verify", "new-project"}
    listed = {a.dest: a.help for a in p._subparsers._group_actions[0]._choices_actions}  # type: ignore[union-attr]
    assert all(listed.values()), listed
    for name, sub in commands.items():
        assert sub.description, name
        for action in sub._actions:
            assert action.help and action.help != argparse.SUPPRESS, (name, action.dest)
    assert "--stacks-dir" in commands["plan"].format_help()


def test_stacks_come_from_the_nearest_platform_pulumi_yaml(tmp_path: Path) -> None:
    project = tmp_path / "platform"
    (project / "config" / "stacks").mkdir(parents=True)
    (project / "Pulumi.yaml").write_text("name: ml-platform\nstackConfigDir: config/stacks\n")
    nested = project / "docs" / "deep"
    nested.mkdir(parents=True)
    assert find_stacks_dir(nested) == project / "config" / "stacks"
    # Another project's Pulumi.yaml on the way up is not the platform.
    other = nested / "infra"
    other.mkdir()
    (other / "Pulumi.yaml").write_text("name: churn-model\n")
    assert find_stacks_dir(other) == project / "config" / "stacks"
    # Without stackConfigDir, stack files sit next to Pulumi.yaml.
    (project / "Pulumi.yaml").write_text("name: ml-platform\n")
    assert find_stacks_dir(nested) == project
    assert find_stacks_dir(REPO / "docs") == STACKS


def test_plan_from_a_subfolder_finds_the_stacks(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO / "stacks")
    code, out, _ = run(capsys, "cost", "--stack", "dev", "--format", "json")
    assert code == 0
    assert json.loads(out)["monthlyIdle"] > 0


def _stack(tmp_path: Path, text: str) -> Path:
    (tmp_path / "Pulumi.bad.yaml").write_text(text)
    return tmp_path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("just a scalar\n", "must be a mapping with a `config:` key, got str"),
        ("config: [1, 2]\n", "config: must map keys to values"),
        ("config: {1: x}\n", "config.1: keys must be strings"),
        ("config: {ml-platform:environment: [dev]}\n", "ml-platform:environment"),
        ("config: {: }\n  - broken: [\n", "not valid YAML"),
    ],
)
def test_broken_stack_files_are_config_errors(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str, message: str
) -> None:
    code, _, err = run(
        capsys, "plan", "--stack", "bad", "--stacks-dir", str(_stack(tmp_path, text))
    )
    assert code == 2
    assert message in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["new-project", "--set", "framework"], "--set framework: expected KEY=VALUE"),
        (["new-project", "--set", "=x"], "--set =x: expected KEY=VALUE"),
        (["new-project", "--stack", "local"], "supports AWS stacks only: stack 'local'"),
        (["plan", "--stack", "nope"], "no stack file"),
        (
            ["plan", "--stacks-dir", "/nonexistent/stacks"],
            "--stacks-dir /nonexistent/stacks: not a folder",
        ),
        (["plan", "--out", str(REPO / "README.md")], "is a file; name a folder"),
    ],
)
def test_usage_errors_exit_2_with_the_reason(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert message in err


def test_argparse_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["frobnicate"], ["plan", "--format", "yaml"], []):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2
        assert "error:" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[1, 2]", "is not a plan: expected the object"),
        ('{"resources": [1]}', "is not a plan"),
        ("not json", "is not valid JSON"),
        (None, "cannot read plan"),
    ],
)
def test_diff_refuses_what_is_not_a_plan(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, content: str | None, message: str
) -> None:
    bad = tmp_path / "bad.json"
    if content is not None:
        bad.write_text(content)
    code, _, err = run(capsys, "diff", str(bad), str(bad))
    assert code == 2
    assert message in err


def test_a_component_refusing_its_args_is_a_config_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from components.common import InvalidArgsError, Issue
    from mlplatform import platform

    def refuse(_settings: object) -> None:
        raise InvalidArgsError("Thing", [Issue(("a",), "bad")])

    monkeypatch.setattr(platform, "declare", refuse)
    code, _, err = run(capsys, "plan", "--stack", "dev")
    assert code == 2
    assert "invalid Thing args" in err and "a: bad" in err


def test_an_unexpected_error_is_reported_without_a_traceback(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlplatform import platform

    def crash(_settings: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(platform, "declare", crash)
    code, _, err = run(capsys, "plan", "--stack", "dev")
    assert code == 70
    assert "internal error: RuntimeError: boom" in err
    assert "MLPLATFORM_DEBUG=1" in err


def test_a_mandatory_policy_violation_exits_1(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    text = (STACKS / "Pulumi.prod.yaml").read_text().replace("protect: true", "protect: false")
    (tmp_path / "Pulumi.prod.yaml").write_text(text)
    code, out, _ = run(capsys, "plan", "--stack", "prod", "--stacks-dir", str(tmp_path))
    assert code == 1
    # The violation names the stack key to change, not code.
    assert "set `ml-platform:modelStore.protect: true` in the stack file" in out
    assert "set `ml-platform:modelRegistry.protect: true` in the stack file" in out
    assert "ResourceOptions" not in out


def test_plan_into_a_closed_pipe_is_quiet() -> None:
    """`mlplatform plan | head -1`: no BrokenPipeError, the exit code of the plan."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlplatform.cli", "plan", "--stack", "dev", "--format", "json"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()  # what `head -1` does after its line
    err = proc.stderr.read().decode()
    code = proc.wait(timeout=300)
    assert first.strip() == b"{"
    assert "Traceback" not in err and "BrokenPipe" not in err, err
    assert code == 0


# new-project and the stack's registration of the project -----------------------------------
def test_new_project_says_a_registered_project_is_registered(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """prod registers churn with its repository: new-project says so, and the project's
    deploy runs on churn's runner as churn's deploy role."""
    import yaml

    code, out, err = run(
        capsys, "new-project", "--stack", "prod", "--no-input", "--output-dir", str(tmp_path),
        "--set", "project_name=churn",
    )  # fmt: skip
    assert code == 0, err
    assert "project 'churn' is registered on stack 'prod'" in err
    assert "NOT registered" not in err
    root = Path(out.strip().splitlines()[-1])
    deploy = yaml.safe_load((root / ".github/workflows/deploy.yml").read_text())["jobs"]["deploy"]
    assert deploy["runs-on"].startswith("codebuild-mlp-prod-churn-ci-")
    (creds,) = [s for s in deploy["steps"] if "configure-aws-credentials" in s.get("uses", "")]
    assert creds["with"]["role-to-assume"] == (
        "arn:aws:iam::123456789012:role/mlp-prod-churn-ci-deploy"
    )


def test_new_project_prints_the_entry_an_unregistered_project_needs(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = run(
        capsys, "new-project", "--stack", "dev", "--no-input", "--output-dir", str(tmp_path),
        "--set", "project_name=Fresh Idea", "--repository", "example-org/fresh-idea",
    )  # fmt: skip
    assert code == 0, err
    assert "project 'fresh-idea' is NOT registered on stack 'dev'" in err
    assert "Add this to stacks/Pulumi.dev.yaml" in err
    for line in (
        "  ml-platform:projects:",
        "      - name: fresh-idea",
        "        repository: example-org/fresh-idea",
        "      - {project: fresh-idea, serviceAccount: fresh-idea-trainer, access: read-write}",
        "      - {project: fresh-idea, serviceAccount: fresh-idea-server, access: read, "
        "createServiceAccount: false, writeOnlyPrefixes: [inference-logs/]}",
        "      - {project: fresh-idea, serviceAccount: fresh-idea-retrainer, access: read}",
        "        namespaces: [churn, fresh-idea]",
    ):
        assert line in err.splitlines(), line
    assert Path(out.strip().splitlines()[-1]).is_dir()


def test_new_project_refuses_a_repository_that_is_not_owner_name(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = run(
        capsys, "new-project", "--stack", "dev", "--no-input", "--output-dir", str(tmp_path),
        "--set", "project_name=x1", "--repository", "not a repo",
    )  # fmt: skip
    assert code == 2
    assert "repository: must be owner/name, got 'not a repo'" in err
    assert list(tmp_path.iterdir()) == []


def test_new_project_names_a_registered_project_with_another_repository(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = run(
        capsys, "new-project", "--stack", "prod", "--no-input", "--output-dir", str(tmp_path),
        "--set", "project_name=churn", "--repository", "example-org/churn-v2",
    )  # fmt: skip
    assert code == 0, err
    assert "gives the runner to example-org/churn, not example-org/churn-v2" in err
    assert "        repository: example-org/churn-v2" in err.splitlines()
