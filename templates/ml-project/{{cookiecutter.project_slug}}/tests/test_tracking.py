import sys
import types
from pathlib import Path
from typing import Any

import pytest

from {{ cookiecutter.project_slug }} import model as model_lib
from {{ cookiecutter.project_slug }} import tracking
from {{ cookiecutter.project_slug }}.settings import MODEL_NAME
from {{ cookiecutter.project_slug }}.train import train


class FakeMlflow(types.ModuleType):
    """Records the calls train() makes, standing in for the optional mlflow extra."""

    def __init__(self) -> None:
        super().__init__("mlflow")
        self.calls: list[tuple[str, Any]] = []
        flavor = types.SimpleNamespace(log_model=self._log_model)
        self.sklearn = self.pytorch = flavor

    def _log_model(
        self, model: Any, path: str, registered_model_name: str | None, **kwargs: Any
    ) -> None:
        self.calls.append(("log_model", (path, registered_model_name)))

    def set_experiment(self, name: str) -> None:
        self.calls.append(("set_experiment", name))

    def start_run(self) -> Any:
        fake = self

        class Run:
            info = types.SimpleNamespace(run_id="run-123")

            def __enter__(self) -> "Run":
                fake.calls.append(("start_run", None))
                return self

            def __exit__(self, *exc: object) -> None:
                fake.calls.append(("end_run", None))

        return Run()

    def set_tags(self, tags: dict[str, str]) -> None:
        self.calls.append(("set_tags", tags))

    def log_params(self, params: dict[str, Any]) -> None:
        self.calls.append(("log_params", params))

    def log_metrics(self, metrics: dict[str, float]) -> None:
        self.calls.append(("log_metrics", metrics))

    def log_artifacts(self, path: str, artifact_path: str) -> None:
        self.calls.append(("log_artifacts", sorted(p.name for p in Path(path).iterdir())))


def test_mlflow_is_not_imported_without_tracking_uri(tiny_csv: Path, tmp_path: Path) -> None:
    sys.modules.pop("mlflow", None)
    result = train(data_path=tiny_csv, model_dir=tmp_path)
    assert result.mlflow_run_id is None
    assert "mlflow" not in sys.modules


def test_training_logs_and_registers_when_uri_set(
    tiny_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeMlflow()
    monkeypatch.setitem(sys.modules, "mlflow", fake)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:1")
    result = train(data_path=tiny_csv, model_dir=tmp_path)
    assert result.mlflow_run_id == "run-123"
    calls = dict(fake.calls)
    assert calls["set_experiment"] == MODEL_NAME
    assert calls["log_metrics"] == result.metrics
    assert calls["log_artifacts"] == sorted([model_lib.ARTIFACT, "metadata.json"])
    assert calls["log_model"] == ("model", MODEL_NAME)
    assert calls["set_tags"]["model_version"] == "1"


def test_registration_can_be_turned_off(
    tiny_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeMlflow()
    monkeypatch.setitem(sys.modules, "mlflow", fake)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:1")
    monkeypatch.setenv("MLFLOW_REGISTER", "0")
    train(data_path=tiny_csv, model_dir=tmp_path)
    assert dict(fake.calls)["log_model"] == ("model", None)


def test_missing_mlflow_extra_is_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import raises ImportError
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:1")
    with pytest.raises(RuntimeError, match="--extra mlflow"):
        tracking._mlflow()
