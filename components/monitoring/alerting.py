"""Alertmanager: one route per severity, receivers that read their secrets from files, SNS."""

from __future__ import annotations

from typing import Any

from components.monitoring.args import (
    SNS_TOPIC_ARN,
    AlertmanagerArgs,
    AlertReceiver,
    ReceiverKind,
    Severity,
)

ALERTMANAGER_SECRETS_DIR = "/etc/alertmanager/secrets"

# --- Alertmanager --------------------------------------------------------------------------


def secret_file(secret_name: str, key: str) -> str:
    return f"{ALERTMANAGER_SECRETS_DIR}/{secret_name}/{key}"


def sns_topic_region(topic_arn: str) -> str:
    """The region of an SNS topic ARN: Alertmanager must call SNS there, and SNS uses KMS there."""
    match = SNS_TOPIC_ARN.match(topic_arn)
    if match is None:
        raise ValueError(f"not an SNS topic ARN: {topic_arn!r}")
    return match["region"]


# SNS subjects: at most 100 ASCII characters, one line. Alert names are short identifiers.
SNS_SUBJECT = "[{{ .Status | toUpper }}] {{ .CommonLabels.alertname }} (%s)"
SNS_MESSAGE = (
    "{{ range .Alerts }}[{{ .Status | toUpper }}] {{ .Labels.alertname }}"
    "{{ with .Labels.namespace }} in {{ . }}{{ end }}\n"
    "{{ with .Annotations.summary }}{{ . }}{{ else }}{{ .Annotations.description }}{{ end }}\n"
    "{{ with .Annotations.runbook }}Runbook: {{ . }}\n{{ end }}"
    "{{ with .Annotations.runbook_url }}Runbook: {{ . }}\n{{ end }}"
    'Since: {{ .StartsAt.UTC.Format "2006-01-02 15:04 MST" }}\n\n{{ end }}'
)


def _sns_config(sev: Severity, topic_arn: str) -> dict[str, Any]:
    return {
        "topic_arn": topic_arn,
        # Region only: no keys, so the SDK's default chain finds the Pod Identity credentials.
        "sigv4": {"region": sns_topic_region(topic_arn)},
        "subject": SNS_SUBJECT % sev.value,
        "message": SNS_MESSAGE,
        # Each receiver serves one severity: subscribers can filter on it (filter policies).
        "attributes": {"severity": sev.value},
        "send_resolved": True,
    }


def alertmanager_sns_policy(*, topic_arn: str, key_arn: str) -> dict[str, Any]:
    """Identity policy for Alertmanager: publish to the alarm topic, and nothing else.

    The topic is encrypted with a customer-managed key, so a publisher also needs the key, but
    only as SNS uses it on its behalf (``kms:ViaService``) in the topic's region. With
    ``sns:Publish`` limited to one topic, that is the only topic the key can serve for it.
    """
    region = sns_topic_region(topic_arn)
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "PublishAlerts",
                "Effect": "Allow",
                "Action": "sns:Publish",
                "Resource": topic_arn,
            },
            {
                "Sid": "UseTopicKeyThroughSns",
                "Effect": "Allow",
                # What AWS documents for publishers to an encrypted topic; through SNS only the
                # symmetric data keys SNS asks for can be generated.
                "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
                "Resource": key_arn,
                "Condition": {"StringEquals": {"kms:ViaService": f"sns.{region}.amazonaws.com"}},
            },
        ],
    }


def _receiver_config(
    r: AlertReceiver, secrets_name: str, sev: Severity, sns_topic_arn: str | None
) -> tuple[str, dict[str, Any]]:
    if r.kind == ReceiverKind.SNS:
        if sns_topic_arn is None:
            raise ValueError(f"sns receiver {r.name!r} needs the alarm topic ARN")
        return "sns_configs", _sns_config(sev, sns_topic_arn)
    path = secret_file(secrets_name, r.secret_key)
    if r.kind == ReceiverKind.SLACK:
        cfg: dict[str, Any] = {
            "api_url_file": path,
            "send_resolved": True,
            "title": '[{{ .Status | toUpper }}{{ if eq .Status "firing" }}:{{ .Alerts.Firing | len }}'
            "{{ end }}] {{ .CommonLabels.alertname }}",
            "text": "{{ range .Alerts }}*{{ .Annotations.summary }}*\n"
            "Runbook: {{ .Annotations.runbook }}\n{{ end }}",
        }
        if r.channel:
            cfg["channel"] = r.channel
        return "slack_configs", cfg
    if r.kind == ReceiverKind.WEBHOOK:
        return "webhook_configs", {"url_file": path, "send_resolved": True}
    if r.kind == ReceiverKind.PAGERDUTY:
        return "pagerduty_configs", {
            "routing_key_file": path,
            "send_resolved": True,
            "description": "{{ .CommonLabels.alertname }}: {{ .CommonAnnotations.summary }}",
        }
    return "email_configs", {
        "to": ", ".join(r.to),
        "from": r.from_address,
        "smarthost": r.smarthost,
        "auth_username": r.smtp_username or r.from_address,
        "auth_password_file": path,
        "require_tls": True,
        "send_resolved": True,
    }


def alertmanager_config(
    args: AlertmanagerArgs, secrets_name: str, sns_topic_arn: str | None = None
) -> dict[str, Any]:
    """Alertmanager's config: one receiver per severity, fanning out to every subscriber.

    It holds file paths and the alarm topic's ARN, never secret values, so it is plain data.
    """
    receivers: list[dict[str, Any]] = [{"name": "null"}]
    routes: list[dict[str, Any]] = [
        # The chart's always-firing heartbeat and its info-level inhibitor are not notifications.
        {"matchers": ['alertname =~ "Watchdog|InfoInhibitor"'], "receiver": "null"},
    ]
    repeat = {Severity.CRITICAL: "1h", Severity.WARNING: args.repeat_interval}
    for sev in Severity:
        configs: dict[str, list[dict[str, Any]]] = {}
        for r in args.receivers:
            if sev in r.severities:
                key, cfg = _receiver_config(r, secrets_name, sev, sns_topic_arn)
                configs.setdefault(key, []).append(cfg)
        if not configs:
            continue
        receivers.append({"name": f"severity-{sev.value}", **configs})
        route: dict[str, Any] = {
            "matchers": [f'severity = "{sev.value}"'],
            "receiver": f"severity-{sev.value}",
        }
        if sev in repeat:
            route["repeat_interval"] = repeat[sev]
        if sev == Severity.INFO:
            route["repeat_interval"] = "24h"
        routes.append(route)
    return {
        "global": {"resolve_timeout": "5m"},
        "route": {
            "receiver": "null",
            "group_by": ["alertname", "namespace", "severity"],
            "group_wait": args.group_wait,
            "group_interval": args.group_interval,
            "repeat_interval": args.repeat_interval,
            "routes": routes,
        },
        "inhibit_rules": [
            # A critical alert silences the warning of the same name and scope.
            {
                "source_matchers": ['severity = "critical"'],
                "target_matchers": ['severity = "warning"'],
                "equal": ["alertname", "namespace"],
            },
            {
                "source_matchers": ['alertname = "InfoInhibitor"'],
                "target_matchers": ['severity = "info"'],
                "equal": ["namespace"],
            },
        ],
        "receivers": receivers,
        "templates": [],
    }
