"""The endpoint's SLO rules pass promtool, and fixtures show each alert firing and staying quiet."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.serving_endpoint import Runtime, SloArgs, slo_rule_groups
from tests.conftest import require_tool

NS = "chat"
ENDPOINT = "chat"
SERVICES = ["chat", "chat-canary"]
MINUTES = 240  # 4h of 1m samples per scenario

ALERTS = {
    "errors": "ServingSLOErrorRatioBudgetBurn",
    "latency": "ServingSLOLatencyBudgetBurn",
    "availability": "ServingSLOAvailabilityBudgetBurn",
}


def groups(runtime: Runtime = Runtime.HTTP, **slo: Any) -> list[dict[str, Any]]:
    return slo_rule_groups(ENDPOINT, NS, SERVICES, runtime, SloArgs(**slo))


def alert_rule(gs: list[dict[str, Any]], name: str, severity: str) -> dict[str, Any]:
    for g in gs:
        for r in g["rules"]:
            if r.get("alert") == name and r["labels"]["severity"] == severity:
                return r
    raise LookupError(name)


def expected(gs: list[dict[str, Any]], sli: str, severity: str) -> dict[str, Any]:
    rule = alert_rule(gs, ALERTS[sli], severity)
    return {
        "exp_labels": {"endpoint": ENDPOINT, "namespace": NS, **rule["labels"]},
        "exp_annotations": rule["annotations"],
    }


def counter(labels: str, per_minute: int) -> dict[str, str]:
    return {"series": f"{{{labels}}}", "values": f"0+{per_minute}x{MINUTES}"}


def series(metric: str, labels: str, values: str) -> dict[str, str]:
    return {"series": f"{metric}{{{labels}}}", "values": values}


def req(service: str, status: str, per_minute: int, metric: str = "http_requests_total") -> dict:
    labels = f'namespace="{NS}",service="{service}",status="{status}"'
    return series(metric, labels, f"0+{per_minute}x{MINUTES}")


def hist(service: str, le: str, fast: int, total: int) -> list[dict[str, str]]:
    base = f'namespace="{NS}",service="{service}"'
    m = "http_request_duration_seconds"
    return [
        series(f"{m}_bucket", f'{base},le="{le}"', f"0+{fast}x{MINUTES}"),
        series(f"{m}_bucket", f'{base},le="+Inf"', f"0+{total}x{MINUTES}"),
        series(f"{m}_count", base, f"0+{total}x{MINUTES}"),
    ]


def up(service: str, pod: str, value: int) -> dict[str, str]:
    labels = f'namespace="{NS}",service="{service}",pod="{pod}"'
    return series("up", labels, f"{value}x{MINUTES}")


def healthy_traffic(service: str = "chat") -> list[dict[str, str]]:
    return [
        req(service, "200", 1000),
        *hist(service, "1.0", 1000, 1000),
        up(service, f"{service}-a", 1),
        up(service, f"{service}-b", 1),
    ]


def checks(gs: list[dict[str, Any]], at: str, firing: dict[str, list[str]]) -> list[dict[str, Any]]:
    """One alert_rule_test per alert name: exactly the listed severities fire at ``at``."""
    return [
        {
            "eval_time": at,
            "alertname": ALERTS[sli],
            "exp_alerts": [expected(gs, sli, sev) for sev in firing.get(sli, [])],
        }
        for sli in ALERTS
    ]


def scenarios(gs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        # Healthy: every alert stays quiet, early and late.
        {
            "interval": "1m",
            "input_series": healthy_traffic(),
            "alert_rule_test": checks(gs, "20m", {}) + checks(gs, "3h", {}),
        },
        # Another service in the namespace failing completely does not page this endpoint.
        {
            "interval": "1m",
            "input_series": [*healthy_traffic(), req("other", "500", 1000), up("other", "o", 0)],
            "alert_rule_test": checks(gs, "30m", {}),
        },
        # 10% errors (on the canary track): fast burn pages within minutes.
        {
            "interval": "1m",
            "input_series": [
                *healthy_traffic(),
                req("chat-canary", "200", 0),
                req("chat-canary", "500", 110),
            ],
            "alert_rule_test": checks(gs, "2m", {})
            + checks(gs, "15m", {"errors": ["critical"]})
            + checks(gs, "3h", {"errors": ["critical", "warning"]}),
        },
        # 0.5% errors: below both page rates, above the 3x ticket rate.
        {
            "interval": "1m",
            "input_series": [
                req("chat", "200", 995),
                req("chat", "503", 5),
                *healthy_traffic()[1:],
            ],
            "alert_rule_test": checks(gs, "30m", {}) + checks(gs, "3h", {"errors": ["warning"]}),
        },
        # Half the requests slower than the p99 threshold: latency pages.
        {
            "interval": "1m",
            "input_series": [
                req("chat", "200", 1000),
                *hist("chat", "1.0", 500, 1000),
                up("chat", "a", 1),
            ],
            "alert_rule_test": checks(gs, "15m", {"latency": ["critical"]}),
        },
        # Same, exported by a Go client (le="1" rather than le="1.0").
        {
            "interval": "1m",
            "input_series": [
                req("chat", "200", 1000),
                *hist("chat", "1", 500, 1000),
                up("chat", "a", 1),
            ],
            "alert_rule_test": checks(gs, "15m", {"latency": ["critical"]}),
        },
        # One of two targets down: availability pages.
        {
            "interval": "1m",
            "input_series": [
                req("chat", "200", 1000),
                *hist("chat", "1.0", 1000, 1000),
                up("chat", "a", 1),
                up("chat", "b", 0),
            ],
            "alert_rule_test": checks(gs, "15m", {"availability": ["critical"]}),
        },
    ]


def write_rules(tmp_path: Path, gs: list[dict[str, Any]]) -> Path:
    path = tmp_path / "serving-endpoint-slo.yaml"
    path.write_text(yaml.safe_dump({"groups": gs}, sort_keys=False))
    return path


@pytest.mark.parametrize("runtime", list(Runtime))
def test_promtool_check_rules(tmp_path: Path, runtime: Runtime) -> None:
    promtool = require_tool("promtool")
    rules = write_rules(tmp_path, groups(runtime))
    out = subprocess.run(
        [promtool, "check", "rules", str(rules)], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_promtool_alert_fixtures(tmp_path: Path) -> None:
    promtool = require_tool("promtool")
    gs = groups()
    rules = write_rules(tmp_path, gs)
    tests = tmp_path / "serving-endpoint-slo_test.yaml"
    tests.write_text(
        yaml.safe_dump(
            {
                "rule_files": [rules.name],
                "evaluation_interval": "1m",
                "tests": scenarios(gs),
            },
            sort_keys=False,
        )
    )
    out = subprocess.run(
        [promtool, "test", "rules", str(tests)],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_fixtures_can_fail(tmp_path: Path) -> None:
    """The harness is not vacuous: claiming a quiet alert fires makes promtool fail."""
    promtool = require_tool("promtool")
    gs = groups()
    rules = write_rules(tmp_path, gs)
    wrong = {
        "interval": "1m",
        "input_series": healthy_traffic(),
        "alert_rule_test": checks(gs, "20m", {"errors": ["critical"]}),
    }
    tests = tmp_path / "wrong_test.yaml"
    tests.write_text(
        yaml.safe_dump({"rule_files": [rules.name], "evaluation_interval": "1m", "tests": [wrong]})
    )
    out = subprocess.run(
        [promtool, "test", "rules", str(tests)],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert out.returncode != 0


def test_rules_parse_as_promql() -> None:
    promql_parser = pytest.importorskip("promql_parser")
    for runtime in Runtime:
        for g in groups(runtime):
            for r in g["rules"]:
                promql_parser.parse(r["expr"])


def test_vllm_uses_its_latency_histogram_and_threshold() -> None:
    exprs = "\n".join(r["expr"] for g in groups(Runtime.VLLM) for r in g["rules"])
    assert "vllm:e2e_request_latency_seconds_bucket" in exprs
    assert 'le=~"30|30\\\\.0"' in exprs  # RE2 `30|30\.0` inside a PromQL string


def test_targets_change_the_thresholds() -> None:
    strict = alert_rule(groups(availability_target=0.9999), ALERTS["errors"], "critical")
    loose = alert_rule(groups(availability_target=0.99), ALERTS["errors"], "critical")
    assert "> 0.00144" in strict["expr"]
    assert "> 0.144" in loose["expr"]


def test_burn_windows_follow_the_sre_workbook() -> None:
    page = alert_rule(groups(), ALERTS["errors"], "critical")["expr"]
    ticket = alert_rule(groups(), ALERTS["errors"], "warning")["expr"]
    for window in ("ratio_1h", "ratio_5m", "ratio_6h", "ratio_30m"):
        assert window in page
    for window in ("ratio_1d", "ratio_2h", "ratio_3d", "ratio_6h"):
        assert window in ticket
