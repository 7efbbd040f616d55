"""ProjectNamespaces: the namespaces that several components share, declared exactly once.

A project's namespace is used by its training queue, its service accounts and, on the local stack,
the object store's credentials Secret. Declaring it here (Pod Security "restricted", a default-deny
ingress policy) keeps any two components from declaring the same namespace, and gives each of them
a resource to wait for.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.common import DNS_LABEL, RESTRICTED_NAMESPACE_LABELS, TEAM_LABEL, KubeTarget


class ProjectNamespaces(pulumi.ComponentResource):
    """One restricted namespace per name; ingress only from the same namespace and monitoring."""

    names: pulumi.Output[list[str]]

    def __init__(
        self,
        name: str,
        namespaces: Iterable[str],
        *,
        target: KubeTarget,
        monitoring_namespace: str = "monitoring",
        teams: Mapping[str, str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """``teams`` maps a namespace to the team that owns it: its ``mlplatform.io/team``
        label, which kube-state-metrics exports and the cost rules sum spend by."""
        wanted = sorted(set(namespaces))
        bad = [n for n in wanted if not DNS_LABEL.match(n)]
        if bad:
            raise ValueError(f"namespace names must be DNS labels: {bad}")
        super().__init__("mlplatform:platform:ProjectNamespaces", name, None, opts)
        owners = dict(teams or {})
        k8s_opts = pulumi.ResourceOptions(
            parent=self, provider=target.provider, depends_on=list(target.depends_on)
        )
        self.resources: dict[str, k8s.core.v1.Namespace] = {}
        for ns in wanted:
            namespace = k8s.core.v1.Namespace(
                f"{name}-{ns}",
                metadata={
                    "name": ns,
                    "labels": {
                        **RESTRICTED_NAMESPACE_LABELS,
                        "mlplatform.io/project": ns,
                        **({TEAM_LABEL: owners[ns]} if ns in owners else {}),
                    },
                },
                opts=k8s_opts,
            )
            self.resources[ns] = namespace
            if not target.network_policy:
                continue  # the CNI would ignore it
            # Pods of the project talk to each other (multi-node training rendezvous) and
            # Prometheus scrapes them; any other ingress needs a workload's own policy.
            monitoring = {"kubernetes.io/metadata.name": monitoring_namespace}
            spec: dict[str, Any] = {
                "podSelector": {},
                "policyTypes": ["Ingress"],
                "ingress": [
                    {"from": [{"podSelector": {}}]},
                    {"from": [{"namespaceSelector": {"matchLabels": monitoring}}]},
                ],
            }
            body: dict[str, Any] = {
                "metadata": {"name": "project-ingress", "namespace": ns},
                "spec": spec,
            }
            k8s.networking.v1.NetworkPolicy(
                f"{name}-{ns}-default-ingress",
                **body,
                opts=pulumi.ResourceOptions.merge(
                    k8s_opts, pulumi.ResourceOptions(depends_on=[namespace])
                ),
            )
        self.names = pulumi.Output.from_input(wanted)
        self.register_outputs({"names": self.names})

    def target_for(self, target: KubeTarget, namespace: str) -> KubeTarget:
        """The same target, also waiting for (and deleted before) the given namespace."""
        ns = self.resources.get(namespace)
        if ns is None:
            return target
        return dataclasses.replace(target, depends_on=(*target.depends_on, ns))
