"""Promotion: move the ``champion`` alias to a version that beats it on the same held-out data.

``python -m {{ cookiecutter.project_slug }}.promote check --candidate 7 --holdout s3://.../holdout.csv``
evaluates the candidate and the current champion on the same held-out CSV and says whether the
candidate may replace it: its ``--metric`` (ROC AUC by default: unlike accuracy at 0.5, it does
not jump with the seed on a few hundred rows) must be at least the champion's plus
``--min-improvement``, and at least ``--floor``. ``promote`` does the same check and then moves the
alias by compare-and-swap in the model bucket (and the MLflow alias when tracking is on);
``rollback`` moves it back to the version it replaced; ``show`` prints it. ``firing`` reads
Prometheus' ``/api/v1/alerts`` answer on stdin and fails when one of :data:`ROLLBACK_ALERTS` of
this project's endpoint is firing (the promote workflow polls it while the canary bakes).

Continuous training: ``pending`` names the newest version above the champion that was never
rejected (the scheduled promote workflow's candidate; the retraining trigger makes them), and
``reject`` records one the canary or the check turned down, in the champion's record, so no
schedule tries it again. A rolled-back version is rejected too.

The endpoint serves the champion: the deploy and promote workflows pass it to ``pulumi up``.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any

from .data import load_dataset
from .evaluate import evaluate
from .registry import load_version
from .settings import MODEL_NAME, PROJECT, Settings

ALIAS = "champion"
HIGHER_IS_BETTER = {"roc_auc": True, "accuracy": True, "log_loss": False}
# The alerts that condemn a baking canary (tests check that each is one the deployed rules define):
# the platform's SLO burn-rate alerts of the endpoint (stable and canary together; they carry the
# endpoint's name), and this project's own canary alerts (``track: canary``: errors and latency
# from infra/observability.py, accuracy from monitoring/model-alerts.yml).
SLO_ALERTS = (
    "ServingSLOAvailabilityBudgetBurn",
    "ServingSLOErrorRatioBudgetBurn",
    "ServingSLOLatencyBudgetBurn",
)
CANARY_ALERTS = ("ModelCanaryAccuracyBelowCard", "ProjectCanaryErrors", "ProjectCanarySlow")
ROLLBACK_ALERTS = SLO_ALERTS + CANARY_ALERTS


def decide(
    candidate: dict[str, float],
    champion: dict[str, float] | None,
    *,
    metric: str = "roc_auc",
    floor: float = 0.0,
    min_improvement: float = 0.0,
) -> tuple[bool, str]:
    """Whether the candidate may become champion, and why (pure; both scored on the same data)."""
    higher = HIGHER_IS_BETTER[metric]
    value = candidate.get(metric)
    if value is None:
        return False, f"candidate has no {metric} on the held-out data (one class only?)"
    if (value < floor) if higher else (value > floor):
        return False, f"candidate {metric} {value:.4f} misses the floor {floor}"
    if champion is None:
        return True, f"no champion yet; candidate {metric} {value:.4f} clears the floor"
    best = champion[metric]
    needed = best + min_improvement if higher else best - min_improvement
    if (value >= needed) if higher else (value <= needed):
        return True, f"candidate {metric} {value:.4f} vs champion {best:.4f}"
    return False, f"candidate {metric} {value:.4f} does not beat champion {best:.4f}"


def firing_canary_alerts(alerts: dict[str, Any], namespace: str, endpoint: str) -> list[str]:
    """Firing alerts, from Prometheus' /api/v1/alerts, that condemn the canary (pure): one of
    :data:`SLO_ALERTS` for this endpoint, or one of :data:`CANARY_ALERTS` (``track: canary``), in
    this namespace. Pending alerts, drift warnings and the champion's own alerts do not."""
    names = []
    for alert in alerts.get("data", {}).get("alerts", []):
        labels = alert.get("labels", {})
        name = str(labels.get("alertname", ""))
        if alert.get("state") != "firing" or labels.get("namespace") != namespace:
            continue
        if (name in SLO_ALERTS and labels.get("endpoint") == endpoint) or (
            name in CANARY_ALERTS and labels.get("track") == "canary"
        ):
            names.append(name)
    return sorted(set(names))


def pending_candidate(versions: list[int], record: dict[str, Any] | None) -> int | None:
    """The newest complete version above the champion that was never rejected (pure). None
    without a champion: the first promotion is a person's decision, not a schedule's."""
    if record is None:
        return None
    rejected = {int(v) for v in record.get("rejected", [])}
    newer = [v for v in versions if v > int(record["version"]) and v not in rejected]
    return max(newer, default=None)


def with_rejected(record: dict[str, Any], *versions: int) -> dict[str, Any]:
    """The record with ``versions`` added to its rejected list (kept across alias moves)."""
    rejected = sorted({*(int(v) for v in record.get("rejected", [])), *map(int, versions)})
    return {**record, "rejected": rejected}


def _score(s3: Any, settings: Settings, version: int | str, data: Any) -> tuple[int, dict]:
    from .storage import download_version

    assert settings.model_bucket is not None
    path = download_version(
        s3, settings.model_dir, settings.model_bucket, settings.model_prefix, MODEL_NAME, version
    )
    model, mv = load_version(settings.model_dir, MODEL_NAME, int(path.name))
    return mv.version, evaluate(model, data.X, data.y)


def _check(s3: Any, settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    from .storage import read_alias

    assert settings.model_bucket is not None
    data = load_dataset(args.holdout)
    record, etag = read_alias(
        s3, settings.model_bucket, settings.model_prefix, MODEL_NAME, args.alias
    )
    version, scores = _score(s3, settings, args.candidate, data)
    champion = None
    if record is not None:
        champion = _score(s3, settings, record["version"], data)[1]
    ok, reason = decide(
        scores,
        champion,
        metric=args.metric,
        floor=args.floor,
        min_improvement=args.min_improvement,
    )
    return {
        "ok": ok and (record is None or int(record["version"]) != version),
        "reason": reason if record is None or int(record["version"]) != version else "already it",
        "candidate": {"version": version, "metrics": scores},
        "champion": None if record is None else {"version": record["version"], "metrics": champion},
        "holdout_sha256": data.sha256,
        "_etag": etag,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("check", "promote"):
        p = sub.add_parser(name)
        p.add_argument("--candidate", default="latest", help="version number, or latest")
        p.add_argument("--holdout", required=True, help="held-out CSV, local or s3://")
        p.add_argument("--metric", choices=sorted(HIGHER_IS_BETTER), default="roc_auc")
        p.add_argument("--floor", type=float, default=0.6)
        p.add_argument("--min-improvement", type=float, default=0.0)
    for name in ("rollback", "show", "pending"):
        sub.add_parser(name)
    reject = sub.add_parser("reject", help="record a candidate the canary or the check refused")
    reject.add_argument("--candidate", type=int, required=True)
    reject.add_argument("--reason", required=True)
    firing = sub.add_parser("firing", help="read /api/v1/alerts JSON on stdin")
    firing.add_argument("--namespace", default=PROJECT)
    firing.add_argument("--endpoint", default=PROJECT)
    for p in sub.choices.values():
        p.add_argument("--alias", default=ALIAS)
    args = parser.parse_args(argv)

    if args.command == "firing":
        names = firing_canary_alerts(json.load(sys.stdin), args.namespace, args.endpoint)
        print(json.dumps({"firing": names}))
        return 1 if names else 0

    settings = Settings.from_env()
    if not settings.model_bucket:
        print("MODEL_BUCKET is not set (see README: Promote)", file=sys.stderr)
        return 2
    from . import tracking
    from .storage import client, read_alias, set_alias

    s3 = client()
    where = (s3, settings.model_bucket, settings.model_prefix, MODEL_NAME, args.alias)
    if args.command == "show":
        # null before the first promotion; any error (no access, no bucket) fails instead, so a
        # workflow never mistakes "cannot read" for "no champion" and removes the endpoint.
        record, _ = read_alias(*where)
        print(json.dumps(record))
        return 0
    if args.command == "pending":
        from .storage import remote_versions

        record, _ = read_alias(*where)
        versions = remote_versions(s3, settings.model_bucket, settings.model_prefix, MODEL_NAME)
        print(
            json.dumps(
                {
                    "candidate": pending_candidate(versions, record),
                    "champion": record and record["version"],
                    "rejected": (record or {}).get("rejected", []),
                }
            )
        )
        return 0
    if args.command == "reject":
        record, etag = read_alias(*where)
        if not record:
            print(f"alias {args.alias!r} is not set: nothing to reject against", file=sys.stderr)
            return 1
        updated = with_rejected(record, args.candidate)
        updated["last_rejection"] = {
            "version": args.candidate,
            "reason": args.reason,
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        set_alias(*where, updated, expected_etag=etag)
        print(json.dumps(updated, indent=2))
        return 0
    if args.command == "rollback":
        record, etag = read_alias(*where)
        if not record or not record.get("previous"):
            print(f"alias {args.alias!r} has no previous version to go back to", file=sys.stderr)
            return 1
        # The version rolled back from is rejected: no schedule promotes it again.
        back = with_rejected(
            {
                "version": record["previous"],
                "previous": None,
                "rolled_back_from": record["version"],
                "at": datetime.now(UTC).isoformat(timespec="seconds"),
            },
            *record.get("rejected", []),
            record["version"],
        )
        set_alias(*where, back, expected_etag=etag)
        tracking.set_alias(args.alias, int(record["previous"]))
        print(json.dumps(back, indent=2))
        return 0

    result = _check(s3, settings, args)
    etag = result.pop("_etag")
    if args.command == "promote" and result["ok"]:
        current, _ = read_alias(*where)
        record = {
            "version": result["candidate"]["version"],
            "previous": (result["champion"] or {}).get("version"),
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "metrics": result["candidate"]["metrics"],
            "holdout_sha256": result["holdout_sha256"],
            "rejected": (current or {}).get("rejected", []),
        }
        set_alias(*where, record, expected_etag=etag)
        result["mlflow_version"] = tracking.set_alias(args.alias, record["version"])
        result["promoted"] = True
    print(json.dumps(result, indent=2))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
