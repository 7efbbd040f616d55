import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from {{ cookiecutter.project_slug }} import model as model_lib
from {{ cookiecutter.project_slug }}.data import load_dataset
from {{ cookiecutter.project_slug }}.model_card import CARD, parse
from {{ cookiecutter.project_slug }}.registry import list_versions, load_version
from {{ cookiecutter.project_slug }}.settings import MODEL_NAME
from {{ cookiecutter.project_slug }}.train import TrainResult, main, train


def test_tiny_training_run_learns_and_is_fast(tiny_csv: Path, tmp_path: Path) -> None:
    start = time.perf_counter()
    result = train(data_path=tiny_csv, model_dir=tmp_path, seed=0)
    assert time.perf_counter() - start < 60
    # Better than always predicting the majority class of the held-out split.
    y = load_dataset(tiny_csv).y
    majority = max(y.mean(), 1 - y.mean())
    assert result.metrics["accuracy"] > majority
    assert result.metrics["roc_auc"] > 0.7


def test_saved_version_reloads_with_same_predictions(trained: TrainResult) -> None:
    root = trained.version.path.parent.parent
    model, mv = load_version(root, MODEL_NAME, "latest")
    X = load_dataset().X[:20]
    again = model_lib.predict_proba(model, X)
    reloaded_twice, _ = load_version(root, MODEL_NAME, mv.version)
    np.testing.assert_allclose(again, model_lib.predict_proba(reloaded_twice, X), rtol=1e-6)
    assert mv.metadata["framework"] == model_lib.FRAMEWORK
    assert mv.metadata["metrics"] == trained.metrics


def test_same_seed_gives_same_metrics(tiny_csv: Path, tmp_path: Path) -> None:
    a = train(data_path=tiny_csv, model_dir=tmp_path, seed=4)
    b = train(data_path=tiny_csv, model_dir=tmp_path, seed=4)
    assert a.metrics == pytest.approx(b.metrics)
    assert (a.version.version, b.version.version) == (1, 2)


def test_cli_reports_json_and_enforces_quality_gate(
    tiny_csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--data", str(tiny_csv)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["version"] == 1
    assert "uploaded" not in report
    # --min-accuracy is the gate's floor (one owner: gates.Thresholds), checked before saving.
    with pytest.raises(SystemExit) as err:
        main(["--data", str(tiny_csv), "--min-accuracy", "0.999"])
    assert "below MIN_ACCURACY 0.999" in str(err.value.code)
    assert list_versions(Path(os.environ["MODEL_DIR"]), MODEL_NAME) == [1]  # nothing saved


def test_cli_min_accuracy_overrides_the_gates_floor_in_the_card(
    tiny_csv: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MIN_ACCURACY", "0.999")  # the flag wins over the environment
    assert main(["--data", str(tiny_csv), "--min-accuracy", "0"]) == 0
    version = json.loads(capsys.readouterr().out)["version"]
    card = Path(os.environ["MODEL_DIR"]) / MODEL_NAME / str(version) / CARD
    # The card records the floor the version passed.
    assert parse(card.read_text())[0]["thresholds"]["min_accuracy"] == 0.0


def test_cli_refuses_an_accuracy_floor_outside_0_1(tiny_csv: Path) -> None:
    with pytest.raises(SystemExit) as err:
        main(["--data", str(tiny_csv), "--min-accuracy", "1.5"])
    assert "--min-accuracy must be between 0 and 1" in str(err.value.code)
    assert list_versions(Path(os.environ["MODEL_DIR"]), MODEL_NAME) == []


def test_cli_rejects_malformed_param(tiny_csv: Path) -> None:
    with pytest.raises(SystemExit):
        main(["--data", str(tiny_csv), "--param", "novalue"])


def test_cli_versions_accumulate(tiny_csv: Path, tmp_path: Path) -> None:
    for _ in range(2):
        assert main(["--data", str(tiny_csv)]) == 0
    assert list_versions(tmp_path / "models", MODEL_NAME) == [1, 2]


def test_training_writes_only_under_model_dir_and_tmp(tiny_csv: Path, tmp_path: Path) -> None:
    """As in the training job: read-only root filesystem (here: the working directory, the
    image's WORKDIR), only /tmp writable, MODEL_DIR under it (infra/program.py sets it)."""
    app, scratch = tmp_path / "app", tmp_path / "tmp"
    app.mkdir()
    scratch.mkdir()
    env = {
        **os.environ,
        "HOME": str(scratch),
        "TMPDIR": str(scratch),
        "XDG_CACHE_HOME": str(scratch / ".cache"),
        "MODEL_DIR": str(scratch / "models"),
        "RUN_ID": "churn-train-ro",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    app.chmod(0o555)  # enforced for a non-root user; the listing below checks it for root too
    try:
        done = subprocess.run(
            [sys.executable, "-m", "{{ cookiecutter.project_slug }}.train", "--data", str(tiny_csv)],
            cwd=app, env=env, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
    finally:
        app.chmod(0o755)
    assert done.returncode == 0, done.stderr
    assert list(app.iterdir()) == []
    report = json.loads(done.stdout)
    assert report["run_id"] == "churn-train-ro"
    assert Path(report["path"]).parent.parent == scratch / "models"


def test_unwritable_model_dir_fails_before_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    if os.geteuid() == 0:  # root writes through permissions: a path under a file fails for all
        locked = tmp_path / "a-file"
        locked.write_text("")
    locked.chmod(0o555)
    monkeypatch.setenv("MODEL_DIR", str(locked / "models"))
    try:
        assert main(["--data", "/nonexistent.csv"]) == 2  # refused before the data is read
    finally:
        locked.chmod(0o755)
    err = capsys.readouterr().err
    assert f"MODEL_DIR={locked / 'models'}" in err
    assert "set MODEL_DIR under /tmp" in err


def test_evaluate_scores_the_held_out_rows_only(
    tiny_csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from {{ cookiecutter.project_slug }}.evaluate import main as evaluate_main

    assert main(["--data", str(tiny_csv), "--seed", "2"]) == 0
    trained = json.loads(capsys.readouterr().out)
    assert evaluate_main(["--train-data", str(tiny_csv)]) == 0
    scored = json.loads(capsys.readouterr().out)
    # The same rows the run held out: the same metrics, and as many rows.
    assert scored["n"] == trained["metrics"]["n"] < len(load_dataset(tiny_csv))
    assert scored["accuracy"] == pytest.approx(trained["metrics"]["accuracy"])
    # Other data than it was trained on: refused, not silently scored on training rows.
    assert evaluate_main([]) == 2
    assert "trained on other data" in capsys.readouterr().err
    assert evaluate_main(["--data", str(tiny_csv)]) == 0  # an explicit CSV is scored whole
    assert json.loads(capsys.readouterr().out)["n"] == len(load_dataset(tiny_csv))
