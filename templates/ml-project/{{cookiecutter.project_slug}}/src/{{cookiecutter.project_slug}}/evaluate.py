"""Evaluation metrics, and a command to score a saved model version on held-out data.

Without ``--data``, the version is scored on the rows its training run held out (the same
stratified split, from the seed and fraction in its metadata), never on rows it trained on; that
needs the data it was trained on (``--train-data``, default: the bundled sample), checked against
the recorded hash. ``--data`` scores on a whole held-out CSV instead.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, log_loss, roc_auc_score

from . import model as model_lib
from .data import load_dataset, train_test_split
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


def held_out(metadata: dict[str, Any], train_data: str | None) -> tuple[np.ndarray, np.ndarray]:
    """The rows the version's training run held out, from the data it was trained on."""
    data = load_dataset(train_data)
    if data.sha256 != metadata.get("data_sha256"):
        raise ValueError(
            "this version was trained on other data than "
            f"{train_data or 'the bundled sample'}: pass it as --train-data, or score a "
            "held-out CSV with --data"
        )
    split = metadata.get("split") or {}
    if not split:
        raise ValueError("this version records no split: score a held-out CSV with --data")
    _, X_test, _, y_test = train_test_split(data, split["test_fraction"], split["seed"])
    return X_test, y_test


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="a held-out CSV, local or s3:// (scored whole)")
    parser.add_argument("--train-data", help="the CSV the version was trained on (default: sample)")
    parser.add_argument("--version", default="latest")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    model, mv = load_version(settings.model_dir, MODEL_NAME, args.version)
    if args.data:
        data = load_dataset(args.data)
        X, y = data.X, data.y
    else:
        try:
            X, y = held_out(mv.metadata, args.train_data)
        except ValueError as exc:
            print(f"{exc}", file=sys.stderr)
            return 2
    print(json.dumps({"version": mv.version, **evaluate(model, X, y)}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
