"""A real Kubernetes control plane for the tests: start, shape, apply, inspect, stop.

``scripts/control-plane.sh`` starts etcd, kube-apiserver, kube-controller-manager, kube-scheduler
and kwok (built by ``scripts/build-control-plane.sh``) on 127.0.0.1; this module drives it from
pytest. The CRDs come from a folder of CRD YAML files: ``MLPLATFORM_CRDS_DIR``, else what
``scripts/build-validators.sh`` writes (the CRDs kubectl-validate checks against). Without the
binaries or the CRDs the tests skip, and in CI (``CI=true``) they fail.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import missing_tool

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts"
CONTROL_PLANE_DIR_ENV = "MLPLATFORM_CONTROL_PLANE_DIR"
CRDS_DIR_ENV = "MLPLATFORM_CRDS_DIR"
CONTEXT = "mlplatform-control-plane"
# scripts/control-plane.sh waits up to CONTROL_PLANE_TIMEOUT (600 s) per component.
START_TIMEOUT_S = 1500
# What a kind cluster (the local stack's documented target) brings: its default StorageClass.
KIND_STORAGE_CLASS = {
    "apiVersion": "storage.k8s.io/v1",
    "kind": "StorageClass",
    "metadata": {
        "name": "standard",
        "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
    },
    "provisioner": "rancher.io/local-path",
    "reclaimPolicy": "Delete",
    "volumeBindingMode": "WaitForFirstConsumer",
}
BINARIES = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
    "kubectl",
)


def binaries_dir() -> Path:
    path = Path(
        os.environ.get(CONTROL_PLANE_DIR_ENV) or Path.home() / ".cache/ml-platform-control-plane"
    )
    missing = [b for b in BINARIES if not (path / b).is_file()]
    if missing:
        missing_tool(
            f"control-plane binaries not found in {path}: {', '.join(missing)} (build them with "
            f"scripts/build-control-plane.sh, or set {CONTROL_PLANE_DIR_ENV})"
        )
    return path


def crds_dir() -> Path:
    path = Path(os.environ.get(CRDS_DIR_ENV) or Path.home() / ".cache/ml-platform-validators/crds")
    if not any(path.glob("*.yaml")):
        missing_tool(
            f"no CRD files in {path} (fetch them with scripts/build-validators.sh, "
            f"or set {CRDS_DIR_ENV} to a folder of CRD YAML files)"
        )
    return path


@dataclass
class Kubectl:
    binary: Path
    kubeconfig: Path

    def __call__(
        self, *args: str, stdin: str | None = None, check: bool = True, timeout: int = 300
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(self.binary), f"--kubeconfig={self.kubeconfig}", *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}{proc.stdout}"
            )
        return proc

    def json(self, *args: str) -> Any:
        return json.loads(self("get", *args, "-o", "json").stdout)

    def apply(
        self, objects: Iterable[Mapping[str, Any]], *extra: str
    ) -> subprocess.CompletedProcess[str]:
        docs = yaml.safe_dump_all([dict(o) for o in objects], sort_keys=False)
        return self(
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            "-",
            *extra,
            stdin=docs,
            check=False,
        )


@dataclass
class ControlPlane:
    run_dir: Path
    bin_dir: Path
    kubectl: Kubectl = field(init=False)

    def __post_init__(self) -> None:
        self.kubectl = Kubectl(self.bin_dir / "kubectl", self.kubeconfig)

    @property
    def kubeconfig(self) -> Path:
        return self.run_dir / "kubeconfig"

    def stop(self) -> None:
        subprocess.run(
            [str(SCRIPTS / "control-plane.sh"), "stop", str(self.run_dir)],
            env={**os.environ, CONTROL_PLANE_DIR_ENV: str(self.bin_dir)},
            capture_output=True,
            timeout=120,
            check=False,
        )

    def logs(self) -> str:
        """The last lines of each component's log, for a failing test's report."""
        out = []
        for log in sorted(self.run_dir.glob("*.log")):
            lines = log.read_text(errors="replace").splitlines()[-15:]
            out.append(f"--- {log.name}\n" + "\n".join(lines))
        return "\n".join(out)

    # Shaping ---------------------------------------------------------------------------------
    def install_crds(self, folder: Path) -> None:
        """Every CRD file in the folder (kubectl reads them: some hold YAML that PyYAML cannot)."""
        result = self.kubectl("apply", "--server-side", "-f", str(folder), check=False)
        assert result.returncode == 0, f"CRDs from {folder} rejected:\n{result.stderr}"
        self.kubectl("wait", "--for=condition=Established", "--timeout=180s", "crd", "--all")

    def add_nodes(self, nodes: Iterable[Mapping[str, Any]]) -> list[str]:
        """Create the Node objects (status included, as a kubelet would report it); kwok marks
        them Ready."""
        nodes = list(nodes)
        docs = yaml.safe_dump_all([dict(n) for n in nodes], sort_keys=False)
        self.kubectl("create", "-f", "-", stdin=docs)
        names = [n["metadata"]["name"] for n in nodes]
        self.kubectl(
            "wait", "--for=condition=Ready", "--timeout=120s", *[f"node/{n}" for n in names]
        )
        return names

    # Waiting ---------------------------------------------------------------------------------
    def settle(self, timeout_s: float = 90, quiet_s: float = 6) -> None:
        """Wait until pods stop changing: every pod Running or Succeeded, or nothing has moved
        for ``quiet_s`` (a pod that cannot schedule stays Pending; the tests say why)."""
        deadline = time.monotonic() + timeout_s
        last, since = None, time.monotonic()
        while time.monotonic() < deadline:
            pods = self.kubectl.json("pods", "-A")["items"]
            state = sorted(
                (
                    p["metadata"]["namespace"],
                    p["metadata"]["name"],
                    p["status"].get("phase"),
                    p["spec"].get("nodeName"),
                )
                for p in pods
            )
            if state and all(s[2] in ("Running", "Succeeded") for s in state):
                return
            if state != last:
                last, since = state, time.monotonic()
            elif time.monotonic() - since >= quiet_s:
                return
            time.sleep(1)


def start(run_dir: Path) -> ControlPlane:
    """Start a control plane in a new ``run_dir``; on any failure, stop what was started."""
    bin_dir = binaries_dir()
    cp = ControlPlane(run_dir, bin_dir)
    try:
        proc = subprocess.run(
            [str(SCRIPTS / "control-plane.sh"), "start", str(run_dir)],
            env={**os.environ, CONTROL_PLANE_DIR_ENV: str(bin_dir)},
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        cp.stop()
        raise AssertionError(
            f"control plane not ready in {START_TIMEOUT_S} s:\n{cp.logs()}"
        ) from None
    if proc.returncode != 0:
        cp.stop()
        raise AssertionError(f"control plane did not start:\n{proc.stderr}\n{cp.logs()}")
    return cp


@dataclass
class ControlPlanes:
    """One control plane per key, started on first use and stopped at the end of the session.
    A key whose start failed fails again at once, without another start."""

    root: Path
    started: dict[str, ControlPlane] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)

    def get(self, key: str) -> ControlPlane:
        if key in self.failed:
            raise AssertionError(
                f"control plane {key} failed to start earlier:\n{self.failed[key]}"
            )
        if key not in self.started:
            try:
                self.started[key] = start(
                    self.root / f"{key}-{len(self.failed) + len(self.started)}"
                )
            except AssertionError as exc:
                self.failed[key] = str(exc)
                raise
        return self.started[key]

    def stop(self, key: str) -> None:
        if cp := self.started.pop(key, None):
            cp.stop()

    def stop_all(self) -> None:
        for key in list(self.started):
            self.stop(key)


def offline_plan(stack: str, out: Path) -> dict[str, Any]:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlplatform.cli",
            "plan",
            "--stack",
            stack,
            "--format",
            "json",
            "--out",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)
