"""The generated project's retraining trigger against a real API server.

A project is generated for dev's real outputs and its infra program runs under mocks (as in
tests/templates/test_real_outputs.py); its namespace, the retrainer's ServiceAccount, Role and
RoleBinding are applied to a real control plane (RBAC on). Then the project's own
``retrain.submit`` runs with a token of that service account, as the CronJob's pod would: it must
create the training Job the program rendered, find it on the next check and start nothing, and be
refused anything its Role does not grant.
"""

from __future__ import annotations

import base64
import json
import urllib.error
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.control_plane import ControlPlane, binaries_dir, start
from tests.templates.helpers import load_package_module
from tests.templates.test_real_outputs import deploy, registered_plan

pytestmark = [pytest.mark.control_plane, pytest.mark.xdist_group("control-plane")]


@pytest.fixture(scope="module")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    binaries_dir()  # skips (fails in CI) without the binaries
    cp = start(tmp_path_factory.mktemp("retrain-cp") / "run")
    try:
        yield cp
    finally:
        cp.stop()


def _server_and_ca(cp: ControlPlane, tmp_path: Path) -> tuple[str, str]:
    cluster = yaml.safe_load(cp.kubeconfig.read_text())["clusters"][0]["cluster"]
    ca = cluster.get("certificate-authority")
    if ca is None:
        ca = str(tmp_path / "ca.crt")
        Path(ca).write_bytes(base64.b64decode(cluster["certificate-authority-data"]))
    return cluster["server"], ca


def test_the_trigger_creates_the_run_with_its_own_token_and_nothing_else(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    options = {"project_name": "Demand Forecast"}
    # Registered as new-project prints it: the namespace and accounts are the platform's.
    platform = registered_plan("dev", [options], tmp_path / "stacks")
    root, graph = deploy(tmp_path / "p", platform, options)
    ns = root.name.replace("_", "-")
    account = f"{ns}-retrainer"
    manifests = graph.manifests()

    def named(kind: str, name: str, source: list[dict[str, Any]] = manifests) -> dict[str, Any]:
        (m,) = [x for x in source if x["kind"] == kind and x["metadata"]["name"] == name]
        return m

    objects = [
        named("Namespace", ns, platform["manifests"]),
        named("ServiceAccount", account, platform["manifests"]),
        named("Role", account),
        named("RoleBinding", account),
    ]
    applied = control_plane.kubectl.apply(objects)
    assert applied.returncode == 0, applied.stderr
    token = control_plane.kubectl("create", "token", account, "--namespace", ns).stdout.strip()
    server, ca = _server_and_ca(control_plane, tmp_path)
    retrain = load_package_module(root, "retrain")
    api = retrain.KubeApi(server, token, ca)
    template = tmp_path / "job.json"
    template.write_text(named("ConfigMap", f"{ns}-retrain-run")["data"]["job.json"])

    name, why = retrain.submit(template, api, cooldown_h=24)
    assert name is not None, why
    job = control_plane.kubectl.json("job", name, "--namespace", ns)
    assert job["metadata"]["labels"][retrain.TRIGGER_LABEL] == retrain.TRIGGER
    assert job["spec"]["suspend"] is True  # Kueue's to admit
    # The API server labels the pods with the Job's name: RUN_ID (a fieldRef) is the run's name.
    assert job["spec"]["template"]["metadata"]["labels"]["batch.kubernetes.io/job-name"] == name
    assert job["spec"]["template"]["spec"]["serviceAccountName"] == f"{ns}-trainer"

    # The next hour: the run is still queued, so the trigger lists it and starts nothing.
    again, why = retrain.submit(template, api, cooldown_h=24)
    assert again is None
    assert f"{name} is still queued or running" in why

    # Least privilege: the token may not read Secrets or create anything but Jobs.
    for method, path, body in (
        ("GET", f"/api/v1/namespaces/{ns}/secrets", None),
        ("POST", f"/apis/apps/v1/namespaces/{ns}/deployments", {"metadata": {"name": "x"}}),
        ("DELETE", f"/apis/batch/v1/namespaces/{ns}/jobs/{name}", None),
        ("GET", "/apis/batch/v1/namespaces/default/jobs", None),
    ):
        with pytest.raises(urllib.error.HTTPError) as refused:
            api._call(method, path, body)
        assert refused.value.code == 403, (method, path)
    listed = control_plane.kubectl.json("jobs", "--namespace", ns)["items"]
    assert [j["metadata"]["name"] for j in listed] == [name]
    assert json.loads(template.read_text())["metadata"]["name"] == f"{ns}-retrain"
