"""kube-state-metrics' view of Karpenter's reservations reads fields the EC2NodeClass CRD of the
pinned release really has, and the alert's join label is the one Karpenter puts on nodes."""

from __future__ import annotations

import pytest

from components.karpenter import KARPENTER_VERSION
from components.monitoring.karpenter import (
    RESERVATION_END,
    RESERVATION_ID_LABEL,
    custom_resource_state,
    kube_state_metrics_values,
)
from components.monitoring.prometheus import kube_prometheus_stack_values
from components.monitoring_stack import MonitoringStackArgs
from tests.upstream import go_module, load_yaml

MODULE = "github.com/aws/karpenter-provider-aws"


@pytest.fixture(scope="module")
def release_dir():
    return go_module(MODULE, f"v{KARPENTER_VERSION}")


def _walk(schema: dict, path: list[str]) -> dict:
    for part in path:
        if schema.get("type") == "array":
            schema = schema["items"]
        schema = schema["properties"][part]
    return schema


def test_reservation_fields_exist_in_the_crd(release_dir):
    crd = load_yaml(release_dir / "pkg/apis/crds/karpenter.k8s.aws_ec2nodeclasses.yaml")
    (v1,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    root = v1["schema"]["openAPIV3Schema"]
    (resource,) = custom_resource_state()["spec"]["resources"]
    gvk = resource["groupVersionKind"]
    assert (gvk["group"], gvk["version"], gvk["kind"]) == (
        crd["spec"]["group"],
        v1["name"],
        crd["spec"]["names"]["kind"],
    )
    (metric,) = resource["metrics"]
    gauge = metric["each"]["gauge"]
    items = _walk(root, gauge["path"])
    assert items["type"] == "array"
    for path in gauge["labelsFromPath"].values():
        assert _walk(items, path)["type"] == "string"
    end = _walk(items, gauge["valueFrom"])
    assert end["format"] == "date-time"  # an RFC 3339 timestamp: KSM reads it as Unix seconds
    assert f"kube_customresource_{metric['name']}" == RESERVATION_END


def test_the_node_label_is_karpenters(release_dir):
    labels = (release_dir / "pkg/apis/v1/labels.go").read_text()
    assert (
        'LabelCapacityReservationID                = apis.Group + "/capacity-reservation-id"'
        in labels
    )
    assert RESERVATION_ID_LABEL == "karpenter.k8s.aws/capacity-reservation-id"


def test_only_stacks_with_karpenter_export_reservations():
    common = {
        "storage_class_name": None,
        "grafana_admin_secret": "g",
        "alertmanager_config_secret": "a",
        "alertmanager_receivers_secret": "r",
    }
    args = MonitoringStackArgs()
    plain = kube_prometheus_stack_values(args, **common)["kube-state-metrics"]
    assert "customResourceState" not in plain and "rbac" not in plain
    assert RESERVATION_ID_LABEL not in plain["metricLabelsAllowlist"][0]
    withk = kube_prometheus_stack_values(args, **common, karpenter_state=True)["kube-state-metrics"]
    assert withk["customResourceState"] == kube_state_metrics_values()["customResourceState"]
    assert withk["rbac"]["extraRules"] == [
        {
            "apiGroups": ["karpenter.k8s.aws"],
            "resources": ["ec2nodeclasses"],
            "verbs": ["list", "watch"],
        }
    ]
    assert RESERVATION_ID_LABEL in withk["metricLabelsAllowlist"][0]
