"""The price catalogue, the usage assumptions, and the ledger that priced lines are written to.

Prices come from a dated table shipped with the package (``mlplatform/data/prices-<region>.json``,
each figure with its source); usage that list prices cannot give (log volumes, NAT data, LCUs)
comes from :class:`CostAssumptions`. Everything else in this package reads a plan dict and writes
lines through :class:`Ledger`.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
DEFAULT_REGION = "us-east-1"

GPU_RESOURCE = "nvidia.com/gpu"
POOL_LABEL = "mlplatform.io/pool"
ACCELERATOR_LABEL = "mlplatform.io/accelerator"
PRESET_FAMILIES = {
    "nvidia-t4": "g4dn",
    "nvidia-a10g": "g5",
    "nvidia-l4": "g6",
    "nvidia-l40s": "g6e",
    "nvidia-a100": "p4d",
    "nvidia-h100": "p5",
}
# EKS control plane log types, ordered as the API lists them.
CONTROL_PLANE_LOG_TYPES = ("api", "audit", "authenticator", "controllerManager", "scheduler")


@dataclass(frozen=True)
class CostAssumptions:
    """Usage figures that list prices alone cannot give. All are per month unless named otherwise."""

    nat_data_gb: float = 20.0
    # An idle EKS cluster still logs: controllers poll the API server all day, so audit dominates.
    control_plane_log_gb: Mapping[str, float] = field(
        default_factory=lambda: {
            "api": 2.0,
            "audit": 8.0,
            "authenticator": 0.5,
            "controllerManager": 1.0,
            "scheduler": 0.5,
        }
    )
    flow_log_gb: float = 2.0
    other_log_group_gb: float = 0.5
    load_balancer_lcu: float = 1.0
    managed_node_group_default_disk_gib: int = 20
    default_storage_class: str = "gp3"

    def describe(self) -> list[str]:
        logs = ", ".join(f"{k} {v:g} GB" for k, v in self.control_plane_log_gb.items())
        return [
            f"NAT gateway data processed: {self.nat_data_gb:g} GB/month per stack "
            "(a NAT instance has no processing charge)",
            f"EKS control-plane log ingestion per enabled type per month: {logs}",
            f"VPC flow logs: {self.flow_log_gb:g} GB/month per flow log (idle VPC)",
            f"Other CloudWatch log groups: {self.other_log_group_gb:g} GB/month each",
            "Log storage: a month's ingestion kept for the group's retention (capped at 12 months)",
            f"Load balancers: {self.load_balancer_lcu:g} LCU each, all hours",
            "Managed node groups without a launch template: "
            f"{self.managed_node_group_default_disk_gib} GiB gp2 root volume",
            f"PVCs without a recognised storage class are priced as {self.default_storage_class}",
        ]


@functools.cache
def load_prices(region: str = DEFAULT_REGION) -> dict[str, Any]:
    path = DATA_DIR / f"prices-{region}.json"
    if not path.exists():
        path = DATA_DIR / f"prices-{DEFAULT_REGION}.json"
    return json.loads(path.read_text(encoding="utf-8"))


# --------------------------------------------------------------------------------------------
# small readers over plan dicts

_QUANTITY = re.compile(r"^\s*([0-9.]+)\s*([KMGTPE]i?|m|k)?\s*$")
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18}


def parse_quantity(value: Any) -> float:
    """A Kubernetes quantity as a plain number (bytes for memory, cores for cpu)."""
    if isinstance(value, (int, float)):
        return float(value)
    m = _QUANTITY.match(str(value))
    if not m:
        return 0.0
    number, suffix = float(m.group(1)), m.group(2) or ""
    if suffix == "m":
        return number / 1000
    if suffix in _BINARY:
        return number * _BINARY[suffix]
    return number * _DECIMAL.get(suffix, 1)


def gib(value: Any) -> float:
    return parse_quantity(value) / 2**30


def dig(obj: Any, *path: str, default: Any = None) -> Any:
    cur = obj
    for key in path:
        if not isinstance(cur, Mapping) or key not in cur:
            return default
        cur = cur[key]
    return cur


def num(value: Any, default: float = 0.0) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def truthy(value: Any) -> bool:
    """A boolean input as the plan records it: ``True`` or the EC2 API's string ``"true"``."""
    return value is True or str(value).lower() == "true"


def short_name(res: Mapping[str, Any]) -> str:
    return str(res.get("urn", "")).rsplit("::", 1)[-1]


def family(instance_type: str) -> str:
    return instance_type.split(".", 1)[0]


def by_type(resources: list[Mapping[str, Any]], *types: str) -> list[Mapping[str, Any]]:
    return [r for r in resources if r.get("type") in types]


def dependencies_of(
    res: Mapping[str, Any], resources: list[Mapping[str, Any]], *types: str
) -> list[Mapping[str, Any]]:
    """The plan resources of the given types that ``res`` depends on."""
    deps = set(res.get("dependencies") or [])
    return [r for r in resources if r.get("type") in types and r.get("urn") in deps]


# --------------------------------------------------------------------------------------------
# the ledger


@dataclass
class Ledger:
    """Priced lines, unpriced items and notes, with the price lookups every pricer needs."""

    prices: dict[str, Any]
    assumptions: CostAssumptions
    lines: list[dict[str, Any]] = field(default_factory=list)
    unpriced: list[dict[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def hours(self) -> float:
        return float(self.prices["hoursPerMonth"])

    def price(self, key: str) -> float:
        return float(self.prices["prices"][key]["usd"])

    def instance(self, instance_type: str) -> dict[str, Any] | None:
        return self.prices["ec2"].get(instance_type)

    def spot_fraction(self, instance_type: str) -> float:
        table = self.prices["spotFraction"]
        return float(table.get(family(instance_type), table["default"])["fraction"])

    def hourly(self, instance_type: str, spot: bool = False) -> float | None:
        spec = self.instance(instance_type)
        if spec is None:
            return None
        rate = float(spec["hourly"])
        return rate * self.spot_fraction(instance_type) if spot else rate

    def ebs_price(self, volume_type: str) -> float:
        key = {"gp2": "ebsGp2", "gp3": "ebsGp3", "io1": "ebsIo2", "io2": "ebsIo2", "st1": "ebsSt1"}
        return self.price(key.get(volume_type.lower(), "ebsGp3"))

    def add(
        self,
        item: str,
        category: str,
        quantity: float,
        unit: str,
        unit_monthly: float,
        *,
        resources: list[str] | None = None,
        note: str = "",
    ) -> None:
        if quantity <= 0:
            return
        self.lines.append(
            {
                "item": item,
                "category": category,
                "quantity": round(quantity, 3),
                "unit": unit,
                "unitMonthly": round(unit_monthly, 4),
                "monthly": round(quantity * unit_monthly, 2),
                "resources": resources or [],
                "note": note,
            }
        )
