"""S3 sync against a local moto server on 127.0.0.1 (real HTTP, no AWS account)."""

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from {{ cookiecutter.project_slug }} import storage
from {{ cookiecutter.project_slug }}.registry import (
    list_versions,
    load_version,
    read_metadata,
)
from {{ cookiecutter.project_slug }}.settings import MODEL_NAME
from {{ cookiecutter.project_slug }}.storage import (
    AliasMovedError,
    VersionExistsError,
    claim_version,
    download_version,
    main,
    read_alias,
    remote_versions,
    set_alias,
    upload_version,
)
from {{ cookiecutter.project_slug }}.train import TrainResult, train
from {{ cookiecutter.project_slug }}.train import main as train_main

from .conftest import BUCKET, PREFIX


def test_round_trip_through_s3(s3: Any, trained: TrainResult, tmp_path: Path) -> None:
    root = trained.version.path.parent.parent
    keys = upload_version(s3, root, BUCKET, PREFIX, MODEL_NAME)
    assert keys[-1] == f"{PREFIX}models/{MODEL_NAME}/1/metadata.json"  # written last
    assert remote_versions(s3, BUCKET, PREFIX, MODEL_NAME) == [1]

    dest = tmp_path / "downloaded"
    path = download_version(s3, dest, BUCKET, PREFIX, MODEL_NAME, "latest")
    assert read_metadata(path) == trained.version.metadata
    _, mv = load_version(dest, MODEL_NAME)
    assert mv.version == 1


def test_latest_picks_highest_complete_version(s3: Any, tiny_csv: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    for _ in range(3):
        train(data_path=tiny_csv, model_dir=src)
    for version in (1, 2, 3):
        upload_version(s3, src, BUCKET, PREFIX, MODEL_NAME, version)
    # Version 4 is mid-upload: artifact present, metadata.json not yet.
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}models/{MODEL_NAME}/4/model.bin", Body=b"x")
    assert remote_versions(s3, BUCKET, PREFIX, MODEL_NAME) == [1, 2, 3]
    download_version(s3, tmp_path / "dst", BUCKET, PREFIX, MODEL_NAME, "latest")
    assert list_versions(tmp_path / "dst", MODEL_NAME) == [3]


def test_corrupted_download_is_rejected(s3: Any, trained: TrainResult, tmp_path: Path) -> None:
    root = trained.version.path.parent.parent
    upload_version(s3, root, BUCKET, PREFIX, MODEL_NAME)
    artifact = trained.version.metadata["artifact"]
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}models/{MODEL_NAME}/1/{artifact}", Body=b"junk")
    with pytest.raises(ValueError, match="sha256"):
        download_version(s3, tmp_path, BUCKET, PREFIX, MODEL_NAME)
    assert list_versions(tmp_path, MODEL_NAME) == []


def test_missing_remote_version_is_named(s3: Any, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=f"s3://{BUCKET}/{PREFIX}models/{MODEL_NAME}/"):
        download_version(s3, tmp_path, BUCKET, PREFIX, MODEL_NAME)


def test_cli_sync_up_then_down(
    s3: Any,
    tiny_csv: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("MODEL_DIR", str(tmp_path / "a"))
    train(data_path=tiny_csv, model_dir=tmp_path / "a")
    monkeypatch.setenv("MODEL_BUCKET", BUCKET)
    assert main(["up"]) == 0
    assert json.loads(capsys.readouterr().out)["uploaded"]
    monkeypatch.setenv("MODEL_DIR", str(tmp_path / "b"))
    assert main(["down"]) == 0
    assert list_versions(tmp_path / "b", MODEL_NAME) == [1]


def test_cli_without_bucket_explains(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["up"]) == 2
    assert "MODEL_BUCKET" in capsys.readouterr().err


def _remote_metadata(s3: Any, version: int) -> dict[str, Any]:
    key = f"{PREFIX}models/{MODEL_NAME}/{version}/metadata.json"
    return json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())


def test_two_runs_on_two_pods_get_two_versions(
    s3: Any,
    tiny_csv: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Each pod starts with an empty MODEL_DIR: both would call their model version 1 locally."""
    monkeypatch.setenv("MODEL_BUCKET", BUCKET)
    reports = []
    for pod in ("a", "b"):
        monkeypatch.setenv("MODEL_DIR", str(tmp_path / pod))
        monkeypatch.setenv("RUN_ID", f"churn-train-{pod}")
        assert train_main(["--data", str(tiny_csv), "--seed", "1" if pod == "a" else "2"]) == 0
        reports.append(json.loads(capsys.readouterr().out))
    assert [r["version"] for r in reports] == [1, 2]
    assert remote_versions(s3, BUCKET, PREFIX, MODEL_NAME) == [1, 2]
    # Nothing lost: each version still holds its own run's model.
    assert _remote_metadata(s3, 1)["run_id"] == "churn-train-a"
    assert _remote_metadata(s3, 2)["run_id"] == "churn-train-b"
    for version in (1, 2):
        path = download_version(s3, tmp_path / "check", BUCKET, PREFIX, MODEL_NAME, version)
        assert read_metadata(path)["version"] == version


def test_a_stale_listing_still_cannot_take_a_claimed_number(
    s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert claim_version(s3, BUCKET, PREFIX, MODEL_NAME, "run-a") == 1
    # Run b listed the bucket before run a's claim landed: it tries 1 and S3 refuses.
    monkeypatch.setattr(storage, "_scan", lambda *_a: (set(), set()))
    assert claim_version(s3, BUCKET, PREFIX, MODEL_NAME, "run-b") == 2
    claim = s3.get_object(Bucket=BUCKET, Key=f"{PREFIX}models/{MODEL_NAME}/1/claim.json")
    assert json.loads(claim["Body"].read())["run_id"] == "run-a"


def test_a_written_version_is_never_replaced(s3: Any, tiny_csv: Path, tmp_path: Path) -> None:
    train(data_path=tiny_csv, model_dir=tmp_path / "a", run_id="run-a")
    upload_version(s3, tmp_path / "a", BUCKET, PREFIX, MODEL_NAME, 1)
    before = _remote_metadata(s3, 1)
    # Another machine's own local version 1, from another run.
    train(data_path=tiny_csv, model_dir=tmp_path / "b", run_id="run-b", seed=3)
    with pytest.raises(VersionExistsError, match="belongs to run 'run-a'"):
        upload_version(s3, tmp_path / "b", BUCKET, PREFIX, MODEL_NAME, 1)
    assert _remote_metadata(s3, 1) == before
    # Even the run that owns the version cannot rewrite an object of it.
    with pytest.raises(VersionExistsError, match="already exists"):
        upload_version(s3, tmp_path / "a", BUCKET, PREFIX, MODEL_NAME, 1)


def test_alias_moves_by_compare_and_swap(s3: Any, tiny_csv: Path, tmp_path: Path) -> None:
    for run in ("r1", "r2"):
        train(data_path=tiny_csv, model_dir=tmp_path, run_id=run)
    for version in (1, 2):
        upload_version(s3, tmp_path, BUCKET, PREFIX, MODEL_NAME, version)
    where = (s3, BUCKET, PREFIX, MODEL_NAME, "champion")
    assert read_alias(*where) == (None, "")
    etag = set_alias(*where, {"version": 1}, expected_etag="")
    with pytest.raises(AliasMovedError):  # someone else created it meanwhile
        set_alias(*where, {"version": 2}, expected_etag="")
    record, current = read_alias(*where)
    assert (record, current) == ({"version": 1}, etag)
    set_alias(*where, {"version": 2, "previous": 1}, expected_etag=etag)
    with pytest.raises(AliasMovedError):  # a promotion that read the alias before the last one
        set_alias(*where, {"version": 1}, expected_etag=etag)
    assert read_alias(*where)[0] == {"version": 2, "previous": 1}
    with pytest.raises(FileNotFoundError, match="no complete version 9"):
        set_alias(*where, {"version": 9}, expected_etag=read_alias(*where)[1])


def test_training_reads_data_from_s3(
    s3: Any,
    tiny_csv: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    key = f"{PREFIX}data/churn.csv"
    s3.put_object(Bucket=BUCKET, Key=key, Body=tiny_csv.read_bytes())
    assert train_main(["--data", f"s3://{BUCKET}/{key}", "--upload", "no"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["metrics"]["n"] > 0
    metadata = json.loads((Path(report["path"]) / "metadata.json").read_text())
    assert metadata["data_sha256"] == hashlib.sha256(tiny_csv.read_bytes()).hexdigest()


def test_a_tracking_server_that_is_down_does_not_cost_the_model(
    s3: Any,
    tiny_csv: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pytest.importorskip("mlflow", reason="the mlflow extra is not installed (uv sync)")
    monkeypatch.setenv("MODEL_BUCKET", BUCKET)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    assert train_main(["--data", str(tiny_csv)]) == 3
    out = capsys.readouterr()
    assert "version 1 is saved, but logging to MLflow failed" in out.err
    assert remote_versions(s3, BUCKET, PREFIX, MODEL_NAME) == [1]
