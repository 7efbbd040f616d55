"""S3 sync against a local moto server on 127.0.0.1 (real HTTP, no AWS account)."""

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from {{ cookiecutter.project_slug }}.registry import (
    list_versions,
    load_version,
    read_metadata,
)
from {{ cookiecutter.project_slug }}.settings import MODEL_NAME
from {{ cookiecutter.project_slug }}.storage import (
    download_version,
    main,
    remote_versions,
    upload_version,
)
from {{ cookiecutter.project_slug }}.train import TrainResult, train

BUCKET = "ml-platform-models-test"
PREFIX = "projects/{{ cookiecutter.project_slug.replace('_', '-') }}/"


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    for key, value in {
        "AWS_ENDPOINT_URL": s3_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "{{ cookiecutter.aws_region }}",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    client = boto3.client("s3")
    for bucket in client.list_buckets().get("Buckets", []):
        objects = client.list_objects_v2(Bucket=bucket["Name"]).get("Contents", [])
        for obj in objects:
            client.delete_object(Bucket=bucket["Name"], Key=obj["Key"])
        client.delete_bucket(Bucket=bucket["Name"])
    if "{{ cookiecutter.aws_region }}" == "us-east-1":
        client.create_bucket(Bucket=BUCKET)
    else:
        client.create_bucket(
            Bucket=BUCKET,
            CreateBucketConfiguration={"LocationConstraint": "{{ cookiecutter.aws_region }}"},
        )
    return client


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
