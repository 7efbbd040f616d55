from pathlib import Path

import pytest

from {{ cookiecutter.project_slug }}.settings import PROJECT, Settings


def test_local_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODEL_DIR")
    s = Settings.from_env()
    assert (s.model_dir, s.model_bucket, s.model_prefix) == (
        Path("models"),
        None,
        f"projects/{PROJECT}/",
    )
    assert s.model_version == "latest"


def test_training_job_bucket_comes_from_checkpoint_uri(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHECKPOINT_URI", f"s3://models-123/projects/{PROJECT}/checkpoints/train")
    s = Settings.from_env()
    assert (s.model_bucket, s.model_prefix) == ("models-123", f"projects/{PROJECT}/")


def test_explicit_bucket_wins_and_prefix_gets_a_slash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHECKPOINT_URI", "s3://other/projects/x/checkpoints/j")
    monkeypatch.setenv("MODEL_BUCKET", "mine")
    monkeypatch.setenv("MODEL_PREFIX", "projects/mine")
    s = Settings.from_env()
    assert (s.model_bucket, s.model_prefix) == ("mine", "projects/mine/")
