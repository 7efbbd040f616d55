"""The shipped stacks' offline plans, built once per test process (they take seconds each)."""

from __future__ import annotations

import copy
import functools
from typing import Any

from mlplatform.report import build_plan


@functools.cache
def _plan(stack: str) -> dict[str, Any]:
    return build_plan(stack)


def shipped_plan(stack: str) -> dict[str, Any]:
    """A private copy of the plan of ``stacks/Pulumi.<stack>.yaml`` (callers may change it)."""
    return copy.deepcopy(_plan(stack))
