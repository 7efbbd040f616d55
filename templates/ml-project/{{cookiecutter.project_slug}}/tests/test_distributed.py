"""Mini-batch training, DDP under torchrun, checkpoint and resume, and the MLflow model."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import boto3
import numpy as np
import pytest
import torch
from moto import mock_aws

from {{ cookiecutter.project_slug }} import model as model_lib
from {{ cookiecutter.project_slug }}.checkpoint import NAME, CheckpointStore
from {{ cookiecutter.project_slug }}.data import generate, load_dataset
from {{ cookiecutter.project_slug }}.registry import load_version
from {{ cookiecutter.project_slug }}.settings import MODEL_NAME

PACKAGE = "{{ cookiecutter.project_slug }}"


@pytest.fixture(scope="module")
def even_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """160 rows: the stratified split leaves an even number of training rows (see the DDP test)."""
    path = tmp_path_factory.mktemp("data") / "even.csv"
    path.write_text(generate(rows=160, seed=3))
    return path


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CHECKPOINT_URI", "WORLD_SIZE", "RANK")}
    return {**env, "MODEL_DIR": str(tmp / "models"), "PYTHONUNBUFFERED": "1", **extra}


def _train(tmp: Path, data: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", f"{PACKAGE}.train", "--data", str(data), *args]
    return subprocess.run(
        cmd, env=_env(tmp, **env), capture_output=True, text=True, timeout=300, check=False
    )


def _weights(model_dir: Path) -> dict[str, torch.Tensor]:
    model, _ = load_version(model_dir, MODEL_NAME, "latest")
    return {k: v.clone() for k, v in model.net.state_dict().items()}


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=atol, rtol=0, msg=key)


def test_checkpoint_store_roundtrips_locally(tmp_path: Path) -> None:
    store = CheckpointStore(str(tmp_path / "ckpt"))
    assert store.load() is None
    store.save({"epoch": 3, "w": torch.arange(4.0)})
    store.save({"epoch": 4, "w": torch.arange(4.0) * 2})
    state = store.load()
    assert state is not None
    assert state["epoch"] == 4
    torch.testing.assert_close(state["w"], torch.arange(4.0) * 2)
    # Replaced whole: no temporary files are left beside it.
    assert [p.name for p in (tmp_path / "ckpt").iterdir()] == [NAME]


@mock_aws
def test_checkpoint_store_roundtrips_in_s3(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="models")
    uri = "s3://models/projects/p/checkpoints/job-1"
    monkeypatch.setenv("CHECKPOINT_URI", uri)
    store = CheckpointStore.from_env()
    assert store is not None
    assert store.load() is None
    store.save({"epoch": 2, "w": torch.ones(2)})
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="models")["Contents"]]
    assert keys == [f"projects/p/checkpoints/job-1/{NAME}"]
    state = store.load()
    assert state is not None
    assert state["epoch"] == 2


def test_no_checkpoint_uri_means_no_store(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHECKPOINT_URI", raising=False)
    assert CheckpointStore.from_env() is None


def test_training_takes_mini_batches_through_a_dataloader(
    tiny_csv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = load_dataset(tiny_csv)
    steps: list[int] = []
    real_step = torch.optim.Adam.step

    def counting_step(self: torch.optim.Adam, *args: object, **kwargs: object) -> object:
        steps.append(1)
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", counting_step)
    m = model_lib.fit(model_lib.build({"epochs": 3, "batch_size": 16}), data.X, data.y)
    assert m.net is not None
    assert m.resumed_from == 0
    # One optimizer step per mini-batch: ceil(rows / 16) a epoch, not one full batch.
    assert len(steps) == 3 * -(-len(data) // 16)


def test_a_killed_run_resumes_from_its_checkpoint_and_ends_where_an_uninterrupted_one_does(
    even_csv: Path, tmp_path: Path
) -> None:
    params = ["--param", "epochs=60", "--param", "batch_size=4", "--seed", "7"]
    ckpt = tmp_path / "ckpt"
    store = CheckpointStore(str(ckpt))
    cmd = [sys.executable, "-m", f"{PACKAGE}.train", "--data", str(even_csv), *params]
    proc = subprocess.Popen(
        cmd,
        env=_env(tmp_path / "a", CHECKPOINT_URI=str(ckpt)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 240
        while not (ckpt / NAME).is_file() and proc.poll() is None:
            assert time.monotonic() < deadline, "no checkpoint was written"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)  # a spot node going away: no chance to clean up
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be interrupted"
    state = store.load()
    assert state is not None
    k = int(state["epoch"])
    assert 1 <= k < 60
    assert not (tmp_path / "a" / "models" / MODEL_NAME).exists(), "nothing saved before the end"

    resumed = _train(tmp_path / "a", even_csv, *params, CHECKPOINT_URI=str(ckpt))
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming from epoch {k} of 60" in resumed.stderr
    final = store.load()
    assert final is not None
    assert final["epoch"] == 60

    straight = _train(tmp_path / "b", even_csv, *params)
    assert straight.returncode == 0, straight.stderr
    assert "resuming" not in straight.stderr
    _assert_same(
        _weights(tmp_path / "a" / "models"), _weights(tmp_path / "b" / "models"), atol=1e-6
    )


def test_a_checkpoint_for_other_parameters_is_refused(
    tiny_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = load_dataset(tiny_csv)
    monkeypatch.setenv("CHECKPOINT_URI", str(tmp_path / "ckpt"))
    first = model_lib.fit(model_lib.build({"epochs": 2}), data.X, data.y, seed=1)
    again = model_lib.fit(model_lib.build({"epochs": 2}), data.X, data.y, seed=1)
    assert (first.resumed_from, again.resumed_from) == (0, 2)
    for params, seed in (({"epochs": 2, "hidden": 8}, 1), ({"epochs": 2}, 2)):
        with pytest.raises(ValueError, match="written for other parameters or data"):
            model_lib.fit(model_lib.build(params), data.X, data.y, seed=seed)
    with pytest.raises(ValueError, match="written for other parameters or data"):
        model_lib.fit(model_lib.build({"epochs": 2}), data.X[:-1], data.y[:-1], seed=1)


def test_ddp_with_two_processes_matches_one_process(even_csv: Path, tmp_path: Path) -> None:
    """torchrun, 2 processes on CPU (gloo): gradients are averaged across ranks, so with each rank
    taking half of every global batch the result equals one process's; rank 0 alone saves."""
    train_rows = len(model_lib_split(even_csv))
    assert train_rows % 2 == 0, "an odd count would make the sampler pad one rank"
    params = ["--param", "epochs=5", "--param", "batch_size=16", "--seed", "3"]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    ddp = subprocess.run(
        [*torchrun, "-m", f"{PACKAGE}.train", "--data", str(even_csv), *params],
        env=_env(tmp_path / "ddp", CHECKPOINT_URI=str(tmp_path / "ckpt")),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert ddp.returncode == 0, ddp.stdout[-2000:] + ddp.stderr[-4000:]
    versions = sorted((tmp_path / "ddp" / "models" / MODEL_NAME).iterdir())
    assert [p.name for p in versions] == ["1"], "only rank 0 saves a version"
    single = _train(tmp_path / "one", even_csv, *params)
    assert single.returncode == 0, single.stderr
    _assert_same(
        _weights(tmp_path / "ddp" / "models"), _weights(tmp_path / "one" / "models"), atol=1e-5
    )


def model_lib_split(path: Path) -> np.ndarray:
    from {{ cookiecutter.project_slug }}.data import train_test_split

    return train_test_split(load_dataset(path), 0.25, 3)[2]


def test_logged_model_loads_back_from_mlflow(
    tiny_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mlflow = pytest.importorskip("mlflow", reason="the mlflow extra is not installed")
    monkeypatch.chdir(tmp_path)  # the local store writes ./mlruns next to the database
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    from {{ cookiecutter.project_slug }}.train import train

    result = train(data_path=tiny_csv, model_dir=tmp_path / "models", seed=0)
    assert result.mlflow_run_id
    logged = mlflow.pytorch.load_model(f"runs:/{result.mlflow_run_id}/model")
    X = load_dataset(tiny_csv).X[:10]
    saved, _ = load_version(tmp_path / "models", MODEL_NAME, "latest")
    with torch.no_grad():
        got = logged(torch.tensor(X, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(got, model_lib.predict_proba(saved, X), rtol=1e-5)
    # The registered version serves through pyfunc too (what a batch job or MLflow serving uses).
    pyfunc = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}/1")
    np.testing.assert_allclose(pyfunc.predict(X.astype(np.float32)), got, rtol=1e-5)
