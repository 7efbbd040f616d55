"""The shared format checks in components.common: what they accept, what they reject, and where."""

from __future__ import annotations

from decimal import Decimal

import pytest

from components.common import (
    DNS_LABEL,
    check_dns_label,
    check_image,
    check_quantity,
    parse_quantity,
)

DIGEST = "sha256:" + "a" * 64

# --- DNS labels ---------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["a", "ml", "team-1", "0day", "a" * 63, "x-y-z9"])
def test_dns_1123_labels_pass(value: str) -> None:
    assert check_dns_label("name", value) == []
    assert DNS_LABEL.match(value)


@pytest.mark.parametrize(
    "value",
    ["", "Team", "team_1", "-team", "team-", "a.b", "a" * 64, "team\n", " team", "tëam"],
)
def test_bad_dns_labels_are_reported_at_their_path(value: str) -> None:
    (issue,) = check_dns_label(("teams", 2, "name"), value)
    assert issue.path == ("teams", 2, "name")
    assert "DNS-1123 label" in issue.message and repr(value) in issue.message
    assert not DNS_LABEL.match(value)


def test_a_key_name_is_a_one_part_path() -> None:
    (issue,) = check_dns_label("namespace", "Bad")
    assert issue.path == ("namespace",)


@pytest.mark.parametrize("value", ["1model", "0", "9-a"])
def test_leading_letter_rejects_a_leading_digit(value: str) -> None:
    assert check_dns_label("name", value) == []
    (issue,) = check_dns_label("name", value, leading_letter=True)
    assert "DNS-1035 label" in issue.message and "starting with a letter" in issue.message


@pytest.mark.parametrize("value", ["a", "fraud-scorer", "m1", "a" * 63])
def test_leading_letter_accepts_letter_first_labels(value: str) -> None:
    assert check_dns_label("name", value, leading_letter=True) == []


@pytest.mark.parametrize("value", ["A1", "a-", "a" * 64, "a_b"])
def test_leading_letter_keeps_the_other_rules(value: str) -> None:
    assert check_dns_label("name", value, leading_letter=True)


def test_an_unset_label_is_not_checked() -> None:
    assert check_dns_label("namespace", None) == []
    assert check_dns_label("namespace", None, leading_letter=True) == []


# --- Quantities ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("8", Decimal(8)),
        ("500m", Decimal("0.5")),
        ("1.5", Decimal("1.5")),
        ("2k", Decimal(2000)),
        ("64Gi", Decimal(64 * 2**30)),
        ("512Mi", Decimal(512 * 2**20)),
        ("1Ei", Decimal(2**60)),
        ("0", Decimal(0)),
    ],
)
def test_quantities_parse_to_their_value(value: str, expected: Decimal) -> None:
    assert parse_quantity(value) == expected
    assert check_quantity("cpu", value) == []


@pytest.mark.parametrize(
    "value", ["", "lots", "-1", "1.5x", "Gi", "1 Gi", " 8", "8\n", ".5", "1e3", "64gi", "1KI"]
)
def test_bad_quantities_are_reported(value: str) -> None:
    assert parse_quantity(value) is None
    (issue,) = check_quantity(("teams", 0, "memory"), value)
    assert issue.path == ("teams", 0, "memory")
    assert "Kubernetes quantity" in issue.message and repr(value) in issue.message


def test_an_unset_quantity_is_not_checked() -> None:
    assert check_quantity("cpuLimit", None) == []


SIZES = ("Mi", "Gi", "Ti")


@pytest.mark.parametrize("value", ["20Gi", "512Mi", "1Ti"])
def test_sizes_in_whole_units_pass(value: str) -> None:
    assert check_quantity("volumeSize", value, units=SIZES) == []


@pytest.mark.parametrize("value", ["20", "20G", "1.5Gi", "500m", "lots", "20Gi\n", "Gi"])
def test_sizes_outside_the_units_are_reported(value: str) -> None:
    (issue,) = check_quantity("volumeSize", value, units=SIZES)
    assert issue.path == ("volumeSize",)
    assert "Mi or Gi or Ti" in issue.message and repr(value) in issue.message


# --- Image references ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "image",
    [
        "serving:1.0",
        "vllm/vllm-openai:v0.11.0",
        "ghcr.io/mlflow/mlflow:v2.22.0",
        "docker.io/library/postgres:16.8-bookworm",
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/ml/serving:2026.11.1",
        "localhost/app:1",
        "localhost:5000/serving:1.0",
        "registry:5000/training:1.0",  # a registry with a port, then a tag
        "ghcr.io/org/server@" + DIGEST,
        "ghcr.io/org/server:1.2@" + DIGEST,
        "ghcr.io/org/server:latest@" + DIGEST,  # the digest pins it
        "registry.example.com:443/a/b/c:1_0",
        "ecr/x:2026.11.1",
        "my__org/app--x:1",
    ],
)
def test_pinned_images_pass(image: str) -> None:
    assert check_image("image", image) == []


@pytest.mark.parametrize(
    "image",
    [
        "serving",
        "ghcr.io/org/server",
        "registry:5000/training",  # the port is not a tag
        "localhost:5000/serving",
    ],
)
def test_untagged_images_are_reported(image: str) -> None:
    (issue,) = check_image("image", image)
    assert issue.path == ("image",)
    assert "must be pinned" in issue.message and "untagged" in issue.message
    assert repr(image) in issue.message


@pytest.mark.parametrize(
    "image", ["serving:latest", "repo/training:latest", "registry:5000/training:latest"]
)
def test_latest_is_reported(image: str) -> None:
    (issue,) = check_image("image", image)
    assert "must be pinned" in issue.message and ":latest" in issue.message


@pytest.mark.parametrize(
    ("image", "problem"),
    [
        ("Serving:1.0", "image reference"),  # path parts are lowercase
        ("a b:1", "image reference"),
        ("ghcr.io//x:1", "image reference"),
        ("-bad.io/x:1", "image reference"),
        ("ghcr.io:port/x:1", "image reference"),
        ("serving:1.0:extra", "invalid tag"),
        ("serving:-1", "invalid tag"),
        ("serving:1.0\n", "invalid tag"),
        ("serving:" + "1" * 129, "invalid tag"),
        ("serving@sha256:abc", "invalid digest"),
        ("serving@sha512:" + "a" * 128, "invalid digest"),
        ("serving@sha256:" + "A" * 64, "invalid digest"),
    ],
)
def test_malformed_images_are_reported(image: str, problem: str) -> None:
    messages = [i.message for i in check_image("image", image)]
    assert any(problem in m for m in messages), messages


def test_all_image_problems_come_at_once_at_the_given_path() -> None:
    issues = check_image(("database", "image"), "")
    assert {i.path for i in issues} == {("database", "image")}
    assert len(issues) == 2  # not a reference, and not pinned
