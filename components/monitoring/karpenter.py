"""What the monitoring stack reads from Karpenter's objects: reservations and their end dates.

Karpenter records each reservation its EC2NodeClasses select in the class's status
(``status.capacityReservations[]``: id, instanceType, availabilityZone, reservationType
``default`` or ``capacity-block``, state, and ``endTime``). No exporter publishes that, so
kube-state-metrics' custom resource state turns it into one gauge per reservation whose value is
the end time (KSM reads RFC 3339 timestamps as Unix seconds, docs/metrics/extend/
customresourcestate-metrics.md at v2.20.0). Karpenter labels each node it launches into a
reservation with ``karpenter.k8s.aws/capacity-reservation-id``; with that label in the node
allowlist, an alert can tell a reservation *in use* from an idle one.
"""

from __future__ import annotations

from typing import Any

RESERVATION_ID_LABEL = "karpenter.k8s.aws/capacity-reservation-id"
CRS_PREFIX = "kube_customresource"
RESERVATION_END_METRIC = "ec2nodeclass_capacity_reservation_end_time_seconds"
RESERVATION_END = f"{CRS_PREFIX}_{RESERVATION_END_METRIC}"


def custom_resource_state() -> dict[str, Any]:
    """The CustomResourceStateMetrics config: one gauge per reservation of each EC2NodeClass."""
    return {
        "kind": "CustomResourceStateMetrics",
        "spec": {
            "resources": [
                {
                    "groupVersionKind": {
                        "group": "karpenter.k8s.aws",
                        "version": "v1",
                        "kind": "EC2NodeClass",
                    },
                    "labelsFromPath": {"nodeclass": ["metadata", "name"]},
                    "metrics": [
                        {
                            "name": RESERVATION_END_METRIC,
                            "help": "End of each capacity reservation the EC2NodeClass selects "
                            "(Unix seconds).",
                            "each": {
                                "type": "Gauge",
                                "gauge": {
                                    "path": ["status", "capacityReservations"],
                                    "labelsFromPath": {
                                        "id": ["id"],
                                        "reservation_type": ["reservationType"],
                                        "instance_type": ["instanceType"],
                                        "availability_zone": ["availabilityZone"],
                                        "state": ["state"],
                                    },
                                    "valueFrom": ["endTime"],
                                },
                            },
                        }
                    ],
                }
            ]
        },
    }


def kube_state_metrics_values() -> dict[str, Any]:
    """kube-state-metrics subchart values (chart 8.4.0: customResourceState, rbac.extraRules)."""
    return {
        "customResourceState": {"enabled": True, "config": custom_resource_state()},
        "rbac": {
            "extraRules": [
                {
                    "apiGroups": ["karpenter.k8s.aws"],
                    "resources": ["ec2nodeclasses"],
                    "verbs": ["list", "watch"],
                }
            ]
        },
    }
