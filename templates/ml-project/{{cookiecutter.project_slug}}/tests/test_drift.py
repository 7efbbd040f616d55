"""Drift: the reference, PSI on shifted and unshifted samples, the inference log, the job, retraining."""

import gzip
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import numpy as np
import pytest
from moto import mock_aws

from {{ cookiecutter.project_slug }} import drift, retrain
from {{ cookiecutter.project_slug }} import model as model_lib
from {{ cookiecutter.project_slug }}.data import FEATURES, generate, parse_csv
from {{ cookiecutter.project_slug }}.registry import load_version
{%- if cookiecutter.serving == 'yes' %}
from {{ cookiecutter.project_slug }}.serve import create_app
{%- endif %}
from {{ cookiecutter.project_slug }}.settings import MODEL_NAME
from {{ cookiecutter.project_slug }}.train import TrainResult


@pytest.fixture(scope="module")
def reference(trained: TrainResult) -> dict:
    return drift.load_reference(trained.version.path)


@pytest.fixture(scope="module")
def fresh() -> np.ndarray:
    return parse_csv(generate(1000, seed=77)).X  # same process as training, new rows


def _proba(trained: TrainResult, X: np.ndarray) -> np.ndarray:
    model, _ = load_version(trained.version.path.parent.parent, MODEL_NAME)
    return model_lib.predict_proba(model, X)


def test_reference_bins_each_feature_at_training_deciles(reference: dict) -> None:
    assert list(reference["features"]) == list(FEATURES)
    for ref in reference["features"].values():
        assert len(ref["shares"]) == len(ref["edges"]) + 1
        assert sum(ref["shares"]) == pytest.approx(1.0)
    assert reference["prediction"]["edges"] == drift.SCORE_EDGES


def test_no_drift_on_an_unshifted_sample(
    trained: TrainResult, reference: dict, fresh: np.ndarray
) -> None:
    scores = drift.score(reference, fresh, _proba(trained, fresh))
    assert [k for k, s in scores["features"].items() if s.drifted] == []
    assert not scores["prediction"].drifted


def test_drift_on_a_shifted_sample(
    trained: TrainResult, reference: dict, fresh: np.ndarray
) -> None:
    shifted = fresh.copy()
    shifted[:, 0] = np.clip(shifted[:, 0] + 36, 0, 600)  # customers stay three years longer
    shifted[:, 1] *= 0.5  # and spend less: both lower the churn score
    scores = drift.score(reference, shifted, _proba(trained, shifted))
    assert sorted(k for k, s in scores["features"].items() if s.drifted) == [
        "monthly_spend",
        "tenure_months",
    ]
    assert scores["features"]["tenure_months"].p_value < 1e-6
    assert scores["prediction"].drifted


def test_psi_is_zero_for_equal_shares_and_symmetric() -> None:
    assert drift.psi([0.5, 0.5], [0.5, 0.5]) == pytest.approx(0.0)
    a, b = np.array([0.2, 0.3, 0.5]), np.array([0.4, 0.4, 0.2])
    assert drift.psi(a, b) == pytest.approx(drift.psi(b, a))
    assert drift.psi(a, b) == pytest.approx(float(np.sum((b - a) * np.log(b / a))))


@mock_aws
def test_inference_log_is_sampled_capped_and_written_off_the_request_path() -> None:
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="models")
    sink = drift.InferenceLog(s3, "models", "projects/p/", sample_rate=1.0, max_queue=2)
    X = np.array([[1.0, 2.0, 3.0, 4.0]])
    sink._thread = object()  # type: ignore[assignment] # no background thread: flush by hand
    for _ in range(3):
        sink.offer(7, X, np.array([0.25]))
    assert sink.dropped == 1  # the queue holds two; the third is dropped, not waited for
    assert sink.flush() == 2
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="models")["Contents"]]
    assert len(keys) == 1
    assert keys[0].startswith("projects/p/inference-logs/")
    body = s3.get_object(Bucket="models", Key=keys[0])["Body"].read()
    X_back, proba = drift.read_log_records([body])
    np.testing.assert_array_equal(X_back, np.vstack([X, X]))
    np.testing.assert_array_equal(proba, [0.25, 0.25])
    assert json.loads(gzip.decompress(body).splitlines()[0])["model_version"] == 7
    never = drift.InferenceLog(s3, "models", "projects/p/", sample_rate=0.0)
    never.offer(7, X, np.array([0.25]))
    assert never.queue.empty()


def _write_log(path: Path, X: np.ndarray, proba: np.ndarray) -> Path:
    records = [
        {
            "ts": 0,
            "model_version": 1,
            "features": dict(zip(FEATURES, r, strict=True)),
            "probability": p,
        }
        for r, p in zip(X.tolist(), proba.tolist(), strict=True)
    ]
    lines = [json.dumps(r) for r in records]
    path.write_bytes(gzip.compress("\n".join(lines).encode()))
    return path


def test_drift_job_writes_scores_and_live_accuracy(
    trained: TrainResult, fresh: np.ndarray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODEL_DIR", str(trained.version.path.parent.parent))
    monkeypatch.setenv("DRIFT_RESULT", str(tmp_path / "latest.json"))
    logs = _write_log(tmp_path / "log.jsonl.gz", fresh, _proba(trained, fresh))
    labelled = tmp_path / "truth.csv"
    labelled.write_text(generate(300, seed=78))
    assert drift.main(["--logs", str(logs), "--ground-truth", str(labelled)]) == 0
    result = json.loads((tmp_path / "latest.json").read_text())
    assert result["rows"] == len(fresh)
    assert result["drifted_features"] == []
    assert 0.6 < result["live_accuracy"] <= 1.0
    assert result["labelled_rows"] == 300
    assert result["demographic_parity_difference"] is not None
    assert result["min_accuracy"] == 0.6
    assert "canary" not in result  # no canary served


def test_drift_job_scores_the_canary_on_the_same_labelled_rows(
    trained: TrainResult, fresh: np.ndarray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = trained.version.path.parent.parent
    monkeypatch.setenv("MODEL_DIR", str(root))
    monkeypatch.setenv("DRIFT_RESULT", str(tmp_path / "latest.json"))
    monkeypatch.setenv("MODEL_VERSION", str(trained.version.version))
    monkeypatch.setenv("CANARY_MODEL_VERSION", str(trained.version.version))
    logs = _write_log(tmp_path / "log.jsonl.gz", fresh, _proba(trained, fresh))
    labelled = tmp_path / "truth.csv"
    labelled.write_text(generate(300, seed=79))
    assert drift.main(["--logs", str(logs), "--ground-truth", str(labelled)]) == 0
    result = json.loads((tmp_path / "latest.json").read_text())
    # The same model as canary: the same accuracy, on the same rows.
    assert result["canary"] == {
        "model_version": trained.version.version,
        "live_accuracy": result["live_accuracy"],
    }


def _result(psi: float = 0.01, live: float | None = 0.8, age_h: float = 1) -> dict:
    return {
        "timestamp": time.time() - age_h * 3600,
        "psi_threshold": drift.PSI_ALERT,
        "min_accuracy": 0.7,
        "features": {f: {"psi": 0.01} for f in FEATURES} | {"usage_hours": {"psi": psi}},
        "prediction": {"psi": 0.01},
        "live_accuracy": live,
    }


def test_retraining_decision() -> None:
    new = datetime.now(UTC) - timedelta(days=1)
    assert not retrain.decide(_result(), new).retrain
    drifted = retrain.decide(_result(psi=0.5), new)
    assert drifted.retrain
    assert drifted.reasons == ("drift: usage_hours PSI 0.500 > 0.2",)
    assert retrain.decide(_result(live=0.6), new).reasons == (
        "accuracy: live 0.600 < the card's floor 0.7",
    )
    old = retrain.decide(_result(), datetime.now(UTC) - timedelta(days=45))
    assert old.retrain
    assert old.reasons[0].startswith("schedule: the model is 45.0 days old")
    # No monitoring data is a note, not a reason to retrain.
    quiet = retrain.decide(None, new)
    assert (quiet.retrain, quiet.notes) == (False, ("no drift result yet: run the drift job",))
    assert retrain.decide(_result(age_h=72), new).notes


def test_retrain_cli_exits_0_when_due_and_1_when_not(
    trained: TrainResult,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("MODEL_DIR", str(trained.version.path.parent.parent))
    result_file = tmp_path / "latest.json"
    monkeypatch.setenv("DRIFT_RESULT", str(result_file))
    result_file.write_text(json.dumps(_result()))
    assert retrain.main(["--check"]) == 1
    assert "no retraining needed" in capsys.readouterr().out
    result_file.write_text(json.dumps(_result(psi=0.9)))
    assert retrain.main(["--check"]) == 0
    assert "retrain: drift: usage_hours PSI 0.900" in capsys.readouterr().out
{%- if cookiecutter.serving == 'yes' %}


def test_server_counts_bins_and_scores_and_exposes_the_jobs_results(
    trained: TrainResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import httpx

    from tests.test_serve import run_live

    result_file = tmp_path / "latest.json"
    result_file.write_text(
        json.dumps(_result(psi=0.42) | {"canary": {"model_version": 2, "live_accuracy": 0.66}})
    )
    monkeypatch.setenv("DRIFT_RESULT", str(result_file))
    root = trained.version.path.parent.parent
    rows = [
        {"tenure_months": 3, "monthly_spend": 120.0, "support_tickets": 6, "usage_hours": 2.5},
        {"tenure_months": 70, "monthly_spend": 20.0, "support_tickets": 0, "usage_hours": 90.0},
    ]
    base, stop = run_live(create_app(lambda: load_version(root, MODEL_NAME)))
    with httpx.Client(base_url=base, timeout=10) as client:
        assert client.post("/predict", json={"instances": rows}).status_code == 200
        client.get("/metrics")  # the first scrape starts loading the job's results
        deadline = time.monotonic() + 5
        while "model_feature_drift_psi" not in (text := client.get("/metrics").text):
            assert time.monotonic() < deadline, text
            time.sleep(0.05)
    stop()
    per_feature: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(drift.FEATURE_BINS + "{"):
            feature = line.split('feature="')[1].split('"')[0]
            per_feature[feature] = per_feature.get(feature, 0) + float(line.rsplit(" ", 1)[1])
    assert per_feature == dict.fromkeys(FEATURES, 2.0)  # each row lands in one bin per feature
    assert f"{drift.PREDICTION_SCORE}_count 2.0" in text
    model = f'model="{MODEL_NAME}"'
    assert drift.FEATURE_PSI + '{feature="usage_hours",' + model + "} 0.42" in text
    assert drift.ACCURACY_THRESHOLD + "{" + model + "} 0.7" in text
    assert drift.LIVE_ACCURACY + "{" + model + "} 0.8" in text
    assert drift.CANARY_LIVE_ACCURACY + "{" + model + "} 0.66" in text
    assert f"{drift.LOG_DROPPED} 0.0" in text
{%- endif %}
