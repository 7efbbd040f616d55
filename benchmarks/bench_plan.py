"""Time the offline plan.

    uv run python benchmarks/bench_plan.py [--repeat 3] [--sizes 1,10,100]
    uv run python benchmarks/bench_plan.py --first-run [--cold-cache] [--repeat 5]

The default mode times the shipped stacks and synthetic stacks with N GPU pools and N endpoints
in one warm process (imports excluded), against the Pulumi SDK's own cost of registering the
same resources. ``--first-run`` times what a new user sees: a fresh clone of this repository's
HEAD, ``PYTHONDONTWRITEBYTECODE=1``, the first ``uv run mlplatform plan --stack prod`` (the
install included) and every later one, each as a whole process; ``--cold-cache`` gives uv an
empty cache, so the first run downloads every package too.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
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


def in_process(repeat: int, sizes: str) -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp_dir = Path(tmp)
        for stack in ("dev", "prod"):
            for p in STACKS_DIR.glob(f"Pulumi.{stack}.yaml"):
                (tmp_dir / p.name).write_text(p.read_text())
        stacks = ["dev", "prod"] + [synthetic_stack(int(n), tmp_dir) for n in sizes.split(",")]
        build_plan("dev", tmp_dir)  # warm imports and caches
        for stack in stacks:
            plan_s = median_seconds(lambda s=stack: build_plan(s, tmp_dir), repeat)
            base_s = median_seconds(lambda s=stack: sdk_baseline(s, tmp_dir), repeat)
            n = count_resources(stack, tmp_dir)
            rows.append((stack, n, plan_s, base_s))
    print(f"{'stack':<14}{'resources':>10}{'plan s':>9}{'SDK s':>9}{'ratio':>7}{'ms/res':>8}")
    for stack, n, plan_s, base_s in rows:
        print(
            f"{stack:<14}{n:>10}{plan_s:>9.2f}{base_s:>9.2f}{plan_s / base_s:>7.2f}{1000 * plan_s / n:>8.2f}"
        )


# --------------------------------------------------------------------------------------------
# a new user's first run and every later one, as whole processes

PLAN = ["uv", "run", "mlplatform", "plan", "--stack", "prod", "--format", "json"]


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float, str]:
    """Wall seconds, CPU seconds (user + system of every process waited for) and stdout."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode not in (0, 1):  # 1: a mandatory policy violation, still a plan
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, proc.stdout


def _venv_footprint(venv: Path) -> tuple[int, float]:
    site = next(venv.glob("lib/python*/site-packages"))
    packages = len(list(site.glob("*.dist-info")))
    size = sum(f.stat().st_size for f in venv.rglob("*") if f.is_file() and not f.is_symlink())
    return packages, size / 2**20


def first_run(repeat: int, cold_cache: bool) -> None:
    uv = shutil.which("uv")
    if uv is None:
        raise SystemExit("uv is not on PATH")
    root = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory() as tmp:
        clone = Path(tmp) / "clone"
        subprocess.run(["git", "clone", "--quiet", str(root), str(clone)], check=True)
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT")
        }
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        if cold_cache:
            env["UV_CACHE_DIR"] = str(Path(tmp) / "uv-cache")
        wall, cpu, out = timed(PLAN, clone, env)
        resources = len(json.loads(out)["resources"])
        packages, mib = _venv_footprint(clone / ".venv")
        later = [timed(PLAN, clone, env)[:2] for _ in range(repeat)]
    walls = sorted(w for w, _ in later)
    cpus = sorted(c for _, c in later)
    cache = "cold uv cache (downloads included)" if cold_cache else "warm uv cache"
    print(f"fresh clone, PYTHONDONTWRITEBYTECODE=1, {cache}; prod plan of {resources} resources")
    print(f"installed: {packages} packages, {mib:.0f} MiB in .venv")
    print(f"{'run':<34}{'wall s':>9}{'cpu s':>9}")
    print(f"{'first (install included)':<34}{wall:>9.2f}{cpu:>9.2f}")
    print(
        f"{f'later, median of {repeat}':<34}{statistics.median(walls):>9.2f}"
        f"{statistics.median(cpus):>9.2f}"
    )
    print(f"{'later, min / max wall':<34}{walls[0]:>9.2f}{walls[-1]:>9.2f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--sizes", default="1,10,100")
    ap.add_argument("--first-run", action="store_true", help="time a fresh clone's plans")
    ap.add_argument("--cold-cache", action="store_true", help="with --first-run: empty uv cache")
    a = ap.parse_args()
    if a.first_run:
        first_run(a.repeat, a.cold_cache)
    else:
        in_process(a.repeat, a.sizes)


if __name__ == "__main__":
    main()
