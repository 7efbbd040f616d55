"""The cost estimate as a plain-text table (``mlplatform cost``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def render_cost_table(cost: Mapping[str, Any]) -> str:
    """A plain-text table: idle lines, the total, GPU hourly prices, then the assumptions."""
    rows = [("Item", "Qty", "Unit", "$/unit-mo", "$/month")]
    for line in cost.get("lines") or []:
        rows.append(
            (
                str(line["item"]),
                f"{line['quantity']:g}",
                str(line["unit"]),
                f"{line['unitMonthly']:.2f}"
                if line["unitMonthly"] >= 1
                else f"{line['unitMonthly']:.3f}",
                f"{line['monthly']:.2f}",
            )
        )
    rows.append(("Total idle per month", "", "", "", f"{cost.get('monthlyIdle', 0):.2f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]

    def fmt(r: tuple[str, ...]) -> str:
        return "  ".join(
            c.ljust(w) if i < 3 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ).rstrip()

    sep = "  ".join("-" * w for w in widths)
    table = cost.get("priceTable") or {}
    out = [
        f"Idle cost estimate ({cost.get('currency', 'USD')}, {cost.get('region')}, "
        f"prices as of {table.get('asOf', '?')})",
        "",
        fmt(rows[0]),
        sep,
        *(fmt(r) for r in rows[1:-1]),
        sep,
        fmt(rows[-1]),
    ]
    gpu = cost.get("gpuHourly") or []
    if gpu:
        out += ["", "GPU pools (per node-hour, scale to zero when idle):"]
        for pool in gpu:
            out.append(
                f"  {pool['pool']} ({', '.join(pool['capacityTypes'])}; "
                f"GPU limit {pool.get('gpuLimit') or '-'}):"
            )
            for n in pool["nodeTypes"]:
                out.append(
                    f"    {n['instanceType']:<14} {n['gpus']}x {n['gpu']:<5} "
                    f"on-demand ${n['onDemand']:.4f}/h  spot ~${n['spot']:.4f}/h"
                )
            if not pool["nodeTypes"]:
                out.append("    (no priced instance types match the pool's requirements)")
            if pool.get("unpricedTypes"):
                out.append(f"    not in the price table: {', '.join(pool['unpricedTypes'])}")
    if cost.get("unpriced"):
        out += ["", "Not priced:"]
        out += [f"  {u['urn']}: {u['reason']}" for u in cost["unpriced"]]
    out += ["", "Assumptions:"]
    out += [f"  - {a}" for a in cost.get("assumptions") or []]
    return "\n".join(out)
