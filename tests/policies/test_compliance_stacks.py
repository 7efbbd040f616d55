"""The compliance section end to end: config errors, the shipped stacks, what `mlplatform plan`
prints about the profiles, and its exit code."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlplatform import cli
from mlplatform.config import STACKS_DIR, ConfigError, parse_config
from mlplatform.report import build_plan

TRAIL = "arn:aws:cloudtrail:us-east-1:123456789012:trail/organization-trail"
BASE = {
    "aws:region": "us-east-1",
    "ml-platform:environment": "dev",
    "ml-platform:owner": "team",
    "ml-platform:costCenter": "cc",
    "ml-platform:modelStore": json.dumps({"protect": True}),
    "ml-platform:modelRegistry": json.dumps({"protect": True, "database": {"kind": "rds"}}),
}
HIPAA_RULES = [
    "hipaa-encryption-cmk",
    "hipaa-audit-logging",
    "hipaa-log-retention",
    "hipaa-inference-log-retention",
    "hipaa-no-public-endpoints",
    "hipaa-backups",
]


def problems(compliance: dict[str, Any], **extra: str) -> dict[str, str]:
    raw = {**BASE, "ml-platform:compliance": json.dumps(compliance), **extra}
    with pytest.raises(ConfigError) as info:
        parse_config("t", raw)
    return dict(info.value.problems)


# -- config --------------------------------------------------------------------------------


def test_profiles_are_typed_and_validated() -> None:
    ok = parse_config(
        "t",
        {
            **BASE,
            "ml-platform:compliance": json.dumps(
                {"profiles": ["gdpr", "hipaa"], "auditTrailArn": TRAIL}
            ),
        },
    )
    assert [p.value for p in ok.config.compliance.profiles] == ["gdpr", "hipaa"]
    got = problems({"profiles": ["hipaa", "sox"], "auditTrailArn": TRAIL})
    assert got == {"ml-platform:compliance.profiles[1]": "Input should be 'gdpr' or 'hipaa'"}


def test_every_compliance_problem_at_once() -> None:
    got = problems({"profiles": ["hipaa", "hipaa"], "allowedRegions": ["eu-west-1", "mars-1"]})
    assert got["ml-platform:compliance.profiles"] == "lists a profile twice"
    assert got["ml-platform:compliance.allowedRegions[1]"].startswith("unknown region 'mars-1'")
    assert "CloudTrail trail" in got["ml-platform:compliance.auditTrailArn"]
    assert problems({"profiles": ["gdpr"], "auditTrailArn": "trail/x"}) == {
        "ml-platform:compliance.auditTrailArn": (
            "not a CloudTrail trail ARN: 'trail/x' (arn:aws:cloudtrail:<region>:<account>:trail/<name>)"
        )
    }
    assert (
        "only applies with compliance profiles"
        in problems({"allowedRegions": ["eu-west-1"]})["ml-platform:compliance.allowedRegions"]
    )


def test_profiles_need_rds_for_the_registry_and_the_aws_platform() -> None:
    in_cluster = json.dumps({"protect": True, "database": {"kind": "postgres"}})
    got = problems(
        {"profiles": ["gdpr", "hipaa"], "auditTrailArn": TRAIL},
        **{"ml-platform:modelRegistry": in_cluster},
    )
    assert got == {
        "ml-platform:modelRegistry.database.kind": (
            "must be rds with compliance profiles (gdpr, hipaa): the in-cluster database has no "
            "automated backups (the profiles need >= 30 days)"
        )
    }
    local = {
        "ml-platform:environment": "dev",
        "ml-platform:owner": "team",
        "ml-platform:costCenter": "cc",
        "ml-platform:platform": "local",
        "ml-platform:kubeContext": "kind-x",
        "ml-platform:compliance": json.dumps({"profiles": ["gdpr"], "auditTrailArn": TRAIL}),
    }
    with pytest.raises(ConfigError) as info:
        parse_config("t", local)
    assert (
        "only on the aws platform" in dict(info.value.problems)["ml-platform:compliance.profiles"]
    )


def test_cli_reports_an_unknown_profile_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stacks = _stack_copy(tmp_path, "prod", compliance={"profiles": ["hipaa", "pci-dss"]})
    code = cli.main(["plan", "--stack", "prod", "--stacks-dir", str(stacks)])
    err = capsys.readouterr().err
    assert code == 2
    assert "ml-platform:compliance.profiles[1]: Input should be 'gdpr' or 'hipaa'" in err
    assert "Traceback" not in err


# -- the shipped stacks --------------------------------------------------------------------


@pytest.fixture(scope="module")
def prod() -> dict[str, Any]:
    return build_plan("prod")


def test_prod_enables_hipaa_and_passes_it(prod: dict[str, Any]) -> None:
    report = prod["policy"]["compliance"]
    assert [p["name"] for p in report["profiles"]] == ["hipaa"]
    rules = report["profiles"][0]["rules"]
    assert [r["policy"] for r in rules] == HIPAA_RULES
    assert all(r["violations"] == 0 for r in rules)
    assert prod["policy"]["violations"] == []
    assert report["auditTrailArn"] == TRAIL
    params = {r["policy"]: r["parameters"] for r in rules}
    assert params["hipaa-log-retention"] == {"minimumDays": 2190}
    assert params["hipaa-backups"] == {"minimumBackupDays": 30, "objectLock": True}


def test_prod_plan_has_the_inference_log_expiry_per_project(prod: dict[str, Any]) -> None:
    lifecycle = next(
        r
        for r in prod["resources"]
        if r["urn"].endswith("BucketLifecycleConfiguration::model-store-lifecycle")
    )
    rules = {r["id"]: r for r in lifecycle["inputs"]["rules"]}
    for project in ("churn", "recsys"):
        rule = rules[f"inference-logs-{project}"]
        assert rule["filter"] == {"prefix": f"projects/{project}/inference-logs/"}
        assert rule["expiration"] == {"days": 14}
        assert rule["noncurrentVersionExpiration"] == {"noncurrentDays": 1}
    # recorded so that policies resolve references the way the engine does
    assert lifecycle["propertyDependencies"]["bucket"][0].endswith(
        "aws:s3/bucket:Bucket::model-store"
    )


def test_dev_enables_no_profile() -> None:
    dev = build_plan("dev")
    assert dev["outputs"]["compliance"] == {
        "profiles": [],
        "allowedRegions": None,
        "auditTrailArn": None,
    }
    assert dev["policy"]["compliance"]["profiles"] == []
    assert not [v for v in dev["policy"]["violations"] if v["policy"].startswith("hipaa-")]


def test_plan_lists_the_rules_each_profile_added(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["plan", "--stack", "prod"]) == 0
    out = capsys.readouterr().out
    assert "Compliance profiles: hipaa" in out
    assert "hipaa (HIPAA Security Rule, 45 CFR Part 164 Subpart C) adds 6 rules:" in out
    for rule in HIPAA_RULES:
        assert f"ok  {rule}: " in out
    assert "164.312(a)(2)(iv) (encryption and decryption)" in out
    assert "[minimumDays=2190]" in out
    assert cli.main(["plan", "--stack", "prod", "--format", "markdown"]) == 0
    md = capsys.readouterr().out
    assert "| hipaa | `hipaa-backups` | 164.308(a)(7)(ii)(A) (data backup plan)" in md


def test_plan_exits_1_when_a_mandatory_profile_rule_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """prod with gdpr as well: us-east-1 is outside the EEA."""
    stacks = _stack_copy(tmp_path, "prod", compliance={"profiles": ["gdpr", "hipaa"]})
    code = cli.main(["plan", "--stack", "prod", "--stacks-dir", str(stacks), "--format", "json"])
    plan = json.loads(capsys.readouterr().out)
    assert code == 1
    failing = [v for v in plan["policy"]["violations"] if v["enforcementLevel"] == "mandatory"]
    assert [v["policy"] for v in failing] == ["gdpr-data-residency"]
    assert "places" in failing[0]["message"] and "us-east-1" in failing[0]["message"]
    gdpr = plan["policy"]["compliance"]["profiles"][0]
    residency = next(r for r in gdpr["rules"] if r["policy"] == "gdpr-data-residency")
    assert residency["violations"] == 1
    assert residency["resources"] == [failing[0]["urn"]]
    # an explicit allow-list (e.g. transfers under SCCs, documented by the DPO) replaces the EEA
    stacks = _stack_copy(
        tmp_path / "allowed",
        "prod",
        compliance={"profiles": ["gdpr", "hipaa"], "allowedRegions": ["us-east-1"]},
    )
    assert cli.main(["plan", "--stack", "prod", "--stacks-dir", str(stacks)]) == 0


def _stack_copy(tmp_path: Path, stack: str, *, compliance: dict[str, Any]) -> Path:
    """The shipped stack with its compliance section replaced (the trail kept)."""
    dest = tmp_path / "stacks"
    dest.mkdir(parents=True)
    shutil.copy(STACKS_DIR / f"Pulumi.{stack}.yaml", dest)
    path = dest / f"Pulumi.{stack}.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["config"]["ml-platform:compliance"] = {"auditTrailArn": TRAIL, **compliance}
    path.write_text(yaml.safe_dump(doc))
    return dest
