"""Side by side: the template's generated model server against KServe's Python ModelServer.

    uv run python benchmarks/bench_serving.py [--duration 15] [--rounds 3] [--framework sklearn]

What runs, all on 127.0.0.1 and in this process tree:
- ours: a project baked from templates/ml-project (helpers in tests/templates/helpers.py), its own
  `uv sync`, a model trained on the bundled sample, then the server exactly as the project's
  Dockerfile CMD starts it (only --host and --port changed);
- KServe: `kserve==KSERVE_VERSION` from PyPI in a throwaway venv (cached under
  ~/.cache/ml-platform-bench), a `kserve.Model` that loads the *same* saved model with the project's
  own model.load and answers the V1 protocol the way KServe's sklearnserver does (with
  PREDICT_PROBA=true): get_predict_input -> predict_proba -> get_predict_response. KServe runs with
  one worker, gRPC off and its per-request log lines off (its defaults write three log lines per
  request; turning them off makes it faster, so the comparison is the harder one for us);
- load: wrk (Debian package `wrk`), 1 thread, 16 connections, keep-alive, POSTing 1 row and 32 rows;
  each server gets the JSON its API takes (named fields for ours, arrays for KServe's V1);
- the servers' health check (ours `/healthz`, KServe's `/v1/models/<name>`) is probed every 20 ms
  during each load run, from a separate connection, to show how long a probe waits behind
  predictions.

Runs alternate (ours, KServe, ours, ...) so drift on a shared machine hits both alike. With two or
more CPUs the servers are pinned to CPU 0 and wrk and the probe to CPU 1. Every subprocess has a
timeout; the whole run takes about rounds x 4 x (duration + 2) s plus setup. Prints a table and a
JSON line.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import importlib.metadata
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.templates.helpers import bake, uv_env  # noqa: E402

# Newest kserve on PyPI when measured (pypi.org/project/kserve: 0.21.0, requires-python <3.14).
KSERVE_VERSION = "0.21.0"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ml-platform-bench"
STARTUP_TIMEOUT_S = 300  # importing KServe (pandas, grpc, kubernetes) is slow on a busy machine
PROBE_INTERVAL_S = 0.02
ROW = {"tenure_months": 3, "monthly_spend": 120.0, "support_tickets": 6, "usage_hours": 2.5}
# Packages whose versions the KServe venv copies from the project, so the saved model loads alike.
MODEL_PACKAGES = {"sklearn": ["scikit-learn", "joblib", "numpy"], "pytorch": ["torch", "numpy"]}

KSERVE_RUNNER = '''
"""KServe ModelServer serving the project's saved model (written by benchmarks/bench_serving.py)."""
import argparse, importlib, logging
from pathlib import Path

import uvicorn

class _Loopback(uvicorn.Config):  # KServe binds 0.0.0.0; the benchmark stays on loopback
    def __init__(self, *args, **kwargs):
        kwargs["host"] = "127.0.0.1"
        super().__init__(*args, **kwargs)

uvicorn.Config = _Loopback

import kserve  # noqa: E402  (parses its own flags from sys.argv on import)
from kserve.utils.utils import get_predict_input, get_predict_response  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--model_dir", required=True)
parser.add_argument("--model_module", required=True)
parser.add_argument("--model_name", required=True)
args, _ = parser.parse_known_args()


class ProjectModel(kserve.Model):
    """KServe sklearnserver's predict (PREDICT_PROBA=true), with the project's loader."""

    def __init__(self, name, lib, model_dir):
        super().__init__(name)
        self.lib = lib
        self.model = lib.load(Path(model_dir))
        self.ready = True

    def predict(self, payload, headers=None):
        instances = get_predict_input(payload)
        return get_predict_response(payload, self.lib.predict_proba(self.model, instances), self.name)


lib = importlib.import_module(args.model_module)
model = ProjectModel(args.model_name, lib, args.model_dir)
server = kserve.ModelServer()
for name in ("uvicorn.access", "kserve.trace"):
    logging.getLogger(name).setLevel(logging.WARNING)
server.start([model])
'''

WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [==[{body}]==]
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH {{"requests": %d, "duration_us": %d, "non2xx": %d, "socket_errors": %d, ' ..
    '"p50_us": %.0f, "p90_us": %.0f, "p99_us": %.0f, "max_us": %.0f}}\\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


@dataclass
class Server:
    name: str
    argv: list[str]
    cwd: Path
    env: dict[str, str]
    health_path: str
    predict_path: str
    body: Callable[[int], bytes]
    log: Path
    cpus: set[int] | None
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    results: dict[int, list[dict[str, float]]] = field(default_factory=dict)

    def start(self) -> None:
        pin = ["taskset", "--cpu-list", ",".join(map(str, sorted(self.cpus)))] if self.cpus else []
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [*pin, *self.argv],
                cwd=self.cwd,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, so stop() reaches every child
            )
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            with contextlib.suppress(OSError):
                status, _ = request(self.port, "GET", self.health_path)
                if status == 200:
                    return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = self.log.read_text(errors="replace")[-4000:]
                raise SystemExit(f"{self.name} did not become healthy:\n{tail}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def request(port: int, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        headers = {"content-type": "application/json"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 900) -> str:
    result = subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        raise SystemExit(
            f"{' '.join(cmd)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return result.stdout


def dockerfile_cmd(root: Path, port: int) -> list[str]:
    """The serving CMD of the generated Dockerfile, bound to 127.0.0.1:port instead of 0.0.0.0."""
    cmds = re.findall(r"^CMD (\[.*\])\s*$", (root / "Dockerfile").read_text(), re.M)
    if len(cmds) != 1:
        raise SystemExit(f"expected one CMD in {root / 'Dockerfile'}, found {cmds}")
    argv: list[str] = json.loads(cmds[0])
    for flag, value in (("--host", "127.0.0.1"), ("--port", str(port))):
        argv[argv.index(flag) + 1] = value
    # The image puts the project's venv first on PATH.
    return [str(root / ".venv" / "bin" / argv[0]), *argv[1:]]


def kserve_venv(python: str, packages: dict[str, str], uv: str) -> Path:
    """A cached venv with kserve and the project's model libraries at the project's versions."""
    spec = [f"kserve=={KSERVE_VERSION}", *(f"{n}=={v}" for n, v in sorted(packages.items()))]
    key = re.sub(r"[^A-Za-z0-9.]+", "-", "-".join(spec))[:200]
    venv = CACHE / f"kserve-py{sys.version_info.major}{sys.version_info.minor}-{key}"
    done = venv / ".complete"
    if done.is_file():
        return venv
    shutil.rmtree(venv, ignore_errors=True)
    env = uv_env()
    run([uv, "venv", "--quiet", "--python", python, str(venv)], REPO, env)
    run(
        [uv, "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"), *spec],
        REPO,
        env,
    )
    done.write_text("\n".join(spec) + "\n")
    return venv


def project_versions(root: Path, names: list[str]) -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json, sys;"
        "print(json.dumps({n: m.version(n) for n in sys.argv[1:]}))"
    )
    out = run([str(root / ".venv" / "bin" / "python"), "-c", code, *names], root, dict(os.environ))
    versions: dict[str, str] = json.loads(out)
    return versions


class HealthProbe:
    """GETs the health path every PROBE_INTERVAL_S on its own keep-alive connection."""

    def __init__(self, port: int, path: str) -> None:
        self.port, self.path = port, path
        self.latencies: list[float] = []
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> HealthProbe:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=15)

    def _loop(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        while not self._stop.wait(PROBE_INTERVAL_S):
            start = time.perf_counter()
            try:
                conn.request("GET", self.path)
                response = conn.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            if ok:
                self.latencies.append(time.perf_counter() - start)
            else:
                self.failures += 1
        conn.close()


def cpu_seconds(pgid: int) -> float:
    """User + system CPU time of every live process in the process group (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid:  # fields[2] is pgrp; utime and stime follow at 11, 12
                total += int(fields[11]) + int(fields[12])
    return total / tick


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def wrk(
    server: Server, batch: int, args: argparse.Namespace, workdir: Path, seconds: int, probe: bool
) -> dict[str, float]:
    script = workdir / f"wrk-{server.name}-{batch}.lua"
    script.write_text(WRK_SCRIPT.format(body=server.body(batch).decode()))
    cmd = [
        args.wrk,
        f"-t{args.threads}",
        f"-c{args.connections}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        f"http://127.0.0.1:{server.port}{server.predict_path}",
    ]
    assert server.proc is not None
    cpu_before = cpu_seconds(server.proc.pid)
    with HealthProbe(server.port, server.health_path) if probe else contextlib.nullcontext() as hp:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=False)
    cpu = cpu_seconds(server.proc.pid) - cpu_before
    match = re.search(r"^BENCH (\{.*\})$", out.stdout, re.M)
    if out.returncode != 0 or match is None:
        raise SystemExit(f"wrk failed against {server.name}:\n{out.stdout}\n{out.stderr}")
    raw = json.loads(match.group(1))
    result = {
        "rps": raw["requests"] / (raw["duration_us"] / 1e6),
        "p50_ms": raw["p50_us"] / 1000,
        "p90_ms": raw["p90_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "max_ms": raw["max_us"] / 1000,
        "requests": raw["requests"],
        "errors": raw["non2xx"] + raw["socket_errors"],
        # CPU the server spent per request: steadier than req/s where other work shares the CPU.
        "cpu_ms_per_request": cpu * 1000 / max(1, raw["requests"]),
    }
    if isinstance(hp, HealthProbe):
        result.update(
            health_probes=len(hp.latencies),
            health_failures=hp.failures,
            health_p50_ms=percentile(hp.latencies, 0.50) * 1000,
            health_p99_ms=percentile(hp.latencies, 0.99) * 1000,
            health_max_ms=max(hp.latencies, default=float("nan")) * 1000,
        )
    return result


def check_equivalent(ours: Server, kserve: Server) -> None:
    """Both servers answer 200 and give the same probabilities for the same rows."""
    status, body = request(ours.port, "POST", ours.predict_path, ours.body(2))
    k_status, k_body = request(kserve.port, "POST", kserve.predict_path, kserve.body(2))
    if status != 200 or k_status != 200:
        raise SystemExit(
            f"predict failed: ours {status} {body[:300]!r}, KServe {k_status} {k_body[:300]!r}"
        )
    ours_p = json.loads(body)["probabilities"]
    theirs = json.loads(k_body)["predictions"]
    if len(ours_p) != 2 or any(abs(a - b) > 1e-6 for a, b in zip(ours_p, theirs, strict=True)):
        raise SystemExit(f"the servers disagree: ours {ours_p}, KServe {theirs}")


def servers(
    root: Path, workdir: Path, uv: str, framework: str, cpus: set[int] | None
) -> Iterator[Server]:
    slug = root.name
    models = workdir / "models"
    env = {**os.environ, "MODEL_DIR": str(models), "PYTHONUNBUFFERED": "1"}
    env.pop("VIRTUAL_ENV", None)
    run(
        [str(root / ".venv" / "bin" / "python"), "-m", f"{slug}.train", "--upload", "no"], root, env
    )
    version_dir = max((models / slug).iterdir(), key=lambda p: int(p.name))

    ours_port = free_port()
    yield Server(
        name="ours",
        argv=dockerfile_cmd(root, ours_port),
        cwd=root,
        env=env,
        health_path="/healthz",
        predict_path="/predict",
        body=lambda n: json.dumps({"instances": [ROW] * n}).encode(),
        log=workdir / "ours.log",
        cpus=cpus,
        port=ours_port,
    )

    venv = kserve_venv(sys.executable, project_versions(root, MODEL_PACKAGES[framework]), uv)
    runner = workdir / "kserve_runner.py"
    runner.write_text(KSERVE_RUNNER)
    k_port = free_port()
    k_env = {**env, "PYTHONPATH": str(root / "src")}  # the project's model.py, nothing installed
    row = [ROW[k] for k in ROW]
    yield Server(
        name="kserve",
        argv=[
            str(venv / "bin" / "python"),
            str(runner),
            "--http_port",
            str(k_port),
            "--enable_grpc",
            "false",
            "--enable_latency_logging",
            "false",
            "--workers",
            "1",
            "--model_dir",
            str(version_dir),
            "--model_module",
            f"{slug}.model",
            "--model_name",
            slug,
        ],
        cwd=workdir,
        env=k_env,
        health_path=f"/v1/models/{slug}",
        predict_path=f"/v1/models/{slug}:predict",
        body=lambda n: json.dumps({"instances": [row] * n}).encode(),
        log=workdir / "kserve.log",
        cpus=cpus,
        port=k_port,
    )


def summarise(ours: Server, theirs: Server, batches: list[int]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for batch in batches:
        a, b = ours.results[batch], theirs.results[batch]
        med = {
            s.name: {k: statistics.median(r[k] for r in rs) for k in rs[0]}
            for s, rs in ((ours, a), (theirs, b))
        }
        ratios = [x["rps"] / y["rps"] for x, y in zip(a, b, strict=True)]
        summary[f"batch{batch}"] = {
            **med,
            "rps_ratio_median": statistics.median(ratios),
            "rps_ratio_min": min(ratios),
            "rps_ratio_max": max(ratios),
            "rounds": {"ours": a, "kserve": b},
        }
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=15, help="seconds per load run")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of unmeasured load first")
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs per server")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--batches", default="1,32", help="rows per request, comma-separated")
    parser.add_argument("--framework", choices=["sklearn", "pytorch"], default="sklearn")
    parser.add_argument("--no-pin", action="store_true", help="don't pin servers and wrk to CPUs")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    uv, args.wrk = shutil.which("uv"), shutil.which("wrk")
    if uv is None or args.wrk is None:
        raise SystemExit("needs uv and wrk on PATH (Debian: apt-get install wrk)")
    if args.framework == "pytorch":
        try:
            importlib.metadata.version("torch")
        except importlib.metadata.PackageNotFoundError:
            print("note: torch is not installed here; the project's uv sync will fetch it")
    pin = not args.no_pin and len(os.sched_getaffinity(0)) >= 2
    server_cpus = {min(os.sched_getaffinity(0))} if pin else None

    tmp = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    started: list[Server] = []
    try:
        root = bake(tmp / "project", framework=args.framework, serving="yes")
        # As the image installs it, less --compile-bytecode: that only moves import time, and takes
        # minutes on a busy machine.
        run([uv, "sync", "--quiet", "--no-dev"], root, uv_env())
        ours, theirs = servers(root, tmp, uv, args.framework, server_cpus)
        for s in (ours, theirs):
            s.start()
            started.append(s)
        check_equivalent(ours, theirs)
        if pin:  # wrk and the probe thread run on the other CPUs
            os.sched_setaffinity(0, os.sched_getaffinity(0) - (server_cpus or set()))
        load_before = os.getloadavg()[0]
        for s in (ours, theirs):
            for batch in batches:
                wrk(s, batch, args, tmp, args.warmup, probe=False)
        for round_ in range(args.rounds):
            for batch in batches:
                order = (ours, theirs) if round_ % 2 == 0 else (theirs, ours)
                for s in order:
                    result = wrk(s, batch, args, tmp, args.duration, probe=True)
                    s.results.setdefault(batch, []).append(result)
        load_after = os.getloadavg()[0]
    finally:
        for s in started:
            s.stop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)

    figures = {
        "framework": args.framework,
        "kserve": KSERVE_VERSION,
        "cpus": os.cpu_count(),
        "pinned": pin,
        "load_avg_1m": [load_before, load_after],
        "wrk": {"threads": args.threads, "connections": args.connections, "seconds": args.duration},
        "rounds": args.rounds,
        **summarise(ours, theirs, batches),
    }
    print(
        f"{args.framework}: ours vs KServe {KSERVE_VERSION}, wrk -t{args.threads} "
        f"-c{args.connections} -d{args.duration}s, {args.rounds} alternating rounds, medians; "
        f"load average {load_before:.1f} -> {load_after:.1f} on {os.cpu_count()} CPUs"
    )
    print(
        f"{'rows':>4} {'server':<7} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6}"
        f" {'cpu ms/req':>10}"
        f" {'health p50':>10} {'health p99':>10} {'health max':>10}"
    )
    for batch in batches:
        summary = figures[f"batch{batch}"]
        for name in ("ours", "kserve"):
            m = summary[name]
            print(
                f"{batch:>4} {name:<7} {m['rps']:>7.0f} {m['p50_ms']:>7.1f} {m['p99_ms']:>7.1f}"
                f" {m['errors']:>6.0f} {m['cpu_ms_per_request']:>10.3f} {m['health_p50_ms']:>10.1f} {m['health_p99_ms']:>10.1f}"
                f" {m['health_max_ms']:>10.1f}"
            )
        print(
            f"{batch:>4} ratio   {summary['rps_ratio_median']:.2f}x req/s "
            f"(rounds {summary['rps_ratio_min']:.2f}-{summary['rps_ratio_max']:.2f})"
        )
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
