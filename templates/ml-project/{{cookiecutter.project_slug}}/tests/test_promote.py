"""Promotion: the champion alias moves only to a version that beats it on the same held-out data."""

import json
from pathlib import Path
from typing import Any

import pytest

from {{ cookiecutter.project_slug }}.data import generate
from {{ cookiecutter.project_slug }}.promote import decide, firing_canary_alerts, main
from {{ cookiecutter.project_slug }}.settings import MODEL_NAME, PROJECT
from {{ cookiecutter.project_slug }}.storage import read_alias, upload_version
from {{ cookiecutter.project_slug }}.train import fit_and_evaluate, train

from .conftest import BUCKET, PREFIX


@pytest.fixture(autouse=True)
def _no_fairness_gate(monkeypatch: pytest.MonkeyPatch) -> None:
    """Promotion is tested here, with its own floor; the training gate (tests/test_quality.py) is
    off: these tests train deliberately worse models, on sets whose groups are too small for the
    fairness metrics to mean anything."""
    monkeypatch.setenv("SENSITIVE_FEATURE", "")
    monkeypatch.setenv("MIN_ACCURACY", "0")


@pytest.mark.parametrize(
    ("candidate", "champion", "kwargs", "ok", "why"),
    [
        ({"roc_auc": 0.8}, None, {"floor": 0.6}, True, "no champion yet"),
        ({"roc_auc": 0.55}, None, {"floor": 0.6}, False, "misses the floor"),
        ({"roc_auc": 0.81}, {"roc_auc": 0.8}, {}, True, "vs champion"),
        ({"roc_auc": 0.79}, {"roc_auc": 0.8}, {}, False, "does not beat"),
        ({"roc_auc": 0.805}, {"roc_auc": 0.8}, {"min_improvement": 0.01}, False, "does not beat"),
        ({"log_loss": 0.4}, {"log_loss": 0.5}, {"metric": "log_loss", "floor": 1.0}, True, "vs"),
        ({"log_loss": 0.6}, {"log_loss": 0.5}, {"metric": "log_loss", "floor": 1.0}, False, "not"),
        ({"accuracy": 0.9}, None, {}, False, "no roc_auc"),
    ],
)
def test_decide(
    candidate: dict[str, float],
    champion: dict[str, float] | None,
    kwargs: dict[str, Any],
    ok: bool,
    why: str,
) -> None:
    decision, reason = decide(candidate, champion, **kwargs)
    assert decision is ok
    assert why in reason


def test_same_data_different_seeds_never_fail_the_floor() -> None:
    """The old gate (accuracy >= 0.7 on 100 rows) failed for seed 5; the floor on AUC does not."""
    for seed in range(8):
        metrics = fit_and_evaluate(None, seed=seed).metrics
        assert decide(metrics, None, floor=0.6)[0], (seed, metrics)


def test_firing_canary_alerts() -> None:
    def alert(name: str, state: str = "firing", **labels: str) -> dict[str, Any]:
        return {"state": state, "labels": {"alertname": name, "namespace": PROJECT, **labels}}

    alerts = {
        "data": {
            "alerts": [
                alert("ServingSLOErrorBudgetBurn", endpoint=PROJECT),
                alert("ProjectCanaryErrors", track="canary", endpoint=PROJECT),
                alert("ServingSLOLatencyBudgetBurn", state="pending", endpoint=PROJECT),
                alert("ServingSLOErrorBudgetBurn", endpoint="another"),
                {"state": "firing", "labels": {"alertname": "Elsewhere", "namespace": "x"}},
            ]
        }
    }
    assert firing_canary_alerts(alerts, PROJECT, PROJECT) == [
        "ProjectCanaryErrors",
        "ServingSLOErrorBudgetBurn",
    ]
    assert firing_canary_alerts({"data": {"alerts": []}}, PROJECT, PROJECT) == []


def _publish(s3: Any, tmp_path: Path, csv: Path, **params: Any) -> int:
    result = train(data_path=csv, model_dir=tmp_path / "src", params=params or None)
    upload_version(s3, tmp_path / "src", BUCKET, PREFIX, MODEL_NAME, result.version.version)
    return result.version.version


def test_promote_then_refuse_a_worse_model_then_roll_back(
    s3: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("MODEL_BUCKET", BUCKET)
    train_csv, holdout = tmp_path / "train.csv", tmp_path / "holdout.csv"
    train_csv.write_text(generate(rows=300, seed=11))
    holdout.write_text(generate(rows=200, seed=12))
    good = _publish(s3, tmp_path, train_csv)
{%- if cookiecutter.framework == 'pytorch' %}
    # Barely trained: near-random scores, a worse ranking on the same held-out rows.
    bad = _publish(s3, tmp_path, train_csv, epochs=1, lr=1e-6)
{%- else %}
    # Heavily regularised: near-constant scores, a worse ranking on the same held-out rows.
    bad = _publish(s3, tmp_path, train_csv, C=1e-6)
{%- endif %}

    def run(*argv: str) -> tuple[int, Any]:
        code = main(list(argv))
        out = capsys.readouterr().out
        return code, json.loads(out) if out else None

    assert run("show") == (0, None)  # no champion yet: null, and success
    code, first = run("promote", "--candidate", str(good), "--holdout", str(holdout))
    assert code == 0, first
    assert first["promoted"] is True
    assert first["champion"] is None
    code, worse = run("promote", "--candidate", str(bad), "--holdout", str(holdout))
    assert code == 1
    assert "does not beat" in worse["reason"] or "misses the floor" in worse["reason"]
    assert worse["champion"]["version"] == good
    record, _ = read_alias(s3, BUCKET, PREFIX, MODEL_NAME, "champion")
    assert record["version"] == good  # unchanged
    code, shown = run("show")
    assert (code, shown["version"]) == (0, good)
    assert shown["holdout_sha256"] == first["holdout_sha256"]

    # A better one replaces it; rollback restores the one it replaced.
    code, better = run(
        "promote", "--candidate", str(good), "--holdout", str(holdout), "--min-improvement", "-1"
    )
    assert better["reason"] == "already it"
    newer = _publish(s3, tmp_path, train_csv, {{ 'hidden=32' if cookiecutter.framework == 'pytorch' else 'C=10.0' }})
    code, promoted = run(
        "promote", "--candidate", str(newer), "--holdout", str(holdout), "--min-improvement", "-1"
    )
    assert code == 0, promoted
    assert read_alias(s3, BUCKET, PREFIX, MODEL_NAME, "champion")[0]["previous"] == good
    code, back = run("rollback")
    assert (code, back["version"], back["rolled_back_from"]) == (0, good, newer)
    code, _ = run("rollback")
    assert code == 1  # nothing further to go back to
