from __future__ import annotations

from pathlib import Path

import pytest

from {{ cookiecutter.project_slug }}.data import generate
from {{ cookiecutter.project_slug }}.train import TrainResult, train


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Tests never reach a real tracking server or bucket, whatever the developer's shell has.
    for var in (
        "MLFLOW_TRACKING_URI",
        "MODEL_BUCKET",
        "MODEL_PREFIX",
        "MODEL_VERSION",
        "CHECKPOINT_URI",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MODEL_DIR", str(tmp_path / "models"))


@pytest.fixture(scope="session")
def tiny_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "tiny.csv"
    path.write_text(generate(rows=120, seed=3))
    return path


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_csv: Path) -> TrainResult:
    """One tiny training run shared by the tests that need a saved model."""
    model_dir = tmp_path_factory.mktemp("models")
    return train(data_path=tiny_csv, model_dir=model_dir, seed=0)
