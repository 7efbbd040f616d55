"""The same rules over an offline plan (mlplatform.policy), and the engine's pack entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mlplatform.policy import evaluate_policies, mandatory, urn_name
from tests.policies.helpers import TAGS

ROOT = Path(__file__).resolve().parents[2]
STACK = "urn:pulumi:dev::ml-platform::"


def res(rtype: str, name: str, inputs: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "urn": f"{STACK}{rtype}::{name}",
        "type": rtype,
        "custom": True,
        "parent": "",
        "inputs": inputs,
        "protect": False,
        "retainOnDelete": False,
        "dependencies": [],
        "provider": "",
        **extra,
    }


def plan(*resources: dict[str, Any]) -> dict[str, Any]:
    return {"stack": "dev", "resources": list(resources), "outputs": {}}


def test_violation_shape_and_levels_follow_the_environment() -> None:
    p = plan(res("aws:kms/key:Key", "key", {"tags": {"project": "x"}}))
    dev = evaluate_policies(p, "dev")
    assert dev == [
        {
            "policy": "required-tags",
            "enforcementLevel": "advisory",
            "urn": f"{STACK}aws:kms/key:Key::key",
            "message": dev[0]["message"],
        }
    ]
    prod = evaluate_policies(p, "prod")
    assert {v["policy"] for v in prod} == {"required-tags", "stateful-protected-in-prod"}
    assert mandatory(prod) == prod


def test_provider_default_tags_are_found_through_the_provider_reference() -> None:
    provider = res("pulumi:providers:aws", "aws", {"defaultTags": {"tags": TAGS}})
    key = res("aws:kms/key:Key", "key", {}, provider=f"{provider['urn']}::some-id", protect=True)
    assert evaluate_policies(plan(provider, key), "prod") == []
    orphan = res("aws:kms/key:Key", "key", {}, protect=True)
    assert [v["policy"] for v in evaluate_policies(plan(orphan), "prod")] == ["required-tags"]


def test_provider_default_tags_sent_as_json_text_count() -> None:
    # The engine hands providers their nested config as JSON text; that is what a plan records.
    provider = res("pulumi:providers:aws", "aws", {"defaultTags": json.dumps({"tags": TAGS})})
    rule = res(
        "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
        "r",
        {},
        provider=f"{provider['urn']}::id",
    )
    assert evaluate_policies(plan(provider, rule), "prod") == []


def test_stack_rule_runs_offline_using_recorded_dependencies() -> None:
    bucket = res("aws:s3/bucket:Bucket", "models", {"tags": TAGS})
    versioning = res(
        "aws:s3/bucketVersioning:BucketVersioning",
        "models-versioning",
        {"versioningConfiguration": {"status": "Enabled"}},
        dependencies=[bucket["urn"]],
    )
    found = evaluate_policies(plan(bucket, versioning), "dev")
    companions = [v for v in found if v["policy"] == "s3-bucket-companions"]
    assert len(companions) == 1
    assert companions[0]["urn"] == bucket["urn"]
    assert "versioning" not in companions[0]["message"].split("has no", 1)[1].split(";")[0]


def test_a_crashing_rule_is_reported_not_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    from policies import rules

    def boom(args: Any, report: Any) -> None:
        raise RuntimeError("kaput")

    patched = tuple(
        rules.Rule(r.name, r.description, boom) if r.name == "required-tags" else r
        for r in rules.RULES
    )
    monkeypatch.setattr(rules, "RULES", patched)
    found = evaluate_policies(plan(res("aws:kms/key:Key", "key", {"tags": TAGS})), "dev")
    assert [v["policy"] for v in found] == ["required-tags"]
    assert "kaput" in found[0]["message"]


def test_urn_name() -> None:
    assert urn_name(f"{STACK}mlplatform:x:Y$aws:s3/bucket:Bucket::models") == "models"


def test_pack_entry_point_starts_the_analyzer_server() -> None:
    """`python policies/__main__.py` builds the PolicyPack and prints its gRPC port, like the engine
    expects; only __main__ constructs it, so importing rules starts nothing."""
    env = {**os.environ, "MLPLATFORM_ENVIRONMENT": "prod"}
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "policies" / "__main__.py")],
        cwd=ROOT / "policies",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until the server prints its port (or exits)
        assert line.strip().isdigit(), (line, proc.poll())
    finally:
        proc.kill()
        _, err = proc.communicate(timeout=10)
    assert "environment=prod (from MLPLATFORM_ENVIRONMENT)" in err


def test_policy_pack_files() -> None:
    import yaml

    meta = yaml.safe_load((ROOT / "policies" / "PulumiPolicy.yaml").read_text())
    assert meta["runtime"]["name"] == "python"
    reqs = (ROOT / "policies" / "requirements.txt").read_text()
    assert "pulumi-policy" in reqs
    types = json.loads((ROOT / "policies" / "taggable_aws_types.json").read_text())["types"]
    assert "aws:s3/bucket:Bucket" in types
