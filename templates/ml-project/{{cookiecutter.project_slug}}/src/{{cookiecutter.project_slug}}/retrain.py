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

``--submit JOB.json`` is the in-cluster trigger (the ``<project>-retrain`` CronJob of
``infra/retraining.py``): when retraining is due it creates the training Job the infra program
rendered with the platform's TrainingJob builders (the same run ``make submit`` starts: the
project's Kueue queue, the trainer's Pod Identity role), under a fresh name, through the API
server with the pod's own service-account token (a Role lets it create and list Jobs in its
namespace, nothing else). It submits nothing while an earlier triggered run is queued or running,
or within ``RETRAIN_COOLDOWN_H`` (default 24) of the last one: a drift that persists until the
new model is promoted must not start a run every hour. It exits 0 whether or not it submitted
(a finished check is not a failed Job) and 1 only when it could not decide or submit.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# Jobs this trigger creates carry this label; it finds its earlier runs by it.
TRIGGER_LABEL = "mlplatform.io/trigger"
TRIGGER = "retrain"
SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
_NAME_MAX = 63


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
    version: int | None = None,
) -> Decision:
    now = time.time() if now is None else now
    reasons: list[str] = []
    notes: list[str] = []
    age_days = (now - model_created_at.timestamp()) / 86400
    if age_days > max_age_days:
        reasons.append(f"schedule: the model is {age_days:.1f} days old (limit {max_age_days})")
    scored = None if result is None else result.get("model_version")
    if version is not None and scored is not None and int(scored) != version:
        # Scores of the version this one replaced say nothing about it (a fresh promotion).
        notes.append(f"the drift result scores version {scored}, not {version}: wait for the job")
        result = None
    elif result is None:
        notes.append("no drift result yet: run the drift job")
    if result is not None:
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


def _finished(job: dict[str, Any]) -> bool:
    conditions = (job.get("status") or {}).get("conditions") or []
    return any(
        c.get("type") in ("Complete", "Failed") and c.get("status") == "True" for c in conditions
    )


def may_submit(
    jobs: list[dict[str, Any]], *, now: float | None = None, cooldown_h: float = 24.0
) -> tuple[bool, str]:
    """Whether the trigger may start another run, given the Jobs it started before (pure)."""
    now = time.time() if now is None else now
    if not jobs:
        return True, "no earlier triggered run"
    for job in jobs:
        if not _finished(job):  # queued (suspended by Kueue), running, or retrying
            return False, f"triggered run {job['metadata']['name']} is still queued or running"
    created = max(jobs, key=lambda j: j["metadata"]["creationTimestamp"])["metadata"]
    when = datetime.fromisoformat(created["creationTimestamp"].replace("Z", "+00:00"))
    age_h = (now - when.timestamp()) / 3600
    if age_h < cooldown_h:
        return False, (
            f"triggered run {created['name']} started {age_h:.1f} h ago "
            f"(RETRAIN_COOLDOWN_H {cooldown_h})"
        )
    return True, f"last triggered run {created['name']} started {age_h:.1f} h ago"


def triggered_job(template: dict[str, Any], now: datetime | None = None) -> dict[str, Any]:
    """The rendered training Job under a fresh, unique name, labelled as this trigger's."""
    if template.get("kind") != "Job":
        raise ValueError(f"the trigger starts single-node Jobs, not {template.get('kind')!r}")
    job = json.loads(json.dumps(template))
    meta = job["metadata"]
    stem = f"-{TRIGGER}-{(now or datetime.now(UTC)):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"
    name = meta["name"].removesuffix(f"-{TRIGGER}")[: _NAME_MAX - len(stem)] + stem
    meta["name"] = name
    meta.pop("generateName", None)
    for labels in (meta.setdefault("labels", {}), job["spec"]["template"]["metadata"]["labels"]):
        labels.update({"app.kubernetes.io/name": name, TRIGGER_LABEL: TRIGGER})
        labels["app.kubernetes.io/managed-by"] = "retrain-trigger"  # not Pulumi: nobody prunes it
    return job


class KubeApi:
    """The few calls the trigger makes, with the pod's service-account token (no client library:
    one list and one create do not justify a dependency in every image)."""

    def __init__(self, base: str, token: str, ca_file: str | None) -> None:
        self.base, self.token = base.rstrip("/"), token
        self.context = ssl.create_default_context(cafile=ca_file) if ca_file else None

    @classmethod
    def in_cluster(cls) -> KubeApi:
        host = os.environ.get("KUBERNETES_SERVICE_HOST")
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        if not host or not (SA_DIR / "token").is_file():
            raise SystemExit(
                "retrain --submit runs in the cluster, with a service-account token "
                "(automountServiceAccountToken); use --check elsewhere"
            )
        token = (SA_DIR / "token").read_text(encoding="utf-8").strip()
        return cls(f"https://{host}:{port}", token, str(SA_DIR / "ca.crt"))

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 - the API server's https URL
            self.base + path,
            data=data,
            method=method,
            headers={
                "Authorization": f"Bearer {self.token}",
                "Accept": "application/json",
                "Content-Type": "application/json",
            },
        )
        with urllib.request.urlopen(request, context=self.context, timeout=30) as response:  # noqa: S310
            return json.loads(response.read())

    def jobs(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        query = urllib.parse.urlencode({"labelSelector": selector})
        path = f"/apis/batch/v1/namespaces/{namespace}/jobs?{query}"
        return list(self._call("GET", path)["items"])

    def create_job(self, namespace: str, job: dict[str, Any]) -> dict[str, Any]:
        return dict(self._call("POST", f"/apis/batch/v1/namespaces/{namespace}/jobs", job))


def submit(
    template_path: Path, api: KubeApi, *, cooldown_h: float, now: float | None = None
) -> tuple[str | None, str]:
    """Start the training run unless an earlier one is in flight or cooling down."""
    template = json.loads(template_path.read_text(encoding="utf-8"))
    namespace = template["metadata"]["namespace"]
    ok, why = may_submit(
        api.jobs(namespace, f"{TRIGGER_LABEL}={TRIGGER}"), now=now, cooldown_h=cooldown_h
    )
    if not ok:
        return None, why
    created = api.create_job(namespace, triggered_job(template))
    return created["metadata"]["name"], why


def main(argv: list[str] | None = None, api: KubeApi | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true", help="decide and exit 0 (due) or 1 (not)")
    mode.add_argument(
        "--submit", type=Path, metavar="JOB.json", help="decide, and start this Job when due"
    )
    args = parser.parse_args(argv)
    # Imported here: the trigger's pure parts load without numpy (infra/tests read them).
    from . import drift
    from .registry import read_metadata, resolve_version
    from .settings import MODEL_NAME, Settings

    settings = Settings.from_env()
    try:
        max_age = float(os.environ.get("RETRAIN_MAX_AGE_DAYS", "30"))
        max_result_age = float(os.environ.get("RETRAIN_MAX_RESULT_AGE_H", "48"))
        cooldown = float(os.environ.get("RETRAIN_COOLDOWN_H", "24"))
    except ValueError as exc:
        print(
            f"RETRAIN_MAX_AGE_DAYS / RETRAIN_MAX_RESULT_AGE_H / RETRAIN_COOLDOWN_H: {exc}",
            file=sys.stderr,
        )
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
        version=number,
    )
    for note in decision.notes:
        print(f"note: {note}")
    if not decision.retrain:
        print(f"no retraining needed for version {number}")
        return 0 if args.submit else 1
    print("retrain: " + "; ".join(decision.reasons))
    if not args.submit:
        return 0
    try:
        run, why = submit(args.submit, api or KubeApi.in_cluster(), cooldown_h=cooldown)
    except urllib.error.HTTPError as exc:  # e.g. 403 without the Role, 422 on a bad template
        answer = exc.read().decode(errors="replace")
        print(f"the API server refused: {exc.code} {answer}", file=sys.stderr)
        return 1
    print(json.dumps({"submitted": run, "why": why, "reasons": list(decision.reasons)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
