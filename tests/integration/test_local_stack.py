"""The local stack through the real engine: Automation API, a `file://` backend in a temp folder,
a kind (or any) cluster. Preview, up, `mlplatform verify`, a no-change preview, destroy.

Skipped, with the reason, when the `pulumi` CLI is not on PATH, stacks/Pulumi.local.yaml is
absent, or the stack's kubeContext (or MLPLATFORM_KUBE_CONTEXT) names no reachable cluster.
How to run them: docs/integration-tests.md."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlplatform import program, verify
from mlplatform.cli import main as cli_main

pytestmark = pytest.mark.engine

REPO = Path(__file__).resolve().parents[2]
STACK = "local"
STACK_FILE = REPO / "stacks" / f"Pulumi.{STACK}.yaml"
CONTEXT_KEY = "ml-platform:kubeContext"


def _log(line: str) -> None:
    print(line, end="" if line.endswith("\n") else "\n")  # shown with `pytest -s` or on failure


@pytest.fixture(scope="module")
def kube_context() -> str:
    engine_dir = os.environ.get("MLPLATFORM_ENGINE_DIR")  # a locally built engine, if any
    if engine_dir:
        os.environ["PATH"] = os.pathsep.join([str(Path(engine_dir).resolve()), os.environ["PATH"]])
    if shutil.which("pulumi") is None:
        pytest.skip(
            "the pulumi CLI is not on PATH or in MLPLATFORM_ENGINE_DIR "
            "(https://www.pulumi.com/docs/install/ or scripts/build-engine.sh); "
            "the Automation API drives it"
        )
    if not STACK_FILE.is_file():
        pytest.skip(f"{STACK_FILE.relative_to(REPO)} does not exist")
    config = (yaml.safe_load(STACK_FILE.read_text()) or {}).get("config", {})
    context = os.environ.get("MLPLATFORM_KUBE_CONTEXT") or config.get(CONTEXT_KEY)
    if not context:
        pytest.skip(f"{STACK_FILE.name} sets no {CONTEXT_KEY} and MLPLATFORM_KUBE_CONTEXT is unset")

    from kubernetes import client
    from kubernetes import config as kube_config

    try:
        api_client = kube_config.new_client_from_config(context=context)
        client.VersionApi(api_client).get_code(_request_timeout=5)
    except Exception as exc:
        pytest.skip(
            f"no cluster reachable for kube context {context!r} ({type(exc).__name__}: {exc}); "
            "create one with `kind create cluster --name mlplatform`"
        )
    return str(context)


@pytest.fixture(scope="module")
def stack(kube_context: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The `local` stack in a throwaway project folder and file backend; destroyed afterwards."""
    from pulumi import automation as auto

    work = tmp_path_factory.mktemp("project")
    state = tmp_path_factory.mktemp("state")
    # A copy of the project, so that `stack init` writes its encryption salt there, not into
    # the repository's stack file.
    shutil.copy(REPO / "Pulumi.yaml", work / "Pulumi.yaml")
    (work / "stacks").mkdir()
    shutil.copy(STACK_FILE, work / "stacks" / STACK_FILE.name)
    env = {
        "PULUMI_BACKEND_URL": f"file://{state}",
        "PULUMI_CONFIG_PASSPHRASE": "integration-test-only",
        "PULUMI_SKIP_UPDATE_CHECK": "true",
    }
    project = yaml.safe_load((REPO / "Pulumi.yaml").read_text())["name"]
    st = auto.create_or_select_stack(
        stack_name=STACK,
        project_name=project,
        program=program.main,  # inline: the engine runs the repository's program in-process
        opts=auto.LocalWorkspaceOptions(work_dir=str(work), env_vars=env),
    )
    st.set_config(CONTEXT_KEY, auto.ConfigValue(kube_context))
    try:
        yield st
    finally:
        st.destroy(on_output=_log)
        st.workspace.remove_stack(STACK)


def test_preview_plans_the_local_platform(stack: Any) -> None:
    preview = stack.preview(on_output=_log)
    assert preview.change_summary.get("create", 0) > 0
    assert preview.change_summary.get("delete", 0) == 0


def test_up_then_verify(stack: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    up = stack.up(on_output=_log)
    assert up.summary.result == "succeeded"
    outputs = {name: out.value for name, out in up.outputs.items()}
    assert outputs["platform"] == "local"
    types = {r["type"] for r in stack.export_stack().deployment.get("resources", [])}
    assert not {t for t in types if t.startswith("aws:")}  # the local stack declares no AWS

    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(outputs))
    capsys.readouterr()
    code = cli_main(["verify", "--stack", STACK, "--outputs", str(path), "--format", "json"])
    report = json.loads(capsys.readouterr().out)
    failures = {c["name"]: c["detail"] for c in report["checks"] if not c["ok"]}
    assert code == 0, failures
    checked = {c["name"] for c in report["checks"] if c["status"] == "pass"}
    assert {"k8s.nodes-ready", "k8s.prometheus-targets", "k8s.alertmanager"} <= checked
    for endpoint in outputs.get("servingEndpoints") or {}:
        assert f"k8s.serving.{endpoint}.request" in checked

    # A second run changes nothing: no perpetual diff (random names, unpinned charts, ...).
    stack.preview(expect_no_changes=True, on_output=_log)


def test_verify_reads_outputs_from_the_engine(stack: Any) -> None:
    """What `verify` does without --outputs, checked through the same engine state."""
    outputs = stack.outputs()
    if not outputs:
        pytest.skip("the stack was not deployed (test_up_then_verify failed or was deselected)")
    results = verify.run_checks({k: v.value for k, v in outputs.items()}, skip_aws=True)
    assert all(r.ok for r in results), [r for r in results if not r.ok]
