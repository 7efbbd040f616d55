"""Pricing of the AWS resources a plan declares, except the network (aws_network.py): control
plane, node groups, instances, databases, keys and logs."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mlplatform.cost.catalogue import (
    Ledger,
    by_type,
    dependencies_of,
    dig,
    num,
    short_name,
)

LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
SUBNET = "aws:ec2/subnet:Subnet"
NAT_INSTANCE_TAG = "mlplatform.io/nat-instance"
ARCH_LABEL = "kubernetes.io/arch"
_EKS_TAINT_EFFECTS = {
    "NO_SCHEDULE": "NoSchedule",
    "NO_EXECUTE": "NoExecute",
    "PREFER_NO_SCHEDULE": "PreferNoSchedule",
}

Resources = list[Mapping[str, Any]]


@dataclass(frozen=True)
class NodeGroupShape:
    """Always-on nodes of an EKS managed node group, as the scheduler sees them."""

    name: str
    instance_type: str
    count: int
    spot: bool
    labels: dict[str, str] = field(default_factory=dict)
    taints: tuple[dict[str, str], ...] = ()


def control_plane(b: Ledger, resources: Resources) -> None:
    clusters = by_type(resources, "aws:eks/cluster:Cluster")
    b.add(
        "EKS control plane",
        "eks",
        len(clusters),
        "cluster",
        b.price("eksControlPlane") * b.hours,
        resources=[r["urn"] for r in clusters],
        note="standard support; extended support (old Kubernetes versions) is $0.60/hour",
    )


def launch_template_for(res: Mapping[str, Any], resources: Resources) -> Mapping[str, Any]:
    found = dependencies_of(res, resources, LAUNCH_TEMPLATE)
    return found[0] if found else {}


def _root_volumes(lt_inputs: Mapping[str, Any]) -> list[tuple[float, str]]:
    out = []
    for bdm in lt_inputs.get("blockDeviceMappings") or []:
        ebs = bdm.get("ebs") or {}
        out.append((num(ebs.get("volumeSize"), 8), str(ebs.get("volumeType") or "gp3")))
    return out


def _add_volumes(b: Ledger, label: str, disks: dict[str, tuple[float, list[str]]]) -> None:
    for vtype, (size, urns) in disks.items():
        b.add(f"{label} ({vtype})", "ebs", size, "GiB-month", b.ebs_price(vtype), resources=urns)


def _arch(b: Ledger, instance_type: str, ami_type: str) -> str:
    spec = b.instance(instance_type) or {}
    arch = str(spec.get("arch") or ("arm64" if "ARM" in ami_type.upper() else "x86_64"))
    return "arm64" if arch == "arm64" else "amd64"


def node_groups(b: Ledger, resources: Resources) -> list[NodeGroupShape]:
    """Price managed node groups and their root volumes; return the non-GPU ones' shapes."""
    out: list[NodeGroupShape] = []
    disks: dict[str, tuple[float, list[str]]] = {}
    for ng in by_type(resources, "aws:eks/nodeGroup:NodeGroup"):
        inputs = ng.get("inputs") or {}
        scaling = inputs.get("scalingConfig") or {}
        count = int(max(num(scaling.get("desiredSize")), num(scaling.get("minSize"))))
        lt = launch_template_for(ng, resources)
        lt_inputs = lt.get("inputs") or {}
        types = list(inputs.get("instanceTypes") or [])
        if not types and lt_inputs.get("instanceType"):
            types = [lt_inputs["instanceType"]]
        itype = types[0] if types else "t3.medium"
        spot = str(inputs.get("capacityType", "ON_DEMAND")).upper() == "SPOT"
        rate = b.hourly(itype, spot)
        spec = b.instance(itype) or {}
        label = "GPU node group (always on)" if spec.get("gpus") else "System nodes"
        if rate is None:
            b.unpriced.append({"urn": ng["urn"], "reason": f"no price for instance type {itype}"})
        else:
            b.add(
                f"{label}: {short_name(ng)}",
                "nodes",
                count,
                f"{itype} {'spot' if spot else 'on-demand'} node",
                rate * b.hours,
                resources=[ng["urn"]],
                note="first of instanceTypes" if len(types) > 1 else "",
            )
        if count and not spec.get("gpus"):
            labels = {str(k): str(v) for k, v in (inputs.get("labels") or {}).items()}
            labels.setdefault(ARCH_LABEL, _arch(b, itype, str(inputs.get("amiType") or "")))
            labels.setdefault("eks.amazonaws.com/capacityType", "SPOT" if spot else "ON_DEMAND")
            labels.setdefault("node.kubernetes.io/instance-type", itype)
            taints = tuple(
                {
                    "key": str(t.get("key", "")),
                    "value": str(t.get("value") or ""),
                    "effect": _EKS_TAINT_EFFECTS.get(str(t.get("effect")), str(t.get("effect"))),
                }
                for t in inputs.get("taints") or []
            )
            out.append(NodeGroupShape(short_name(ng), itype, count, spot, labels, taints))
        # Root volumes: the launch template's block devices, else the managed default.
        volumes = _root_volumes(lt_inputs)
        if not volumes:
            size = num(inputs.get("diskSize"), b.assumptions.managed_node_group_default_disk_gib)
            volumes.append((size, "gp2" if not lt else "gp3"))
        for size, vtype in volumes:
            total, urns = disks.get(vtype, (0.0, []))
            disks[vtype] = (total + size * count, [*urns, ng["urn"]])
    _add_volumes(b, "Node root volumes", disks)
    return out


def _instance_role(*layers: Mapping[str, Any]) -> str:
    for layer in layers:
        tags = layer.get("tags")
        if isinstance(tags, list):
            tags = {t.get("key"): t.get("value") for t in tags if isinstance(t, Mapping)}
        if isinstance(tags, Mapping) and NAT_INSTANCE_TAG in tags:
            return "NAT instance"
    return "EC2 instances"


def instances(b: Ledger, resources: Resources) -> None:
    """Plain EC2 instances and Auto Scaling groups (a NAT instance, bastions...)."""
    disks: dict[str, tuple[float, list[str]]] = {}
    for res in by_type(resources, "aws:autoscaling/group:Group", "aws:ec2/instance:Instance"):
        inputs = res.get("inputs") or {}
        lt_inputs = launch_template_for(res, resources).get("inputs") or {}
        if res.get("type") == "aws:ec2/instance:Instance":
            count = 1
        else:
            count = int(max(num(inputs.get("desiredCapacity")), num(inputs.get("minSize"))))
        itype = str(inputs.get("instanceType") or lt_inputs.get("instanceType") or "")
        spot = dig(lt_inputs, "instanceMarketOptions", "marketType") == "spot"
        rate = b.hourly(itype, spot)
        if rate is None:
            b.unpriced.append(
                {"urn": res["urn"], "reason": f"no price for instance type {itype!r}"}
            )
        else:
            b.add(
                f"{_instance_role(inputs, lt_inputs)}: {short_name(res)}",
                "compute",
                count,
                f"{itype} {'spot' if spot else 'on-demand'} instance",
                rate * b.hours,
                resources=[res["urn"]],
            )
        volumes = _root_volumes(lt_inputs) or [
            (num(dig(inputs, "rootBlockDevice", "volumeSize"), 8), "gp3")
        ]
        for size, vtype in volumes:
            total, urns = disks.get(vtype, (0.0, []))
            disks[vtype] = (total + size * count, [*urns, res["urn"]])
    _add_volumes(b, "Instance root volumes", disks)


def databases(b: Ledger, resources: Resources) -> None:
    for db in by_type(resources, "aws:rds/instance:Instance"):
        inputs = db.get("inputs") or {}
        cls = str(inputs.get("instanceClass", ""))
        spec = b.prices["rds"].get(cls)
        multi = 2 if inputs.get("multiAz") in (True, "true") else 1
        if spec is None:
            b.unpriced.append({"urn": db["urn"], "reason": f"no price for RDS class {cls}"})
        else:
            b.add(
                f"RDS {cls}: {short_name(db)}",
                "database",
                multi,
                "instance (Multi-AZ counts twice)" if multi == 2 else "instance",
                float(spec["hourly"]) * b.hours,
                resources=[db["urn"]],
            )
        storage = num(inputs.get("allocatedStorage"), 20)
        b.add(
            f"RDS storage: {short_name(db)}",
            "database",
            storage * multi,
            "GB-month",
            b.price("rdsStorageGp3"),
            resources=[db["urn"]],
        )
    clusters = {r["urn"]: r for r in by_type(resources, "aws:rds/cluster:Cluster")}
    for inst in by_type(resources, "aws:rds/clusterInstance:ClusterInstance"):
        inputs = inst.get("inputs") or {}
        cls = str(inputs.get("instanceClass", ""))
        if cls == "db.serverless":
            cluster = next(
                (clusters[d] for d in inst.get("dependencies") or [] if d in clusters), None
            )
            acu = num(
                dig(cluster or {}, "inputs", "serverlessv2ScalingConfiguration", "minCapacity"),
                0.5,
            )
            b.add(
                f"Aurora Serverless v2: {short_name(inst)}",
                "database",
                acu,
                "ACU (minimum capacity)",
                b.price("auroraServerlessV2Acu") * b.hours,
                resources=[inst["urn"]],
            )
        elif cls in b.prices["rds"]:
            b.add(
                f"Aurora {cls}: {short_name(inst)}",
                "database",
                1,
                "instance",
                float(b.prices["rds"][cls]["hourly"]) * b.hours,
                resources=[inst["urn"]],
                note="priced at the RDS rate for the class",
            )
        else:
            b.unpriced.append({"urn": inst["urn"], "reason": f"no price for class {cls}"})


def keys_and_misc(b: Ledger, resources: Resources) -> None:
    keys = by_type(resources, "aws:kms/key:Key", "aws:kms/replicaKey:ReplicaKey")
    b.add(
        "KMS keys",
        "security",
        len(keys),
        "key",
        b.price("kmsKey"),
        resources=[r["urn"] for r in keys],
    )
    secrets = by_type(resources, "aws:secretsmanager/secret:Secret")
    b.add(
        "Secrets Manager secrets",
        "security",
        len(secrets),
        "secret",
        b.price("secret"),
        resources=[r["urn"] for r in secrets],
    )
    alarms = by_type(resources, "aws:cloudwatch/metricAlarm:MetricAlarm")
    b.add(
        "CloudWatch alarms",
        "monitoring",
        len(alarms),
        "alarm",
        b.price("cloudwatchAlarm"),
        resources=[r["urn"] for r in alarms],
        note="before the account's 10 free alarms",
    )
    zones = by_type(resources, "aws:route53/zone:Zone")
    b.add(
        "Route 53 hosted zones",
        "network",
        len(zones),
        "zone",
        b.price("route53Zone"),
        resources=[r["urn"] for r in zones],
    )


def _retention_months(group: Mapping[str, Any] | None) -> float:
    days = num(dig(group or {}, "inputs", "retentionInDays"), 0)
    return min(days / 30, 12) if days else 12


def logs(b: Ledger, resources: Resources) -> None:
    groups = by_type(resources, "aws:cloudwatch/logGroup:LogGroup")
    by_name = {str(dig(g, "inputs", "name", default="")): g for g in groups}
    used: set[str] = set()
    ingest = 0.0
    stored = 0.0
    urns: list[str] = []
    for cluster in by_type(resources, "aws:eks/cluster:Cluster"):
        inputs = cluster.get("inputs") or {}
        types = list(inputs.get("enabledClusterLogTypes") or [])
        gb = sum(b.assumptions.control_plane_log_gb.get(t, 1.0) for t in types)
        cname = inputs.get("name") or short_name(cluster)
        group = by_name.get(f"/aws/eks/{cname}/cluster")
        eks_groups = [g for n, g in by_name.items() if re.fullmatch(r"/aws/eks/[^/]+/cluster", n)]
        if group is None and len(eks_groups) == 1:
            group = eks_groups[0]
        if group is not None:
            used.add(group["urn"])
        ingest += gb
        stored += gb * _retention_months(group)
        if gb:
            urns.append(cluster["urn"])
    for flow in by_type(resources, "aws:ec2/flowLog:FlowLog"):
        inputs = flow.get("inputs") or {}
        if str(inputs.get("logDestinationType", "cloud-watch-logs")) != "cloud-watch-logs":
            continue
        dest = str(inputs.get("logDestination", ""))
        group = next((g for n, g in by_name.items() if n and dest.endswith(n)), None)
        if group is not None:
            used.add(group["urn"])
        ingest += b.assumptions.flow_log_gb
        stored += b.assumptions.flow_log_gb * _retention_months(group)
        urns.append(flow["urn"])
    for g in groups:
        if g["urn"] in used:
            continue
        ingest += b.assumptions.other_log_group_gb
        stored += b.assumptions.other_log_group_gb * _retention_months(g)
        urns.append(g["urn"])
    b.add(
        "CloudWatch log ingestion",
        "logs",
        ingest,
        "GB",
        b.price("logsIngestion"),
        resources=urns,
        note="assumed volumes, see assumptions",
    )
    b.add("CloudWatch log storage", "logs", stored, "GB-month", b.price("logsStorage"))


_CODEBUILD_PRICE = {
    "BUILD_GENERAL1_SMALL": "codebuildSmall",
    "BUILD_GENERAL1_MEDIUM": "codebuildMedium",
    "BUILD_GENERAL1_LARGE": "codebuildLarge",
}


def ci_runners(b: Ledger, resources: Resources) -> None:
    """CodeBuild runners bill per build-minute while a job runs: nothing when idle, so they are
    a note beside the idle total, not a line in it (their log group and key are lines)."""
    for project in by_type(resources, "aws:codebuild/project:Project"):
        inputs = project.get("inputs") or {}
        compute = str((inputs.get("environment") or {}).get("computeType", ""))
        name = inputs.get("name") or project.get("name")
        key = _CODEBUILD_PRICE.get(compute)
        if key is None:
            b.unpriced.append({"urn": project["urn"], "reason": f"no price for {compute}"})
            continue
        per_minute = b.price(key)
        b.notes.append(
            f"CI runners {name} ({compute}): ${per_minute:g} per build-minute while a job runs, "
            f"$0 idle; e.g. 1,000 job-minutes a month cost ${1000 * per_minute:.2f}"
        )
