"""Drive a locally built Pulumi engine (CLI, Python language host, Kubernetes provider) offline.

The engine is found on PATH, or in the folder named by ``MLPLATFORM_ENGINE_DIR`` (prepended to
PATH); ``scripts/build-engine.sh`` builds one. Without all three binaries the tests skip, saying
which are missing. Each project gets its own ``file://`` backend and ``PULUMI_HOME`` in a temporary
folder, and plugins are never downloaded: the ones on PATH are used.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tests.conftest import missing_tool
from tests.integration.engine_programs import RENDER_DIR_ENV

REPO = Path(__file__).resolve().parents[2]
ENGINE_DIR_ENV = "MLPLATFORM_ENGINE_DIR"
POLICY_VENV_ENV = "MLPLATFORM_POLICY_VENV"
BINARIES = ("pulumi", "pulumi-language-python", "pulumi-resource-kubernetes")
STACK = "engine-test"
TIMEOUT_S = 600


def engine_folder() -> str | None:
    """``MLPLATFORM_ENGINE_DIR``, else scripts/build-engine.sh's default folder if it exists."""
    default = Path.home() / ".cache" / "ml-platform-engine"
    return os.environ.get(ENGINE_DIR_ENV) or (str(default) if default.is_dir() else None)


def engine_search_path(extra: tuple[str, ...] = ()) -> str:
    """PATH with ``MLPLATFORM_ENGINE_DIR`` in front; skips the test (fails it in CI) when a
    binary is missing."""
    path = os.environ.get("PATH", "")
    engine_dir = engine_folder()
    if engine_dir:
        path = os.pathsep.join([str(Path(engine_dir).resolve()), path])
    missing = [b for b in (*BINARIES, *extra) if shutil.which(b, path=path) is None]
    if missing:
        where = f"{ENGINE_DIR_ENV}={engine_dir} or PATH" if engine_dir else "PATH"
        missing_tool(
            f"engine binaries not found on {where}: {', '.join(missing)} "
            "(build them with scripts/build-engine.sh, then set "
            f"{ENGINE_DIR_ENV}; see docs/integration-tests.md)"
        )
    return path


def policy_venv() -> Path:
    """The virtualenv the policy pack runs in.

    ``MLPLATFORM_POLICY_VENV``, else ``<engine dir>/policy-venv`` (built by build-engine.sh from
    policies/requirements.txt), else the environment running the tests, whose test group pins the
    same pulumi and pulumi-policy.
    """
    if explicit := os.environ.get(POLICY_VENV_ENV):
        return Path(explicit).resolve()
    engine_dir = engine_folder()
    if engine_dir and (Path(engine_dir) / "policy-venv" / "bin" / "python").exists():
        return (Path(engine_dir) / "policy-venv").resolve()
    return Path(sys.prefix)


def copy_policy_pack(dest: Path) -> Path:
    """The repository's pack, copied so its virtualenv option can point outside the repository."""
    pack = dest / "policies"
    shutil.copytree(
        REPO / "policies", pack, ignore=shutil.ignore_patterns("venv", "__pycache__", "*.pyc")
    )
    meta_file = pack / "PulumiPolicy.yaml"
    meta = yaml.safe_load(meta_file.read_text())
    meta["runtime"]["options"]["virtualenv"] = str(policy_venv())
    meta_file.write_text(yaml.safe_dump(meta, sort_keys=False))
    return pack


@dataclass
class Result:
    args: list[str]
    returncode: int
    output: str
    seconds: float


class _Project:
    """A throwaway project folder with its own ``file://`` backend and ``PULUMI_HOME``."""

    root: Path
    search_path: str
    work: Path
    stack: str
    extra_env: dict[str, str]

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "PATH": self.search_path,
                "PYTHONPATH": str(REPO),
                "PULUMI_HOME": str(self.root / "home"),
                "PULUMI_BACKEND_URL": f"file://{self.root / 'state'}",
                "PULUMI_CONFIG_PASSPHRASE": "engine-test-only",
                "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
                "PULUMI_SKIP_UPDATE_CHECK": "true",
                "PULUMI_SKIP_CONFIRMATIONS": "true",
            }
        )
        env.update(self.extra_env)
        return env

    def pulumi(self, *args: str) -> Result:
        cmd = ["pulumi", *args, "--non-interactive", "--color", "never"]
        if args[:2] != ("stack", "init"):
            cmd += ["--stack", self.stack]
        start = time.monotonic()
        proc = subprocess.run(
            cmd,
            cwd=self.work,
            env=self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=TIMEOUT_S,
            check=False,
        )
        result = Result(cmd, proc.returncode, proc.stdout, time.monotonic() - start)
        # shown with `pytest -s`, or by pytest when the test fails
        print(f"$ {' '.join(cmd)}  ({result.seconds:.1f}s, rc={result.returncode})\n{proc.stdout}")
        return result

    def _folders(self) -> None:
        self.work.mkdir(parents=True)
        (self.root / "state").mkdir()
        (self.root / "home").mkdir()


@dataclass
class EngineProject(_Project):
    """A throwaway Pulumi project whose ``__main__.py`` runs one of ``engine_programs.PROGRAMS``."""

    root: Path
    search_path: str
    program: str
    render_dir: Path
    extra_env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.work = self.root / "project"
        self.stack = STACK
        self._folders()
        project = {
            "name": "mlplatform-engine-test",
            "runtime": {"name": "python", "options": {"virtualenv": sys.prefix}},
        }
        (self.work / "Pulumi.yaml").write_text(yaml.safe_dump(project, sort_keys=False))
        (self.work / "__main__.py").write_text(
            "from tests.integration.engine_programs import PROGRAMS\n\n"
            f"PROGRAMS[{self.program!r}]()\n"
        )
        self.extra_env = {RENDER_DIR_ENV: str(self.render_dir), **self.extra_env}
        init = self.pulumi("stack", "init", STACK)
        assert init.returncode == 0, f"stack init failed:\n{init.output}"


@dataclass
class StackProject(_Project):
    """The repository's own project (its Pulumi.yaml, config block and all) and one shipped
    stack file, copied to a throwaway folder. Only ``runtime.options`` changes: the program runs in
    this test's virtualenv, which holds the project, instead of a ``uv`` toolchain in the copy.
    ``program`` names an ``engine_programs.PROGRAMS`` entry, or None for the repository's own
    ``__main__.py``."""

    root: Path
    search_path: str
    stack: str
    program: str | None = None
    extra_env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.work = self.root / "project"
        self._folders()
        project = yaml.safe_load((REPO / "Pulumi.yaml").read_text())
        project["runtime"] = {"name": "python", "options": {"virtualenv": sys.prefix}}
        (self.work / "Pulumi.yaml").write_text(yaml.safe_dump(project, sort_keys=False))
        (self.work / "stacks").mkdir()
        stack_file = f"Pulumi.{self.stack}.yaml"
        shutil.copy(REPO / "stacks" / stack_file, self.work / "stacks" / stack_file)
        if self.program is None:
            shutil.copy(REPO / "__main__.py", self.work / "__main__.py")
        else:
            (self.work / "__main__.py").write_text(
                "from tests.integration.engine_programs import PROGRAMS\n\n"
                f"PROGRAMS[{self.program!r}]()\n"
            )
        init = self.pulumi("stack", "init", self.stack, "--secrets-provider", "passphrase")
        assert init.returncode == 0, f"stack init failed:\n{init.output}"

    @property
    def stack_file(self) -> Path:
        return self.work / "stacks" / f"Pulumi.{self.stack}.yaml"
