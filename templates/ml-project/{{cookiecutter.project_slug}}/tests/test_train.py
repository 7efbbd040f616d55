import json
import time
from pathlib import Path

import numpy as np
import pytest

from {{ cookiecutter.project_slug }} import model as model_lib
from {{ cookiecutter.project_slug }}.data import load_dataset
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
    assert main(["--data", str(tiny_csv), "--min-accuracy", "1.01"]) == 1
    assert "below --min-accuracy" in capsys.readouterr().err


def test_cli_rejects_malformed_param(tiny_csv: Path) -> None:
    with pytest.raises(SystemExit):
        main(["--data", str(tiny_csv), "--param", "novalue"])


def test_cli_versions_accumulate(tiny_csv: Path, tmp_path: Path) -> None:
    for _ in range(2):
        assert main(["--data", str(tiny_csv)]) == 0
    assert list_versions(tmp_path / "models", MODEL_NAME) == [1, 2]
