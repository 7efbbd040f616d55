"""Benchmark the ml-project template: bake time, generated test-suite time, serving throughput.

    uv run python benchmarks/bench_template.py [--bakes 10] [--requests 3000] [--concurrency 8]

Everything runs on this machine: the server listens on 127.0.0.1 only and the load generator sends
a bounded number of requests, then stops. Prints a table and a JSON line with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.templates.helpers import bake, uv_env  # noqa: E402

HEALTH_TIMEOUT_S = 60

LOAD_SCRIPT = textwrap.dedent(
    """
    import json, sys, threading, time
    import httpx

    url, total, concurrency, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    row = {"tenure_months": 3, "monthly_spend": 120.0, "support_tickets": 6, "usage_hours": 2.5}
    body = {"instances": [row] * batch}
    latencies, errors, lock = [], [0], threading.Lock()
    remaining = [total]

    def worker():
        with httpx.Client(base_url=url, timeout=10) as client:
            client.post("/predict", json=body)  # warm the connection
            while True:
                with lock:
                    if remaining[0] == 0:
                        return
                    remaining[0] -= 1
                start = time.perf_counter()
                r = client.post("/predict", json=body)
                elapsed = time.perf_counter() - start
                with lock:
                    latencies.append(elapsed)
                    if r.status_code != 200:
                        errors[0] += 1

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    wall = time.perf_counter() - t0
    latencies.sort()
    q = lambda p: latencies[min(len(latencies) - 1, int(p * len(latencies)))]
    print(json.dumps({"requests": len(latencies), "errors": errors[0], "wall_s": wall,
                      "rps": len(latencies) / wall, "p50_ms": q(0.50) * 1000,
                      "p99_ms": q(0.99) * 1000, "max_ms": latencies[-1] * 1000}))
    """
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        raise SystemExit(
            f"{' '.join(cmd)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return time.perf_counter() - start


def bench_bake(workdir: Path, n: int) -> dict[str, float]:
    times = []
    for i in range(n):
        start = time.perf_counter()
        bake(workdir / f"bake-{i}", framework="sklearn", serving="yes")
        times.append(time.perf_counter() - start)
    return {"bake_median_s": statistics.median(times), "bake_min_s": min(times)}


def bench_serving(root: Path, env: dict[str, str], uv: str, args: argparse.Namespace) -> dict:
    slug = root.name
    models = root / "bench-models"
    run_env = {**env, "MODEL_DIR": str(models)}
    timed([uv, "run", "--no-sync", "python", "-m", f"{slug}.train"], root, run_env)
    port = free_port()
    server = subprocess.Popen(
        [
            uv,
            "run",
            "--no-sync",
            "uvicorn",
            f"{slug}.serve:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        cwd=root,
        env=run_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + HEALTH_TIMEOUT_S
        while True:
            probe = subprocess.run(
                [
                    uv,
                    "run",
                    "--no-sync",
                    "python",
                    "-c",
                    f"import httpx,sys; sys.exit(httpx.get('{url}/healthz').status_code != 200)",
                ],
                cwd=root,
                env=run_env,
                capture_output=True,
                timeout=30,
            )
            if probe.returncode == 0:
                break
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(
                    f"server did not become healthy: {server.stderr.read() if server.stderr else ''}"
                )
            time.sleep(0.2)
        script = root / "bench_load.py"
        script.write_text(LOAD_SCRIPT)
        results = {}
        for batch in (1, 32):
            out = subprocess.run(
                [
                    uv,
                    "run",
                    "--no-sync",
                    "python",
                    str(script),
                    url,
                    str(args.requests),
                    str(args.concurrency),
                    str(batch),
                ],
                cwd=root,
                env=run_env,
                capture_output=True,
                text=True,
                timeout=900,
            )
            if out.returncode != 0:
                raise SystemExit(out.stderr)
            results[f"batch{batch}"] = json.loads(out.stdout)
        return results
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bakes", type=int, default=10)
    parser.add_argument("--requests", type=int, default=3000, help="per load run (bounded)")
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    uv = shutil.which("uv")
    if uv is None:
        raise SystemExit("uv is not on PATH")
    env = uv_env()
    figures: dict[str, object] = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    with tempfile.TemporaryDirectory(prefix="bench-template-") as tmp:
        work = Path(tmp)
        figures.update(bench_bake(work, args.bakes))
        root = bake(work / "project", framework="sklearn", serving="yes")
        figures["uv_sync_s"] = timed([uv, "sync", "--quiet"], root, env)
        figures["test_suite_s"] = timed(
            [uv, "run", "--no-sync", "pytest", "-q", "-p", "no:cacheprovider"], root, env
        )
        figures["serving"] = bench_serving(root, env, uv, args)

    print(
        f"bake (sklearn, serving): median {figures['bake_median_s']:.3f} s, "
        f"min {figures['bake_min_s']:.3f} s over {args.bakes}"
    )
    print(f"uv sync (no lock, warm uv cache): {figures['uv_sync_s']:.1f} s")
    print(f"generated test suite (uv run pytest): {figures['test_suite_s']:.1f} s")
    for name, r in figures["serving"].items():  # type: ignore[union-attr]
        print(
            f"serving {name}: {r['rps']:.0f} req/s, p50 {r['p50_ms']:.1f} ms, "
            f"p99 {r['p99_ms']:.1f} ms, {r['requests']} requests, {r['errors']} errors, "
            f"concurrency {args.concurrency}"
        )
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
