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
from pydantic.fields import FieldInfo

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


def _optional_without_default(field: FieldInfo) -> bool:
    """An optional key whose absence means something (``kubeContext`` only on local, ...).

    The engine treats every declared key without a ``default`` (or ``value``) as required, and a
    ``default: null`` counts as none (pulumi/pkg/workspace/config.go ``mergeConfig``: ``Default !=
    nil``); any other default is merged into the stack's config, so it would no longer be absent.
    Such keys are left out of the ``config:`` block: the engine passes undeclared keys through, and
    the typed model still validates them.
    """
    return not field.is_required() and field.get_default(call_default_factory=True) is None


def optional_keys() -> dict[str, str]:
    """Keys left out of ``config:`` (see :func:`_optional_without_default`), with descriptions."""
    return {
        field.alias or name: field.description or ""
        for name, field in PlatformConfig.model_fields.items()
        if _optional_without_default(field)
    }


def config_block() -> dict[str, Any]:
    block: dict[str, Any] = {}
    for name, field in PlatformConfig.model_fields.items():
        key = field.alias or name
        if _optional_without_default(field):
            continue
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
            entry["default"] = default
        block[key] = entry
    return block


def engine_required_keys(project: dict[str, Any]) -> list[str]:
    """The keys a Pulumi.yaml makes required, by the engine's rule: declared in the project's
    namespace with neither a ``default`` nor a ``value`` (a YAML null counts as neither)."""
    name = project["name"]
    required = []
    for key, entry in (project.get("config") or {}).items():
        namespaced = ":" not in key or key.startswith(f"{name}:")
        entry = entry if isinstance(entry, dict) else {"value": entry}
        if namespaced and entry.get("default") is None and entry.get("value") is None:
            required.append(key.removeprefix(f"{name}:"))
    return required


def render() -> str:
    doc = {**HEADER, "config": config_block()}
    optional = "".join(
        f"#   {key}: {description}\n" for key, description in optional_keys().items()
    )
    return (
        "# Generated from mlplatform/config.py by `python -m mlplatform.schema --write`; do not edit.\n"
        "# Keys below without a `default` are required by the engine. Optional keys whose absence\n"
        "# matters are not declared here (the engine would require them, or merge a default in):\n"
        + optional
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
