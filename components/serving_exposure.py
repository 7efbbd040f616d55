"""An endpoint's exposure: its NetworkPolicy and Ingress (shared ALB on AWS), and its URLs.

Part of :mod:`components.serving_endpoint`.
"""

from __future__ import annotations

import json
from typing import Any

import pulumi

from components.serving_args import ENDPOINT_LABEL, PROJECT_LABEL
from components.serving_workload import PlanBase


def _ip_blocks(cidrs: Any) -> Any:
    """``from`` peers for CIDRs given as a list or as an Output of one (an existing VPC's)."""
    if isinstance(cidrs, pulumi.Output):
        return cidrs.apply(lambda cs: [{"ipBlock": {"cidr": c}} for c in cs])
    return [{"ipBlock": {"cidr": c}} for c in cidrs]


class ExposureBuilder(PlanBase):
    def network_policy(self) -> dict[str, Any]:
        port = [{"protocol": "TCP", "port": self.port}]

        def ns(label: str, value: str) -> dict[str, Any]:
            return {"namespaceSelector": {"matchLabels": {label: value}}}

        rules: list[dict[str, Any]] = [
            {"from": [ns("kubernetes.io/metadata.name", self.ingress_ns)], "ports": port},
            {"from": [ns("kubernetes.io/metadata.name", self.monitoring_namespace)], "ports": port},
            {"from": [ns(PROJECT_LABEL, self.args.project)], "ports": port},
        ]
        if self.on_aws and self.args.ingress.enabled and self.alb_source_cidrs:
            # ALB targets are pod IPs (target-type ip): traffic comes from the ALB's interfaces,
            # which live in the load balancer subnets (private ones for an internal ALB), not
            # from a pod. Only those subnets are admitted: with VPC CNI every pod has a VPC
            # address too, so the whole VPC would admit every pod of the cluster.
            rules.append({"from": _ip_blocks(self.alb_source_cidrs), "ports": port})
        if self.args.multi_node is not None:
            # A group's pods talk Ray and NCCL to each other on ports Ray picks at start: the
            # endpoint's own pods are admitted on every port, nobody else is.
            rules.append({"from": [{"podSelector": {"matchLabels": {ENDPOINT_LABEL: self.name}}}]})
        return {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": self.meta(f"{self.name}-ingress"),
            "spec": {
                "podSelector": {"matchLabels": {ENDPOINT_LABEL: self.name}},
                "policyTypes": ["Ingress"],
                "ingress": rules,
            },
        }

    def ingress_class(self) -> str | None:
        ing = self.args.ingress
        if not ing.enabled:
            return None
        return ing.class_name or ("alb" if self.on_aws else None)

    def ingress(self) -> dict[str, Any] | None:
        ing = self.args.ingress
        cls = self.ingress_class()
        if cls is None:
            return None
        backend_service = self.service
        port: dict[str, Any] = {"name": "http"}
        annotations: dict[str, Any] = {}
        tls: list[dict[str, Any]] = []
        alb = self.on_aws and cls == "alb"
        if alb:
            prefix = "alb.ingress.kubernetes.io"
            annotations.update(
                {
                    f"{prefix}/scheme": ing.scheme,
                    f"{prefix}/target-type": "ip",
                    f"{prefix}/group.name": ing.group_name,
                    f"{prefix}/healthcheck-path": self.health_path,
                    f"{prefix}/success-codes": "200",
                    f"{prefix}/target-group-attributes": (
                        f"deregistration_delay.timeout_seconds={self.args.shutdown.drain_seconds}"
                    ),
                }
            )
            if ing.certificate_arn:
                annotations.update(
                    {
                        f"{prefix}/listen-ports": json.dumps([{"HTTPS": 443}]),
                        f"{prefix}/certificate-arn": ing.certificate_arn,
                        f"{prefix}/ssl-policy": ing.ssl_policy,
                    }
                )
            else:
                annotations[f"{prefix}/listen-ports"] = json.dumps([{"HTTP": 80}])
            if self.tags:
                annotations[f"{prefix}/tags"] = ",".join(
                    f"{k}={v}" for k, v in sorted(self.tags.items())
                )
            if self.args.canary is not None:
                action = f"{self.name}-weighted"
                weight = self.args.canary.weight
                annotations[f"{prefix}/actions.{action}"] = json.dumps(
                    {
                        "type": "forward",
                        "forwardConfig": {
                            "targetGroups": [
                                {
                                    "serviceName": self.service,
                                    "servicePort": "http",
                                    "weight": 100 - weight,
                                },
                                {
                                    "serviceName": self.canary_service,
                                    "servicePort": "http",
                                    "weight": weight,
                                },
                            ],
                            "targetGroupStickinessConfig": {"enabled": False},
                        },
                    },
                    sort_keys=True,
                )
                backend_service = action
                port = {"name": "use-annotation"}
        elif ing.tls_secret_name and ing.host:
            tls = [{"hosts": [ing.host], "secretName": ing.tls_secret_name}]
        rule: dict[str, Any] = {
            "http": {
                "paths": [
                    {
                        "path": ing.path,
                        "pathType": "Prefix",
                        "backend": {"service": {"name": backend_service, "port": port}},
                    }
                ]
            }
        }
        if ing.host:
            rule["host"] = ing.host
        spec: dict[str, Any] = {"ingressClassName": cls, "rules": [rule]}
        if tls:
            spec["tls"] = tls
        metadata = self.meta(self.name)
        if annotations:
            metadata["annotations"] = annotations
        return {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": metadata,
            "spec": spec,
        }

    def url(self) -> str:
        ing = self.args.ingress
        if self.ingress_class() and ing.host:
            secure = (self.on_aws and ing.certificate_arn) or (
                not self.on_aws and ing.tls_secret_name
            )
            path = "" if ing.path == "/" else ing.path
            return f"{'https' if secure else 'http'}://{ing.host}{path}"
        return self.internal_url()

    def internal_url(self) -> str:
        return f"http://{self.service}.{self.namespace}.svc.cluster.local"
