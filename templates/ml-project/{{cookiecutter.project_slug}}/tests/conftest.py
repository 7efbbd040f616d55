from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from {{ cookiecutter.project_slug }}.data import generate
from {{ cookiecutter.project_slug }}.train import TrainResult, train

BUCKET = "ml-platform-models-test"
PREFIX = "projects/{{ cookiecutter.project_slug.replace('_', '-') }}/"


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Tests never reach a real tracking server or bucket, whatever the developer's shell has.
    for var in (
        "MLFLOW_TRACKING_URI",
        "MODEL_BUCKET",
        "MODEL_PREFIX",
        "MODEL_VERSION",
        "CHECKPOINT_URI",
        "RUN_ID",
        "MLFLOW_REGISTER",
        "MLFLOW_EXPERIMENT_NAME",
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


@pytest.fixture(scope="session")
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
{%- if cookiecutter.framework == 'pytorch' %}


@pytest.fixture(autouse=True)
def _no_accuracy_floor_on_tiny_torch_runs(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A few epochs of a network on the tiny fixtures score near chance; the quality gate itself
    is tested in tests/test_quality.py, with its own data."""
    if not request.module.__name__.endswith("test_quality"):
        monkeypatch.setenv("MIN_ACCURACY", "0")
{%- endif %}
