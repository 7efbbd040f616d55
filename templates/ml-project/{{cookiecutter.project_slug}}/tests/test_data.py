from pathlib import Path

import numpy as np
import pytest

from {{ cookiecutter.project_slug }}.data import (
    FEATURES,
    SAMPLE_ROWS,
    SAMPLE_SEED,
    generate,
    load_dataset,
    parse_csv,
    sample_path,
    train_test_split,
)


def test_bundled_sample_is_reproducible_from_its_seed() -> None:
    assert sample_path().read_text() == generate(SAMPLE_ROWS, SAMPLE_SEED)


def test_sample_loads_with_both_classes() -> None:
    data = load_dataset()
    assert data.X.shape == (SAMPLE_ROWS, len(FEATURES))
    assert set(np.unique(data.y)) == {0, 1}
    assert len(data.sha256) == 64


def test_generate_depends_on_seed() -> None:
    assert generate(50, seed=1) == generate(50, seed=1)
    assert generate(50, seed=1) != generate(50, seed=2)


def test_missing_column_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("tenure_months,monthly_spend,churned\n1,2,0\n")
    with pytest.raises(ValueError, match="support_tickets, usage_hours"):
        load_dataset(bad)


def test_non_binary_target_is_rejected() -> None:
    header = ",".join((*FEATURES, "churned"))
    with pytest.raises(ValueError, match="0 or 1"):
        parse_csv(f"{header}\n1,2,3,4,2\n")


def test_split_is_stratified_and_disjoint() -> None:
    data = parse_csv(generate(40, seed=5))
    X_train, X_test, y_train, y_test = train_test_split(data, 0.25, seed=0)
    assert len(y_train) + len(y_test) == 40
    assert set(np.unique(y_test)) == {0, 1}
    rows = {tuple(r) for r in X_train}
    assert not any(tuple(r) in rows for r in X_test)
