"""The quality gate a new model version must pass before it is saved, uploaded or registered.

``quality_gate`` combines an accuracy floor on held-out data with group-fairness limits on the
same rows (``fairness.py``). Thresholds come from the environment, so CI, the training job and a
developer's shell set them the same way:

- ``MIN_ACCURACY`` (default 0.6): held-out accuracy floor, the only one (``train --min-accuracy``
  overrides it for one run, through :meth:`Thresholds.with_min_accuracy`); the model card records
  it, and the live accuracy alert (``monitoring/model-alerts.yml``) compares production accuracy
  with it;
- ``SENSITIVE_FEATURE`` (default ``age_band``; empty turns the fairness gate off, and the card says so);
- ``MAX_DEMOGRAPHIC_PARITY_DIFFERENCE`` (default 0.2) and ``MAX_EQUALIZED_ODDS_DIFFERENCE`` (0.3);
- ``MIN_GROUP_ROWS`` (default 20): groups with fewer held-out rows are left out of the fairness
  check (their rates are noise) and named in the gate's notes and the card; with fewer than two
  groups left, fairness is not judged, and the card says so.

A failing gate raises ``QualityGateFailed``: a SystemExit, so ``train`` stops before saving and the
command exits 1 with every reason, and no traceback.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import model as model_lib
from .data import SENSITIVE_COLUMN, Dataset, train_test_split
from .fairness import FairnessReport, assess


def _float_env(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    try:
        return float(raw) if raw.strip() else default
    except ValueError:
        raise SystemExit(f"{name} must be a number, got {raw!r}") from None


@dataclass(frozen=True)
class Thresholds:
    min_accuracy: float = 0.6
    sensitive: str = SENSITIVE_COLUMN
    max_demographic_parity_difference: float = 0.2
    max_equalized_odds_difference: float = 0.3
    min_group_rows: int = 20

    @classmethod
    def from_env(cls) -> Thresholds:
        d = cls()
        return cls(
            min_accuracy=_float_env("MIN_ACCURACY", d.min_accuracy),
            sensitive=os.environ.get("SENSITIVE_FEATURE", d.sensitive).strip(),
            max_demographic_parity_difference=_float_env(
                "MAX_DEMOGRAPHIC_PARITY_DIFFERENCE", d.max_demographic_parity_difference
            ),
            max_equalized_odds_difference=_float_env(
                "MAX_EQUALIZED_ODDS_DIFFERENCE", d.max_equalized_odds_difference
            ),
            min_group_rows=int(_float_env("MIN_GROUP_ROWS", d.min_group_rows)),
        )

    def with_min_accuracy(self, value: float | None) -> Thresholds:
        """These thresholds with another accuracy floor (None: unchanged); 0..1 or SystemExit."""
        if value is None:
            return self
        if not 0 <= value <= 1:
            raise SystemExit(f"--min-accuracy must be between 0 and 1, got {value}")
        return replace(self, min_accuracy=value)


@dataclass(frozen=True)
class GateResult:
    passed: bool
    reasons: tuple[str, ...]
    thresholds: Thresholds
    metrics: dict[str, float]
    fairness: FairnessReport | None = None
    checks: dict[str, bool] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def enforce(self) -> GateResult:
        if not self.passed:
            raise QualityGateFailed(self)
        return self


class QualityGateFailed(SystemExit):
    def __init__(self, result: GateResult) -> None:
        lines = ["quality gate failed; the model is not saved, uploaded or registered:"]
        lines += [f"  - {reason}" for reason in result.reasons]
        super().__init__("\n".join(lines))
        self.result = result


def held_out_groups(
    data: Dataset, data_path: str | Path | None, column: str, test_fraction: float, seed: int
) -> np.ndarray:
    """The sensitive column's values for exactly the rows ``train_test_split`` held out.

    The split depends only on the labels, the fraction and the seed, so splitting the row numbers
    the same way gives the held-out rows' positions in the file.
    """
    from .validation import read_training_text

    _, text = read_training_text(data_path)
    frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    if column not in frame.columns:
        raise SystemExit(
            f"SENSITIVE_FEATURE={column!r} is not a column of the training data "
            f"(columns: {', '.join(frame.columns)}); set SENSITIVE_FEATURE='' to skip the fairness gate"
        )
    rows = Dataset(X=np.arange(len(data)).reshape(-1, 1), y=data.y, sha256=data.sha256)
    _, test_rows, _, _ = train_test_split(rows, test_fraction, seed)
    return frame[column].to_numpy()[test_rows.ravel()]


def quality_gate(
    model: Any,
    X_test: np.ndarray,
    y_test: np.ndarray,
    metrics: dict[str, float],
    *,
    groups: np.ndarray | None,
    thresholds: Thresholds | None = None,
) -> GateResult:
    """Judge held-out metrics and fairness against the thresholds; never raises on a failure."""
    t = thresholds or Thresholds.from_env()
    reasons: list[str] = []
    checks = {"accuracy": metrics["accuracy"] >= t.min_accuracy}
    if not checks["accuracy"]:
        reasons.append(
            f"held-out accuracy {metrics['accuracy']:.3f} is below MIN_ACCURACY {t.min_accuracy}"
        )
    report, notes = None, []
    if t.sensitive and groups is not None:
        names, counts = np.unique(groups, return_counts=True)
        small = sorted(str(g) for g, n in zip(names, counts, strict=True) if n < t.min_group_rows)
        if small:
            notes.append(
                f"{t.sensitive} groups with fewer than {t.min_group_rows} held-out rows left out "
                f"of the fairness check: {', '.join(small)}"
            )
        keep = ~np.isin(groups.astype(str), small)
        if len(names) - len(small) < 2:
            notes.append(f"fairness not judged: fewer than two {t.sensitive} groups large enough")
            groups = None
    if t.sensitive and groups is not None:
        y_pred = (model_lib.predict_proba(model, X_test[keep]) >= 0.5).astype(int)
        report = assess(y_test[keep], y_pred, groups[keep], t.sensitive)
        for name, value, limit in (
            (
                "demographic parity difference",
                report.demographic_parity_difference,
                t.max_demographic_parity_difference,
            ),
            (
                "equalized odds difference",
                report.equalized_odds_difference,
                t.max_equalized_odds_difference,
            ),
        ):
            checks[name] = value <= limit
            if not checks[name]:
                reasons.append(
                    f"{name} across {t.sensitive} is {value:.3f}, above the limit {limit}"
                )
    return GateResult(not reasons, tuple(reasons), t, dict(metrics), report, checks, tuple(notes))


def check_before_saving(
    model: Any,
    data: Dataset,
    data_path: str | Path | None,
    X_test: np.ndarray,
    y_test: np.ndarray,
    metrics: dict[str, float],
    *,
    seed: int,
    test_fraction: float,
    thresholds: Thresholds | None = None,
) -> GateResult:
    """The training seam: gate the held-out results; raise QualityGateFailed when they fail."""
    t = thresholds or Thresholds.from_env()
    groups = (
        held_out_groups(data, data_path, t.sensitive, test_fraction, seed) if t.sensitive else None
    )
    return quality_gate(model, X_test, y_test, metrics, groups=groups, thresholds=t).enforce()
