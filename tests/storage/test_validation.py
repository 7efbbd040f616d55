"""Bad ModelStore input: every problem reported at once, by property path, with no resources."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from components.common import InvalidArgsError
from components.model_store import ModelStoreArgs, bucket_name_issues
from mlplatform.plan import run_program

from .helpers import store_program


def paths(data: dict[str, Any]) -> dict[str, str]:
    from components.common import format_path

    found: dict[str, str] = {}
    for i in ModelStoreArgs.model_validate(data).issues():
        key = format_path(i.path)
        found[key] = f"{found[key]}; {i.message}" if key in found else i.message
    return found


@pytest.mark.parametrize(
    "name",
    [
        "ML_Models",
        "ab",
        "x" * 64,
        "-models",
        "models.prod",
        "192.168.1.10",
        "xn--models",
        "models-s3alias",
        "sthree-models",
    ],
)
def test_invalid_bucket_names_are_reported(name: str) -> None:
    found = paths({"protect": False, "bucketName": name})
    assert "bucketName" in found, name
    assert repr(name) in found["bucketName"]


@pytest.mark.parametrize("name", ["acme-ml-prod-models", "abc", "a1-b2"])
def test_valid_bucket_names_pass(name: str) -> None:
    assert bucket_name_issues("bucketName", name) == []


def test_bucket_name_leaving_no_room_for_the_log_bucket() -> None:
    found = paths({"protect": False, "bucketName": "m" * 60})
    assert "log bucket" in found["bucketName"]


@pytest.mark.parametrize(
    ("transition", "expiration"),
    [(90, 30), (30, 30)],
)
def test_retention_days_out_of_order(transition: int, expiration: int) -> None:
    found = paths(
        {
            "protect": False,
            "lifecycle": {
                "noncurrentTransitionDays": transition,
                "noncurrentExpirationDays": expiration,
            },
        }
    )
    assert "must be < noncurrentExpirationDays" in found["lifecycle.noncurrentTransitionDays"]


def test_ia_transition_before_thirty_days_is_refused() -> None:
    found = paths({"protect": False, "lifecycle": {"noncurrentTransitionDays": 10}})
    assert "STANDARD_IA" in found["lifecycle.noncurrentTransitionDays"]


def test_object_lock_without_versioning() -> None:
    found = paths({"protect": False, "versioning": False, "objectLock": {"enabled": True}})
    assert found["objectLock.enabled"] == "object lock requires versioning: true"


def test_protect_conflicts_with_force_destroy_and_unversioned() -> None:
    found = paths({"protect": True, "forceDestroy": True, "versioning": False})
    assert "forceDestroy" in found
    assert "versioning" in found


def test_protect_has_no_default() -> None:
    with pytest.raises(ValidationError) as exc:
        ModelStoreArgs.model_validate({})
    assert [e["loc"] for e in exc.value.errors()] == [("protect",)]


def test_unknown_keys_and_bad_enums_are_refused() -> None:
    with pytest.raises(ValidationError) as exc:
        ModelStoreArgs.model_validate(
            {"protect": True, "forceDestory": True, "lifecycle": {"noncurrentStorageClass": "COLD"}}
        )
    locs = {e["loc"] for e in exc.value.errors()}
    assert ("forceDestory",) in locs
    assert ("lifecycle", "noncurrentStorageClass") in locs


def test_mountpoint_and_fsx_settings_are_checked() -> None:
    found = paths(
        {
            "protect": False,
            "mountpoint": {"enabled": True, "addonVersion": "v1.15.0-eksbuild.1"},
            "fsx": {"enabled": True, "storageCapacityGib": 2000, "bucketPrefix": "projects"},
            "ecr": {"repositories": ["Training", "serving", "serving"]},
        }
    )
    assert "Pod Identity" in found["mountpoint.addonVersion"]
    assert "fsx.storageCapacityGib" in found
    assert "fsx.bucketPrefix" in found
    assert "ecr.repositories[0]" in found
    assert "ecr.repositories" in found


def test_all_problems_fail_the_component_at_once_before_any_resource() -> None:
    data = {
        "protect": True,
        "forceDestroy": True,
        "bucketName": "Bad_Name",
        "versioning": False,
        "objectLock": {"enabled": True},
        "lifecycle": {"noncurrentTransitionDays": 400},
    }
    with pytest.raises(InvalidArgsError) as exc:
        run_program(store_program(data))
    text = str(exc.value)
    assert text.startswith("invalid ModelStore args:")
    for path in (
        "bucketName",
        "objectLock.enabled",
        "forceDestroy",
        "versioning",
        "lifecycle.noncurrentTransitionDays",
    ):
        assert f"  - {path}:" in text, path
    assert "Traceback" not in text
