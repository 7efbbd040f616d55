"""An endpoint's scaling: an HPA (CPU or requests per pod) or a KEDA ScaledObject, and a PDB.

Part of :mod:`components.serving_endpoint`.

Scale to zero and cold start
----------------------------
With ``keda.enabled`` the endpoint is scaled by a KEDA ``ScaledObject`` on a Prometheus query
instead of an HPA (KEDA owns the HPA it creates; two HPAs on one Deployment fight). With
``keda.minReplicas: 0`` the Deployment goes to zero replicas after ``cooldownSeconds`` without
demand. Scaling back from zero happens only when the query returns more than
``activationThreshold``, so the query must measure demand that exists while no pod runs (a queue
depth, or request counts at a gateway); metrics scraped from the endpoint's own pods vanish at
zero. The first request after idling waits for: the KEDA polling interval (``pollingSeconds``),
pod scheduling, a node if none is free (a GPU node from Karpenter typically takes 1-3 minutes),
the image pull (the vLLM image is ~10 GB unless cached on the node), and the model load (S3
streaming with the Run:ai streamer for vLLM; size / throughput) until the startup probe passes.
While no target is healthy the ALB answers 503, so clients must retry with backoff. Keep
``keda.minReplicas >= 1`` for latency-sensitive endpoints.
"""

from __future__ import annotations

from typing import Any

from components.serving_args import ENDPOINT_LABEL, ScaleMetric
from components.serving_slo import _num
from components.serving_workload import PlanBase


class ScalingBuilder(PlanBase):
    def hpa(self) -> dict[str, Any]:
        a = self.args.autoscaling
        if a.metric is ScaleMetric.CPU:
            metric: dict[str, Any] = {
                "type": "Resource",
                "resource": {
                    "name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": a.target_cpu_percent},
                },
            }
        else:
            metric = {
                "type": "Pods",
                "pods": {
                    "metric": {"name": a.request_metric},
                    "target": {"type": "AverageValue", "averageValue": a.target_requests_per_pod},
                },
            }
        return {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": self.meta(self.name),
            "spec": {
                "scaleTargetRef": self.workload_ref(),
                "minReplicas": a.min_replicas,
                "maxReplicas": a.max_replicas,
                "metrics": [metric],
                "behavior": self._behavior(),
            },
        }

    def _behavior(self) -> dict[str, Any]:
        a = self.args.autoscaling
        return {
            "scaleUp": {
                "stabilizationWindowSeconds": 0,
                "policies": [{"type": "Percent", "value": 100, "periodSeconds": 30}],
            },
            "scaleDown": {
                "stabilizationWindowSeconds": a.scale_down_stabilization_seconds,
                "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}],
            },
        }

    def scaled_object(self) -> dict[str, Any]:
        k = self.args.keda
        return {
            "apiVersion": "keda.sh/v1alpha1",
            "kind": "ScaledObject",
            "metadata": self.meta(self.name),
            "spec": {
                "scaleTargetRef": self.workload_ref(),
                "minReplicaCount": k.min_replicas,
                "maxReplicaCount": self.args.autoscaling.max_replicas,
                "pollingInterval": k.polling_seconds,
                "cooldownPeriod": k.cooldown_seconds,
                "advanced": {"horizontalPodAutoscalerConfig": {"behavior": self._behavior()}},
                "triggers": [
                    {
                        "type": "prometheus",
                        "metadata": {
                            "serverAddress": self.prometheus_url,
                            "query": k.query,
                            "threshold": _num(k.threshold),
                            "activationThreshold": _num(k.activation_threshold),
                        },
                    }
                ],
            },
        }

    def pdb(self) -> dict[str, Any]:
        # maxUnavailable (not minAvailable) keeps node drains possible at any replica count,
        # including 1 and KEDA's 0.
        return {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": self.meta(self.name),
            "spec": {
                "maxUnavailable": 1,
                "selector": {"matchLabels": {ENDPOINT_LABEL: self.name}},
                "unhealthyPodEvictionPolicy": "AlwaysAllow",
            },
        }
