"""Network: the VPC the training cluster lives in, or the one you bring.

Public subnets hold load balancers and the NAT; private subnets hold nodes. Both are tagged
for the AWS load balancer controller and for Karpenter discovery, so nothing downstream needs
subnet ids. The S3 gateway endpoint is free and keeps model and checkpoint traffic off NAT (and
ECR image layers, which ECR serves from S3). The NAT is a gateway per AZ, one gateway, one NAT
instance (dev: about a tenth of a gateway's price, see components/nat_instance.py) or none.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import pulumi
import pulumi_aws as aws
from pydantic import Field, field_validator

from components.common import (
    ArgsModel,
    Environment,
    Issue,
    check_cidr,
    merge_tags,
)

# logs_key_policy is imported from here by the training cluster.
from components.flow_logs import add_flow_logs
from components.flow_logs import logs_key_policy as logs_key_policy
from components.nat_instance import NatInstance, NatInstanceArgs

DISCOVERY_TAG = "karpenter.sh/discovery"
ELB_TAG = "kubernetes.io/role/elb"
INTERNAL_ELB_TAG = "kubernetes.io/role/internal-elb"

# CloudWatch Logs accepts only these retention periods.
LOG_RETENTION_DAYS = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557,
    2922, 3288, 3653,
)  # fmt: skip


class NatMode(StrEnum):
    """How private subnets reach the internet (image pulls, AWS APIs without an endpoint)."""

    GATEWAY_PER_AZ = "gateway-per-az"  # survives an AZ outage; a gateway and an address per AZ
    SINGLE_GATEWAY = "single-gateway"  # one gateway for all AZs: its AZ's outage cuts egress
    INSTANCE = "instance"  # one small NAT instance (components/nat_instance.py): dev only
    NONE = "none"  # no egress to the internet: needs the interface endpoints


# Values of `nat` before the enum named what does the NAT; each maps to its new name.
RENAMED_NAT_MODES = {"single": NatMode.SINGLE_GATEWAY, "per-az": NatMode.GATEWAY_PER_AZ}


class InterfaceEndpoint(StrEnum):
    ECR_API = "ecr.api"
    ECR_DKR = "ecr.dkr"
    STS = "sts"


class ExistingVpc(ArgsModel):
    """A VPC you already own. Its subnets get Karpenter discovery tags and nothing else."""

    vpc_id: str = Field(pattern=r"^vpc-[0-9a-f]{8,17}$")
    private_subnet_ids: list[str] = Field(min_length=1)
    public_subnet_ids: list[str] = Field(default_factory=list)

    def issues(self) -> list[Issue]:
        found = super().issues()
        for key, ids in (
            ("privateSubnetIds", self.private_subnet_ids),
            ("publicSubnetIds", self.public_subnet_ids),
        ):
            for i, sid in enumerate(ids):
                if not sid.startswith("subnet-"):
                    found.append(Issue((key, i), f"must be a subnet id (subnet-...), got {sid!r}"))
        return found


class NetworkArgs(ArgsModel):
    environment: Environment = Environment.DEV
    cidr: str = "10.0.0.0/16"
    az_count: int = 2
    availability_zones: list[str] | None = None
    nat: NatMode = NatMode.SINGLE_GATEWAY
    nat_instance: NatInstanceArgs = Field(default_factory=NatInstanceArgs)
    interface_endpoints: list[InterfaceEndpoint] = Field(default_factory=list)
    flow_logs: bool = True
    flow_log_retention_days: int = 90
    existing: ExistingVpc | None = None
    tags: dict[str, str] = Field(default_factory=dict)

    @field_validator("nat", mode="before")
    @classmethod
    def _renamed_nat(cls, value: Any) -> Any:
        if isinstance(value, str) and value in RENAMED_NAT_MODES:
            raise ValueError(
                f"'{value}' was renamed '{RENAMED_NAT_MODES[value].value}'; "
                f"allowed: {', '.join(repr(m.value) for m in NatMode)}"
            )
        return value

    def issues(self) -> list[Issue]:
        found = super().issues()
        found += check_cidr("cidr", self.cidr)
        if not found:
            net = ipaddress.ip_network(self.cidr)
            if not 16 <= net.prefixlen <= 20:
                found.append(Issue(("cidr",), f"prefix must be /16 to /20, got /{net.prefixlen}"))
            if not net.is_private:
                found.append(Issue(("cidr",), f"must be a private range (RFC 1918), got {net}"))
        low = 3 if self.environment is Environment.PROD else 2
        if not low <= self.az_count <= 6:
            found.append(
                Issue(
                    ("azCount",), f"must be {low} to 6 in {self.environment}, got {self.az_count}"
                )
            )
        if self.availability_zones is not None and len(self.availability_zones) != self.az_count:
            found.append(
                Issue(
                    ("availabilityZones",),
                    f"lists {len(self.availability_zones)} zones but azCount is {self.az_count}",
                )
            )
        if self.nat is NatMode.NONE and not {
            InterfaceEndpoint.ECR_API,
            InterfaceEndpoint.ECR_DKR,
            InterfaceEndpoint.STS,
        } <= set(self.interface_endpoints):
            found.append(
                Issue(
                    ("nat",),
                    "'none' leaves nodes without image pulls or credentials: enable the "
                    "interfaceEndpoints ecr.api, ecr.dkr and sts, or choose another NAT",
                )
            )
        if self.nat is NatMode.INSTANCE and self.environment is Environment.PROD:
            found.append(
                Issue(
                    ("nat",),
                    "'instance' is one instance in one AZ, replaced minutes after it fails: not "
                    "for prod; use 'gateway-per-az'",
                )
            )
        # Compared with the defaults, not "was it set": the engine hands every stack the typed
        # defaults of Pulumi.yaml, natInstance's included.
        if self.nat is not NatMode.INSTANCE and self.nat_instance != NatInstanceArgs():
            found.append(
                Issue(("natInstance",), f"applies only with nat: instance (nat is '{self.nat}')")
            )
        if self.flow_log_retention_days not in LOG_RETENTION_DAYS:
            found.append(
                Issue(
                    ("flowLogRetentionDays",),
                    f"must be one of {list(LOG_RETENTION_DAYS)}, got {self.flow_log_retention_days}",
                )
            )
        return found


@dataclass
class _Egress:
    resources: list[pulumi.Resource] = field(default_factory=list)
    #: Route target keyword arguments, one per NAT; private route table i uses i % len.
    targets: list[dict[str, Any]] = field(default_factory=list)


def carve_subnets(cidr: str, az_count: int) -> tuple[list[str], list[str]]:
    """Split the VPC range: one large private subnet per AZ, one small public subnet per AZ.

    Private subnets take an eighth of the range each (pods get VPC addresses, so nodes need room);
    public subnets share the last eighth, split eight ways.
    """
    net = ipaddress.IPv4Network(cidr)
    eighths = list(net.subnets(prefixlen_diff=3))
    private = [str(s) for s in eighths[:az_count]]
    public = [str(s) for s in list(eighths[-1].subnets(prefixlen_diff=3))[:az_count]]
    return private, public


class Network(pulumi.ComponentResource):
    """A VPC across N AZs with tagged public/private subnets, or discovery tags on an existing one."""

    vpc_id: pulumi.Output[str]
    private_subnet_ids: pulumi.Output[list[str]]
    public_subnet_ids: pulumi.Output[list[str]]
    # Where load balancers put their interfaces: internal ones in the private subnets,
    # internet-facing ones in the public subnets (what serving NetworkPolicies admit).
    private_subnet_cidrs: pulumi.Input[list[str]]
    public_subnet_cidrs: pulumi.Input[list[str]]
    #: Resources that anything creating load balancers or ENIs (ingresses, LoadBalancer services,
    #: the cluster itself) must depend on, so it is deleted before the subnets and gateways.
    teardown_anchor: list[pulumi.Resource]

    def __init__(
        self,
        name: str,
        args: NetworkArgs,
        *,
        cluster_name: str,
        tags: dict[str, str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        args.raise_if_invalid("Network")
        super().__init__("mlplatform:network:Network", name, None, opts)
        self.args = args
        self.cluster_name = cluster_name
        self._tags = merge_tags(tags, args.tags)
        self.teardown_anchor = []
        child = pulumi.ResourceOptions(parent=self)

        if args.existing is not None:
            self._adopt(name, args.existing, child)
        else:
            self._build(name, args, child)

        self.register_outputs(
            {
                "vpcId": self.vpc_id,
                "privateSubnetIds": self.private_subnet_ids,
                "publicSubnetIds": self.public_subnet_ids,
            }
        )

    # Bring your own VPC -------------------------------------------------------------------
    def _adopt(self, name: str, existing: ExistingVpc, child: pulumi.ResourceOptions) -> None:
        # Only tags are added (and removed again on destroy); the VPC itself is never managed.
        for i, sid in enumerate(existing.private_subnet_ids):
            for key, value in ((DISCOVERY_TAG, self.cluster_name), (INTERNAL_ELB_TAG, "1")):
                tag = aws.ec2.Tag(
                    f"{name}-private-{i}-{key.split('/')[-1]}",
                    resource_id=sid,
                    key=key,
                    value=value,
                    opts=child,
                )
                self.teardown_anchor.append(tag)
        for i, sid in enumerate(existing.public_subnet_ids):
            tag = aws.ec2.Tag(
                f"{name}-public-{i}-elb", resource_id=sid, key=ELB_TAG, value="1", opts=child
            )
            self.teardown_anchor.append(tag)
        self.vpc_id = pulumi.Output.from_input(existing.vpc_id)
        self.private_subnet_ids = pulumi.Output.from_input(list(existing.private_subnet_ids))
        self.public_subnet_ids = pulumi.Output.from_input(list(existing.public_subnet_ids))

        def cidrs(ids: list[str]) -> pulumi.Output[list[str]]:
            found = [aws.ec2.get_subnet_output(id=sid, opts=invoke).cidr_block for sid in ids]
            return pulumi.Output.all(*found)

        invoke = pulumi.InvokeOutputOptions(parent=self)
        self.private_subnet_cidrs = cidrs(list(existing.private_subnet_ids))
        self.public_subnet_cidrs = cidrs(list(existing.public_subnet_ids))

    # A new VPC ----------------------------------------------------------------------------
    def _build(self, name: str, args: NetworkArgs, child: pulumi.ResourceOptions) -> None:
        tags = self._tags
        cluster_tag = {f"kubernetes.io/cluster/{self.cluster_name}": "shared"}
        vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=args.cidr,
            enable_dns_hostnames=True,
            enable_dns_support=True,
            tags=merge_tags(tags, {"Name": f"{name}-vpc"}),
            opts=child,
        )
        self.vpc = vpc
        # The default security group allows all traffic between its members; strip its rules.
        aws.ec2.DefaultSecurityGroup(
            f"{name}-default-sg",
            vpc_id=vpc.id,
            ingress=[],
            egress=[],
            tags=merge_tags(tags, {"Name": f"{name}-default-deny"}),
            opts=child,
        )
        if args.availability_zones:
            zones: list[Any] = list(args.availability_zones)
        else:
            available = aws.get_availability_zones_output(state="available")
            zones = [available.names[i] for i in range(args.az_count)]

        private_cidrs, public_cidrs = carve_subnets(args.cidr, args.az_count)
        self.private_subnet_cidrs, self.public_subnet_cidrs = private_cidrs, public_cidrs
        igw = aws.ec2.InternetGateway(
            f"{name}-igw", vpc_id=vpc.id, tags=merge_tags(tags, {"Name": f"{name}-igw"}), opts=child
        )
        public_rt = aws.ec2.RouteTable(
            f"{name}-public-rt",
            vpc_id=vpc.id,
            tags=merge_tags(tags, {"Name": f"{name}-public"}),
            opts=child,
        )
        public_default = aws.ec2.Route(
            f"{name}-public-default",
            route_table_id=public_rt.id,
            destination_cidr_block="0.0.0.0/0",
            gateway_id=igw.id,
            opts=child,
        )
        anchor: list[pulumi.Resource] = [igw, public_rt, public_default]
        public_subnets: list[aws.ec2.Subnet] = []
        private_subnets: list[aws.ec2.Subnet] = []
        for i in range(args.az_count):
            pub = aws.ec2.Subnet(
                f"{name}-public-{i}",
                vpc_id=vpc.id,
                cidr_block=public_cidrs[i],
                availability_zone=zones[i],
                map_public_ip_on_launch=False,
                tags=merge_tags(tags, cluster_tag, {"Name": f"{name}-public-{i}", ELB_TAG: "1"}),
                opts=child,
            )
            assoc = aws.ec2.RouteTableAssociation(
                f"{name}-public-{i}-rta", subnet_id=pub.id, route_table_id=public_rt.id, opts=child
            )
            priv = aws.ec2.Subnet(
                f"{name}-private-{i}",
                vpc_id=vpc.id,
                cidr_block=private_cidrs[i],
                availability_zone=zones[i],
                tags=merge_tags(
                    tags,
                    cluster_tag,
                    {
                        "Name": f"{name}-private-{i}",
                        INTERNAL_ELB_TAG: "1",
                        DISCOVERY_TAG: self.cluster_name,
                    },
                ),
                opts=child,
            )
            public_subnets.append(pub)
            private_subnets.append(priv)
            anchor += [pub, priv, assoc]

        egress = self._egress(name, args, public_subnets, private_cidrs, after=list(anchor))
        anchor += egress.resources

        private_rts: list[aws.ec2.RouteTable] = []
        for i, priv in enumerate(private_subnets):
            rt = aws.ec2.RouteTable(
                f"{name}-private-{i}-rt",
                vpc_id=vpc.id,
                tags=merge_tags(tags, {"Name": f"{name}-private-{i}"}),
                opts=child,
            )
            private_rts.append(rt)
            anchor.append(rt)
            anchor.append(
                aws.ec2.RouteTableAssociation(
                    f"{name}-private-{i}-rta", subnet_id=priv.id, route_table_id=rt.id, opts=child
                )
            )
            if egress.targets:
                anchor.append(
                    aws.ec2.Route(
                        f"{name}-private-{i}-default",
                        route_table_id=rt.id,
                        destination_cidr_block="0.0.0.0/0",
                        **egress.targets[i % len(egress.targets)],
                        opts=child,
                    )
                )

        region = aws.get_region_output().region
        self.s3_endpoint = aws.ec2.VpcEndpoint(
            f"{name}-s3",
            vpc_id=vpc.id,
            service_name=pulumi.Output.concat("com.amazonaws.", region, ".s3"),
            vpc_endpoint_type="Gateway",
            route_table_ids=[rt.id for rt in [*private_rts, public_rt]],
            tags=merge_tags(tags, {"Name": f"{name}-s3"}),
            opts=child,
        )
        if args.interface_endpoints:
            endpoint_sg = aws.ec2.SecurityGroup(
                f"{name}-endpoints-sg",
                vpc_id=vpc.id,
                description="HTTPS from the VPC to interface endpoints",
                ingress=[
                    aws.ec2.SecurityGroupIngressArgs(
                        protocol="tcp",
                        from_port=443,
                        to_port=443,
                        cidr_blocks=[args.cidr],
                        description="HTTPS from the VPC",
                    )
                ],
                egress=[],
                tags=merge_tags(tags, {"Name": f"{name}-endpoints"}),
                opts=child,
            )
            for svc in args.interface_endpoints:
                aws.ec2.VpcEndpoint(
                    f"{name}-{svc.value.replace('.', '-')}",
                    vpc_id=vpc.id,
                    service_name=pulumi.Output.concat("com.amazonaws.", region, ".", svc.value),
                    vpc_endpoint_type="Interface",
                    private_dns_enabled=True,
                    subnet_ids=[s.id for s in private_subnets],
                    security_group_ids=[endpoint_sg.id],
                    tags=merge_tags(tags, {"Name": f"{name}-{svc.value}"}),
                    opts=child,
                )

        if args.flow_logs:
            self.flow_log = add_flow_logs(
                self,
                name,
                vpc,
                retention_days=args.flow_log_retention_days,
                protect=args.environment is Environment.PROD,
                tags=self._tags,
            )

        self.teardown_anchor = anchor
        self.vpc_id = vpc.id
        self.private_subnet_ids = pulumi.Output.all(*[s.id for s in private_subnets])
        self.public_subnet_ids = pulumi.Output.all(*[s.id for s in public_subnets])

    def _egress(
        self,
        name: str,
        args: NetworkArgs,
        public_subnets: list[aws.ec2.Subnet],
        private_cidrs: list[str],
        *,
        after: list[pulumi.Resource],
    ) -> _Egress:
        """The NAT of ``args.nat`` and, per private route table, its default route's target."""
        tags = self._tags
        egress = _Egress()
        if args.nat is NatMode.INSTANCE:
            nat = NatInstance(
                f"{name}-nat",
                args.nat_instance,
                vpc_id=self.vpc.id,
                vpc_cidr=args.cidr,
                subnet_id=public_subnets[0].id,
                client_cidrs=private_cidrs,
                after=after,
                tags=tags,
                opts=pulumi.ResourceOptions(parent=self),
            )
            egress.resources += nat.resources
            egress.targets.append({"network_interface_id": nat.network_interface_id})
            return egress
        count = {NatMode.SINGLE_GATEWAY: 1, NatMode.GATEWAY_PER_AZ: args.az_count}.get(args.nat, 0)
        igw = next(r for r in after if isinstance(r, aws.ec2.InternetGateway))
        for i in range(count):
            eip = aws.ec2.Eip(
                f"{name}-nat-{i}-eip",
                domain="vpc",
                tags=merge_tags(tags, {"Name": f"{name}-nat-{i}"}),
                opts=pulumi.ResourceOptions(parent=self),
            )
            gateway = aws.ec2.NatGateway(
                f"{name}-nat-{i}",
                allocation_id=eip.id,
                subnet_id=public_subnets[i].id,
                tags=merge_tags(tags, {"Name": f"{name}-nat-{i}"}),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[igw]),
            )
            egress.resources += [eip, gateway]
            egress.targets.append({"nat_gateway_id": gateway.id})
        return egress
