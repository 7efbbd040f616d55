"""Order the control-plane tests stack by stack, so each stack's control plane can be stopped
before the next one starts (test_control_plane.py keeps at most one stack's running)."""

from __future__ import annotations

import pytest

STACK_ORDER = ("dev", "prod", "local")


def _stack_rank(item: pytest.Item) -> int:
    callspec = getattr(item, "callspec", None)
    stack = callspec.params.get("applied") if callspec else None
    return STACK_ORDER.index(stack) if stack in STACK_ORDER else len(STACK_ORDER)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    cp = [
        i
        for i in items
        if i.module is not None and i.module.__name__.endswith("test_control_plane")
    ]
    if not cp:
        return
    first = items.index(cp[0])
    rest = [i for i in items if i not in cp]
    items[:] = rest[:first] + sorted(cp, key=_stack_rank) + rest[first:]
