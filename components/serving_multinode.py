"""A ``vllm`` endpoint larger than one node: a LeaderWorkerSet instead of a Deployment.

Part of :mod:`components.serving_endpoint`. Each replica of the endpoint is one LWS *group* of
``multiNode.nodes`` pods, ``resources.gpus`` GPUs each. The leader (worker index 0) starts a Ray
head, waits for the group's workers to join, and runs vLLM's OpenAI server with tensor parallel
inside a node and pipeline parallel across nodes; the workers only run Ray. Both use the script
vLLM's image ships for this (``examples/online_serving/multi-node-serving.sh``, the layout of
LWS's own vLLM example).

What stays as for a Deployment: the leader pod is the server pod (same image, env, probes,
security context, service account, volumes, GPU toleration, pool and architecture selectors,
zone spread of the leaders); the Service, ServiceMonitor and Ingress select leaders only (the
``worker-index: "0"`` label LWS sets), the HPA scales groups through LWS's scale subresource, the
PDB and NetworkPolicy cover every pod of the endpoint. What differs: a group's pods share one
zone (pipeline stages talk on every token), at most one pod of the endpoint per node, the
workers admit the leader on every port (Ray's ports are dynamic), and a group is recreated as a
whole when any of its pods restarts (a Ray cluster does not survive a member's restart).
"""

from __future__ import annotations

import shlex
from typing import Any

from components.serving_args import ZONE_KEY
from components.serving_workload import LWS_API_VERSION, PlanBase, WorkloadBuilder

# Labels the LWS controller sets on every pod (api/leaderworkerset/v1/leaderworkerset_types.go
# at v0.10.0); it injects LWS_LEADER_ADDRESS and LWS_GROUP_SIZE into every container.
GROUP_KEY_LABEL = "leaderworkerset.sigs.k8s.io/group-key"
RAY_SCRIPT = "/vllm-workspace/examples/online_serving/multi-node-serving.sh"


class MultiNodeBuilder(WorkloadBuilder, PlanBase):
    def _group_placement(self, spec: dict[str, Any], track: str, *, leader: bool) -> None:
        # Leaders spread across zones (one group per zone first); a group's workers follow its
        # leader into that zone (pipeline stages talk on every token); one pod a node.
        spec["topologySpreadConstraints"] = [
            {**c, "labelSelector": {"matchLabels": self.leader_selector(track)}}
            for c in spec["topologySpreadConstraints"]
            if leader and c["topologyKey"] == ZONE_KEY
        ]
        if not spec["topologySpreadConstraints"]:
            del spec["topologySpreadConstraints"]
        same_endpoint = {"matchLabels": self.selector(track)}
        spec["affinity"] = {
            "podAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "labelSelector": same_endpoint,
                        "matchLabelKeys": [GROUP_KEY_LABEL],
                        "topologyKey": ZONE_KEY,
                    }
                ]
            },
            "podAntiAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [
                    {"labelSelector": same_endpoint, "topologyKey": "kubernetes.io/hostname"}
                ]
            },
        }

    def _leader_spec(self, track: str) -> dict[str, Any]:
        spec = self.pod_spec(track)
        server = spec["containers"][0]
        serve = shlex.join([*server["command"], *server["args"]])
        server["command"] = ["/bin/bash", "-c"]
        # $(MODEL_URI) in the args is expanded by the kubelet before bash sees the line.
        server["args"] = [
            f'bash {RAY_SCRIPT} leader --ray_cluster_size="$LWS_GROUP_SIZE" && exec {serve}'
        ]
        self._group_placement(spec, track, leader=True)
        return spec

    def _worker_spec(self, track: str) -> dict[str, Any]:
        spec = self.pod_spec(track)
        worker = spec["containers"][0]
        for key in ("command", "args", "ports", "startupProbe", "readinessProbe", "livenessProbe"):
            worker.pop(key, None)
        worker["lifecycle"] = {"preStop": {"sleep": {"seconds": 1}}}
        worker["command"] = ["/bin/bash", "-c"]
        worker["args"] = [f'exec bash {RAY_SCRIPT} worker --ray_address="$LWS_LEADER_ADDRESS"']
        # Each worker loads its own shards (streamed from S3, or from its own download) under the
        # same service account, so the same read-only grant.
        self._group_placement(spec, track, leader=False)
        return spec

    def leader_worker_set(self, track: str = "stable") -> dict[str, Any]:
        a = self.args
        assert a.multi_node is not None
        canary = track == "canary"
        name = self.canary_service if canary else self.name
        template_meta = {
            "labels": self.labels(track),
            "annotations": {"kubectl.kubernetes.io/default-container": "server"},
        }
        spec: dict[str, Any] = {
            "startupPolicy": "LeaderCreated",  # the leader is ready only once workers joined
            "rolloutStrategy": {
                "type": "RollingUpdate",
                # A new group must be ready before an old one goes: no capacity dip.
                "rollingUpdateConfiguration": {"maxSurge": 1, "maxUnavailable": 0},
            },
            "leaderWorkerTemplate": {
                "size": a.multi_node.nodes,
                "restartPolicy": "RecreateGroupOnPodRestart",
                "leaderTemplate": {"metadata": template_meta, "spec": self._leader_spec(track)},
                "workerTemplate": {"metadata": template_meta, "spec": self._worker_spec(track)},
            },
        }
        if canary and a.canary:
            spec["replicas"] = a.canary.replicas
        # The stable track's group count is owned by the HPA (LWS's scale subresource).
        return {
            "apiVersion": LWS_API_VERSION,
            "kind": "LeaderWorkerSet",
            "metadata": self.meta(
                name, track, annotations=self.workload_annotations(self.track_image(track))
            ),
            "spec": spec,
        }

    def workload(self, track: str = "stable") -> dict[str, Any]:
        return self.leader_worker_set(track) if self.args.multi_node else self.deployment(track)
