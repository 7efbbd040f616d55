"""Network: subnets, tags, NAT layout, endpoints, flow logs, bring-your-own VPC."""

from __future__ import annotations

import ipaddress
import json

from components.network import (
    DISCOVERY_TAG,
    ELB_TAG,
    INTERNAL_ELB_TAG,
    Network,
    NetworkArgs,
    carve_subnets,
)
from mlplatform.plan import run_program

SUBNET = "aws:ec2/subnet:Subnet"
NAT = "aws:ec2/natGateway:NatGateway"


def _subnets(graph, kind):
    return [r for r in graph.by_type(SUBNET) if f"-{kind}-" in r.name]


def test_dev_spans_two_azs_with_one_nat(dev):
    private, public = _subnets(dev, "private"), _subnets(dev, "public")
    assert len(private) == len(public) == 2
    assert len({s.inputs["availabilityZone"] for s in private}) == 2
    assert len(dev.by_type(NAT)) == 1


def test_prod_spans_three_azs_with_a_nat_per_az(prod):
    private = _subnets(prod, "private")
    assert len({s.inputs["availabilityZone"] for s in private}) == 3
    nats = prod.by_type(NAT)
    assert len(nats) == 3
    assert len({n.inputs["subnetId"] for n in nats}) == 3
    # each private route table sends internet traffic to a different gateway
    routes = [r for r in prod.by_type("aws:ec2/route:Route") if "private" in r.name]
    assert len({r.inputs["natGatewayId"] for r in routes}) == 3


def test_subnets_tagged_for_load_balancers_and_karpenter(dev):
    for s in _subnets(dev, "private"):
        assert s.inputs["tags"][INTERNAL_ELB_TAG] == "1"
        assert s.inputs["tags"][DISCOVERY_TAG] == "mlp-dev"
        assert ELB_TAG not in s.inputs["tags"]
    for s in _subnets(dev, "public"):
        assert s.inputs["tags"][ELB_TAG] == "1"
        # Karpenter must never put nodes in public subnets
        assert DISCOVERY_TAG not in s.inputs["tags"]
        assert s.inputs["mapPublicIpOnLaunch"] is False


def test_subnet_ranges_fit_the_vpc_and_do_not_overlap():
    for cidr in ("10.0.0.0/16", "10.20.0.0/20"):
        for azs in range(2, 7):
            private, public = carve_subnets(cidr, azs)
            nets = [ipaddress.ip_network(c) for c in private + public]
            assert len(nets) == 2 * azs
            assert all(n.subnet_of(ipaddress.ip_network(cidr)) for n in nets)
            assert not any(a.overlaps(b) for i, a in enumerate(nets) for b in nets[i + 1 :])


def test_s3_gateway_endpoint_on_every_route_table(prod):
    s3 = prod.one("aws:ec2/vpcEndpoint:VpcEndpoint", "net-s3")
    assert s3.inputs["vpcEndpointType"] == "Gateway"
    assert s3.inputs["serviceName"] == "com.amazonaws.us-east-1.s3"
    assert len(s3.inputs["routeTableIds"]) == len(prod.by_type("aws:ec2/routeTable:RouteTable"))


def test_interface_endpoints_only_when_asked(dev, prod):
    interface = lambda g: [  # noqa: E731
        r
        for r in g.by_type("aws:ec2/vpcEndpoint:VpcEndpoint")
        if r.inputs["vpcEndpointType"] == "Interface"
    ]
    assert interface(dev) == []
    services = sorted(r.inputs["serviceName"].rsplit(".", 2)[-2:][-1] for r in interface(prod))
    names = sorted(r.inputs["serviceName"] for r in interface(prod))
    assert names == [f"com.amazonaws.us-east-1.{s}" for s in ("ecr.api", "ecr.dkr", "sts")]
    assert services
    for ep in interface(prod):
        assert ep.inputs["privateDnsEnabled"] is True
        assert len(ep.inputs["subnetIds"]) == 3


def test_flow_logs_go_to_an_encrypted_group_with_retention(dev):
    flow = dev.one("aws:ec2/flowLog:FlowLog")
    assert flow.inputs["trafficType"] == "ALL"
    group = dev.one("aws:cloudwatch/logGroup:LogGroup", "flow-logs")
    assert flow.inputs["logDestination"].endswith(group.inputs["name"])
    assert group.inputs["retentionInDays"] == 90
    key = dev.one("aws:kms/key:Key", "flow-logs")
    assert key.inputs["enableKeyRotation"] is True
    assert group.inputs["kmsKeyId"].startswith("arn:aws:kms:")
    policy = json.loads(key.inputs["policy"])
    logs = [s for s in policy["Statement"] if s["Principal"].get("Service", "").startswith("logs.")]
    assert logs and "flow-logs" in json.dumps(logs[0]["Condition"])


def test_flow_logs_role_trusts_only_this_accounts_flow_logs(dev):
    role = dev.one("aws:iam/role:Role", "flow-logs-role")
    (s,) = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
    assert s["Principal"] == {"Service": "vpc-flow-logs.amazonaws.com"}
    assert s["Action"] == "sts:AssumeRole"
    assert s["Condition"] == {"StringEquals": {"aws:SourceAccount": "123456789012"}}


def test_default_security_group_has_no_rules(dev):
    sg = dev.one("aws:ec2/defaultSecurityGroup:DefaultSecurityGroup")
    assert sg.inputs.get("ingress", []) == [] and sg.inputs.get("egress", []) == []


def test_bring_your_own_vpc_only_adds_tags():
    args = NetworkArgs.model_validate(
        {
            "existing": {
                "vpcId": "vpc-0abc1234",
                "privateSubnetIds": ["subnet-01", "subnet-02"],
                "publicSubnetIds": ["subnet-03"],
            }
        }
    )
    out = {}

    def fn():
        out["net"] = Network("byo", args, cluster_name="mlp-dev")

    graph = run_program(fn)
    custom = [r for r in graph.resources if r.custom]
    assert {r.type for r in custom} == {"aws:ec2/tag:Tag"}
    discovery = [r.inputs for r in custom if r.inputs["key"] == DISCOVERY_TAG]
    assert sorted(t["resourceId"] for t in discovery) == ["subnet-01", "subnet-02"]
    assert all(t["value"] == "mlp-dev" for t in discovery)
    assert [r.inputs["resourceId"] for r in custom if r.inputs["key"] == ELB_TAG] == ["subnet-03"]
    assert len(out["net"].teardown_anchor) == len(custom)
