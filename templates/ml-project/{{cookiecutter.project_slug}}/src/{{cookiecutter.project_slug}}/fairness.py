"""Group fairness of a model's held-out predictions (fairlearn), for one sensitive attribute.

The attribute (``SENSITIVE_FEATURE``, default ``age_band``) is a column of the data that is not a
model input: the model never sees it, the audit groups by it. Metrics:

- demographic parity difference: the largest gap between groups' positive-prediction rates;
- equalized odds difference: the larger of the largest gaps in true- and false-positive rates.

Both are 0 for a model that treats groups alike and 1 at worst; the gate in ``gates.py`` compares
them with thresholds. Computed on held-out rows only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from fairlearn.metrics import (
    MetricFrame,
    demographic_parity_difference,
    equalized_odds_difference,
    selection_rate,
)
from sklearn.metrics import accuracy_score


@dataclass(frozen=True)
class FairnessReport:
    sensitive_feature: str
    demographic_parity_difference: float
    equalized_odds_difference: float
    # Per group: rows, accuracy and selection (positive-prediction) rate, for the model card.
    by_group: dict[str, dict[str, float]]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def assess(
    y_true: np.ndarray, y_pred: np.ndarray, groups: np.ndarray, sensitive_feature: str
) -> FairnessReport:
    if not len(y_true) == len(y_pred) == len(groups):
        raise ValueError("y_true, y_pred and groups must have the same length")
    frame = MetricFrame(
        metrics={"accuracy": accuracy_score, "selection_rate": selection_rate},
        y_true=y_true,
        y_pred=y_pred,
        sensitive_features=groups,
    )
    counts = {str(g): int(n) for g, n in zip(*np.unique(groups, return_counts=True), strict=True)}
    by_group = {
        str(group): {"rows": counts[str(group)], **{k: float(v) for k, v in row.items()}}
        for group, row in frame.by_group.to_dict(orient="index").items()
    }
    return FairnessReport(
        sensitive_feature=sensitive_feature,
        demographic_parity_difference=float(
            demographic_parity_difference(y_true, y_pred, sensitive_features=groups)
        ),
        equalized_odds_difference=float(
            equalized_odds_difference(y_true, y_pred, sensitive_features=groups)
        ),
        by_group=by_group,
    )
