"""Manifests through ``kubectl-validate``: the API server's own validation code, run offline.

Custom resources are checked against the CRDs of the versions the platform pins (their OpenAPI
schemas and their CEL rules, ``x-kubernetes-validations``), built-in kinds against the OpenAPI
documents of the Kubernetes version the stacks run. Unknown fields are errors, as they are for
``kubectl apply --validate=strict``; a kind with no CRD is an error, never a silent pass.

``scripts/build-validators.sh`` builds the three inputs from the Go module proxy, as listed in
``scripts/crd-sources.txt``; the environment variables below point at them (default: that
script's default folder). Without them the tests skip on a developer's machine and fail in CI.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlplatform.mocks import SECRET_PLACEHOLDER

ROOT = Path(__file__).resolve().parents[1]
SOURCES_FILE = ROOT / "scripts" / "crd-sources.txt"
BUILD = "scripts/build-validators.sh"
DEFAULT_OUT = Path.home() / ".cache" / "ml-platform-validators"
ENV = {
    "binary": ("MLPLATFORM_KUBECTL_VALIDATE", DEFAULT_OUT / "bin" / "kubectl-validate"),
    "crds": ("MLPLATFORM_CRDS_DIR", DEFAULT_OUT / "crds"),
    "openapi": ("MLPLATFORM_KUBE_OPENAPI_DIR", DEFAULT_OUT / "openapi"),
}
# kubectl-validate's fallback for a built-in group missing from --local-schemas: the newest version
# it embeds. Every group the stacks use is in the local documents, which take precedence.
EMBEDDED_VERSION = "1.30"
# Follows any real error on a custom resource: CEL rules are skipped on an invalid object.
_NOT_CHECKED = "some validation rules were not checked"


@dataclass(frozen=True)
class Source:
    """One row of scripts/crd-sources.txt."""

    name: str
    pinned: str
    module: str
    version: str
    files: str

    @property
    def line(self) -> str:
        return " ".join((self.name, self.pinned, self.module, self.version, self.files))


def _data_lines(text: str) -> list[str]:
    return [
        line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")
    ]


def sources() -> dict[str, Source]:
    return {
        s.name: s for s in (Source(*line.split()) for line in _data_lines(SOURCES_FILE.read_text()))
    }


def _rows(text: str) -> list[str]:
    """Rows with their whitespace normalised, to compare a build's SOURCES with the repository's."""
    return [" ".join(line.split()) for line in _data_lines(text)]


@dataclass(frozen=True)
class KubectlValidate:
    binary: Path
    crds: Path
    openapi: Path

    @functools.cached_property
    def crd_files(self) -> dict[tuple[str, str], Path]:
        """(group, kind) -> the file of its CRD."""
        out = {}
        for path in sorted(self.crds.glob("*.yaml")):
            crd = _crd_head(path)
            out[(crd["spec"]["group"], crd["spec"]["names"]["kind"])] = path
        return out

    def crd_names(self, row: str) -> list[str]:
        """The names of the CRDs built from one row of crd-sources.txt (OUT/crds/CONTENTS)."""
        contents = self.crds / "CONTENTS"
        if not contents.exists():
            raise FileNotFoundError(f"no {contents}: rerun {BUILD}")
        pairs = (line.split() for line in contents.read_text().splitlines() if line.strip())
        return sorted(_crd_head(self.crds / f)["metadata"]["name"] for r, f in pairs if r == row)

    def problems(self, manifests: Sequence[Mapping[str, Any]]) -> list[list[str]]:
        """For each manifest, every way the API server would reject it (``[]`` when valid)."""
        if not manifests:
            return []
        with tempfile.TemporaryDirectory(prefix="kubectl-validate-") as tmp:
            # Only the CRDs these manifests use: reading all of them takes seconds per run.
            crds = Path(tmp) / "crds"
            crds.mkdir()
            for m in manifests:
                group = str(m.get("apiVersion", "")).rpartition("/")[0]
                if found := self.crd_files.get((group, str(m.get("kind")))):
                    (crds / found.name).unlink(missing_ok=True)
                    (crds / found.name).symlink_to(found)
            folder = Path(tmp) / "manifests"
            folder.mkdir()
            names = [f"{i:04d}.json" for i in range(len(manifests))]
            for name, manifest in zip(names, manifests, strict=True):
                (folder / name).write_text(json.dumps(_stand_in_secrets(manifest)))
            env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")}
            # Never consult a cluster: the validator would prefer a live API server's schemas.
            env["KUBECONFIG"] = str(Path(tmp) / "no-kubeconfig")
            done = subprocess.run(
                [
                    str(self.binary),
                    str(folder),
                    f"--local-crds={crds}",
                    f"--local-schemas={self.openapi}",
                    f"--version={EMBEDDED_VERSION}",
                    "--output=json",
                ],
                capture_output=True,
                text=True,
                env=env,
                check=False,
                timeout=300,
            )
            try:
                report = json.loads(done.stdout)
            except json.JSONDecodeError:
                raise RuntimeError(
                    f"kubectl-validate exited {done.returncode}: {done.stderr or done.stdout}"
                ) from None
            by_name = {Path(path).name: statuses for path, statuses in report.items()}
            return [_messages(by_name[name]) for name in names]

    def assert_valid(self, manifests: Sequence[Mapping[str, Any]]) -> None:
        """Fail with every problem of every manifest at once, each named by kind and name."""
        found = [
            f"{m.get('kind')} {m.get('metadata', {}).get('name')}: {p}"
            for m, problems in zip(manifests, self.problems(manifests), strict=True)
            for p in problems
        ]
        assert not found, "kubectl-validate rejects:\n  " + "\n  ".join(found)


def _crd_head(path: Path) -> dict[str, Any]:
    """A CRD's group and names without parsing its (often huge) schemas."""
    text = path.read_text()
    head, found, _ = text.partition("\n  versions:\n")
    crd = yaml.safe_load(head if found else text)
    if not (isinstance(crd, dict) and "group" in crd.get("spec", {})):
        crd = yaml.safe_load(text)  # versions listed before the names
    return crd


def _messages(statuses: list[dict[str, Any]]) -> list[str]:
    out = []
    for status in statuses:
        if status.get("status") == "Success":
            continue
        causes = (status.get("details") or {}).get("causes") or []
        lines = [
            f"{c['field']}: {c['message']}" if c.get("field") else c["message"]
            for c in causes
            if _NOT_CHECKED not in c.get("message", "")
        ]
        out += lines or [status.get("message", json.dumps(status))]
    return out


def _stand_in_secrets(manifest: Mapping[str, Any]) -> Mapping[str, Any]:
    """Plans print secret maps as a placeholder string; validate the shape with a stand-in."""
    if manifest.get("kind") != "Secret":
        return manifest
    out = dict(manifest)
    for key in ("data", "stringData"):
        if out.get(key) == SECRET_PLACEHOLDER:
            out[key] = {"redacted": "eA=="}
    return out


def find() -> KubectlValidate:
    """The validator and its inputs; skips (fails in CI) when they are missing or stale."""
    paths = {key: Path(os.environ.get(var) or default) for key, (var, default) in ENV.items()}
    problems = [
        f"no {paths[key]} ({var})" for key, (var, _) in ENV.items() if not paths[key].exists()
    ]
    rows = _rows(SOURCES_FILE.read_text())
    # the rows each folder is built from, as build-validators.sh selects them
    want = {
        "crds": [r for r in rows if r.endswith(".yaml")],
        "openapi": [r for r in rows if r.startswith("kubernetes ")],
    }
    for key, expected in want.items():
        stamp = paths[key] / "SOURCES"
        built = _rows(stamp.read_text()) if stamp.exists() else []
        if paths[key].exists() and built != expected:
            problems.append(f"{paths[key]} was not built from scripts/crd-sources.txt as it is now")
    if problems:
        reason = "; ".join(problems) + f' (run `eval "$({BUILD})"`)'
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"kubectl-validate is required in CI: {reason}")
        pytest.skip(f"kubectl-validate not available: {reason}")
    return KubectlValidate(**paths)
