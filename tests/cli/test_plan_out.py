"""`plan --out DIR`: files `kubectl apply -f DIR` accepts, secrets redacted by key, nothing stale,
and a README of what is not rendered there."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from mlplatform.cli import main
from mlplatform.render import (
    OUT_MARKER,
    OutDirError,
    prepare_out_dir,
    redact_secrets,
    write_manifests,
)
from tests.shipped import shipped_plan

STACKS = ("dev", "prod")


@pytest.fixture(scope="module", params=STACKS)
def written(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp(f"out-{request.param}")
    assert main(["plan", "--stack", request.param, "--out", str(out), "--format", "json"]) == 0
    return request.param, out


def _docs(out: Path) -> dict[str, dict[str, Any]]:
    return {p.name: yaml.safe_load(p.read_text()) for p in sorted(out.glob("*.yaml"))}


def _builtin(m: dict[str, Any]) -> bool:
    group = m["apiVersion"].rpartition("/")[0]
    return group in ("", "apps", "batch", "networking.k8s.io", "policy",
                     "rbac.authorization.k8s.io", "storage.k8s.io", "autoscaling",
                     "scheduling.k8s.io")  # fmt: skip


def test_every_builtin_file_validates_strictly(written: tuple[str, Path]) -> None:
    _, out = written
    docs = _docs(out)
    assert docs
    for name, doc in docs.items():
        if _builtin(doc):
            kubernetes_validate.validate(doc, "1.33", strict=True), name


@pytest.fixture(scope="module")
def plans() -> dict[str, dict[str, Any]]:
    return {stack: shipped_plan(stack) for stack in STACKS}


def test_secrets_keep_their_keys_and_lose_their_values(
    written: tuple[str, Path], plans: dict[str, dict[str, Any]]
) -> None:
    stack, out = written
    recorded = {
        r["inputs"]["metadata"]["name"]: r.get("secretKeys", {})
        for r in plans[stack]["resources"]
        if r["type"] == "kubernetes:core/v1:Secret"
    }
    secrets = {d["metadata"]["name"]: d for d in _docs(out).values() if d["kind"] == "Secret"}
    assert set(secrets) == set(recorded)
    for name, secret in secrets.items():
        data = secret.get("stringData") or {}  # a Secret with no values has none
        assert isinstance(data, dict), name
        assert sorted(data) == recorded[name].get("stringData", []), name
        assert set(data.values()) <= {"[secret]"}
    assert set(secrets["grafana-admin"]["stringData"]) == {"admin-user", "admin-password"}
    # The plan itself never shows a secret value.
    for m in plans[stack]["manifests"]:
        if m["kind"] == "Secret":
            assert m.get("stringData") in (None, "[secret]")


def test_data_values_stay_valid_base64() -> None:
    manifest = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": "[secret]"}
    redacted = redact_secrets(manifest, {"data": ["token"]})
    assert redacted["data"] == {"token": "W3NlY3JldF0="}  # base64 of "[secret]"
    assert redact_secrets({**manifest, "data": {"a": "c2VjcmV0"}}, {})["data"] == {
        "a": "W3NlY3JldF0="
    }


def test_readme_lists_what_is_not_rendered_and_how_to_get_it(
    written: tuple[str, Path], plans: dict[str, dict[str, Any]]
) -> None:
    stack, out = written
    readme = (out / "README.md").read_text()
    for release in plans[stack]["helmReleases"]:
        assert f"helm upgrade --install {release['name']} " in readme
        values = out / "helm-values" / f"{release['name']}.yaml"
        assert yaml.safe_load(values.read_text()) == release["values"]
    assert "kubectl apply --server-side -k 'https://github.com/kubeflow/trainer" in readme
    assert "Secret values" in readme
    assert "`pulumi up` creates them" in readme


def test_a_second_run_leaves_nothing_stale(
    tmp_path: Path, plans: dict[str, dict[str, Any]]
) -> None:
    plan = plans["dev"]
    write_manifests(plan, prepare_out_dir(tmp_path))
    first = {p.name for p in tmp_path.glob("*.yaml")}
    (tmp_path / "10999_configmap_gone_old.yaml").write_text("kind: ConfigMap\n")
    (tmp_path / "leftover.json").write_text("{}")
    (tmp_path / "notes.txt").write_text("mine")
    write_manifests(plan, prepare_out_dir(tmp_path))
    assert {p.name for p in tmp_path.glob("*.yaml")} == first
    assert not (tmp_path / "leftover.json").exists()
    assert (tmp_path / "notes.txt").read_text() == "mine"  # not something kubectl applies
    assert (tmp_path / OUT_MARKER).is_file()


def test_a_folder_of_other_files_is_refused_unless_forced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], plans: dict[str, dict[str, Any]]
) -> None:
    (tmp_path / "deployment.yaml").write_text("kind: Deployment\n")
    # Refused before the plan runs.
    assert main(["plan", "--stack", "dev", "--out", str(tmp_path)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert (tmp_path / "deployment.yaml").exists()
    with pytest.raises(OutDirError, match="add --force"):
        prepare_out_dir(tmp_path)
    write_manifests(plans["dev"], prepare_out_dir(tmp_path, force=True))
    assert not (tmp_path / "deployment.yaml").exists()
