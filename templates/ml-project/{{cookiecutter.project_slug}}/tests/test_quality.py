"""Quality gates: the data schema, the accuracy and fairness gate, the model card and lineage."""

import csv
import io
from pathlib import Path

import numpy as np
import pytest

from {{ cookiecutter.project_slug }}.data import (
    SENSITIVE_COLUMN,
    TARGET,
    generate,
    load_dataset,
    sample_path,
    train_test_split,
)
from {{ cookiecutter.project_slug }}.fairness import assess
from {{ cookiecutter.project_slug }}.gates import (
    QualityGateFailed,
    Thresholds,
    held_out_groups,
    quality_gate,
)
from {{ cookiecutter.project_slug }}.model_card import CARD, parse
from {{ cookiecutter.project_slug }}.registry import list_versions
from {{ cookiecutter.project_slug }}.settings import MODEL_NAME
from {{ cookiecutter.project_slug }}.train import main, train
from {{ cookiecutter.project_slug }}.validation import (
    DataValidationError,
    validate_training_data,
)


def _rewrite(text: str, change) -> str:
    rows = list(csv.DictReader(io.StringIO(text)))
    for i, row in enumerate(rows):
        change(i, row)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def test_bundled_sample_passes_the_schema() -> None:
    frame = validate_training_data()
    assert len(frame) == 400
    assert set(frame[SENSITIVE_COLUMN]) == {"18-34", "35-54", "55+"}


def test_bad_data_is_reported_in_full_and_stops_training(tmp_path: Path) -> None:
    def corrupt(i: int, row: dict) -> None:
        if i == 0:
            row["tenure_months"] = ""  # missing
        if i == 1:
            row["monthly_spend"] = "-5"  # out of range
        if i == 2:
            row[TARGET] = "2"  # not a class
        if i == 3:
            row["usage_hours"] = "lots"  # wrong type
        if i == 4:
            row[SENSITIVE_COLUMN] = ""  # no group for the fairness audit

    path = tmp_path / "bad.csv"
    path.write_text(_rewrite(generate(60, seed=2), corrupt))
    with pytest.raises(DataValidationError) as err:
        train(data_path=path, model_dir=tmp_path / "models")
    report = err.value.report
    for needle in (
        "row 2, column tenure_months",
        "row 3, column monthly_spend",
        "row 4, column churned",
        "row 5, column usage_hours",
        f"row 6, column {SENSITIVE_COLUMN}",
    ):
        assert needle in report, report
    assert "training stopped before fitting" in report
    assert list_versions(tmp_path / "models", MODEL_NAME) == []


def test_a_missing_column_is_named(tmp_path: Path) -> None:
    text = generate(60, seed=2)
    path = tmp_path / "no_spend.csv"
    rows = [line.split(",") for line in text.splitlines()]
    path.write_text("\n".join(",".join(r[:1] + r[2:]) for r in rows) + "\n")
    with pytest.raises(DataValidationError, match="monthly_spend"):
        validate_training_data(path)


def test_passing_gate_saves_a_version_with_its_card(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GIT_COMMIT", "0123abc")
    monkeypatch.setenv("TRAINING_IMAGE", "registry.example/churn:1")
    monkeypatch.setenv("IMAGE_DIGEST", "sha256:" + "d" * 64)
    result = train(model_dir=tmp_path / "models")  # the bundled sample: groups of 31-35 rows
    path = None
    meta, body = parse((result.version.path / CARD).read_text())
    assert meta["lineage"] == {
        "model_name": MODEL_NAME,
        "model_version": "1",
        "git_commit": "0123abc",
        "data_sha256": load_dataset(path).sha256,
        "artifact_sha256": result.version.metadata["sha256"],
        "training_image": "registry.example/churn:1",
        "image_digest": "sha256:" + "d" * 64,
    }
    reported = {m["type"]: m["value"] for m in meta["model-index"][0]["results"][0]["metrics"]}
    assert reported["accuracy"] == pytest.approx(result.metrics["accuracy"], abs=1e-6)
    assert 0 <= reported["demographic_parity_difference"] <= 0.2
    assert meta["thresholds"]["min_accuracy"] == Thresholds().min_accuracy
    for section in (
        "## Intended use",
        "## Training data",
        "## Metrics (held-out",
        "## Fairness",
        "## Limitations",
        "## Lineage",
    ):
        assert section in body
    assert "| 18-34 |" in body


def test_low_accuracy_blocks_the_model(
    tiny_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MIN_ACCURACY", "0.99")
    with pytest.raises(QualityGateFailed) as err:
        train(data_path=tiny_csv, model_dir=tmp_path)
    assert "held-out accuracy" in str(err.value)
    assert "below MIN_ACCURACY 0.99" in str(err.value)
    assert list_versions(tmp_path, MODEL_NAME) == []


def test_fairness_breach_blocks_the_model(tmp_path: Path) -> None:
    # Groups follow the outcome: the model's predictions differ sharply between them.
    def biased(i: int, row: dict) -> None:
        row[SENSITIVE_COLUMN] = "A" if row[TARGET] == "1" else "B"

    path = tmp_path / "biased.csv"
    path.write_text(_rewrite(sample_path().read_text(), biased))
    with pytest.raises(QualityGateFailed) as err:
        train(data_path=path, model_dir=tmp_path / "models")
    reasons = err.value.result.reasons
    assert any(r.startswith("demographic parity difference across age_band") for r in reasons)
    assert list_versions(tmp_path / "models", MODEL_NAME) == []


def test_the_failed_gate_exits_1_with_its_reasons(
    tiny_csv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MIN_ACCURACY", "0.99")
    with pytest.raises(SystemExit) as err:
        main(["--data", str(tiny_csv)])
    # A SystemExit with a message: Python prints it to stderr and exits 1, without a traceback.
    assert isinstance(err.value.code, str)
    assert err.value.code.startswith("quality gate failed")


def test_small_groups_are_left_out_and_named(tiny_csv: Path, tmp_path: Path) -> None:
    result = train(data_path=tiny_csv, model_dir=tmp_path)  # 30 held-out rows, 3 groups
    _, body = parse((result.version.path / CARD).read_text())
    assert "fairness not judged" in body


def test_held_out_groups_are_the_held_out_rows(tmp_path: Path) -> None:
    # Make the group a copy of tenure: the groups gathered must match X_test row for row.
    def copy_tenure(i: int, row: dict) -> None:
        row[SENSITIVE_COLUMN] = row["tenure_months"]

    path = tmp_path / "d.csv"
    path.write_text(_rewrite(generate(200, seed=9), copy_tenure))
    data = load_dataset(path)
    _, X_test, _, _ = train_test_split(data, 0.25, 3)
    groups = held_out_groups(data, path, SENSITIVE_COLUMN, 0.25, 3)
    np.testing.assert_array_equal(groups.astype(float), X_test[:, 0])


def test_group_metrics_match_their_definitions() -> None:
    y_true = np.array([1, 1, 0, 0, 1, 1, 0, 0])
    y_pred = np.array([1, 1, 1, 0, 1, 0, 0, 0])
    groups = np.array(["a"] * 4 + ["b"] * 4)
    report = assess(y_true, y_pred, groups, "g")
    # selection rates: a 3/4, b 1/4; TPR a 1, b 1/2; FPR a 1/2, b 0.
    assert report.demographic_parity_difference == pytest.approx(0.5)
    assert report.equalized_odds_difference == pytest.approx(0.5)
    assert report.by_group["a"] == {"rows": 4, "accuracy": 0.75, "selection_rate": 0.75}


def test_gate_without_sensitive_feature_judges_accuracy_only(trained) -> None:
    X = load_dataset().X[:50]
    y = load_dataset().y[:50]
    result = quality_gate(
        None,
        X,
        y,
        {"accuracy": 0.5},
        groups=None,
        thresholds=Thresholds(min_accuracy=0.4, sensitive=""),
    )
    assert result.passed
    assert result.fairness is None
    assert set(result.checks) == {"accuracy"}


def test_card_parser_refuses_malformed_cards() -> None:
    with pytest.raises(ValueError, match="front matter"):
        parse("# no metadata\n")
    with pytest.raises(ValueError, match="lacks"):
        parse("---\nlibrary_name: sklearn\n---\n# card\n")
