"""The model-quality alert rules: valid, tested by promtool, and on metrics the server exports."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from {{ cookiecutter.project_slug }} import drift

MONITORING = Path(__file__).resolve().parents[1] / "monitoring"
RULES = MONITORING / "model-alerts.yml"
RUNBOOK = MONITORING / "RUNBOOK.md"
EXPORTED = {
    drift.FEATURE_PSI,
    drift.PREDICTION_PSI,
    drift.LIVE_ACCURACY,
    drift.CANARY_LIVE_ACCURACY,
    drift.ACCURACY_THRESHOLD,
    drift.DRIFT_TIMESTAMP,
    drift.FAIRNESS_DPD,
    drift.FEATURE_BINS,
    drift.PREDICTION_SCORE,
    drift.LOG_DROPPED,
}


def _rules() -> list[dict]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def test_alerts_use_only_metrics_the_server_exports() -> None:
    used = {m for r in _rules() for m in re.findall(r"\b(model_[a-z_]+)\b", r["expr"])}
    assert used == {
        drift.FEATURE_PSI,
        drift.PREDICTION_PSI,
        drift.LIVE_ACCURACY,
        drift.CANARY_LIVE_ACCURACY,
        drift.ACCURACY_THRESHOLD,
        drift.DRIFT_TIMESTAMP,
    }
    assert used <= EXPORTED


def test_every_alert_has_a_runbook_section() -> None:
    headings = {
        line[3:].strip().lower()
        for line in RUNBOOK.read_text().splitlines()
        if line.startswith("## ")
    }
    for rule in _rules():
        anchor = rule["annotations"]["runbook"].split("#", 1)[1]
        assert anchor == rule["alert"].lower()
        assert anchor in headings


def _promtool() -> str:
    tool = shutil.which("promtool")
    if tool is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool is not on PATH (CI installs it; see .github/workflows/ci.yml)")
        pytest.skip("promtool is not installed on this machine")
    return tool


def test_promtool_checks_the_rules_and_their_fixtures_fire_and_stay_quiet() -> None:
    tool = _promtool()
    for args in (["check", "rules", RULES.name], ["test", "rules", "model-alerts.test.yml"]):
        proc = subprocess.run(
            [tool, *args], cwd=MONITORING, capture_output=True, text=True, check=False
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
