"""A missing tool skips a test on a developer's machine and fails it in CI."""

from __future__ import annotations

import pytest

from tests.conftest import missing_tool, require_tool


@pytest.mark.parametrize("value", ["true", "True", "1"])
def test_missing_tool_fails_in_ci(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CI", value)
    with pytest.raises(
        pytest.fail.Exception, match=r"no-such-tool-mlplatform is not on PATH .*CI=true"
    ):
        require_tool("no-such-tool-mlplatform")


@pytest.mark.parametrize("value", [None, "", "false"])
def test_missing_tool_skips_elsewhere(monkeypatch: pytest.MonkeyPatch, value: str | None) -> None:
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.skip.Exception, match="not on PATH"):
        missing_tool("no-such-tool-mlplatform is not on PATH")


def test_present_tool_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    assert require_tool("sh").endswith("/sh")
