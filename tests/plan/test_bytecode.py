"""The CLI keeps compiled modules in its virtual environment, even under PYTHONDONTWRITEBYTECODE."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from mlplatform import cli


@pytest.fixture
def flags(monkeypatch: pytest.MonkeyPatch) -> None:
    # Whatever the test sets, the interpreter gets its own flags back afterwards.
    monkeypatch.setattr(sys, "dont_write_bytecode", sys.dont_write_bytecode)
    monkeypatch.setattr(sys, "pycache_prefix", sys.pycache_prefix)


@pytest.mark.usefixtures("flags")
def test_in_a_venv_bytecode_goes_to_the_venv(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(sys, "prefix", str(tmp_path / ".venv"))
    monkeypatch.setattr(sys, "base_prefix", "/usr")
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    cli.keep_bytecode_in_venv()
    assert sys.dont_write_bytecode is False
    assert sys.pycache_prefix == str(tmp_path / ".venv" / ".pycache")


@pytest.mark.usefixtures("flags")
def test_outside_a_venv_the_users_setting_stands(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "prefix", "/usr")
    monkeypatch.setattr(sys, "base_prefix", "/usr")
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    monkeypatch.setattr(sys, "pycache_prefix", None)
    cli.keep_bytecode_in_venv()
    assert sys.dont_write_bytecode is True and sys.pycache_prefix is None


@pytest.mark.usefixtures("flags")
def test_without_the_variable_nothing_changes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(sys, "prefix", str(tmp_path))
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    monkeypatch.setattr(sys, "pycache_prefix", None)
    cli.keep_bytecode_in_venv()
    assert sys.pycache_prefix is None  # Python's own __pycache__ next to each module


def test_offline_runs_skip_the_sdks_stack_capture_and_restore_it() -> None:
    from pulumi.runtime import resource as sdk

    from mlplatform.plan import run_program

    original = sdk._get_stack_trace  # an SDK upgrade without it would lose the speed-up: fail
    seen = []
    run_program(lambda: seen.append(sdk._get_stack_trace))
    assert seen and seen[0] is not original
    assert seen[0]().frames == []  # an empty trace, no stack walk
    assert sdk._get_stack_trace is original
