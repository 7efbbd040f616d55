"""Karpenter: the controller that turns pending pods into EC2 nodes, and the general CPU pool.

The controller gets AWS credentials through EKS Pod Identity (no IRSA annotations, no node role
sharing), reads spot interruption, rebalance, health and state-change events from an encrypted
SQS queue fed by EventBridge, and launches nodes with a dedicated node role that joins the
cluster through an access entry. EC2NodeClasses pin an AMI release alias, so a node image never
changes under a running job without a config change.
"""

from __future__ import annotations

import json
import re
from enum import StrEnum
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
from pydantic import Field

from components.common import (
    NODE_MANAGED_POLICIES,
    POOL_LABEL,
    ArgsModel,
    Environment,
    Issue,
    KubeTarget,
    merge_tags,
    pod_identity_trust_json,
    service_trust_policy,
)
from components.karpenter_policy import controller_policy, interruption_key_policy
from components.node_class import AMI_ALIAS, ImagePull, NodeStorageArgs, node_class_spec
from components.training_cluster import SYSTEM_LABEL, managed_policy

CHART = "oci://public.ecr.aws/karpenter/karpenter"
# The CRDs as templates of their own chart, so a chart upgrade upgrades them (the controller
# chart's crds/ folder is installed once and never upgraded). Same version as the controller.
CRD_CHART = "oci://public.ecr.aws/karpenter/karpenter-crd"
# Release v1.15.2 (tag of aws/karpenter-provider-aws, 2026-11-12, as the Go module proxy lists
# it; its release script publishes both charts at the tag's version). >= 1.6 for the
# reservedCapacity feature. Tests validate NodePools/EC2NodeClasses against this tag's own CRDs
# (scripts/crd-sources.txt; keep the two in step).
KARPENTER_VERSION = "1.15.2"
KARPENTER_API = "karpenter.sh/v1"
NODECLASS_API = "karpenter.k8s.aws/v1"
SERVICE_ACCOUNT = "karpenter"
DURATION = r"^(Never|([0-9]+(s|m|h))+)$"
GENERAL_POOL = "general"


class CapacityType(StrEnum):
    SPOT = "spot"
    ON_DEMAND = "on-demand"
    RESERVED = "reserved"


class NodeRepair(StrEnum):
    """What Karpenter does with a node whose health conditions stay bad (its NodeRepair gate).

    The conditions come from the kubelet (Ready) and the EKS node monitoring agent
    (AcceleratedHardwareReady with the XID in its reason, KernelReady, NetworkingReady,
    StorageReady); the tolerations before acting are Karpenter's own (10 minutes for GPU faults,
    30 for the rest: cloudprovider.RepairPolicies at v1.15.2).
    """

    OFF = "off"
    REPLACE = "replace"  # replace the node (drained within the policy's grace period)
    # Reboot in place for reboot-clearable GPU XIDs, replace otherwise (rebootForRepair, alpha;
    # needs ec2:RebootInstances). Keeps a scarce or reserved instance instead of re-buying it.
    REBOOT_OR_REPLACE = "reboot-or-replace"


class CpuPoolArgs(ArgsModel):
    """The general pool: CPU work (data prep, MLflow, serving front-ends), not GPU jobs."""

    max_cpu: int = Field(default=64, ge=1)
    max_memory_gib: int = Field(default=256, ge=1)
    capacity_types: list[CapacityType] = Field(
        default_factory=lambda: [CapacityType.SPOT, CapacityType.ON_DEMAND], min_length=1
    )
    instance_categories: list[str] = Field(default_factory=lambda: ["c", "m", "r"], min_length=1)
    min_generation: int = Field(default=6, ge=1)
    architectures: list[str] = Field(default_factory=lambda: ["amd64"], min_length=1)
    consolidate_after: str = Field(default="1m", pattern=DURATION)
    expire_after: str = Field(default="720h", pattern=DURATION)
    root_volume_gib: int = Field(default=100, ge=20, le=16384)

    def issues(self) -> list[Issue]:
        found = super().issues()
        if CapacityType.RESERVED in self.capacity_types:
            found.append(
                Issue(
                    ("capacityTypes",),
                    "reserved capacity belongs to a GPU pool; allowed here: ['spot', 'on-demand']",
                )
            )
        for i, arch in enumerate(self.architectures):
            if arch not in ("amd64", "arm64"):
                found.append(Issue(("architectures", i), f"must be amd64 or arm64, got {arch!r}"))
        for i, cat in enumerate(self.instance_categories):
            if not re.fullmatch(r"[a-z]", cat):
                found.append(
                    Issue(
                        ("instanceCategories", i), f"must be one letter like c, m or r, got {cat!r}"
                    )
                )
        return found


class QueueEncryption(StrEnum):
    """How the interruption queue is encrypted at rest."""

    KMS = "kms"  # a customer-managed key (what the compliance profiles require)
    SQS_MANAGED = "sqs-managed"  # SSE-SQS: no key to pay for ($1/month); the events are EC2's


class KarpenterArgs(ArgsModel):
    environment: Environment = Environment.DEV
    chart_version: str = Field(default=KARPENTER_VERSION, pattern=r"^1\.\d+\.\d+$")
    namespace: str = "kube-system"
    replicas: int | None = None  # None: 1 in dev (one system node), 2 in prod
    ami_alias: str = "al2023@v20251112"
    interruption_queue: bool = True
    # None: SQS-managed in dev (the queue holds only EC2's spot and health notices), KMS in prod
    queue_encryption: QueueEncryption | None = None
    node_repair: NodeRepair = NodeRepair.REPLACE
    cpu_pool: CpuPoolArgs = Field(default_factory=CpuPoolArgs)
    tags: dict[str, str] = Field(default_factory=dict)

    def issues(self) -> list[Issue]:
        found = super().issues()
        if not AMI_ALIAS.match(self.ami_alias):
            found.append(
                Issue(
                    ("amiAlias",),
                    "must pin a release, like al2023@v20251112 or bottlerocket@v1.50.0 "
                    f"(not @latest), got {self.ami_alias!r}",
                )
            )
        if self.replicas is not None and not 1 <= self.replicas <= 3:
            found.append(Issue(("replicas",), f"must be 1 to 3, got {self.replicas}"))
        return found

    @property
    def effective_replicas(self) -> int:
        if self.replicas is not None:
            return self.replicas
        return 2 if self.environment is Environment.PROD else 1

    @property
    def effective_queue_encryption(self) -> QueueEncryption:
        if self.queue_encryption is not None:
            return self.queue_encryption
        prod = self.environment is Environment.PROD
        return QueueEncryption.KMS if prod else QueueEncryption.SQS_MANAGED


def feature_gate_settings(args: KarpenterArgs) -> dict[str, Any]:
    """The chart's settings.featureGates and settings.awsFeatureGates (v1.15.2 values.yaml)."""
    repair = args.node_repair is not NodeRepair.OFF
    return {
        "featureGates": {
            "reservedCapacity": True,
            "nodeRepair": repair,
            # A broken node in a full reservation could never be replaced first (the replacement
            # has nowhere to launch): terminate it first there. Only acts when capacity is short.
            "terminateFirstRepair": repair,
        },
        "awsFeatureGates": {"rebootForRepair": args.node_repair is NodeRepair.REBOOT_OR_REPLACE},
    }


# The chart's Service (templates/service.yaml at v1.15.2): selector labels and the port name.
METRICS_SERVICE_LABELS = {
    "app.kubernetes.io/name": "karpenter",
    "app.kubernetes.io/instance": "karpenter",
}
METRICS_PORT = "http-metrics"


def service_monitor(namespace: str, monitor_namespace: str) -> dict[str, Any]:
    """Scrapes the controller in ``namespace``; the monitor itself lives in ``monitor_namespace``
    (the monitoring stack's), since nothing of ours belongs in kube-system (trivy KSV-0037)."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": "karpenter", "namespace": monitor_namespace},
        "spec": {
            "namespaceSelector": {"matchNames": [namespace]},
            "selector": {"matchLabels": dict(METRICS_SERVICE_LABELS)},
            "endpoints": [{"port": METRICS_PORT, "path": "/metrics", "interval": "30s"}],
        },
    }


# EventBridge patterns whose events Karpenter acts on before AWS reclaims or stops an instance.
INTERRUPTION_EVENTS: dict[str, dict[str, Any]] = {
    "health": {"source": ["aws.health"], "detail-type": ["AWS Health Event"]},
    "spot": {"source": ["aws.ec2"], "detail-type": ["EC2 Spot Instance Interruption Warning"]},
    "rebalance": {"source": ["aws.ec2"], "detail-type": ["EC2 Instance Rebalance Recommendation"]},
    "state": {"source": ["aws.ec2"], "detail-type": ["EC2 Instance State-change Notification"]},
    # An interruptible ODCR's owner reclaiming capacity (the upstream template's
    # CapacityReservationInterruptionRule; parsed by Karpenter's capacityreservationinterruption).
    "reservation": {
        "source": ["aws.ec2"],
        "detail-type": ["EC2 Capacity Reservation Instance Interruption Warning"],
    },
}


class Karpenter(pulumi.ComponentResource):
    """The Karpenter controller (Helm), its AWS plumbing, the default EC2NodeClass and CPU pool."""

    release: k8s.helm.v3.Release
    node_role_name: pulumi.Output[str]
    node_role_arn: pulumi.Output[str]
    queue_name: pulumi.Output[str] | None

    def __init__(
        self,
        name: str,
        args: KarpenterArgs,
        *,
        target: KubeTarget,
        cluster_name: str,
        ebs_kms_key_arn: pulumi.Input[str] | None = None,
        tags: dict[str, str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """``ebs_kms_key_arn``: the customer-managed key for node root volumes (None: aws/ebs)."""
        args.raise_if_invalid("Karpenter")
        super().__init__("mlplatform:compute:Karpenter", name, None, opts)
        self.args = args
        self.target = target
        self.cluster_name = cluster_name
        self.ebs_kms_key_arn = ebs_kms_key_arn
        self._tags = merge_tags(tags, args.tags)
        child = pulumi.ResourceOptions(parent=self)
        ident = aws.get_caller_identity_output()
        region = aws.get_region_output().region
        partition = aws.get_partition_output().partition

        # Node role: what Karpenter-launched instances run as.
        node_role = aws.iam.Role(
            f"{name}-node-role",
            # A fixed name keeps every EC2NodeClass's `role` known at preview.
            name=f"{cluster_name[:40]}-karpenter-node",
            assume_role_policy=json.dumps(
                service_trust_policy("ec2.amazonaws.com"), sort_keys=True
            ),
            tags=self._tags,
            opts=child,
        )
        node_attachments = [
            aws.iam.RolePolicyAttachment(
                f"{name}-node-{short}",
                role=node_role.name,
                policy_arn=managed_policy(p),
                opts=child,
            )
            for short, p in (*NODE_MANAGED_POLICIES, ("ssm", "AmazonSSMManagedInstanceCore"))
        ]
        self.node_role_name = node_role.name
        self.node_role_arn = node_role.arn
        self.node_access_entry = aws.eks.AccessEntry(
            f"{name}-node-access",
            cluster_name=cluster_name,
            principal_arn=node_role.arn,
            type="EC2_LINUX",
            tags=self._tags,
            opts=child,
        )

        # Interruption queue: spot reclaim and health events reach Karpenter 2 minutes early.
        self.queue = None
        self.queue_name = None
        if args.interruption_queue:
            prod = args.environment is Environment.PROD
            queue_key = (
                self._queue_key(name, cluster_name, partition, ident.account_id, region, prod)
                if args.effective_queue_encryption is QueueEncryption.KMS
                else None
            )
            self.queue = aws.sqs.Queue(
                f"{name}-interruptions",
                name=cluster_name,
                message_retention_seconds=300,
                kms_master_key_id=queue_key.arn if queue_key is not None else None,
                sqs_managed_sse_enabled=True if queue_key is None else None,
                tags=self._tags,
                opts=child,
            )
            self.queue_name = self.queue.name
            aws.sqs.QueuePolicy(
                f"{name}-interruptions-policy",
                queue_url=self.queue.url,
                policy=self.queue.arn.apply(
                    lambda q: json.dumps(
                        {
                            "Version": "2012-10-17",
                            "Statement": [
                                {
                                    "Sid": "EventBridgeWrites",
                                    "Effect": "Allow",
                                    "Principal": {
                                        "Service": ["events.amazonaws.com", "sqs.amazonaws.com"]
                                    },
                                    "Action": "sqs:SendMessage",
                                    "Resource": q,
                                },
                                {
                                    "Sid": "DenyHTTP",
                                    "Effect": "Deny",
                                    "Principal": "*",
                                    "Action": "sqs:*",
                                    "Resource": q,
                                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                                },
                            ],
                        }
                    )
                ),
                opts=child,
            )
            for key, pattern in INTERRUPTION_EVENTS.items():
                rule = aws.cloudwatch.EventRule(
                    f"{name}-{key}",
                    description=f"Karpenter interruption events ({key}) for {cluster_name}",
                    event_pattern=json.dumps(pattern),
                    tags=self._tags,
                    opts=child,
                )
                aws.cloudwatch.EventTarget(
                    f"{name}-{key}-target",
                    rule=rule.name,
                    arn=self.queue.arn,
                    target_id="KarpenterInterruptionQueue",
                    opts=child,
                )

        # Controller role via Pod Identity.
        controller_role = aws.iam.Role(
            f"{name}-controller-role",
            assume_role_policy=pod_identity_trust_json(
                partition=partition,
                region=region,
                account_id=ident.account_id,
                cluster_name=cluster_name,
            ),
            tags=self._tags,
            opts=child,
        )
        queue_arn: Any = self.queue.arn if self.queue is not None else None
        self.controller_policy_document = pulumi.Output.all(
            partition, region, ident.account_id, queue_arn, node_role.arn
        ).apply(
            lambda a: json.dumps(
                controller_policy(
                    cluster_name=cluster_name,
                    partition=a[0],
                    region=a[1],
                    account=a[2],
                    queue_arn=a[3],
                    node_role_arn=a[4],
                    reboot=args.node_repair is NodeRepair.REBOOT_OR_REPLACE,
                )
            )
        )
        controller_policy_res = aws.iam.RolePolicy(
            f"{name}-controller-policy",
            role=controller_role.id,
            policy=self.controller_policy_document,
            opts=child,
        )
        identity = aws.eks.PodIdentityAssociation(
            f"{name}-pod-identity",
            cluster_name=cluster_name,
            namespace=args.namespace,
            service_account=SERVICE_ACCOUNT,
            role_arn=controller_role.arn,
            tags=self._tags,
            # Credentials are issued when the pod starts: with the role's permissions in place.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[controller_policy_res]),
        )

        # Only values known at preview: Karpenter looks the endpoint up itself (eks:DescribeCluster),
        # and unknown Helm values would make every preview show a diff (pulumi-kubernetes#758).
        settings: dict[str, Any] = {"clusterName": cluster_name, **feature_gate_settings(args)}
        if self.queue is not None:
            settings["interruptionQueue"] = cluster_name
        values: dict[str, Any] = {
            "settings": settings,
            "replicas": args.effective_replicas,
            "serviceAccount": {"create": True, "name": SERVICE_ACCOUNT},
            # Karpenter must never run on nodes it manages, or it could remove its own node.
            "nodeSelector": dict(SYSTEM_LABEL),
            "dnsPolicy": "Default",
            "logLevel": "info",
            "controller": {
                # Region from env: IMDS hop limit 1 keeps pods from the instance metadata.
                "env": [{"name": "AWS_REGION", "value": region}],
                "resources": {
                    "requests": {"cpu": "250m", "memory": "512Mi"},
                    "limits": {"cpu": "1", "memory": "1Gi"},
                },
            },
        }
        k8s_deps = list(target.depends_on)
        self.crds = k8s.helm.v3.Release(
            f"{name}-crds",
            name="karpenter-crd",
            chart=CRD_CHART,
            version=args.chart_version,
            namespace=args.namespace,
            max_history=5,
            opts=pulumi.ResourceOptions(parent=self, provider=target.provider, depends_on=k8s_deps),
        )
        self.release = k8s.helm.v3.Release(
            f"{name}-controller",
            name="karpenter",
            chart=CHART,
            version=args.chart_version,
            namespace=args.namespace,
            values=values,
            skip_crds=True,
            max_history=5,
            opts=pulumi.ResourceOptions(
                parent=self,
                provider=target.provider,
                depends_on=[
                    *k8s_deps,
                    self.crds,
                    identity,
                    controller_policy_res,
                    self.node_access_entry,
                    *node_attachments,
                ],
            ),
        )

        self.default_node_class = self.node_class(
            f"{name}-default-nodeclass",
            "default",
            storage=NodeStorageArgs(volume_gib=args.cpu_pool.root_volume_gib, throughput_mibps=125),
            tags={},
        )
        cpu = args.cpu_pool
        requirements = [
            {"key": "kubernetes.io/arch", "operator": "In", "values": list(cpu.architectures)},
            {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]},
            {
                "key": "karpenter.sh/capacity-type",
                "operator": "In",
                "values": [c.value for c in cpu.capacity_types],
            },
            {
                "key": "karpenter.k8s.aws/instance-category",
                "operator": "In",
                "values": list(cpu.instance_categories),
            },
            {
                "key": "karpenter.k8s.aws/instance-generation",
                "operator": "Gt",
                "values": [str(cpu.min_generation - 1)],
            },
            # Keep GPU instances out of the CPU pool: they belong to GpuNodePools.
            {"key": "karpenter.k8s.aws/instance-gpu-count", "operator": "DoesNotExist"},
        ]
        self.cpu_pool = self.node_pool(
            f"{name}-general-nodepool",
            GENERAL_POOL,
            node_class="default",
            node_class_resource=self.default_node_class,
            spec={
                "template": {
                    "metadata": {"labels": {POOL_LABEL: GENERAL_POOL}},
                    "spec": {
                        "requirements": requirements,
                        "expireAfter": cpu.expire_after,
                    },
                },
                "disruption": {
                    "consolidationPolicy": "WhenEmptyOrUnderutilized",
                    "consolidateAfter": cpu.consolidate_after,
                    "budgets": [{"nodes": "10%"}],
                },
                "limits": {"cpu": str(cpu.max_cpu), "memory": f"{cpu.max_memory_gib}Gi"},
            },
        )
        self.register_outputs(
            {
                "nodeRoleName": self.node_role_name,
                "nodeRoleArn": self.node_role_arn,
                "queueName": self.queue_name,
            }
        )

    # Building blocks GpuNodePool reuses ---------------------------------------------------
    def _queue_key(
        self, name: str, cluster_name: str, partition: Any, account_id: Any, region: Any, prod: bool
    ) -> aws.kms.Key:
        return aws.kms.Key(
            f"{name}-interruptions-key",
            description=f"Karpenter {cluster_name}: interruption queue",
            enable_key_rotation=True,
            deletion_window_in_days=7,
            policy=pulumi.Output.all(partition, account_id, region).apply(
                lambda a: json.dumps(
                    interruption_key_policy(partition=a[0], account_id=a[1], region=a[2]),
                    sort_keys=True,
                )
            ),
            tags=self._tags,
            # Kept in prod like every prod key (the policy pack requires it).
            opts=pulumi.ResourceOptions(parent=self, protect=prod, retain_on_delete=prod),
        )

    def k8s_opts(self, parent: pulumi.Resource, *extra: pulumi.Resource) -> pulumi.ResourceOptions:
        """Options for a Karpenter CR: after the cluster, nodes and the controller (so it is
        deleted first, while the controller still runs to drain and terminate its nodes)."""
        return pulumi.ResourceOptions(
            parent=parent,
            provider=self.target.provider,
            depends_on=[*self.target.depends_on, self.release, *extra],
        )

    def node_class(
        self,
        resource_name: str,
        class_name: str,
        *,
        storage: NodeStorageArgs,
        tags: dict[str, str],
        image_pull: ImagePull = ImagePull.STANDARD,
        capacity_reservation_terms: list[dict[str, Any]] | None = None,
        parent: pulumi.Resource | None = None,
    ) -> k8s.apiextensions.CustomResource:
        return k8s.apiextensions.CustomResource(
            resource_name,
            api_version=NODECLASS_API,
            kind="EC2NodeClass",
            metadata={"name": class_name},
            spec=node_class_spec(
                role=self.node_role_name,
                cluster_name=self.cluster_name,
                ami_alias=self.args.ami_alias,
                storage=storage,
                tags=merge_tags(self._tags, tags),
                image_pull=image_pull,
                capacity_reservation_terms=capacity_reservation_terms,
                kms_key_id=self.ebs_kms_key_arn,
            ),
            opts=self.k8s_opts(parent or self),
        )

    def service_monitor(
        self, resource_name: str, monitoring_crds: pulumi.Resource, *, namespace: str
    ) -> k8s.apiextensions.CustomResource:
        """Scrape the controller's metrics (node repairs, disruptions). Declared by the platform
        once the Prometheus Operator CRDs exist: the chart's own ServiceMonitor renders only if
        they are installed before it, and Karpenter comes first."""
        monitor = service_monitor(self.args.namespace, namespace)
        return k8s.apiextensions.CustomResource(
            resource_name,
            api_version=monitor["apiVersion"],
            kind=monitor["kind"],
            metadata=monitor["metadata"],
            spec=monitor["spec"],
            opts=self.k8s_opts(self, monitoring_crds),
        )

    def node_pool(
        self,
        resource_name: str,
        pool_name: str,
        *,
        node_class: str,
        node_class_resource: pulumi.Resource,
        spec: dict[str, Any],
        parent: pulumi.Resource | None = None,
    ) -> k8s.apiextensions.CustomResource:
        spec = json.loads(json.dumps(spec))  # never mutate the caller's dict
        spec["template"]["spec"]["nodeClassRef"] = {
            "group": "karpenter.k8s.aws",
            "kind": "EC2NodeClass",
            "name": node_class,
        }
        return k8s.apiextensions.CustomResource(
            resource_name,
            api_version=KARPENTER_API,
            kind="NodePool",
            metadata={"name": pool_name},
            spec=spec,
            opts=self.k8s_opts(parent or self, node_class_resource),
        )
