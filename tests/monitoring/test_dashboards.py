"""Dashboards as code: valid JSON, unique panel ids, PromQL that parses, rules that exist."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import promql_parser
import pytest

from components.monitoring_stack import (
    DASHBOARD_LABEL,
    DASHBOARDS_DIR,
    dashboard_configmap,
    load_rule_files,
)

DASHBOARD_FILES = sorted(DASHBOARDS_DIR.glob("*.json"))
# Grafana's built-in and the dashboards' own variables, replaced by values PromQL accepts.
SUBSTITUTIONS = {
    "$__rate_interval": "5m",
    "$__interval": "1m",
    "$__range": "1d",
}
_VARIABLE = re.compile(r"\$\{?(\w+)\}?")
_RECORDED = re.compile(r"\b[a-z_]+:[a-z0-9_:]+\b")


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for p in dashboard["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))
    return out


def substitute(expr: str) -> str:
    for var, value in SUBSTITUTIONS.items():
        expr = expr.replace(var, value)
    return _VARIABLE.sub("x", expr)


def exprs() -> list[tuple[str, str, str]]:
    found = []
    for path in DASHBOARD_FILES:
        for p in panels(json.loads(path.read_text())):
            for t in p.get("targets", []):
                found.append((path.stem, p["title"], t["expr"]))
    return found


def recorded_series() -> set[str]:
    return {
        rule["record"]
        for doc in load_rule_files().values()
        for group in doc["groups"]
        for rule in group["rules"]
        if "record" in rule
    } | {"mlplatform:gpu_hourly_price_usd"}


def test_the_four_dashboards_exist() -> None:
    assert {p.stem for p in DASHBOARD_FILES} == {"gpu-fleet", "serving", "training", "cost"}


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_dashboard_is_valid_json_with_unique_ids(path: Path) -> None:
    dashboard = json.loads(path.read_text())
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids)), f"duplicate panel ids in {path.name}"
    assert dashboard["uid"] and dashboard["title"]
    for p in panels(dashboard):
        if p["type"] != "row":
            assert p["targets"], f"panel {p['title']!r} has no query"
            assert p["datasource"]["uid"] == "${datasource}"


def test_dashboard_uids_are_unique() -> None:
    uids = [json.loads(p.read_text())["uid"] for p in DASHBOARD_FILES]
    assert len(uids) == len(set(uids))


@pytest.mark.parametrize("item", exprs(), ids=lambda i: f"{i[0]}:{i[1]}")
def test_panel_promql_parses(item: tuple[str, str, str]) -> None:
    _, _, expr = item
    promql_parser.parse(substitute(expr))


def test_parser_rejects_bad_promql() -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the parser's only error type
        promql_parser.parse(substitute("sum by (x) (rate(foo[$__rate_interval])"))


def test_dashboards_only_use_recorded_series_that_exist() -> None:
    recorded = recorded_series()
    for dash, title, expr in exprs():
        # Range/subquery brackets and label values can hold colons too.
        bare = re.sub(r'\[[^\]]*\]|"[^"]*"', "", substitute(expr))
        for name in _RECORDED.findall(bare):
            assert name in recorded, f"{dash} / {title}: {name} is not recorded by any rule"


def test_issue_panels_are_present() -> None:
    titles = {(dash, title) for dash, title, _ in exprs()}
    by_dash: dict[str, set[str]] = {}
    for dash, title in titles:
        by_dash.setdefault(dash, set()).add(title.lower())

    def has(dash: str, *words: str) -> None:
        for word in words:
            assert any(word in t for t in by_dash[dash]), f"{dash}: no panel about {word!r}"

    has("gpu-fleet", "utilization", "memory", "temperature", "power", "xid", "allocated")
    has("serving", "requests per second", "p50", "p95", "p99", "error", "replicas")
    has("training", "running", "queued", "failed", "gpu-hours")
    has("cost", "gpu-hours", "usd", "team", "namespace")


def test_configmap_carries_the_sidecar_label() -> None:
    dashboard = json.loads(DASHBOARD_FILES[0].read_text())
    cm = dashboard_configmap("dashboard-x", "monitoring", dashboard)
    assert cm["metadata"]["labels"][DASHBOARD_LABEL] == "1"
    (body,) = cm["data"].values()
    assert json.loads(body) == dashboard
