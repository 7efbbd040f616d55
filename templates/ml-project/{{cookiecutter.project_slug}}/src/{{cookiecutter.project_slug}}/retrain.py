"""Decide whether to retrain: on drift, on live accuracy below the card's floor, or on schedule.

``python -m <package>.retrain --check`` reads the drift job's latest result and the current model's
card, prints every reason, and exits 0 when retraining is due and 1 when it is not (2 on bad
input), so a CronJob or workflow step reads ``retrain --check && <submit the training job>``.
The new model then goes through the same gates as any other (``gates.py``).

- drift: any feature, or the prediction, with PSI above ``drift.PSI_ALERT``;
- accuracy: live accuracy below the card's ``min_accuracy``;
- schedule: the model is older than ``RETRAIN_MAX_AGE_DAYS`` (default 30);
- stale monitoring: no drift result, or one older than ``RETRAIN_MAX_RESULT_AGE_H`` (default 48),
  is reported but does not trigger retraining on its own (an outage should not retrain models).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from . import drift


@dataclass(frozen=True)
class Decision:
    retrain: bool
    reasons: tuple[str, ...]
    notes: tuple[str, ...] = ()


def decide(
    result: dict[str, Any] | None,
    model_created_at: datetime,
    *,
    now: float | None = None,
    max_age_days: float = 30.0,
    max_result_age_h: float = 48.0,
) -> Decision:
    now = time.time() if now is None else now
    reasons: list[str] = []
    notes: list[str] = []
    age_days = (now - model_created_at.timestamp()) / 86400
    if age_days > max_age_days:
        reasons.append(f"schedule: the model is {age_days:.1f} days old (limit {max_age_days})")
    if result is None:
        notes.append("no drift result yet: run the drift job")
    else:
        if (now - result["timestamp"]) / 3600 > max_result_age_h:
            notes.append("the drift result is stale: is the drift job running?")
        for name, s in sorted(result["features"].items()):
            if s["psi"] > result["psi_threshold"]:
                reasons.append(f"drift: {name} PSI {s['psi']:.3f} > {result['psi_threshold']}")
        if result["prediction"]["psi"] > result["psi_threshold"]:
            reasons.append(
                f"drift: prediction PSI {result['prediction']['psi']:.3f} > {result['psi_threshold']}"
            )
        live = result.get("live_accuracy")
        if live is not None and live < result["min_accuracy"]:
            reasons.append(f"accuracy: live {live:.3f} < the card's floor {result['min_accuracy']}")
    return Decision(bool(reasons), tuple(reasons), tuple(notes))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", required=True, help="decide and exit 0/1")
    parser.parse_args(argv)
    from .registry import read_metadata, resolve_version
    from .settings import MODEL_NAME, Settings

    settings = Settings.from_env()
    try:
        max_age = float(os.environ.get("RETRAIN_MAX_AGE_DAYS", "30"))
        max_result_age = float(os.environ.get("RETRAIN_MAX_RESULT_AGE_H", "48"))
    except ValueError as exc:
        print(f"RETRAIN_MAX_AGE_DAYS / RETRAIN_MAX_RESULT_AGE_H: {exc}", file=sys.stderr)
        return 2
    if settings.model_bucket:
        from .storage import client, download_version

        download_version(
            client(),
            settings.model_dir,
            settings.model_bucket,
            settings.model_prefix,
            MODEL_NAME,
            settings.model_version,
        )
    number = resolve_version(settings.model_dir, MODEL_NAME, settings.model_version)
    meta = read_metadata(settings.model_dir / MODEL_NAME / str(number))
    decision = decide(
        drift.read_result(),
        datetime.fromisoformat(meta["created_at"]),
        max_age_days=max_age,
        max_result_age_h=max_result_age,
    )
    for note in decision.notes:
        print(f"note: {note}")
    if decision.retrain:
        print("retrain: " + "; ".join(decision.reasons))
        return 0
    print(f"no retraining needed for version {number}")
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
