from pathlib import Path

import pytest

from {{ cookiecutter.project_slug }}.registry import (
    list_versions,
    load_version,
    read_metadata,
    resolve_version,
)
from {{ cookiecutter.project_slug }}.settings import MODEL_NAME
from {{ cookiecutter.project_slug }}.train import TrainResult, train


def test_missing_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no saved versions"):
        load_version(tmp_path, MODEL_NAME)


def test_unknown_version_lists_available(trained: TrainResult) -> None:
    root = trained.version.path.parent.parent
    with pytest.raises(FileNotFoundError, match=r"no version 99 \(have \[1\]\)"):
        resolve_version(root, MODEL_NAME, 99)


def test_tampered_artifact_is_refused(tiny_csv: Path, tmp_path: Path) -> None:
    result = train(data_path=tiny_csv, model_dir=tmp_path)
    artifact = result.version.path / read_metadata(result.version.path)["artifact"]
    artifact.write_bytes(artifact.read_bytes() + b"tampered")
    with pytest.raises(ValueError, match="sha256"):
        load_version(tmp_path, MODEL_NAME, result.version.version)


def test_incomplete_version_directories_are_ignored(tiny_csv: Path, tmp_path: Path) -> None:
    train(data_path=tiny_csv, model_dir=tmp_path)
    (tmp_path / MODEL_NAME / "7").mkdir()  # no metadata.json: an interrupted write
    (tmp_path / MODEL_NAME / ".incoming-x").mkdir()
    assert list_versions(tmp_path, MODEL_NAME) == [1]
    assert train(data_path=tiny_csv, model_dir=tmp_path).version.version == 2
