"""Idle cost estimate of a plan, from a dated price table shipped with the package.

``estimate_cost(plan)`` reads only the plan dict (resource types and inputs, manifests and Helm
values, per the plan JSON contract), so it works offline on any stack. It prices what runs while
nobody trains or serves anything: the control plane, system nodes, NAT, endpoints, load balancers,
databases, volumes, keys, log ingestion and any always-on pods that force nodes to exist. GPU pools
scale to zero and are reported as hourly prices per node type instead.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

DATA_DIR = Path(__file__).with_name("data")
DEFAULT_REGION = "us-east-1"

GPU_RESOURCE = "nvidia.com/gpu"
POOL_LABEL = "mlplatform.io/pool"
ACCELERATOR_LABEL = "mlplatform.io/accelerator"
PRESET_FAMILIES = {
    "nvidia-t4": "g4dn",
    "nvidia-a10g": "g5",
    "nvidia-l4": "g6",
    "nvidia-l40s": "g6e",
    "nvidia-a100": "p4d",
    "nvidia-h100": "p5",
}
# EKS control plane log types, ordered as the API lists them.
CONTROL_PLANE_LOG_TYPES = ("api", "audit", "authenticator", "controllerManager", "scheduler")


@dataclass(frozen=True)
class CostAssumptions:
    """Usage figures that list prices alone cannot give. All are per month unless named otherwise."""

    nat_data_gb: float = 20.0
    # An idle EKS cluster still logs: controllers poll the API server all day, so audit dominates.
    control_plane_log_gb: Mapping[str, float] = field(
        default_factory=lambda: {
            "api": 2.0,
            "audit": 8.0,
            "authenticator": 0.5,
            "controllerManager": 1.0,
            "scheduler": 0.5,
        }
    )
    flow_log_gb: float = 2.0
    other_log_group_gb: float = 0.5
    load_balancer_lcu: float = 1.0
    managed_node_group_default_disk_gib: int = 20
    default_storage_class: str = "gp3"

    def describe(self) -> list[str]:
        logs = ", ".join(f"{k} {v:g} GB" for k, v in self.control_plane_log_gb.items())
        return [
            f"NAT data processed: {self.nat_data_gb:g} GB/month per stack",
            f"EKS control-plane log ingestion per enabled type per month: {logs}",
            f"VPC flow logs: {self.flow_log_gb:g} GB/month per flow log (idle VPC)",
            f"Other CloudWatch log groups: {self.other_log_group_gb:g} GB/month each",
            "Log storage: a month's ingestion kept for the group's retention (capped at 12 months)",
            f"Load balancers: {self.load_balancer_lcu:g} LCU each, all hours",
            "Managed node groups without a launch template: "
            f"{self.managed_node_group_default_disk_gib} GiB gp2 root volume",
            f"PVCs without a recognised storage class are priced as {self.default_storage_class}",
        ]


@functools.cache
def load_prices(region: str = DEFAULT_REGION) -> dict[str, Any]:
    path = DATA_DIR / f"prices-{region}.json"
    if not path.exists():
        path = DATA_DIR / f"prices-{DEFAULT_REGION}.json"
    return json.loads(path.read_text(encoding="utf-8"))


# --------------------------------------------------------------------------------------------
# small parsers

_QUANTITY = re.compile(r"^\s*([0-9.]+)\s*([KMGTPE]i?|m|k)?\s*$")
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18}


def parse_quantity(value: Any) -> float:
    """A Kubernetes quantity as a plain number (bytes for memory, cores for cpu)."""
    if isinstance(value, (int, float)):
        return float(value)
    m = _QUANTITY.match(str(value))
    if not m:
        return 0.0
    number, suffix = float(m.group(1)), m.group(2) or ""
    if suffix == "m":
        return number / 1000
    if suffix in _BINARY:
        return number * _BINARY[suffix]
    return number * _DECIMAL.get(suffix, 1)


def gib(value: Any) -> float:
    return parse_quantity(value) / 2**30


def _get(obj: Any, *path: str, default: Any = None) -> Any:
    cur = obj
    for key in path:
        if not isinstance(cur, Mapping) or key not in cur:
            return default
        cur = cur[key]
    return cur


def _num(value: Any, default: float = 0.0) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def _name(res: Mapping[str, Any]) -> str:
    return str(res.get("urn", "")).rsplit("::", 1)[-1]


def _family(instance_type: str) -> str:
    return instance_type.split(".", 1)[0]


# --------------------------------------------------------------------------------------------
# the estimate


@dataclass
class _Builder:
    prices: dict[str, Any]
    assumptions: CostAssumptions
    lines: list[dict[str, Any]] = field(default_factory=list)
    unpriced: list[dict[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def hours(self) -> float:
        return float(self.prices["hoursPerMonth"])

    def price(self, key: str) -> float:
        return float(self.prices["prices"][key]["usd"])

    def instance(self, instance_type: str) -> dict[str, Any] | None:
        return self.prices["ec2"].get(instance_type)

    def spot_fraction(self, instance_type: str) -> float:
        table = self.prices["spotFraction"]
        return float(table.get(_family(instance_type), table["default"])["fraction"])

    def hourly(self, instance_type: str, spot: bool = False) -> float | None:
        spec = self.instance(instance_type)
        if spec is None:
            return None
        rate = float(spec["hourly"])
        return rate * self.spot_fraction(instance_type) if spot else rate

    def add(
        self,
        item: str,
        category: str,
        quantity: float,
        unit: str,
        unit_monthly: float,
        *,
        resources: list[str] | None = None,
        note: str = "",
    ) -> None:
        if quantity <= 0:
            return
        self.lines.append(
            {
                "item": item,
                "category": category,
                "quantity": round(quantity, 3),
                "unit": unit,
                "unitMonthly": round(unit_monthly, 4),
                "monthly": round(quantity * unit_monthly, 2),
                "resources": resources or [],
                "note": note,
            }
        )


def _by_type(resources: list[Mapping[str, Any]], *types: str) -> list[Mapping[str, Any]]:
    return [r for r in resources if r.get("type") in types]


def estimate_cost(
    plan: Mapping[str, Any],
    *,
    assumptions: CostAssumptions | None = None,
    region: str | None = None,
) -> dict[str, Any]:
    """The plan's idle monthly cost, per line, plus GPU hourly prices and the assumptions used."""
    assumptions = assumptions or CostAssumptions()
    region = region or str(_get(plan, "outputs", "region", default="") or DEFAULT_REGION)
    prices = load_prices(region)
    b = _Builder(prices, assumptions)
    if prices["region"] != region:
        b.notes.append(
            f"no price table for {region}; {prices['region']} prices are used as an approximation"
        )
    resources = [r for r in plan.get("resources") or [] if r.get("custom", True)]
    manifests = list(plan.get("manifests") or [])
    helm = list(plan.get("helmReleases") or [])

    _control_plane(b, resources)
    system_nodes = _node_groups(b, resources)
    _nat(b, resources)
    _endpoints(b, resources)
    _load_balancers(b, resources, manifests)
    _databases(b, resources)
    _volumes(b, resources, manifests, helm)
    _kms_and_misc(b, resources)
    _logs(b, resources)
    capacity = _always_on_pods(b, manifests, helm, system_nodes)
    gpu = gpu_hourly(plan, prices)

    monthly = round(sum(line["monthly"] for line in b.lines), 2)
    return {
        "currency": prices["currency"],
        "region": region,
        "priceTable": {"region": prices["region"], "asOf": prices["asOf"]},
        "monthlyIdle": monthly,
        "lines": b.lines,
        "gpuHourly": gpu,
        "capacity": capacity,
        "unpriced": b.unpriced,
        "assumptions": [
            f"{prices['hoursPerMonth']} hours per month; list prices for {prices['region']} "
            f"as of {prices['asOf']} (mlplatform/data/prices-{prices['region']}.json), "
            "before free tiers, credits, Savings Plans and taxes",
            "GPU pools scale to zero when idle: their cost is per node-hour (gpuHourly)",
            "Spot prices are on-demand times a per-family planning ratio, not a quote",
            "S3, ECR and EFS storage are priced at zero bytes stored (idle means no data yet)",
            "Helm charts are priced from their values: PVCs under persistence/volumeClaimTemplate "
            "and resources.requests; objects a chart creates beyond its values are not seen",
            *assumptions.describe(),
            *b.notes,
        ],
        "assumptionValues": asdict(assumptions),
    }


def _control_plane(b: _Builder, resources: list[Mapping[str, Any]]) -> None:
    clusters = _by_type(resources, "aws:eks/cluster:Cluster")
    b.add(
        "EKS control plane",
        "eks",
        len(clusters),
        "cluster",
        b.price("eksControlPlane") * b.hours,
        resources=[r["urn"] for r in clusters],
        note="standard support; extended support (old Kubernetes versions) is $0.60/hour",
    )


@dataclass(frozen=True)
class _Nodes:
    instance_type: str
    count: int
    spot: bool


def _launch_template_for(
    ng: Mapping[str, Any], resources: list[Mapping[str, Any]]
) -> Mapping[str, Any] | None:
    deps = set(ng.get("dependencies") or [])
    for r in resources:
        if r.get("type") == "aws:ec2/launchTemplate:LaunchTemplate" and r["urn"] in deps:
            return r
    return None


def _node_groups(b: _Builder, resources: list[Mapping[str, Any]]) -> list[_Nodes]:
    out: list[_Nodes] = []
    disk_gib: dict[str, float] = {}
    disk_urns: dict[str, list[str]] = {}
    for ng in _by_type(resources, "aws:eks/nodeGroup:NodeGroup"):
        inputs = ng.get("inputs") or {}
        scaling = inputs.get("scalingConfig") or {}
        count = int(max(_num(scaling.get("desiredSize")), _num(scaling.get("minSize"))))
        lt = _launch_template_for(ng, resources)
        lt_inputs = (lt or {}).get("inputs") or {}
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
                f"{label}: {_name(ng)}",
                "nodes",
                count,
                f"{itype} {'spot' if spot else 'on-demand'} node",
                rate * b.hours,
                resources=[ng["urn"]],
                note="first of instanceTypes" if len(types) > 1 else "",
            )
        if count and not spec.get("gpus"):
            out.append(_Nodes(itype, count, spot))
        # Root volumes: the launch template's block devices, else the managed default.
        volumes: list[tuple[float, str]] = []
        for bdm in lt_inputs.get("blockDeviceMappings") or []:
            ebs = bdm.get("ebs") or {}
            volumes.append((_num(ebs.get("volumeSize"), 8), str(ebs.get("volumeType") or "gp3")))
        if not volumes:
            size = _num(inputs.get("diskSize"), b.assumptions.managed_node_group_default_disk_gib)
            volumes.append((size, "gp2" if lt is None else "gp3"))
        for size, vtype in volumes:
            disk_gib[vtype] = disk_gib.get(vtype, 0) + size * count
            disk_urns.setdefault(vtype, []).append(ng["urn"])
    for vtype, size in disk_gib.items():
        b.add(
            f"Node root volumes ({vtype})",
            "ebs",
            size,
            "GiB-month",
            _ebs_price(b, vtype),
            resources=disk_urns[vtype],
        )
    return out


def _ebs_price(b: _Builder, volume_type: str) -> float:
    key = {"gp2": "ebsGp2", "gp3": "ebsGp3", "io1": "ebsIo2", "io2": "ebsIo2", "st1": "ebsSt1"}
    return b.price(key.get(volume_type.lower(), "ebsGp3"))


def _nat(b: _Builder, resources: list[Mapping[str, Any]]) -> None:
    nats = _by_type(resources, "aws:ec2/natGateway:NatGateway")
    b.add(
        "NAT gateways",
        "network",
        len(nats),
        "gateway",
        b.price("natGateway") * b.hours,
        resources=[r["urn"] for r in nats],
    )
    if nats:
        b.add(
            "NAT data processing",
            "network",
            b.assumptions.nat_data_gb,
            "GB",
            b.price("natGatewayData"),
            note="assumed volume",
        )
    eips = _by_type(resources, "aws:ec2/eip:Eip")
    b.add(
        "Elastic IPs (public IPv4)",
        "network",
        len(eips),
        "address",
        b.price("publicIpv4") * b.hours,
        resources=[r["urn"] for r in eips],
    )


def _endpoints(b: _Builder, resources: list[Mapping[str, Any]]) -> None:
    azs = 0
    urns = []
    for ep in _by_type(resources, "aws:ec2/vpcEndpoint:VpcEndpoint"):
        inputs = ep.get("inputs") or {}
        if str(inputs.get("vpcEndpointType", "Gateway")) != "Interface":
            continue
        azs += max(1, len(inputs.get("subnetIds") or []))
        urns.append(ep["urn"])
    b.add(
        "Interface VPC endpoints",
        "network",
        azs,
        "endpoint-AZ",
        b.price("interfaceEndpoint") * b.hours,
        resources=urns,
        note="gateway endpoints (S3, DynamoDB) are free",
    )


def _load_balancers(
    b: _Builder, resources: list[Mapping[str, Any]], manifests: list[Mapping[str, Any]]
) -> None:
    albs: list[str] = []
    nlbs: list[str] = []
    for lb in _by_type(
        resources, "aws:lb/loadBalancer:LoadBalancer", "aws:alb/loadBalancer:LoadBalancer"
    ):
        lb_kind = str((lb.get("inputs") or {}).get("loadBalancerType", "application"))
        (nlbs if lb_kind == "network" else albs).append(lb["urn"])
    ingress_groups: set[str] = set()
    for m in manifests:
        kind = m.get("kind")
        meta = m.get("metadata") or {}
        if kind == "Service" and _get(m, "spec", "type") == "LoadBalancer":
            nlbs.append(f"Service/{meta.get('namespace', 'default')}/{meta.get('name')}")
        elif kind == "Ingress":
            ann = meta.get("annotations") or {}
            cls = _get(m, "spec", "ingressClassName") or ann.get("kubernetes.io/ingress.class")
            if cls == "alb":
                group = ann.get("alb.ingress.kubernetes.io/group.name")
                key = f"group:{group}" if group else f"{meta.get('namespace')}/{meta.get('name')}"
                if key not in ingress_groups:
                    ingress_groups.add(key)
                    albs.append(f"Ingress/{key}")
    lcu = b.assumptions.load_balancer_lcu
    b.add(
        "Application load balancers",
        "network",
        len(albs),
        "ALB",
        (b.price("alb") + lcu * b.price("albLcu")) * b.hours,
        resources=albs,
    )
    b.add(
        "Network load balancers",
        "network",
        len(nlbs),
        "NLB",
        (b.price("nlb") + lcu * b.price("nlbLcu")) * b.hours,
        resources=nlbs,
    )


def _databases(b: _Builder, resources: list[Mapping[str, Any]]) -> None:
    for db in _by_type(resources, "aws:rds/instance:Instance"):
        inputs = db.get("inputs") or {}
        cls = str(inputs.get("instanceClass", ""))
        spec = b.prices["rds"].get(cls)
        multi = 2 if inputs.get("multiAz") in (True, "true") else 1
        if spec is None:
            b.unpriced.append({"urn": db["urn"], "reason": f"no price for RDS class {cls}"})
        else:
            b.add(
                f"RDS {cls}: {_name(db)}",
                "database",
                multi,
                "instance (Multi-AZ counts twice)" if multi == 2 else "instance",
                float(spec["hourly"]) * b.hours,
                resources=[db["urn"]],
            )
        storage = _num(inputs.get("allocatedStorage"), 20)
        b.add(
            f"RDS storage: {_name(db)}",
            "database",
            storage * multi,
            "GB-month",
            b.price("rdsStorageGp3"),
            resources=[db["urn"]],
        )
    clusters = {r["urn"]: r for r in _by_type(resources, "aws:rds/cluster:Cluster")}
    for inst in _by_type(resources, "aws:rds/clusterInstance:ClusterInstance"):
        inputs = inst.get("inputs") or {}
        cls = str(inputs.get("instanceClass", ""))
        if cls == "db.serverless":
            cluster = next(
                (clusters[d] for d in inst.get("dependencies") or [] if d in clusters), None
            )
            acu = _num(
                _get(cluster or {}, "inputs", "serverlessv2ScalingConfiguration", "minCapacity"),
                0.5,
            )
            b.add(
                f"Aurora Serverless v2: {_name(inst)}",
                "database",
                acu,
                "ACU (minimum capacity)",
                b.price("auroraServerlessV2Acu") * b.hours,
                resources=[inst["urn"]],
            )
        elif cls in b.prices["rds"]:
            b.add(
                f"Aurora {cls}: {_name(inst)}",
                "database",
                1,
                "instance",
                float(b.prices["rds"][cls]["hourly"]) * b.hours,
                resources=[inst["urn"]],
                note="priced at the RDS rate for the class",
            )
        else:
            b.unpriced.append({"urn": inst["urn"], "reason": f"no price for class {cls}"})


def _pvc_sizes(
    resources: list[Mapping[str, Any]],
    manifests: list[Mapping[str, Any]],
    helm: list[Mapping[str, Any]],
) -> Iterator[tuple[str, float, str]]:
    """(what, GiB, storage class) for every volume the plan asks for."""
    for m in manifests:
        kind = m.get("kind")
        meta = m.get("metadata") or {}
        ident = f"{kind}/{meta.get('namespace', 'default')}/{meta.get('name')}"
        if kind == "PersistentVolumeClaim":
            size = gib(_get(m, "spec", "resources", "requests", "storage", default=0))
            yield ident, size, str(_get(m, "spec", "storageClassName", default="") or "")
        elif kind == "StatefulSet":
            replicas = int(_num(_get(m, "spec", "replicas"), 1))
            for tpl in _get(m, "spec", "volumeClaimTemplates", default=[]) or []:
                size = gib(_get(tpl, "spec", "resources", "requests", "storage", default=0))
                cls = str(_get(tpl, "spec", "storageClassName", default="") or "")
                yield ident, size * replicas, cls
    for rel in helm:
        ident = f"helm/{rel.get('namespace', 'default')}/{rel.get('name')}"
        for size, cls in _helm_volumes(rel.get("values") or {}):
            yield ident, size, cls
    for vol in _by_type(resources, "aws:ebs/volume:Volume"):
        inputs = vol.get("inputs") or {}
        yield vol["urn"], _num(inputs.get("size")), str(inputs.get("type") or "gp3")


def _helm_volumes(values: Any) -> Iterator[tuple[float, str]]:
    if isinstance(values, Mapping):
        tpl = values.get("volumeClaimTemplate")
        if isinstance(tpl, Mapping):
            size = gib(_get(tpl, "spec", "resources", "requests", "storage", default=0))
            if size:
                yield size, str(_get(tpl, "spec", "storageClassName", default="") or "")
        pers = values.get("persistence")
        if isinstance(pers, Mapping) and pers.get("enabled") in (True, "true") and pers.get("size"):
            yield gib(pers["size"]), str(pers.get("storageClass") or "")
        for k, v in values.items():
            if k not in ("volumeClaimTemplate", "persistence"):
                yield from _helm_volumes(v)
    elif isinstance(values, list):
        for v in values:
            yield from _helm_volumes(v)


def _storage_type(b: _Builder, storage_class: str) -> str:
    cls = storage_class.lower()
    for vtype in ("gp2", "gp3", "io1", "io2", "st1"):
        if vtype in cls:
            return vtype
    return b.assumptions.default_storage_class


def _volumes(
    b: _Builder,
    resources: list[Mapping[str, Any]],
    manifests: list[Mapping[str, Any]],
    helm: list[Mapping[str, Any]],
) -> None:
    totals: dict[str, float] = {}
    what: dict[str, list[str]] = {}
    for ident, size, cls in _pvc_sizes(resources, manifests, helm):
        if size <= 0:
            continue
        vtype = _storage_type(b, cls)
        totals[vtype] = totals.get(vtype, 0) + size
        what.setdefault(vtype, []).append(ident)
    for vtype, size in sorted(totals.items()):
        b.add(
            f"Persistent volumes ({vtype})",
            "ebs",
            size,
            "GiB-month",
            _ebs_price(b, vtype),
            resources=what[vtype],
        )


def _kms_and_misc(b: _Builder, resources: list[Mapping[str, Any]]) -> None:
    keys = _by_type(resources, "aws:kms/key:Key", "aws:kms/replicaKey:ReplicaKey")
    b.add(
        "KMS keys",
        "security",
        len(keys),
        "key",
        b.price("kmsKey"),
        resources=[r["urn"] for r in keys],
    )
    secrets = _by_type(resources, "aws:secretsmanager/secret:Secret")
    b.add(
        "Secrets Manager secrets",
        "security",
        len(secrets),
        "secret",
        b.price("secret"),
        resources=[r["urn"] for r in secrets],
    )
    alarms = _by_type(resources, "aws:cloudwatch/metricAlarm:MetricAlarm")
    b.add(
        "CloudWatch alarms",
        "monitoring",
        len(alarms),
        "alarm",
        b.price("cloudwatchAlarm"),
        resources=[r["urn"] for r in alarms],
        note="before the account's 10 free alarms",
    )
    zones = _by_type(resources, "aws:route53/zone:Zone")
    b.add(
        "Route 53 hosted zones",
        "network",
        len(zones),
        "zone",
        b.price("route53Zone"),
        resources=[r["urn"] for r in zones],
    )


def _retention_months(group: Mapping[str, Any] | None) -> float:
    days = _num(_get(group or {}, "inputs", "retentionInDays"), 0)
    return min(days / 30, 12) if days else 12


def _logs(b: _Builder, resources: list[Mapping[str, Any]]) -> None:
    groups = _by_type(resources, "aws:cloudwatch/logGroup:LogGroup")
    by_name = {str(_get(g, "inputs", "name", default="")): g for g in groups}
    used: set[str] = set()
    ingest = 0.0
    stored = 0.0
    urns: list[str] = []
    for cluster in _by_type(resources, "aws:eks/cluster:Cluster"):
        inputs = cluster.get("inputs") or {}
        types = list(inputs.get("enabledClusterLogTypes") or [])
        gb = sum(b.assumptions.control_plane_log_gb.get(t, 1.0) for t in types)
        cname = inputs.get("name") or _name(cluster)
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
    for flow in _by_type(resources, "aws:ec2/flowLog:FlowLog"):
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


# --------------------------------------------------------------------------------------------
# pods that keep nodes alive

_WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet")


@dataclass
class _Demand:
    cpu: float = 0.0
    mem_gib: float = 0.0
    where: list[str] = field(default_factory=list)


def _pod_spec(m: Mapping[str, Any]) -> Mapping[str, Any]:
    return _get(m, "spec", "template", "spec", default={}) or {}


def _requests(pod: Mapping[str, Any]) -> tuple[float, float, float]:
    cpu = mem = gpus = 0.0
    for c in pod.get("containers") or []:
        req = _get(c, "resources", "requests", default={}) or {}
        lim = _get(c, "resources", "limits", default={}) or {}
        cpu += parse_quantity(req.get("cpu", 0))
        mem += gib(req.get("memory", 0))
        gpus += parse_quantity(req.get(GPU_RESOURCE, lim.get(GPU_RESOURCE, 0)))
    return cpu, mem, gpus


def _helm_requests(values: Any, replicas: float = 1.0) -> Iterator[tuple[float, float]]:
    if isinstance(values, Mapping):
        reps = _num(values.get("replicas", values.get("replicaCount")), replicas)
        req = _get(values, "resources", "requests")
        if isinstance(req, Mapping):
            yield parse_quantity(req.get("cpu", 0)) * reps, gib(req.get("memory", 0)) * reps
        for k, v in values.items():
            if k != "resources":
                yield from _helm_requests(v, reps)
    elif isinstance(values, list):
        for v in values:
            yield from _helm_requests(v, replicas)


def node_allocatable(spec: Mapping[str, Any]) -> tuple[float, float, int]:
    """Roughly what EKS leaves for pods on a node of this instance (an ``ec2`` entry of the price
    data): vCPUs and GiB after kube-reserved, system-reserved and eviction, and max pods."""
    vcpu, mem = float(spec["vcpu"]), float(spec["memoryGiB"])
    max_pods = 17 if mem <= 4 else (35 if vcpu <= 2 else 58)
    reserved_mem = (255 + 11 * max_pods + 100) / 1024
    return vcpu - 0.07 - 0.01 * max(0.0, vcpu - 1), max(0.0, mem - reserved_mem), max_pods


def _allocatable(spec: Mapping[str, Any]) -> tuple[float, float]:
    cpu, mem, _ = node_allocatable(spec)
    return cpu, mem


def _always_on_pods(
    b: _Builder,
    manifests: list[Mapping[str, Any]],
    helm: list[Mapping[str, Any]],
    system: list[_Nodes],
) -> dict[str, Any]:
    nodes = sum(n.count for n in system)
    demand = _Demand()
    gpu_pods: dict[str, float] = {}
    for m in manifests:
        kind = m.get("kind")
        if kind not in _WORKLOAD_KINDS:
            continue
        pod = _pod_spec(m)
        cpu, mem, gpus = _requests(pod)
        meta = m.get("metadata") or {}
        ident = f"{kind}/{meta.get('namespace', 'default')}/{meta.get('name')}"
        if kind == "DaemonSet":
            # Idle, only system nodes exist; GPU-only daemons (device plugin, DCGM) add nothing.
            selector = pod.get("nodeSelector") or {}
            if ACCELERATOR_LABEL not in selector and POOL_LABEL not in selector:
                demand.cpu += cpu * nodes
                demand.mem_gib += mem * nodes
            continue
        replicas = _num(_get(m, "spec", "replicas"), 1)
        if replicas <= 0:
            continue
        if gpus > 0:
            pool = str(_get(pod, "nodeSelector", POOL_LABEL, default="") or "")
            gpu_pods[pool] = gpu_pods.get(pool, 0) + gpus * replicas
            continue
        demand.cpu += cpu * replicas
        demand.mem_gib += mem * replicas
        if cpu or mem:
            demand.where.append(ident)
    for rel in helm:
        values = rel.get("values") or {}
        placement = json.dumps([values.get("affinity"), values.get("nodeSelector")])
        if ACCELERATOR_LABEL in placement:
            continue  # a GPU-only daemon (device plugin, DCGM): no GPU nodes exist while idle
        for cpu, mem in _helm_requests(values):
            demand.cpu += cpu
            demand.mem_gib += mem
        demand.where.append(f"helm/{rel.get('namespace', 'default')}/{rel.get('name')}")

    alloc_cpu = alloc_mem = 0.0
    per_node: tuple[float, float] = (0.0, 0.0)
    itype = system[0].instance_type if system else ""
    spec = b.instance(itype) if itype else None
    for n in system:
        s = b.instance(n.instance_type)
        if s:
            c, m_ = _allocatable(s)
            alloc_cpu += c * n.count
            alloc_mem += m_ * n.count
    if spec:
        per_node = _allocatable(spec)
    capacity = {
        "systemNodes": nodes,
        "cpuRequested": round(demand.cpu, 3),
        "memoryRequestedGiB": round(demand.mem_gib, 3),
        "cpuAllocatable": round(alloc_cpu, 3),
        "memoryAllocatableGiB": round(alloc_mem, 3),
        "extraNodes": 0,
    }
    if spec and per_node[0] > 0 and per_node[1] > 0:
        short_cpu = max(0.0, demand.cpu - alloc_cpu)
        short_mem = max(0.0, demand.mem_gib - alloc_mem)
        extra = max(math.ceil(short_cpu / per_node[0]), math.ceil(short_mem / per_node[1]))
        if extra:
            capacity["extraNodes"] = extra
            rate = b.hourly(itype, system[0].spot) or 0.0
            b.add(
                "Always-on pods beyond system node capacity",
                "pods",
                extra,
                f"{itype} node",
                rate * b.hours,
                resources=demand.where,
                note=(
                    f"requests {demand.cpu:.2f} vCPU / {demand.mem_gib:.2f} GiB vs allocatable "
                    f"{alloc_cpu:.2f} vCPU / {alloc_mem:.2f} GiB"
                ),
            )
    pools = _gpu_pools(manifests)
    for pool, gpus in sorted(gpu_pods.items()):
        candidates = _pool_instance_types(pools.get(pool), b.prices)
        if not candidates:
            b.unpriced.append(
                {"urn": f"pool/{pool or '?'}", "reason": "always-on GPU pods, pool types unknown"}
            )
            continue
        best = min(candidates, key=lambda t: b.prices["ec2"][t]["hourly"])
        per = int(b.prices["ec2"][best].get("gpus", 1))
        count = math.ceil(gpus / per)
        b.add(
            f"Always-on GPU pods in pool {pool or '(unpinned)'}",
            "pods",
            count,
            f"{best} on-demand node",
            float(b.prices["ec2"][best]["hourly"]) * b.hours,
            note=f"{gpus:g} GPUs requested by pods with replicas >= 1",
        )
    return capacity


# --------------------------------------------------------------------------------------------
# GPU pools


def _gpu_pools(manifests: list[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """Karpenter NodePools that offer GPUs, by pool name (label) and object name."""
    out: dict[str, Mapping[str, Any]] = {}
    for m in manifests:
        if m.get("kind") != "NodePool" or not str(m.get("apiVersion", "")).startswith(
            "karpenter.sh"
        ):
            continue
        tmpl = _get(m, "spec", "template", default={}) or {}
        labels = _get(tmpl, "metadata", "labels", default={}) or {}
        taints = _get(tmpl, "spec", "taints", default=[]) or []
        gpu = ACCELERATOR_LABEL in labels or any(t.get("key") == GPU_RESOURCE for t in taints)
        if not gpu:
            continue
        name = str(_get(m, "metadata", "name", default=""))
        out[name] = m
        if labels.get(POOL_LABEL):
            out[str(labels[POOL_LABEL])] = m
    return out


def _requirement_values(reqs: list[Mapping[str, Any]], key: str) -> tuple[set[str], set[str]]:
    inc: set[str] = set()
    exc: set[str] = set()
    for r in reqs:
        if r.get("key") != key:
            continue
        vals = {str(v) for v in r.get("values") or []}
        if r.get("operator") == "In":
            inc |= vals
        elif r.get("operator") == "NotIn":
            exc |= vals
    return inc, exc


def _pool_instance_types(pool: Mapping[str, Any] | None, prices: Mapping[str, Any]) -> list[str]:
    if pool is None:
        return []
    tmpl = _get(pool, "spec", "template", default={}) or {}
    reqs = list(_get(tmpl, "spec", "requirements", default=[]) or [])
    labels = _get(tmpl, "metadata", "labels", default={}) or {}
    candidates = [t for t, s in prices["ec2"].items() if s.get("gpus")]
    filters = {
        "node.kubernetes.io/instance-type": lambda t: t,
        "karpenter.k8s.aws/instance-family": _family,
        "karpenter.k8s.aws/instance-size": lambda t: t.split(".", 1)[1],
        "karpenter.k8s.aws/instance-gpu-name": lambda t: str(prices["ec2"][t]["gpu"]).lower(),
    }
    constrained = False
    for key, fn in filters.items():
        inc, exc = _requirement_values(reqs, key)
        if inc:
            constrained = True
            candidates = [t for t in candidates if fn(t) in inc]
        if exc:
            candidates = [t for t in candidates if fn(t) not in exc]
    preset = labels.get(ACCELERATOR_LABEL)
    if not constrained and preset in PRESET_FAMILIES:
        candidates = [t for t in candidates if _family(t) == PRESET_FAMILIES[preset]]
    elif not constrained:
        return []
    return sorted(candidates, key=lambda t: prices["ec2"][t]["hourly"])


def gpu_hourly(
    plan: Mapping[str, Any], prices: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Per GPU pool, each candidate node type's hourly price on-demand and spot."""
    prices = prices or load_prices()
    resources = [r for r in plan.get("resources") or [] if r.get("custom", True)]
    manifests = list(plan.get("manifests") or [])

    def row(itype: str) -> dict[str, Any]:
        spec = prices["ec2"][itype]
        table = prices["spotFraction"]
        frac = float(table.get(_family(itype), table["default"])["fraction"])
        return {
            "instanceType": itype,
            "gpus": spec["gpus"],
            "gpu": spec["gpu"],
            "onDemand": round(float(spec["hourly"]), 4),
            "spot": round(float(spec["hourly"]) * frac, 4),
        }

    out: list[dict[str, Any]] = []
    seen: set[int] = set()
    for name, pool in _gpu_pools(manifests).items():
        if id(pool) in seen:
            continue
        seen.add(id(pool))
        reqs = list(_get(pool, "spec", "template", "spec", "requirements", default=[]) or [])
        cap, _ = _requirement_values(reqs, "karpenter.sh/capacity-type")
        labels = _get(pool, "spec", "template", "metadata", "labels", default={}) or {}
        out.append(
            {
                "pool": str(labels.get(POOL_LABEL) or name),
                "nodePool": str(_get(pool, "metadata", "name", default=name)),
                "accelerator": labels.get(ACCELERATOR_LABEL),
                "capacityTypes": sorted(cap) or ["on-demand"],
                "gpuLimit": _get(pool, "spec", "limits", GPU_RESOURCE),
                "nodeTypes": [row(t) for t in _pool_instance_types(pool, prices)],
                "unpricedTypes": sorted(
                    _requirement_values(reqs, "node.kubernetes.io/instance-type")[0]
                    - set(prices["ec2"])
                ),
            }
        )
    for ng in _by_type(resources, "aws:eks/nodeGroup:NodeGroup"):
        inputs = ng.get("inputs") or {}
        types = [
            t for t in inputs.get("instanceTypes") or [] if prices["ec2"].get(t, {}).get("gpus")
        ]
        if not types:
            continue
        spot = str(inputs.get("capacityType", "ON_DEMAND")).upper() == "SPOT"
        out.append(
            {
                "pool": _name(ng),
                "nodePool": None,
                "accelerator": (inputs.get("labels") or {}).get(ACCELERATOR_LABEL),
                "capacityTypes": ["spot" if spot else "on-demand"],
                "gpuLimit": None,
                "nodeTypes": [row(t) for t in types],
                "unpricedTypes": [],
            }
        )
    return out


# --------------------------------------------------------------------------------------------
# rendering


def render_cost_table(cost: Mapping[str, Any]) -> str:
    """A plain-text table: idle lines, the total, GPU hourly prices, then the assumptions."""
    rows = [("Item", "Qty", "Unit", "$/unit-mo", "$/month")]
    for line in cost.get("lines") or []:
        rows.append(
            (
                str(line["item"]),
                f"{line['quantity']:g}",
                str(line["unit"]),
                f"{line['unitMonthly']:.2f}"
                if line["unitMonthly"] >= 1
                else f"{line['unitMonthly']:.3f}",
                f"{line['monthly']:.2f}",
            )
        )
    rows.append(("Total idle per month", "", "", "", f"{cost.get('monthlyIdle', 0):.2f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]

    def fmt(r: tuple[str, ...]) -> str:
        return "  ".join(
            c.ljust(w) if i < 3 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ).rstrip()

    sep = "  ".join("-" * w for w in widths)
    table = cost.get("priceTable") or {}
    out = [
        f"Idle cost estimate ({cost.get('currency', 'USD')}, {cost.get('region')}, "
        f"prices as of {table.get('asOf', '?')})",
        "",
        fmt(rows[0]),
        sep,
        *(fmt(r) for r in rows[1:-1]),
        sep,
        fmt(rows[-1]),
    ]
    gpu = cost.get("gpuHourly") or []
    if gpu:
        out += ["", "GPU pools (per node-hour, scale to zero when idle):"]
        for pool in gpu:
            out.append(
                f"  {pool['pool']} ({', '.join(pool['capacityTypes'])}; "
                f"GPU limit {pool.get('gpuLimit') or '-'}):"
            )
            for n in pool["nodeTypes"]:
                out.append(
                    f"    {n['instanceType']:<14} {n['gpus']}x {n['gpu']:<5} "
                    f"on-demand ${n['onDemand']:.4f}/h  spot ~${n['spot']:.4f}/h"
                )
            if not pool["nodeTypes"]:
                out.append("    (no priced instance types match the pool's requirements)")
            if pool.get("unpricedTypes"):
                out.append(f"    not in the price table: {', '.join(pool['unpricedTypes'])}")
    if cost.get("unpriced"):
        out += ["", "Not priced:"]
        out += [f"  {u['urn']}: {u['reason']}" for u in cost["unpriced"]]
    out += ["", "Assumptions:"]
    out += [f"  - {a}" for a in cost.get("assumptions") or []]
    return "\n".join(out)
