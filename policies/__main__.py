"""The ml-platform policy pack, run by the engine: ``pulumi preview --policy-pack policies``.

Constructing ``PolicyPack`` starts the analyzer's gRPC server and never returns, so it happens here
and nowhere else; the rules live in ``rules.py`` and ``compliance.py`` and are importable without
side effects.

Environment: ``MLPLATFORM_ENVIRONMENT`` (``dev`` | ``prod`` | ...), else the last segment of
``PULUMI_STACK``; with neither set the pack assumes ``prod`` (mandatory, prod-only rules on).
Compliance profiles: the stack's ``ml-platform:compliance`` config, which the engine sends to the
pack, plus any listed in ``MLPLATFORM_COMPLIANCE``.
"""

import os
import sys
from pathlib import Path

from pulumi_policy import PolicyPack

# The engine runs this file with the pack directory as its working tree, not as a package.
sys.path.insert(0, str(Path(__file__).resolve().parent))

import compliance
from rules import build_policies, enforcement_for, resolve_environment

environment, source = resolve_environment(os.environ)
print(f"ml-platform policy pack: environment={environment} (from {source})", file=sys.stderr)
compliance.capture_stack_config()

PolicyPack(
    name="ml-platform",
    policies=build_policies(environment)
    + compliance.build_policies(environment, compliance.engine_settings),
    enforcement_level=enforcement_for(environment),
    description=f"ml-platform guardrails ({environment}: {enforcement_for(environment).value})",
)
