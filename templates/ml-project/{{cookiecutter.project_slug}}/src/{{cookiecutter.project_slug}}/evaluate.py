"""Evaluation metrics, and a command to score a saved model version on a CSV."""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, log_loss, roc_auc_score

from . import model as model_lib
from .data import load_dataset
from .registry import load_version
from .settings import MODEL_NAME, Settings


def evaluate(model: Any, X: np.ndarray, y: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    proba = model_lib.predict_proba(model, X)
    metrics = {
        "accuracy": float(accuracy_score(y, proba >= threshold)),
        "log_loss": float(log_loss(y, np.clip(proba, 1e-7, 1 - 1e-7), labels=[0, 1])),
        "n": float(len(y)),
    }
    # AUC is undefined when only one class is present (tiny evaluation sets).
    if len(np.unique(y)) == 2:
        metrics["roc_auc"] = float(roc_auc_score(y, proba))
    return metrics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Evaluate a saved model version on a CSV.")
    parser.add_argument("--data", help="CSV with the feature and target columns (default: sample)")
    parser.add_argument("--version", default="latest")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    model, mv = load_version(settings.model_dir, MODEL_NAME, args.version)
    data = load_dataset(args.data)
    print(json.dumps({"version": mv.version, **evaluate(model, data.X, data.y)}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
