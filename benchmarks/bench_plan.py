"""Time the offline plan: shipped stacks, synthetic stacks with N GPU pools and N endpoints,
and the plan's overhead over the Pulumi SDK's own cost of registering the same resources.

    uv run python benchmarks/bench_plan.py [--repeat 3] [--sizes 1,10,100]

Each figure is the median of --repeat runs in one warm process (imports excluded; the
whole-process time of `mlplatform plan` adds about one second of imports on top).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pulumi
import yaml
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import settings as pulumi_settings
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from mlplatform import program
from mlplatform.config import STACKS_DIR, read_stack_file
from mlplatform.mocks import PlatformMocks
from mlplatform.report import build_plan

ACCELERATORS = ["nvidia-t4", "nvidia-a10g", "nvidia-l4", "nvidia-l40s"]


def synthetic_stack(n: int, out_dir: Path) -> str:
    """The dev stack plus n GPU pools and n serving endpoints."""
    doc = yaml.safe_load((STACKS_DIR / "Pulumi.dev.yaml").read_text())
    cfg = doc["config"]
    cfg["ml-platform:gpuPools"] = [
        {"name": f"pool-{i}", "accelerator": ACCELERATORS[i % len(ACCELERATORS)], "maxGpus": 4,
         "capacityTypes": ["spot"]}
        for i in range(n)
    ]  # fmt: skip
    template = next(iter(cfg["ml-platform:servingEndpoints"].values()))
    cfg["ml-platform:servingEndpoints"] = {f"endpoint-{i}": template for i in range(n)}
    cfg["ml-platform:trainingQueues"]["teams"][0]["quotas"][0]["pool"] = "pool-0"
    name = f"synthetic{n}"
    (out_dir / f"Pulumi.{name}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return name


def median_seconds(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def sdk_baseline(stack: str, stacks_dir: Path) -> None:
    """Run the same program, with the same mock answers, under the SDK's stock MockMonitor:
    no recording, no JSON shaping, no cost or policy sections."""
    raw, secret_keys = read_stack_file(stack, stacks_dir)
    pulumi_settings.ROOT.set(None)
    pulumi.runtime.set_all_config(raw, secret_keys)
    pulumi_mocks.set_mocks(PlatformMocks(), project="ml-platform", stack=stack, preview=False)
    _sync_await(run_pulumi_func(program.main))


def count_resources(stack: str, stacks_dir: Path) -> int:
    return len(build_plan(stack, stacks_dir)["resources"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--sizes", default="1,10,100")
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp_dir = Path(tmp)
        for stack in ("dev", "prod"):
            for p in STACKS_DIR.glob(f"Pulumi.{stack}.yaml"):
                (tmp_dir / p.name).write_text(p.read_text())
        stacks = ["dev", "prod"] + [synthetic_stack(int(n), tmp_dir) for n in a.sizes.split(",")]
        build_plan("dev", tmp_dir)  # warm imports and caches
        for stack in stacks:
            plan_s = median_seconds(lambda s=stack: build_plan(s, tmp_dir), a.repeat)
            base_s = median_seconds(lambda s=stack: sdk_baseline(s, tmp_dir), a.repeat)
            n = count_resources(stack, tmp_dir)
            rows.append((stack, n, plan_s, base_s))
    print(f"{'stack':<14}{'resources':>10}{'plan s':>9}{'SDK s':>9}{'ratio':>7}{'ms/res':>8}")
    for stack, n, plan_s, base_s in rows:
        print(
            f"{stack:<14}{n:>10}{plan_s:>9.2f}{base_s:>9.2f}{plan_s / base_s:>7.2f}{1000 * plan_s / n:>8.2f}"
        )


if __name__ == "__main__":
    main()
