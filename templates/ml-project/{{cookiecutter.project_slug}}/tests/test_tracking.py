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
        self.MlflowClient = lambda: FakeClient(self.calls)  # lineage tags (model_card.py)

    def _log_model(self, model: Any, path: str, registered_model_name: str | None) -> None:
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


class FakeClient:
    """The MlflowClient calls model_card.record_in_mlflow makes."""

    def __init__(self, calls: list[tuple[str, Any]]) -> None:
        self.calls = calls

    def set_tag(self, run_id: str, key: str, value: str) -> None:
        self.calls.append(("set_tag", (run_id, key, value)))

    def log_artifact(self, run_id: str, path: str, artifact_path: str) -> None:
        self.calls.append(("log_artifact", (run_id, Path(path).name, artifact_path)))

    def search_model_versions(self, query: str) -> list[Any]:
        self.calls.append(("search_model_versions", query))
        return [types.SimpleNamespace(name=MODEL_NAME, version="1")]

    def set_model_version_tag(self, name: str, version: str, key: str, value: str) -> None:
        self.calls.append(("set_model_version_tag", (name, version, key, value)))


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
    assert calls["log_artifacts"] == sorted(
        [model_lib.ARTIFACT, "metadata.json", "README.md", "drift_reference.json"]
    )
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
