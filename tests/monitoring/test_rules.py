"""Alert and recording rules: promtool checks and tests every rule file, and every alert is tested
both firing and staying quiet."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.monitoring_stack import (
    ALERTS_DIR,
    DEFAULT_GPU_HOURLY_PRICES_USD,
    Severity,
    gpu_price_rule_file,
    load_rule_files,
    prometheus_rule,
)
from tests.conftest import missing_tool

FIXTURES = Path(__file__).parent / "promtool"
RULE_FILES = sorted(ALERTS_DIR.glob("*.yaml"))
FIXTURE_FILES = sorted(FIXTURES.glob("*_test.yaml"))


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        missing_tool("promtool is not on PATH (Debian package 'prometheus'; .ci/run installs it)")
    return path


def run_promtool(*args: str | Path, cwd: Path | None = None) -> None:
    proc = subprocess.run(
        [promtool(), *map(str, args)], capture_output=True, text=True, cwd=cwd, check=False
    )
    assert proc.returncode == 0, f"promtool {' '.join(map(str, args))}:\n{proc.stdout}{proc.stderr}"


def all_alerts() -> list[tuple[str, dict[str, Any]]]:
    return [
        (stem, rule)
        for stem, doc in load_rule_files().items()
        for group in doc["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]


def test_rule_files_exist() -> None:
    assert {p.stem for p in RULE_FILES} >= {"gpu", "cluster", "training", "serving-slo", "cost"}


@pytest.mark.parametrize("rule_file", RULE_FILES, ids=lambda p: p.name)
def test_promtool_check_rules(rule_file: Path) -> None:
    run_promtool("check", "rules", rule_file)


def test_promtool_checks_generated_price_rules(tmp_path: Path) -> None:
    rendered = tmp_path / "prices.yaml"
    rendered.write_text(yaml.safe_dump(gpu_price_rule_file(DEFAULT_GPU_HOURLY_PRICES_USD)))
    run_promtool("check", "rules", rendered)


@pytest.mark.parametrize("fixture", FIXTURE_FILES, ids=lambda p: p.name)
def test_promtool_test_rules(fixture: Path) -> None:
    run_promtool("test", "rules", fixture.name, cwd=FIXTURES)


def test_promtool_test_rules_can_fail(tmp_path: Path) -> None:
    """A fixture expecting the wrong alert fails: the fixture runs are not vacuous."""
    doc = yaml.safe_load((FIXTURES / "cluster_test.yaml").read_text())
    doc["rule_files"] = [str(ALERTS_DIR / "cluster.yaml")]
    doc["tests"][0]["alert_rule_test"][0]["exp_alerts"] = [
        {"exp_labels": {"node": "n2", "severity": "warning"}}
    ]
    broken = tmp_path / "broken_test.yaml"
    broken.write_text(yaml.safe_dump(doc))
    proc = subprocess.run(
        [promtool(), "test", "rules", str(broken)], capture_output=True, text=True, check=False
    )
    assert proc.returncode != 0


def test_every_rule_file_has_a_fixture() -> None:
    tested: set[str] = set()
    for fixture in FIXTURE_FILES:
        for rule_file in yaml.safe_load(fixture.read_text())["rule_files"]:
            tested.add(Path(rule_file).stem)
    assert tested == {p.stem for p in RULE_FILES}


def test_every_alert_is_tested_firing_and_quiet() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for fixture in FIXTURE_FILES:
        for case in yaml.safe_load(fixture.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {rule["alert"] for _, rule in all_alerts()}
    assert names - firing == set(), "alerts never shown firing"
    assert names - quiet == set(), "alerts never shown staying quiet"


@pytest.mark.parametrize("alert", all_alerts(), ids=lambda a: a[1]["alert"])
def test_alert_has_severity_summary_and_runbook(alert: tuple[str, dict[str, Any]]) -> None:
    _, rule = alert
    assert rule["labels"]["severity"] in {s.value for s in Severity}
    assert rule["annotations"]["summary"].strip()
    assert len(rule["annotations"]["runbook"].split()) >= 8, "runbook must say what to do"


def test_alert_names_are_unique() -> None:
    names = [rule["alert"] for _, rule in all_alerts()]
    assert len(names) == len(set(names))


def test_issue_alerts_are_all_present() -> None:
    names = {rule["alert"] for _, rule in all_alerts()}
    assert {
        "GPUXidErrorFatal",
        "GPUXidError",
        "GPUAllocatedButIdle",
        "GPUThermalThrottling",
        "GPUPowerThrottling",
        "GPUPodsPending",
        "NodeNotReady",
        "TrainingJobFailed",
        "PyTorchJobFailed",
        "ServingErrorBudgetBurnFast",
        "ServingErrorBudgetBurnSlow",
        "ServingLatencyBudgetBurnFast",
        "ServingLatencyBudgetBurnSlow",
        "ScrapeTargetDown",
        "PersistentVolumeAlmostFull",
        "PersistentVolumeFillingUp",
    } <= names


def test_prometheus_rule_wraps_the_file_unchanged() -> None:
    for stem, doc in load_rule_files().items():
        cr = prometheus_rule(f"mlplatform-{stem}", "monitoring", doc)
        assert cr["apiVersion"] == "monitoring.coreos.com/v1"
        assert cr["kind"] == "PrometheusRule"
        assert cr["spec"]["groups"] == doc["groups"]


def test_price_rules_carry_each_accelerator() -> None:
    doc = gpu_price_rule_file({"nvidia-a10g": 1.006, "nvidia-h100": 6.88})
    rules = doc["groups"][0]["rules"]
    assert {r["labels"]["accelerator"]: r["expr"] for r in rules} == {
        "nvidia-a10g": "vector(1.006)",
        "nvidia-h100": "vector(6.88)",
    }
