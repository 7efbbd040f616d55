"""parliament over IAM documents, the one way every test area uses it."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

BLOCKING = ("MEDIUM", "HIGH", "CRITICAL")


def iam_findings(
    doc: dict[str, Any] | str,
    *,
    trust: bool = False,
    ignore: Callable[[str, Any], bool] | None = None,
) -> list[tuple[str, Any]]:
    """parliament findings at MEDIUM or above, less those ``ignore(issue, detail)`` excuses."""
    parliament = pytest.importorskip("parliament")
    text = doc if isinstance(doc, str) else json.dumps(doc)
    found = []
    for f in parliament.analyze_policy_string(text).findings:
        # analyze_policy_string leaves severity empty; enhance_finding fills it from the config.
        f = parliament.enhance_finding(f)
        # A trust policy has no Resource by definition; parliament's MALFORMED says exactly that.
        if trust and f.issue == "MALFORMED" and "Resource" in str(f.detail):
            continue
        if ignore is not None and ignore(f.issue, f.detail):
            continue
        if f.severity in BLOCKING:
            found.append((f.issue, f.detail))
    return found
