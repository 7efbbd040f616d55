"""An endpoint's SLO monitoring: ServiceMonitor and multi-window burn-rate rules (as data, so
tests can feed them to promtool).

Part of :mod:`components.serving_endpoint`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from components.serving_args import ENDPOINT_LABEL, Runtime, SloArgs
from components.serving_workload import PlanBase

BURN_WINDOWS = (
    # (severity, burn rate, long window, short window, for)
    ("critical", 14.4, "1h", "5m", "2m"),
    ("critical", 6.0, "6h", "30m", "15m"),
    ("warning", 3.0, "1d", "2h", "1h"),
    ("warning", 1.0, "3d", "6h", "3h"),
)
_WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")


def slo_metrics(runtime: Runtime, slo: SloArgs) -> tuple[str, str, float]:
    """(requests counter, latency histogram, latency threshold) for a runtime."""
    if runtime is Runtime.VLLM:
        # vLLM's API server exports http_requests_total{status="2xx"|"5xx"} and its own
        # end-to-end latency histogram.
        defaults = ("http_requests_total", "vllm:e2e_request_latency_seconds", 30.0)
    else:
        defaults = ("http_requests_total", "http_request_duration_seconds", 1.0)
    return (
        slo.requests_metric or defaults[0],
        slo.latency_metric or defaults[1],
        slo.latency_threshold_seconds or defaults[2],
    )


def _regex_literal(text: str) -> str:
    """``text`` as an RE2 literal inside a double-quoted PromQL string (``.`` becomes ``\\\\.``)."""
    meta = ".+*?()[]{}|^$" + "\\"
    return "".join("\\\\" + c if c in meta else c for c in text)


def _le_matcher(threshold: float) -> str:
    # Go clients write le="1", Python clients le="1.0": match both spellings of the bucket.
    spellings = sorted({format(threshold, "g"), repr(float(threshold))})
    return "|".join(_regex_literal(s) for s in spellings)


def _num(x: float) -> str:
    return format(round(x, 10), "g")


def slo_rule_groups(
    endpoint: str,
    namespace: str,
    services: Sequence[str],
    runtime: Runtime,
    slo: SloArgs,
) -> list[dict[str, Any]]:
    """Recording and alerting rule groups (Prometheus rule-file format) for one endpoint.

    Three SLIs, each alerted with multi-window multi-burn-rate (Google SRE workbook, ch. 5):
    error ratio (5xx / all), latency (share of requests slower than the p99 threshold) and
    availability (share of scrape targets down). An alert fires when both the long and the
    short window burn the error budget faster than the rate.
    """
    requests, latency, threshold = slo_metrics(runtime, slo)
    svc = "|".join(_regex_literal(s) for s in services)
    sel = f'namespace="{namespace}",service=~"{svc}"'
    status = slo.status_label
    rec_labels = {"endpoint": endpoint}
    le = _le_matcher(threshold)
    sli_exprs = {
        "errors": lambda w: (
            f'sum by (namespace) (rate({requests}{{{sel},{status}=~"5.."}}[{w}]))\n'
            f"/\nsum by (namespace) (rate({requests}{{{sel}}}[{w}]))"
        ),
        "latency": lambda w: (
            f'1 - (\n  sum by (namespace) (rate({latency}_bucket{{{sel},le=~"{le}"}}[{w}]))\n'
            f"  /\n  sum by (namespace) (rate({latency}_count{{{sel}}}[{w}]))\n)"
        ),
        "availability": lambda w: f"1 - avg by (namespace) (avg_over_time(up{{{sel}}}[{w}]))",
    }
    budgets = {
        "errors": 1 - slo.availability_target,
        "latency": 1 - slo.latency_target,
        "availability": 1 - slo.availability_target,
    }
    summaries = {
        "errors": "error-ratio SLO",
        "latency": f"p{_num(slo.latency_target * 100)}-latency SLO ({_num(threshold)}s)",
        "availability": "availability SLO (scrape targets up)",
    }
    record_rules: list[dict[str, Any]] = []
    alert_rules: list[dict[str, Any]] = []
    for sli, expr in sli_exprs.items():
        for w in _WINDOWS:
            record_rules.append(
                {"record": _record_name(sli, w), "expr": expr(w), "labels": dict(rec_labels)}
            )
        for severity in ("critical", "warning"):
            pairs = [b for b in BURN_WINDOWS if b[0] == severity]
            clauses = []
            for _, rate, long_w, short_w, _for in pairs:
                limit = _num(rate * budgets[sli])
                match = f'{{endpoint="{endpoint}",namespace="{namespace}"}}'
                clauses.append(
                    f"(\n  {_record_name(sli, long_w)}{match} > {limit}\n"
                    f"and\n  {_record_name(sli, short_w)}{match} > {limit}\n)"
                )
            alert_rules.append(
                {
                    "alert": f"ServingSLO{_ALERT_SUFFIX[sli]}BudgetBurn",
                    "expr": "\nor\n".join(clauses),
                    "for": pairs[0][4],
                    "labels": {"severity": severity, "slo": sli},
                    "annotations": {
                        "summary": (
                            f"Endpoint {endpoint} in {namespace} burns its {summaries[sli]} "
                            f"budget too fast ({severity})."
                        ),
                        "description": (
                            f"SLO budget {_num(budgets[sli])}; burn-rate windows "
                            + ", ".join(f"{r}x over {lw}/{sw}" for _, r, lw, sw, _ in pairs)
                            + "."
                        ),
                    },
                }
            )
    prefix = f"mlplatform-serving-{namespace}-{endpoint}"
    return [
        {"name": f"{prefix}-sli", "rules": record_rules},
        {"name": f"{prefix}-slo-alerts", "rules": alert_rules},
    ]


_ALERT_SUFFIX = {"errors": "ErrorRatio", "latency": "Latency", "availability": "Availability"}


def _record_name(sli: str, window: str) -> str:
    return f"mlplatform:serving_{sli}_budget_spend:ratio_{window}"


class MonitoringBuilder(PlanBase):
    def services(self) -> list[str]:
        return [self.service] + ([self.canary_service] if self.args.canary else [])

    def rule_groups(self) -> list[dict[str, Any]]:
        return slo_rule_groups(
            self.name, self.namespace, self.services(), self.args.runtime, self.args.slo
        )

    def service_monitor(self) -> dict[str, Any]:
        return {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "ServiceMonitor",
            "metadata": {
                **self.meta(self.name),
                "labels": {**self.labels(), **self.monitoring_labels},
            },
            "spec": {
                "selector": {"matchLabels": {ENDPOINT_LABEL: self.name}},
                "namespaceSelector": {"matchNames": [self.namespace]},
                "endpoints": [
                    {"port": "http", "path": "/metrics", "interval": "30s", "scheme": "http"}
                ],
            },
        }

    def prometheus_rule(self) -> dict[str, Any]:
        return {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "PrometheusRule",
            "metadata": {
                **self.meta(f"{self.name}-slo"),
                "labels": {**self.labels(), **self.monitoring_labels},
            },
            "spec": {"groups": self.rule_groups()},
        }
