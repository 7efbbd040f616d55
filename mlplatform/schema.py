"""Generate the `config:` block of Pulumi.yaml from the typed config, its only owner.

Run `uv run python -m mlplatform.schema --write` after changing mlplatform/config.py; a test fails
when Pulumi.yaml and the model drift apart.
"""

from __future__ import annotations

import sys
import typing
from enum import Enum
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from mlplatform.config import ROOT, PlatformConfig

HEADER = {
    "name": "ml-platform",
    "description": "ML platform on AWS and Kubernetes: EKS training clusters, GPU pools, model storage, "
    "serving and monitoring.",
    "runtime": {"name": "python", "options": {"toolchain": "uv"}},
    "stackConfigDir": "stacks",
}


def _scalar_type(annotation: Any) -> tuple[str | None, dict[str, Any] | None]:
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)) and len(args) == 1:
        return _scalar_type(args[0])
    if annotation is bool:
        return "boolean", None
    if annotation is int:
        return "integer", None
    if annotation is str or (isinstance(annotation, type) and issubclass(annotation, Enum)):
        return "string", None
    if origin in (list, tuple) and args:
        item, _ = _scalar_type(args[0])
        if item in ("string", "integer", "boolean"):
            return "array", {"type": item}
    return None, None


def config_block() -> dict[str, Any]:
    block: dict[str, Any] = {}
    for name, field in PlatformConfig.model_fields.items():
        key = field.alias or name
        entry: dict[str, Any] = {}
        typ, items = _scalar_type(field.annotation)
        if typ:
            entry["type"] = typ
        if items:
            entry["items"] = items
        entry["description"] = field.description or ""
        if not field.is_required():
            default = field.get_default(call_default_factory=True)
            if isinstance(default, BaseModel):
                # `environment` follows the stack's own key, so it never appears in section defaults.
                default = default.model_dump(
                    mode="json", by_alias=True, exclude_none=True, exclude={"environment"}
                )
            elif isinstance(default, Enum):
                default = default.value
            if default is not None:
                entry["default"] = default
        block[key] = entry
    return block


def render() -> str:
    doc = {**HEADER, "config": config_block()}
    return (
        "# Generated from mlplatform/config.py by `python -m mlplatform.schema --write`; do not edit.\n"
        + yaml.safe_dump(doc, sort_keys=False, width=100)
    )


def main(argv: list[str]) -> int:
    text = render()
    if "--write" in argv:
        (Path(ROOT) / "Pulumi.yaml").write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
