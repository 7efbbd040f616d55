"""A model card per trained version, in the Hugging Face layout: YAML metadata, then Markdown.

Written as ``README.md`` next to the model artifact (so it travels with the version to S3 and into
MLflow's ``version/`` artifacts), with the drift reference the server and the drift job bin
against (``drift.REFERENCE``). Lineage ties the version to its git commit, the sha256 of its
training data and the digest of the training image, both in the card and as MLflow tags on the
run and the registered model version.

Lineage inputs: ``GIT_COMMIT`` (else ``GITHUB_SHA``, else ``git rev-parse HEAD``), ``IMAGE_DIGEST``
and ``TRAINING_IMAGE`` (the training job's image; set by the job, or by CI for its own runs).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from . import drift
from . import model as model_lib
from .data import FEATURES, TARGET, Dataset
from .gates import GateResult
from .registry import ModelVersion
from .settings import MODEL_NAME, PROJECT

CARD = "README.md"
REQUIRED_METADATA = ("library_name", "tags", "model-index", "lineage")


def _git_commit() -> str:
    for var in ("GIT_COMMIT", "GITHUB_SHA"):
        if os.environ.get(var):
            return os.environ[var]
    git = shutil.which("git")
    if git is None:
        return "unknown"
    out = subprocess.run(  # noqa: S603 - fixed arguments, no shell
        [git, "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    )
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def lineage(version: ModelVersion) -> dict[str, str]:
    return {
        "model_name": MODEL_NAME,
        "model_version": str(version.version),
        "git_commit": _git_commit(),
        "data_sha256": str(version.metadata["data_sha256"]),
        "artifact_sha256": str(version.metadata["sha256"]),
        "training_image": os.environ.get("TRAINING_IMAGE", "unknown"),
        "image_digest": os.environ.get("IMAGE_DIGEST", "unknown"),
    }


def metadata(version: ModelVersion, gate: GateResult, data: Dataset) -> dict[str, Any]:
    metrics = [
        {"type": name, "name": f"held-out {name}", "value": round(value, 6)}
        for name, value in sorted(gate.metrics.items())
        if name != "n"
    ]
    if gate.fairness is not None:
        metrics += [
            {
                "type": name,
                "name": f"{name.replace('_', ' ')} across {gate.fairness.sensitive_feature}",
                "value": round(getattr(gate.fairness, name), 6),
            }
            for name in ("demographic_parity_difference", "equalized_odds_difference")
        ]
    return {
        "library_name": model_lib.FRAMEWORK,
        "tags": ["tabular-classification", PROJECT, model_lib.FRAMEWORK],
        "model-index": [
            {
                "name": f"{MODEL_NAME}-v{version.version}",
                "results": [
                    {
                        "task": {"type": "tabular-classification"},
                        "dataset": {"name": f"sha256:{data.sha256[:12]}", "type": "csv"},
                        "metrics": metrics,
                    }
                ],
            }
        ],
        "thresholds": {
            "min_accuracy": gate.thresholds.min_accuracy,
            "sensitive_feature": gate.thresholds.sensitive or None,
            "max_demographic_parity_difference": gate.thresholds.max_demographic_parity_difference,
            "max_equalized_odds_difference": gate.thresholds.max_equalized_odds_difference,
            "min_group_rows": gate.thresholds.min_group_rows,
        },
        "lineage": lineage(version),
    }


def _fairness_section(gate: GateResult) -> str:
    f = gate.fairness
    notes = "".join(f"- {note}\n" for note in gate.notes)
    if f is None:
        if not gate.thresholds.sensitive:
            return "Not evaluated: SENSITIVE_FEATURE was empty when this version was trained.\n"
        return f"Not judged for this version:\n\n{notes}"
    rows = "\n".join(
        f"| {group} | {int(m['rows'])} | {m['accuracy']:.3f} | {m['selection_rate']:.3f} |"
        for group, m in sorted(f.by_group.items())
    )
    return (
        f"Held-out predictions grouped by `{f.sensitive_feature}` (not a model input).\n\n"
        f"- demographic parity difference: {f.demographic_parity_difference:.3f} "
        f"(limit {gate.thresholds.max_demographic_parity_difference})\n"
        f"- equalized odds difference: {f.equalized_odds_difference:.3f} "
        f"(limit {gate.thresholds.max_equalized_odds_difference})\n\n"
        "| group | rows | accuracy | selection rate |\n|---|---|---|---|\n"
        f"{rows}\n" + (f"\n{notes}" if notes else "")
    )


def render(version: ModelVersion, gate: GateResult, data: Dataset) -> str:
    meta = metadata(version, gate, data)
    lin = meta["lineage"]
    metric_rows = "\n".join(
        f"| {k} | {v:.4f} |" for k, v in sorted(gate.metrics.items()) if k != "n"
    )
    return (
        "---\n"
        + yaml.safe_dump(meta, sort_keys=False)
        + "---\n\n"
        + f"# {MODEL_NAME} version {version.version}\n\n"
        + "## Intended use\n\nScores the probability that a customer churns, from "
        + f"{', '.join(FEATURES)}, to prioritise retention offers. Not for decisions with legal "
        + "or similarly significant effects on a person without human review.\n\n"
        + "## Training data\n\n"
        + f"{len(data)} rows; target `{TARGET}` (positive rate {float(np.mean(data.y)):.3f}); "
        + f"sha256 `{data.sha256}`. Validated against the schema in `validation.py` "
        + "(types, ranges, no missing values) before fitting.\n\n"
        + f"## Metrics (held-out, {int(gate.metrics.get('n', 0))} rows)\n\n"
        + f"| metric | value |\n|---|---|\n{metric_rows}\n\n"
        + f"Accuracy floor: {gate.thresholds.min_accuracy}; the live-accuracy alert uses the same "
        + "threshold.\n\n"
        + "## Fairness\n\n"
        + _fairness_section(gate)
        + "\n## Limitations\n\n"
        + "- Trained on one snapshot of data: accuracy degrades as behaviour drifts; the drift job "
        + "and its alerts watch for it.\n"
        + "- Fairness is measured for one attribute, on the held-out split; other attributes and "
        + "intersections are not audited.\n"
        + "- Group metrics on small groups are noisy; read them with the row counts.\n\n"
        + "## Lineage\n\n"
        + "\n".join(f"- {k}: `{v}`" for k, v in lin.items())
        + "\n"
    )


def parse(text: str) -> tuple[dict[str, Any], str]:
    """Split a card into its YAML metadata and Markdown body; raise ValueError when malformed."""
    if not text.startswith("---\n"):
        raise ValueError("a model card starts with YAML front matter ('---')")
    front, sep, body = text[4:].partition("\n---\n")
    if not sep:
        raise ValueError("the model card's front matter is not closed by '---'")
    meta = yaml.safe_load(front)
    if not isinstance(meta, dict):
        raise ValueError("the model card's front matter is not a mapping")
    missing = [k for k in REQUIRED_METADATA if k not in meta]
    if missing:
        raise ValueError(f"the model card's metadata lacks {', '.join(missing)}")
    return meta, body


def document_version(
    version: ModelVersion, gate: GateResult, data: Dataset, model: Any, X_train: np.ndarray
) -> Path:
    """Write the card and the drift reference into the version's directory; return the card."""
    drift.write_reference(version.path, X_train, model_lib.predict_proba(model, X_train))
    path = version.path / CARD
    text = render(version, gate, data)
    parse(text)  # the metadata must read back before it is published
    path.write_text(text, encoding="utf-8")
    return path


def record_in_mlflow(run_id: str | None, version: ModelVersion) -> None:
    """Tag the run and its registered model version with the lineage (no-op without MLflow)."""
    if run_id is None:
        return
    from mlflow import MlflowClient

    meta, _ = parse((version.path / CARD).read_text(encoding="utf-8"))
    tags = {f"lineage.{k}": v for k, v in meta["lineage"].items()}
    client = MlflowClient()
    for key, value in tags.items():
        client.set_tag(run_id, key, value)
    client.log_artifact(run_id, str(version.path / CARD), artifact_path="model_card")
    for mv in client.search_model_versions(f"run_id='{run_id}'"):
        for key, value in tags.items():
            client.set_model_version_tag(mv.name, mv.version, key, value)
