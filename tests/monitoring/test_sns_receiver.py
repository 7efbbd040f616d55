"""The ``sns`` receiver: Alertmanager publishes to the encrypted alarm topic with Pod Identity.

No secret in stack config, a role that can publish to that one topic (and use its key only
through SNS), bound to the Alertmanager service account the chart actually runs.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pytest
import yaml

import components.monitoring_stack as ms
from components.common import InvalidArgsError, KubeTarget, format_path
from components.cost_guardrails import CostGuardrails, CostGuardrailsArgs
from components.monitoring_stack import (
    ALERTMANAGER_SERVICE_ACCOUNT,
    KPS_CHART,
    POD_IDENTITY_ANNOTATION,
    SNS_MESSAGE,
    SNS_SUBJECT,
    MonitoringStack,
    MonitoringStackArgs,
    Severity,
    alertmanager_config,
    alertmanager_sns_policy,
    load_rule_files,
    sns_topic_region,
)
from mlplatform.graph import Graph
from mlplatform.plan import run_program
from tests.conftest import missing_tool
from tests.iam import iam_findings

CLUSTER = "ml-prod"
ACCOUNT = "123456789012"
NAMESPACE = "observability"
TOPIC = f"arn:aws:sns:eu-west-1:{ACCOUNT}:ml-prod-cost-alarms"
KEY = f"arn:aws:kms:eu-west-1:{ACCOUNT}:key/11111111-2222-3333-4444-555555555555"
PD_KEY = "pd-routing-key-0123456789abcdef"  # not a real key

SNS = {"name": "oncall-sns", "kind": "sns", "severities": ["critical", "warning"]}
PAGERDUTY = {"name": "oncall", "kind": "pagerduty", "severities": ["critical"]}


def make_args(*receivers: dict[str, Any], **overrides: Any) -> MonitoringStackArgs:
    return MonitoringStackArgs.model_validate(
        {"alertmanager": {"receivers": list(receivers)}, **overrides}
    )


def stack_program(
    args: MonitoringStackArgs,
    *,
    on_aws: bool = True,
    guardrails: bool = True,
    secrets: dict[str, str] | None = None,
    target_cluster: str | None = None,
    **inputs: Any,
) -> Callable[[], None]:
    """MonitoringStack fed by CostGuardrails' topic and key, as a stack wires them."""

    def fn() -> None:
        if guardrails:
            cost = CostGuardrails("ml-prod-cost", CostGuardrailsArgs())
            inputs.setdefault("alarm_topic_arn", cost.alarm_topic_arn)
            inputs.setdefault("alarm_key_arn", cost.alarm_key_arn)
            pulumi.export("alarmTopicArn", cost.alarm_topic_arn)
            pulumi.export("alarmKeyArn", cost.alarm_key_arn)
        target = KubeTarget(
            provider=k8s.Provider("k8s"), on_aws=on_aws, cluster_name=target_cluster
        )
        mon = MonitoringStack(
            "mon",
            args,
            target=target,
            receiver_secrets={k: pulumi.Output.secret(v) for k, v in (secrets or {}).items()},
            grafana_admin_password=pulumi.Output.secret("grafana-password"),
            **inputs,
        )
        pulumi.export("alertmanagerRoleArn", mon.alertmanager_role_arn)

    return fn


@pytest.fixture(scope="module")
def deployed() -> tuple[Graph, list[dict[str, Any]]]:
    """The plan, and the Alertmanager config the component rendered (its Secret hides it)."""
    rendered: list[dict[str, Any]] = []
    real = ms.alertmanager_config

    def spy(*a: Any, **k: Any) -> dict[str, Any]:
        rendered.append(real(*a, **k))
        return rendered[-1]

    args = make_args(SNS, PAGERDUTY, namespace=NAMESPACE)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ms, "alertmanager_config", spy)
        graph = run_program(stack_program(args, secrets={"oncall": PD_KEY}, cluster_name=CLUSTER))
    return graph, rendered


@pytest.fixture(scope="module")
def graph(deployed: tuple[Graph, list[dict[str, Any]]]) -> Graph:
    return deployed[0]


def receivers(cfg: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in cfg["receivers"]}


def role_policy(g: Graph) -> dict[str, Any]:
    return json.loads(g.by_name("mon-alertmanager-policy").inputs["policy"])


def statements(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["Sid"]: s for s in doc["Statement"]}


def as_list(x: str | list[str]) -> list[str]:
    return [x] if isinstance(x, str) else list(x)


# --- Alertmanager config ---------------------------------------------------------------------


def test_sns_receiver_publishes_to_the_topic_for_its_severities() -> None:
    cfg = alertmanager_config(
        make_args(SNS, PAGERDUTY).alertmanager, "alertmanager-receivers", TOPIC
    )
    by_name = receivers(cfg)
    for sev in (Severity.CRITICAL, Severity.WARNING):
        (sns,) = by_name[f"severity-{sev.value}"]["sns_configs"]
        assert sns["topic_arn"] == TOPIC
        # The topic's region; no access keys, profile or role: Pod Identity signs.
        assert sns["sigv4"] == {"region": "eu-west-1"}
        assert sns["attributes"] == {"severity": sev.value}
        assert sns["subject"] and sns["message"]
        assert sns["send_resolved"] is True
    # routed like the others: only the severities the receiver lists
    assert "severity-info" not in by_name
    routes = {r["receiver"]: r["matchers"] for r in cfg["route"]["routes"]}
    assert routes["severity-warning"] == ['severity = "warning"']
    assert by_name["severity-critical"]["pagerduty_configs"]


def test_component_renders_the_runtime_topic(deployed: tuple[Graph, list[dict[str, Any]]]) -> None:
    graph, rendered = deployed
    (cfg,) = rendered
    (sns,) = receivers(cfg)["severity-critical"]["sns_configs"]
    assert sns["topic_arn"] == graph.outputs["alarmTopicArn"]
    assert sns["sigv4"] == {"region": sns_topic_region(graph.outputs["alarmTopicArn"])}
    (secret,) = [
        m
        for m in graph.manifests()
        if m["kind"] == "Secret" and m["metadata"]["name"] == "alertmanager-config"
    ]
    assert secret["metadata"]["namespace"] == NAMESPACE


def test_subjects_fit_sns_limits_for_every_platform_alert() -> None:
    # SNS rejects a subject over 100 characters or with a line break, and the alert is lost.
    names = [
        rule["alert"]
        for rule_file in load_rule_files().values()
        for group in rule_file["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]
    assert names
    for sev in Severity:
        fixed = (SNS_SUBJECT % sev.value).replace("{{ .Status | toUpper }}", "RESOLVED")
        for name in names:
            subject = fixed.replace("{{ .CommonLabels.alertname }}", name)
            assert len(subject) < 100 and subject.isascii() and "\n" not in subject, subject


def amtool() -> str:
    path = shutil.which("amtool")
    if path is None:
        missing_tool("amtool is not on PATH (Debian package 'prometheus-alertmanager')")
    return path


def test_amtool_accepts_the_config(tmp_path: Path) -> None:
    cfg = alertmanager_config(
        make_args(SNS, PAGERDUTY).alertmanager, "alertmanager-receivers", TOPIC
    )
    path = tmp_path / "alertmanager.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    proc = subprocess.run(
        [amtool(), "check-config", str(path)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    "template",
    [SNS_SUBJECT % "critical", SNS_MESSAGE, "{{ .CommonLabels.alertname | noSuchFunction }}"],
    ids=["subject", "message", "broken-control"],
)
def test_amtool_renders_the_templates(tmp_path: Path, template: str) -> None:
    (tmp_path / "none.tmpl").write_text('{{ define "none" }}{{ end }}')
    proc = subprocess.run(
        [
            amtool(),
            "template",
            "render",
            f"--template.glob={tmp_path}/*.tmpl",
            f"--template.text={template}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    # The control shows the check can fail: templates only break when an alert is sent.
    assert (proc.returncode == 0) == ("noSuchFunction" not in template), proc.stderr


# --- No secret --------------------------------------------------------------------------------


def test_sns_receiver_needs_no_secret() -> None:
    args = make_args(SNS)
    assert args.issues() == []
    assert args.secret_issues([]) == []
    # ...while another receiver still needs its own
    assert [format_path(i.path) for i in make_args(SNS, PAGERDUTY).secret_issues([])] == [
        "alertmanager.receivers[1].secret"
    ]
    # and the stack builds with no receiver secrets at all
    graph = run_program(stack_program(args, cluster_name=CLUSTER))
    assert graph.by_name("mon-alertmanager-pod-identity")


def test_a_secret_on_an_sns_receiver_is_refused() -> None:
    args = make_args({**SNS, "secret": "snsKey"})
    found = {format_path(i.path): i.message for i in args.issues()}
    assert "no secret" in found["alertmanager.receivers[0].secret"]


# --- Role and association ---------------------------------------------------------------------


def test_trust_is_pod_identity_for_this_cluster_only(graph: Graph) -> None:
    trust = json.loads(graph.by_name("mon-alertmanager-role").inputs["assumeRolePolicy"])
    (s,) = trust["Statement"]
    assert s["Principal"] == {"Service": "pods.eks.amazonaws.com"}
    assert sorted(s["Action"]) == ["sts:AssumeRole", "sts:TagSession"]
    assert s["Condition"]["StringEquals"] == {"aws:SourceAccount": ACCOUNT}
    assert s["Condition"]["ArnEquals"] == {
        "aws:SourceArn": f"arn:aws:eks:us-east-1:{ACCOUNT}:cluster/{CLUSTER}"
    }


def test_role_can_publish_to_the_alarm_topic_only(graph: Graph) -> None:
    doc = role_policy(graph)
    s = statements(doc)
    assert set(s) == {"PublishAlerts", "UseTopicKeyThroughSns"}
    assert as_list(s["PublishAlerts"]["Action"]) == ["sns:Publish"]
    assert s["PublishAlerts"]["Resource"] == graph.outputs["alarmTopicArn"]
    kms = s["UseTopicKeyThroughSns"]
    assert sorted(as_list(kms["Action"])) == ["kms:Decrypt", "kms:GenerateDataKey*"]
    assert kms["Resource"] == graph.outputs["alarmKeyArn"]
    region = sns_topic_region(graph.outputs["alarmTopicArn"])
    assert kms["Condition"] == {"StringEquals": {"kms:ViaService": f"sns.{region}.amazonaws.com"}}
    for stmt in doc["Statement"]:
        assert stmt["Effect"] == "Allow" and "*" not in as_list(stmt["Resource"]), stmt


def test_association_binds_the_service_account_the_chart_runs(graph: Graph) -> None:
    (assoc,) = graph.by_type("aws:eks/podIdentityAssociation:PodIdentityAssociation")
    (kps,) = [r for r in graph.helm_releases() if r["chart"] == KPS_CHART]
    service_account = kps["values"]["alertmanager"]["serviceAccount"]
    assert service_account == {"create": True, "name": ALERTMANAGER_SERVICE_ACCOUNT}
    assert assoc.inputs["serviceAccount"] == ALERTMANAGER_SERVICE_ACCOUNT == "kps-alertmanager"
    assert assoc.inputs["namespace"] == kps["namespace"] == NAMESPACE
    assert assoc.inputs["clusterName"] == CLUSTER
    assert assoc.inputs["roleArn"] == graph.outputs["alertmanagerRoleArn"]
    # Pod Identity injects credentials when a pod starts: role, policy, association, then pods.
    assert graph.depends_on(assoc, graph.by_name("mon-alertmanager-policy"))
    assert graph.depends_on(graph.one("kubernetes:helm.sh/v3:Release", "mon-kps"), assoc)


def test_alertmanager_restarts_to_pick_up_its_credentials(graph: Graph) -> None:
    # The webhook injects Pod Identity credentials at pod start only: turning sns on must change
    # the pod template, or pods started before the association never get credentials.
    (kps,) = [r for r in graph.helm_releases() if r["chart"] == KPS_CHART]
    meta = kps["values"]["alertmanager"]["alertmanagerSpec"]["podMetadata"]
    assert meta["annotations"][POD_IDENTITY_ANNOTATION]
    without = run_program(stack_program(make_args(PAGERDUTY), secrets={"oncall": PD_KEY}))
    (plain,) = [r for r in without.helm_releases() if r["chart"] == KPS_CHART]
    assert "podMetadata" not in plain["values"]["alertmanager"]["alertmanagerSpec"]


def test_cluster_name_defaults_to_the_target_cluster() -> None:
    graph = run_program(stack_program(make_args(SNS), target_cluster="ml-dev"))
    (assoc,) = graph.by_type("aws:eks/podIdentityAssociation:PodIdentityAssociation")
    assert assoc.inputs["clusterName"] == "ml-dev"


def test_no_aws_identity_without_sns_receivers() -> None:
    graph = run_program(stack_program(make_args(PAGERDUTY), secrets={"oncall": PD_KEY}))
    assert not graph.by_type("aws:eks/podIdentityAssociation:PodIdentityAssociation")
    assert [r.name for r in graph.by_type("aws:iam/role:Role")] == []
    assert graph.outputs["alertmanagerRoleArn"] is None


# --- parliament ---------------------------------------------------------------------------------


def test_deployed_documents_pass_parliament(graph: Graph) -> None:
    assert iam_findings(role_policy(graph)) == []
    trust = graph.by_name("mon-alertmanager-role").inputs["assumeRolePolicy"]
    assert iam_findings(trust, trust=True) == []


@pytest.mark.parametrize(
    "topic",
    [
        TOPIC,
        f"arn:aws:sns:us-east-1:{ACCOUNT}:alarms.fifo",
        f"arn:aws-cn:sns:cn-north-1:{ACCOUNT}:a",
    ],
)
def test_policy_builder_passes_parliament(topic: str) -> None:
    assert iam_findings(alertmanager_sns_policy(topic_arn=topic, key_arn=KEY)) == []


def test_parliament_check_can_fail() -> None:
    doc = alertmanager_sns_policy(topic_arn=TOPIC, key_arn=KEY)
    doc["Statement"][0]["Resource"] = f"arn:aws:sqs:eu-west-1:{ACCOUNT}:not-a-topic"
    assert [issue for issue, _ in iam_findings(doc)] == ["RESOURCE_MISMATCH"]


# --- Bad input ------------------------------------------------------------------------------------


def test_sns_on_the_local_stack_is_a_clear_error() -> None:
    slack = {"name": "team", "kind": "slack"}
    with pytest.raises(InvalidArgsError) as err:
        run_program(stack_program(make_args(SNS, slack), on_aws=False, guardrails=False))
    text = str(err.value)
    assert "alertmanager.receivers[0].kind: sns receiver 'oncall-sns'" in text
    assert "only works on AWS" in text
    # every problem at once: the slack receiver's missing secret too
    assert "alertmanager.receivers[1].secret" in text


def test_sns_without_the_topic_is_a_clear_error() -> None:
    with pytest.raises(InvalidArgsError) as err:
        run_program(stack_program(make_args(SNS), guardrails=False, cluster_name=CLUSTER))
    text = str(err.value)
    assert "alertmanager.receivers[0].kind" in text
    assert "alarm_topic_arn, alarm_key_arn" in text


def test_sns_without_a_cluster_is_a_clear_error() -> None:
    with pytest.raises(InvalidArgsError, match=r"receivers\[0\]\.kind.*needs .*cluster_name"):
        run_program(stack_program(make_args(SNS)))


def test_a_topic_arn_that_is_not_sns_is_a_clear_error() -> None:
    bad = f"arn:aws:sqs:eu-west-1:{ACCOUNT}:alarms"
    with pytest.raises(InvalidArgsError, match="must be an SNS topic ARN"):
        run_program(
            stack_program(
                make_args(SNS),
                guardrails=False,
                alarm_topic_arn=bad,
                alarm_key_arn=KEY,
                cluster_name=CLUSTER,
            )
        )
    with pytest.raises(ValueError, match="not an SNS topic ARN"):
        sns_topic_region(bad)
