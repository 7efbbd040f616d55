"""Reserved GPU capacity: On-Demand Capacity Reservations and Capacity Blocks for ML.

A GPU pool uses reservations through Karpenter's ``reserved`` capacity type (Karpenter >= 1.6,
the ``ReservedCapacity`` feature gate). The EC2NodeClass selects the reservations
(``capacityReservationSelectorTerms``: by id, or by tags and owner), the NodePool allows the
``reserved`` capacity type, and Karpenter prices a reserved offering at almost nothing, so it
launches into a reservation while one has room and only then into the pool's other capacity
types. ``priority`` says which of the two a pool wants:

* ``first``: reservations, then the pool's ``capacityTypes`` (on-demand or spot) when they are
  full;
* ``only``: reservations and nothing else; pods wait while they are full.

Capacity Blocks are reservations with a start and an end: EC2 reclaims their instances 30
minutes before the end, and Karpenter drains them 10 minutes before that (40 minutes before the
end, its ``capacityreservation.expiration`` controller). A block listed under ``blocks`` is
selected by id like any reservation, and also becomes a Kueue queue of its own (see
:mod:`components.capacity_blocks`), which admits a job only while the job's declared run time
still fits before the drain.

No placement group is set on any pool: a cluster placement group forced onto reserved capacity
is a known cause of insufficient-capacity errors (terraform-aws-eks #3672, #3699, PR #3730), and
an EFA pool needs none to work.
"""

from __future__ import annotations

import re
from datetime import timedelta
from enum import StrEnum
from typing import Any

from pydantic import AwareDatetime, Field

from components.common import ArgsModel, Issue

RESERVATION_ID = r"^cr-[0-9a-f]{17}$"
# arn:<partition>:ec2:<region>:<account>:capacity-reservation/<id>
_RESERVATION_ARN = re.compile(
    r"^arn:aws(?:-[a-z]+)*:ec2:(?P<region>[a-z]{2}(?:-[a-z]+)+-\d):(?P<account>\d{12})"
    r":capacity-reservation/(?P<id>cr-[0-9a-f]{17})\Z"
)
_ZONE = re.compile(r"^(?P<region>[a-z]{2}(?:-[a-z]+)+-\d)[a-z]\Z")
# Karpenter starts draining a block's nodes this long before the block ends (EC2 starts
# reclaiming them 30 minutes before the end; Karpenter acts 10 minutes earlier).
BLOCK_DRAIN_BEFORE_END = timedelta(minutes=40)
# capacityReservationSelectorTerms: maxItems in the v1.15.2 EC2NodeClass CRD.
MAX_SELECTOR_TERMS = 30
_RUN_TIME = re.compile(r"^(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?\Z")
# The node shapes Capacity Blocks are sold in, among the platform's accelerator presets: a
# block's Kueue quota is whole nodes. (GPUs, vCPUs, memory GiB), from the EC2 instance type pages.
BLOCK_NODE_SHAPES: dict[str, tuple[int, int, int]] = {
    "p4d.24xlarge": (8, 96, 1152),
    "p5.48xlarge": (8, 192, 2048),
}


class ReservationPriority(StrEnum):
    FIRST = "first"  # reservations, then the pool's capacityTypes
    ONLY = "only"  # reservations only: pods wait while they are full


class CapacityReservation(ArgsModel):
    """Select reservations: one by id or ARN, or every one carrying these tags.

    A reservation id does not say its region; an ARN does, and ``availabilityZone`` says where a
    reservation by id or tags lives. Both are checked against the stack's region and zones.
    """

    id: str | None = Field(default=None, pattern=RESERVATION_ID)
    arn: str | None = None
    tags: dict[str, str] | None = None
    owner_id: str | None = Field(default=None, pattern=r"^\d{12}$")
    availability_zone: str | None = None

    def issues(self) -> list[Issue]:
        found = super().issues()
        chosen = [k for k in ("id", "arn", "tags") if getattr(self, k) is not None]
        if len(chosen) != 1:
            found.append(Issue((), f"set exactly one of id, arn or tags, got {chosen or 'none'}"))
        if self.arn is not None and not _RESERVATION_ARN.match(self.arn):
            found.append(
                Issue(
                    ("arn",),
                    "must be arn:aws:ec2:<region>:<account>:capacity-reservation/cr-<17 hex>, "
                    f"got {self.arn!r}",
                )
            )
        if self.owner_id is not None and self.tags is None:
            # The CRD: an id term may carry nothing else; an ARN names its owner already.
            found.append(Issue(("ownerId",), "only applies to a tags selector"))
        if self.tags is not None:
            if not self.tags:
                found.append(Issue(("tags",), "must hold at least one tag"))
            if len(self.tags) > 20:
                found.append(Issue(("tags",), f"at most 20 tags, got {len(self.tags)}"))
            for key, value in self.tags.items():
                if not key or not value:
                    found.append(Issue(("tags", key), "empty tag keys or values select nothing"))
        if self.availability_zone is not None and not _ZONE.match(self.availability_zone):
            found.append(
                Issue(
                    ("availabilityZone",),
                    f"must be a zone name like us-east-1a, got {self.availability_zone!r}",
                )
            )
        return found

    @property
    def reservation_id(self) -> str | None:
        if self.id is not None:
            return self.id
        match = _RESERVATION_ARN.match(self.arn or "")
        return match["id"] if match else None

    def regions(self) -> dict[str, str]:
        """The regions this selector names, by the key that names them."""
        out: dict[str, str] = {}
        match = _RESERVATION_ARN.match(self.arn or "")
        if match:
            out["arn"] = match["region"]
        zone = _ZONE.match(self.availability_zone or "")
        if zone:
            out["availabilityZone"] = zone["region"]
        return out

    def term(self) -> dict[str, Any]:
        """The EC2NodeClass selector term."""
        rid = self.reservation_id
        if rid is not None:
            return {"id": rid}
        term: dict[str, Any] = {"tags": dict(self.tags or {})}
        if self.owner_id:
            term["ownerID"] = self.owner_id
        return term


def parse_run_time(value: str) -> timedelta | None:
    match = _RUN_TIME.match(value)
    if not value or not match:
        return None
    return timedelta(hours=int(match["h"] or 0), minutes=int(match["m"] or 0))


class CapacityBlock(ArgsModel):
    """A Capacity Block for ML the pool launches into, with the window EC2 sold it for.

    The window is copied from the block's purchase (``aws ec2 describe-capacity-reservations``:
    StartDate, EndDate); the expiry alert reads the real end date from Karpenter's EC2NodeClass
    status, so a copy that drifts from the truth still pages in time.
    """

    id: str = Field(pattern=RESERVATION_ID)
    instance_type: str
    instances: int = Field(ge=1, le=64)
    start: AwareDatetime
    end: AwareDatetime
    # The longest job the block admits ("36h", "90m"). Unset: the whole usable window.
    max_run_time: str | None = None
    availability_zone: str | None = None
    # Training teams (trainingQueues.teams) whose namespaces get the block's LocalQueue.
    teams: list[str] = Field(min_length=1)

    def issues(self) -> list[Issue]:
        found = super().issues()
        if self.instance_type not in BLOCK_NODE_SHAPES:
            found.append(
                Issue(
                    ("instanceType",),
                    f"Capacity Blocks of the platform's accelerators are "
                    f"{sorted(BLOCK_NODE_SHAPES)}, got {self.instance_type!r}",
                )
            )
        usable = self.usable_window
        if usable <= timedelta(0):
            found.append(
                Issue(
                    ("end",),
                    f"must be more than {_hours(BLOCK_DRAIN_BEFORE_END)} after start "
                    f"(Karpenter drains a block {_hours(BLOCK_DRAIN_BEFORE_END)} before its "
                    f"end), got start {self.start.isoformat()} and end {self.end.isoformat()}",
                )
            )
        if self.max_run_time is not None:
            run = parse_run_time(self.max_run_time)
            if run is None or run <= timedelta(0):
                found.append(
                    Issue(
                        ("maxRunTime",),
                        f"must be a duration in hours and minutes like 36h or 1h30m, got "
                        f"{self.max_run_time!r}",
                    )
                )
            elif usable > timedelta(0) and run > usable:
                found.append(
                    Issue(
                        ("maxRunTime",),
                        f"{self.max_run_time} is longer than the block's usable window "
                        f"({_hours(usable)}: start to {_hours(BLOCK_DRAIN_BEFORE_END)} before "
                        "end), so no such job could ever be admitted",
                    )
                )
        if self.availability_zone is not None and not _ZONE.match(self.availability_zone):
            found.append(
                Issue(
                    ("availabilityZone",),
                    f"must be a zone name like us-east-1a, got {self.availability_zone!r}",
                )
            )
        return found

    @property
    def drain_at(self) -> Any:
        return self.end - BLOCK_DRAIN_BEFORE_END

    @property
    def usable_window(self) -> timedelta:
        return self.drain_at - self.start

    @property
    def run_time(self) -> timedelta:
        """The longest job the block admits."""
        run = parse_run_time(self.max_run_time or "")
        return run if run is not None else self.usable_window

    @property
    def admission_closes_at(self) -> Any:
        """After this, a job of ``run_time`` would still be running when the drain starts."""
        return self.drain_at - self.run_time

    def regions(self) -> dict[str, str]:
        zone = _ZONE.match(self.availability_zone or "")
        return {"availabilityZone": zone["region"]} if zone else {}


def _hours(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    hours, rest = divmod(minutes, 60)
    if not hours:
        return f"{rest}m"
    return f"{hours}h{rest:02d}m" if rest else f"{hours}h"


class ReservedCapacityArgs(ArgsModel):
    """A pool's reservations: which ones, and whether the pool may go beyond them."""

    priority: ReservationPriority = ReservationPriority.FIRST
    select: list[CapacityReservation] = Field(default_factory=list)
    blocks: list[CapacityBlock] = Field(default_factory=list)

    def issues(self) -> list[Issue]:
        found = super().issues()
        if not self.select and not self.blocks:
            found.append(Issue(("select",), "select at least one reservation, or list blocks"))
        terms = self.terms()
        if len(terms) > MAX_SELECTOR_TERMS:
            found.append(
                Issue(
                    ("select",),
                    f"Karpenter takes at most {MAX_SELECTOR_TERMS} selector terms, got "
                    f"{len(terms)} (select and blocks together)",
                )
            )
        seen: dict[str, str] = {}
        for path, rid in [
            *((("select", i), s.reservation_id) for i, s in enumerate(self.select)),
            *((("blocks", i), b.id) for i, b in enumerate(self.blocks)),
        ]:
            if rid is None:
                continue
            where = ".".join(map(str, path))
            if rid in seen:
                found.append(Issue((*path, "id"), f"{rid} is already selected by {seen[rid]}"))
            seen.setdefault(rid, where)
        return found

    def terms(self) -> list[dict[str, Any]]:
        """capacityReservationSelectorTerms: the selectors, then each block by id."""
        out = [s.term() for s in self.select]
        out += [{"id": b.id} for b in self.blocks]
        return out

    def regions(self) -> list[tuple[tuple[str | int, ...], str]]:
        """(path, region) for every region a selector or block names."""
        out: list[tuple[tuple[str | int, ...], str]] = []
        for i, s in enumerate(self.select):
            out += [(("select", i, key), region) for key, region in s.regions().items()]
        for i, b in enumerate(self.blocks):
            out += [(("blocks", i, key), region) for key, region in b.regions().items()]
        return out

    def zones(self) -> list[tuple[tuple[str | int, ...], str]]:
        out: list[tuple[tuple[str | int, ...], str]] = []
        for i, s in enumerate(self.select):
            if s.availability_zone:
                out.append((("select", i, "availabilityZone"), s.availability_zone))
        for i, b in enumerate(self.blocks):
            if b.availability_zone:
                out.append((("blocks", i, "availabilityZone"), b.availability_zone))
        return out


def region_issues(
    reservations: ReservedCapacityArgs, region: str, zones: list[str] | None
) -> list[Issue]:
    """A reservation elsewhere than the stack's region, or in a zone it has no subnet in, can
    never be launched into: Karpenter would fall back (``first``) or wait forever (``only``)."""
    found = [
        Issue(path, f"names region {other}, but the stack runs in {region}")
        for path, other in reservations.regions()
        if other != region
    ]
    if zones:
        found += [
            Issue(path, f"{zone} has no subnet of this stack (network.availabilityZones: {zones})")
            for path, zone in reservations.zones()
            if zone.startswith(region) and zone not in zones
        ]
    return found
