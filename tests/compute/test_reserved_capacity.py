"""Reserved capacity: ODCRs and Capacity Blocks by id, ARN or tags, priority, and the checks that
refuse combinations which could never launch or would be unsafe."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from components.common import format_path
from components.gpu_capacity import (
    BLOCK_DRAIN_BEFORE_END,
    CapacityBlock,
    ReservedCapacityArgs,
    region_issues,
)
from components.gpu_node_pool import GpuNodePoolArgs, node_pool_spec, pool_list_issues
from tests.compute.helpers import node_class, node_pool, requirements

BLOCK = {
    "id": "cr-0aaaaaaaaaaaaaaaa",
    "instanceType": "p5.48xlarge",
    "instances": 2,
    "start": "2026-12-10T11:30:00Z",
    "end": "2026-12-14T11:30:00Z",
    "maxRunTime": "36h",
    "teams": ["research"],
}


def _pool(**kw):
    return GpuNodePoolArgs.model_validate(
        {"name": "h100", "accelerator": "nvidia-h100", "maxGpus": 32, **kw}
    )


def _msgs(model) -> dict[str, str]:
    return {format_path(i.path): i.message for i in model.issues()}


def _capacity_types(args) -> list[str]:
    reqs = {r["key"]: r for r in node_pool_spec(args)["template"]["spec"]["requirements"]}
    return reqs["karpenter.sh/capacity-type"]["values"]


def test_priority_first_puts_reservations_before_the_market():
    tagged = {"select": [{"tags": {"mlplatform.io/pool": "h100"}}]}
    assert _capacity_types(_pool(reservations=tagged)) == ["reserved", "on-demand"]
    spot = _pool(reservations=tagged, capacityTypes=["spot"])
    assert _capacity_types(spot) == ["reserved", "spot"]
    only = _pool(reservations={**tagged, "priority": "only"})
    assert only.issues() == [] and _capacity_types(only) == ["reserved"]
    assert _capacity_types(_pool()) == ["on-demand"]


def test_selector_terms_match_the_crd_shapes():
    res = ReservedCapacityArgs.model_validate(
        {
            "select": [
                {"id": "cr-0123456789abcdef0"},
                {"tags": {"team": "ml", "purpose": "*"}, "ownerId": "210987654321"},
                {
                    "arn": "arn:aws:ec2:us-east-1:123456789012:capacity-reservation/cr-0fedcba9876543210"
                },
            ]
        }
    )
    assert res.issues() == []
    # An id term carries nothing else (the CRD's CEL rule); an ARN becomes its id.
    assert res.terms() == [
        {"id": "cr-0123456789abcdef0"},
        {"tags": {"team": "ml", "purpose": "*"}, "ownerID": "210987654321"},
        {"id": "cr-0fedcba9876543210"},
    ]


@pytest.mark.parametrize(
    ("select", "key", "words"),
    [
        ({}, "reservations.select[0]", "exactly one of id, arn or tags"),
        ({"id": "cr-0123456789abcdef0", "tags": {"a": "b"}}, "reservations.select[0]", "exactly one"),
        ({"id": "cr-0123456789abcdef0", "ownerId": "123456789012"}, "reservations.select[0].ownerId", "tags selector"),
        ({"arn": "arn:aws:ec2:us-east-1:1234:capacity-reservation/cr-1"}, "reservations.select[0].arn", "must be arn:aws:ec2"),
        ({"tags": {}}, "reservations.select[0].tags", "at least one tag"),
        ({"tags": {"k": ""}}, "reservations.select[0].tags.k", "empty tag"),
        ({"id": "cr-0123456789abcdef0", "availabilityZone": "east"}, "reservations.select[0].availabilityZone", "zone name"),
    ],
)  # fmt: skip
def test_bad_selectors(select, key, words):
    msgs = _msgs(_pool(reservations={"select": [select]}))
    assert words in msgs[key]


def test_more_terms_than_karpenter_takes_and_duplicates():
    many = [{"tags": {"n": str(i)}} for i in range(31)]
    assert "at most 30" in _msgs(_pool(reservations={"select": many}))["reservations.select"]
    dup = [
        {"id": "cr-0123456789abcdef0"},
        {"arn": "arn:aws:ec2:us-east-1:123456789012:capacity-reservation/cr-0123456789abcdef0"},
    ]
    assert (
        "already selected"
        in _msgs(_pool(reservations={"select": dup}))["reservations.select[1].id"]
    )


def test_reserved_is_not_a_capacity_type_of_its_own():
    msgs = _msgs(_pool(capacityTypes=["on-demand", "reserved"]))
    assert "reservations" in msgs["capacityTypes"]
    # priority only ignores capacityTypes: setting both is a mistake, said so
    only = {"priority": "only", "select": [{"id": "cr-0123456789abcdef0"}]}
    assert (
        "no effect" in _msgs(_pool(reservations=only, capacityTypes=["on-demand"]))["capacityTypes"]
    )


def test_region_of_an_arn_and_a_zone_must_be_the_stacks():
    res = ReservedCapacityArgs.model_validate(
        {
            "select": [
                {
                    "arn": "arn:aws:ec2:eu-west-1:123456789012:capacity-reservation/cr-0123456789abcdef0"
                },
                {"id": "cr-0fedcba9876543210", "availabilityZone": "us-east-1d"},
                {"tags": {"a": "b"}, "availabilityZone": "us-west-2a"},
            ]
        }
    )
    found = {format_path(i.path): i.message for i in region_issues(res, "us-east-1", None)}
    assert found == {
        "select[0].arn": "names region eu-west-1, but the stack runs in us-east-1",
        "select[2].availabilityZone": "names region us-west-2, but the stack runs in us-east-1",
    }
    # with explicit network zones, a reservation in a zone without a subnet cannot be used
    found = {
        format_path(i.path) for i in region_issues(res, "us-east-1", ["us-east-1a", "us-east-1b"])
    }
    assert "select[1].availabilityZone" in found


def test_block_window_and_admission_close():
    block = CapacityBlock.model_validate(BLOCK)
    assert block.issues() == []
    end = datetime(2026, 12, 14, 11, 30, tzinfo=UTC)
    assert block.drain_at == end - BLOCK_DRAIN_BEFORE_END == end - timedelta(minutes=40)
    assert block.admission_closes_at == block.drain_at - timedelta(hours=36)
    whole = CapacityBlock.model_validate({**BLOCK, "maxRunTime": None})
    assert whole.admission_closes_at == whole.start  # a whole-window job must start at once


@pytest.mark.parametrize(
    ("change", "key", "words"),
    [
        ({"end": "2026-12-10T12:00:00Z"}, "end", "more than 40m after start"),
        ({"maxRunTime": "200h"}, "maxRunTime", "longer than the block's usable window"),
        ({"maxRunTime": "2 days"}, "maxRunTime", "hours and minutes"),
        ({"instanceType": "g5.48xlarge"}, "instanceType", "p5.48xlarge"),
        ({"start": "2026-12-10T11:30:00"}, None, "timezone"),
    ],
)
def test_bad_blocks(change, key, words):
    import pydantic

    if key is None:
        with pytest.raises(pydantic.ValidationError, match=words):
            CapacityBlock.model_validate({**BLOCK, **change})
        return
    msgs = _msgs(CapacityBlock.model_validate({**BLOCK, **change}))
    assert words in msgs[key]


def test_a_capacity_block_on_a_spot_pool_is_refused():
    msgs = _msgs(_pool(capacityTypes=["spot"], reservations={"blocks": [BLOCK]}))
    assert "capacity block on a spot pool" in msgs["reservations.blocks"]


def test_block_pools_run_on_their_blocks_only():
    msgs = _msgs(_pool(reservations={"blocks": [BLOCK]}))
    assert "must be 'only'" in msgs["reservations.priority"]
    mixed = {"priority": "only", "blocks": [BLOCK], "select": [{"id": "cr-0123456789abcdef0"}]}
    assert "takes no other reservations" in _msgs(_pool(reservations=mixed))["reservations.select"]
    ok = _pool(reservations={"priority": "only", "blocks": [BLOCK]})
    assert ok.issues() == []
    assert _capacity_types(ok) == ["reserved"]
    # the pool's sizes must include the block's instance type
    small = GpuNodePoolArgs.model_validate(
        {"name": "a100", "accelerator": "nvidia-a100", "maxGpus": 16,
         "reservations": {"priority": "only", "blocks": [BLOCK]}}
    )  # fmt: skip
    assert "p4d.24xlarge" in _msgs(small)["reservations.blocks[0].instanceType"]


def test_one_block_feeds_one_pool():
    res = {"priority": "only", "blocks": [BLOCK]}
    pools = [_pool(reservations=res), _pool(name="h100-b", reservations=res)]
    found = {format_path(i.path): i.message for i in pool_list_issues(pools)}
    assert "already a block of pool 0" in found["[1].reservations.blocks[0].id"]


def test_prod_efa_pool_with_reservations_has_no_placement_group(prod):
    pool = node_pool(prod, "h100-train")
    assert requirements(pool)["karpenter.sh/capacity-type"]["values"] == ["reserved", "on-demand"]
    spec = node_class(prod, "gpu-h100-train")["spec"]
    assert spec["capacityReservationSelectorTerms"] == [{"id": "cr-0123456789abcdef0"}]
    # neither the v1.15 placementGroupSelector nor anything else that pins one spine
    assert "placementGroupSelector" not in spec
    assert "placement" not in str(spec).lower() and "placement" not in str(pool).lower()
