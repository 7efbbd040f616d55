"""Regenerate ``taggable_aws_types.json`` from the installed pulumi-aws SDK.

The required-tags rule must know which AWS resource types accept ``tags`` even when a resource
omits them, so the list is derived from the SDK rather than guessed. Run after bumping pulumi-aws:
``uv run python policies/generate_taggable.py``.
"""

from __future__ import annotations

import json
import re
from importlib import metadata
from pathlib import Path

import pulumi_aws

_TOKEN = re.compile(r"super\(\w+, __self__\)\.__init__\(\s*'(aws:[^']+)'")
_TAGS = '__props__.__dict__["tags"] = tags'


def taggable_types() -> list[str]:
    root = Path(pulumi_aws.__file__).parent
    found: set[str] = set()
    for path in root.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        if _TAGS not in text:
            continue
        found.update(_TOKEN.findall(text))
    return sorted(found)


def main() -> None:
    out = Path(__file__).with_name("taggable_aws_types.json")
    doc = {
        "generatedFrom": f"pulumi-aws {metadata.version('pulumi-aws')}",
        "types": taggable_types(),
    }
    out.write_text(json.dumps(doc, indent=0) + "\n", encoding="utf-8")
    print(f"wrote {len(doc['types'])} types to {out}")


if __name__ == "__main__":
    main()
