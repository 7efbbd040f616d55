"""Plan diffs: added/removed/changed, replacement hints, cost delta, new violations, size limit."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from mlplatform.diff import (
    COMMENT_MARKER,
    MARKDOWN_LIMIT,
    changed_paths,
    diff,
    diff_plans,
    render_diff_markdown,
    render_markdown,
)

STACK = "urn:pulumi:dev::ml-platform::"
TAGS = {"project": "p", "environment": "dev", "owner": "o", "cost-center": "c"}


def res(
    rtype: str, name: str, inputs: dict[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    return {
        "urn": f"{STACK}{rtype}::{name}",
        "type": rtype,
        "custom": True,
        "parent": "",
        "inputs": {"tags": TAGS, **(inputs or {})},
        "protect": False,
        "retainOnDelete": False,
        "dependencies": [],
        "provider": "",
        **extra,
    }


def base_plan() -> dict[str, Any]:
    return {
        "stack": "dev",
        "environment": "dev",
        "outputs": {"region": "us-east-1"},
        "resources": [
            res("aws:eks/cluster:Cluster", "eks", {"name": "mlp", "version": "1.33"}),
            res("aws:ec2/vpc:Vpc", "vpc", {"cidrBlock": "10.0.0.0/16"}),
            res("aws:ec2/natGateway:NatGateway", "nat-0", {"subnetId": "subnet-1"}),
            res("aws:s3/bucket:Bucket", "models", {"bucket": "models-dev"}),
            res(
                "aws:rds/instance:Instance",
                "db",
                {"engine": "postgres", "instanceClass": "db.t4g.micro"},
            ),
        ],
    }


def change(plan: dict[str, Any], resource: str, inputs: dict[str, Any]) -> None:
    for r in plan["resources"]:
        if r["urn"].endswith(f"::{resource}"):
            r["inputs"].update(inputs)


@pytest.mark.parametrize(
    ("name", "inputs", "replace"),
    [
        ("eks", {"name": "mlp-2"}, True),
        ("eks", {"version": "1.34"}, False),
        ("vpc", {"cidrBlock": "10.1.0.0/16"}, True),
        ("models", {"bucket": "models-dev-2"}, True),
        ("db", {"engine": "mysql"}, True),
        ("db", {"instanceClass": "db.t4g.small"}, False),
    ],
)
def test_changed_keys_and_replacement_flags(
    name: str, inputs: dict[str, Any], replace: bool
) -> None:
    base = base_plan()
    head = copy.deepcopy(base)
    change(head, name, inputs)
    d = diff(base, head)
    assert d["summary"]["changed"] == 1
    (c,) = d["changed"]
    assert c["name"] == name
    assert c["keys"] == list(inputs)
    assert c["replace"] is replace
    assert d["summary"]["replacements"] == (1 if replace else 0)


def test_added_removed_and_cost_delta() -> None:
    base = base_plan()
    head = copy.deepcopy(base)
    head["resources"] = [r for r in head["resources"] if not r["urn"].endswith("::db")]
    head["resources"].append(
        res("aws:ec2/natGateway:NatGateway", "nat-1", {"subnetId": "subnet-2"})
    )
    d = diff(base, head)
    assert [r["name"] for r in d["added"]] == ["nat-1"]
    assert [r["name"] for r in d["removed"]] == ["db"]
    lines = {ln["item"]: ln["delta"] for ln in d["cost"]["lines"]}
    assert lines["NAT gateways"] > 0
    assert lines["RDS db.t4g.micro: db"] < 0
    assert d["cost"]["delta"] == pytest.approx(d["cost"]["head"] - d["cost"]["base"], abs=0.01)
    assert d["summary"]["costDelta"] == d["cost"]["delta"]


def test_new_policy_violations_are_those_not_in_base() -> None:
    base = base_plan()
    head = copy.deepcopy(base)
    head["resources"].append(
        {**res("aws:kms/key:Key", "untagged"), "inputs": {"description": "no tags"}}
    )
    d = diff(base, head)
    assert d["summary"]["policyEvaluated"]
    new = [(v["policy"], v["urn"]) for v in d["policy"]["new"]]
    assert ("required-tags", f"{STACK}aws:kms/key:Key::untagged") in new
    assert all(v["urn"].endswith("::untagged") for v in d["policy"]["new"])
    assert d["policy"]["resolved"] == []
    back = diff(head, base)
    assert [v["urn"] for v in back["policy"]["resolved"]] == [v["urn"] for v in d["policy"]["new"]]


def test_recorded_policy_sections_are_used_as_is() -> None:
    v = {"policy": "x", "enforcementLevel": "mandatory", "urn": "u", "message": "m"}
    base = {**base_plan(), "policy": {"violations": []}}
    head = {**base_plan(), "policy": {"violations": [v]}}
    d = diff(base, head)
    assert d["policy"]["new"] == [v]
    assert d["summary"]["newMandatoryViolations"] == 1


def test_moved_resources_are_flagged_as_replacements() -> None:
    base = base_plan()
    head = copy.deepcopy(base)
    for r in head["resources"]:
        if r["urn"].endswith("::models"):
            r["urn"] = f"{STACK}mlplatform:storage:ModelStore$aws:s3/bucket:Bucket::models"
    d = diff(base, head)
    assert d["summary"]["moved"] == 1
    assert d["summary"]["replacements"] == 1


def test_option_and_provider_changes() -> None:
    base = base_plan()
    head = copy.deepcopy(base)
    head["resources"][3]["protect"] = True
    head["resources"][0]["provider"] = (
        "urn:pulumi:dev::ml-platform::pulumi:providers:aws::other::id"
    )
    d = diff(base, head)
    by_name = {c["name"]: c for c in d["changed"]}
    assert by_name["models"]["keys"] == ["(option) protect"]
    assert not by_name["models"]["replace"]
    assert by_name["eks"]["replace"]


def test_changed_paths_descend_into_nested_inputs() -> None:
    a = {"scalingConfig": {"minSize": 1, "maxSize": 2}, "labels": {"a": "1"}}
    b = {"scalingConfig": {"minSize": 1, "maxSize": 3}, "labels": {"a": "1", "b": "2"}}
    assert changed_paths(a, b) == ["labels.b", "scalingConfig.maxSize"]


def test_kubernetes_immutable_fields_flag_replacement() -> None:
    dep = res(
        "kubernetes:apps/v1:Deployment",
        "api",
        {
            "metadata": {"name": "api"},
            "spec": {"selector": {"matchLabels": {"app": "a"}}, "replicas": 1},
        },
    )
    base = {**base_plan(), "resources": [dep]}
    head = copy.deepcopy(base)
    head["resources"][0]["inputs"]["spec"]["replicas"] = 2
    assert not diff(base, head)["changed"][0]["replace"]
    head["resources"][0]["inputs"]["spec"]["selector"]["matchLabels"]["app"] = "b"
    assert diff(base, head)["changed"][0]["replace"]


def test_markdown_has_summary_and_sections() -> None:
    base = base_plan()
    head = copy.deepcopy(base)
    change(head, "vpc", {"cidrBlock": "10.9.0.0/16"})
    md = render_diff_markdown(diff_plans(base, head))
    assert md.startswith(COMMENT_MARKER)
    assert "**0** to add, **1** to change, **0** to remove" in md
    assert "### Likely replacements (1)" in md
    assert "| `vpc` | `aws:ec2/vpc:Vpc` | cidrBlock |" in md


def test_markdown_escapes_table_breaking_characters() -> None:
    base = base_plan()
    head = copy.deepcopy(base)
    head["resources"].append(res("aws:ec2/eip:Eip", "a|b`c"))
    md = render_markdown(diff(base, head))
    assert "a\\|b'c" in md


def test_huge_plans_are_trimmed_under_the_limit_but_keep_the_summary() -> None:
    base = base_plan()
    head = copy.deepcopy(base)
    for i in range(5000):
        head["resources"].append(
            res(
                "aws:ec2/natGateway:NatGateway",
                f"nat-extra-{i:05d}-" + "x" * 40,
                {"subnetId": f"s-{i}"},
            )
        )
        base["resources"].append(res("aws:ec2/eip:Eip", f"eip-gone-{i:05d}-" + "y" * 40))
    d = diff(base, head)
    md = render_markdown(d)
    assert len(md) <= MARKDOWN_LIMIT
    assert "**5000** to add" in md and "**5000** to remove" in md
    assert "trimmed to stay under 60,000 characters" in md
    assert "more not shown" in md
    # the same diff at a small limit still keeps every summary line
    small = render_markdown(d, limit=3000)
    assert len(small) <= 3000
    assert "Idle cost:" in small and "Policy:" in small


def test_combined_comment_has_one_marker_and_fits() -> None:
    from mlplatform.diff import main, render_comment

    base = base_plan()
    head = copy.deepcopy(base)
    for i in range(3000):
        head["resources"].append(res("aws:ec2/eip:Eip", f"eip-{i:05d}-" + "z" * 40))
    big = diff(base, head)
    prod = diff({**base, "stack": "prod"}, {**base, "stack": "prod"})
    text = render_comment([big, prod])
    assert len(text) <= MARKDOWN_LIMIT
    assert text.count(COMMENT_MARKER) == 1
    assert "## Plan diff for `dev`" in text and "## Plan diff for `prod`" in text
    assert main(["only-one.json"]) == 2


def test_changed_fields_show_old_and_new_values() -> None:
    base = base_plan()
    head = copy.deepcopy(base)
    change(head, "db", {"instanceClass": "db.t4g.small"})
    d = diff(base, head)
    (c,) = d["changed"]
    assert c["values"] == [{"path": "instanceClass", "old": "db.t4g.micro", "new": "db.t4g.small"}]
    text = render_markdown(d)
    assert 'instanceClass: "db.t4g.micro" → "db.t4g.small"' in text


def test_added_keys_and_options_show_none_on_the_missing_side() -> None:
    base = base_plan()
    head = copy.deepcopy(base)
    change(head, "vpc", {"enableDnsHostnames": True})
    for r in head["resources"]:
        if r["urn"].endswith("::vpc"):
            r["protect"] = True
    (c,) = diff(base, head)["changed"]
    values = {v["path"]: (v["old"], v["new"]) for v in c["values"]}
    assert values == {"enableDnsHostnames": (None, True), "(option) protect": (False, True)}
    assert "enableDnsHostnames: (none) → true" in render_markdown(diff(base, head))


def test_long_values_are_shortened_in_markdown() -> None:
    base = base_plan()
    head = copy.deepcopy(base)
    change(head, "models", {"policy": "x" * 500})
    text = render_markdown(diff(base, head))
    assert "x" * 500 not in text and "…" in text


def _as_stack(plan: dict[str, Any], stack: str) -> dict[str, Any]:
    out = copy.deepcopy(plan)
    out["stack"] = stack
    for r in out["resources"]:
        r["urn"] = r["urn"].replace("urn:pulumi:dev::", f"urn:pulumi:{stack}::")
    return out


def test_plans_of_different_stacks_are_refused_with_the_reason() -> None:
    from mlplatform.diff import DifferentStacksError

    with pytest.raises(DifferentStacksError, match=r"different stacks \('dev' and 'prod'\)"):
        diff(base_plan(), _as_stack(base_plan(), "prod"))


def test_across_stacks_matches_by_name_and_advises_no_aliases() -> None:
    base = base_plan()
    head = _as_stack(base, "prod")
    change(head, "db", {"instanceClass": "db.r6g.large"})
    change(head, "eks", {"name": "mlp-prod"})
    d = diff(base, head, across_stacks=True)
    assert d["acrossStacks"] is True
    assert (d["summary"]["added"], d["summary"]["removed"], d["summary"]["moved"]) == (0, 0, 0)
    assert d["summary"]["replacements"] == 0, "nothing is replaced: neither stack changes"
    assert {c["name"] for c in d["changed"]} == {"db", "eks"}
    text = render_markdown(d)
    assert "`dev` → `prod` (different stacks" in text
    assert "alias" not in text


def test_the_cli_says_when_plans_are_of_different_stacks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from mlplatform.cli import main

    (tmp_path / "dev.json").write_text(json.dumps(base_plan()))
    (tmp_path / "prod.json").write_text(json.dumps(_as_stack(base_plan(), "prod")))
    assert main(["diff", str(tmp_path / "dev.json"), str(tmp_path / "prod.json")]) == 2
    err = capsys.readouterr().err
    assert "different stacks" in err and "--across-stacks" in err
    argv = ["diff", str(tmp_path / "dev.json"), str(tmp_path / "prod.json"), "--across-stacks"]
    assert main(argv) == 0
    assert "Plan comparison" in capsys.readouterr().out
