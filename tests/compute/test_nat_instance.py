"""The NAT instance of `network.nat: instance`: routing, hardening, replacement, least privilege."""

from __future__ import annotations

import base64
import json
import subprocess

import pytest
import yaml

from components.nat_instance import AMI_PARAMETER, ASSETS, ENV_PATH, NAT_TAG, SCRIPT_PATH, UNIT
from mlplatform.graph import Graph
from mlplatform.plan import run_program
from tests.compute.stacks import DEV, program
from tests.conftest import require_tool
from tests.iam import iam_findings

ENI = "aws:ec2/networkInterface:NetworkInterface"
LT = "aws:ec2/launchTemplate:LaunchTemplate"
ASG = "aws:autoscaling/group:Group"
SG = "aws:ec2/securityGroup:SecurityGroup"


@pytest.fixture(scope="module")
def net() -> Graph:
    cfg = {**DEV, "network": {**DEV["network"], "nat": "instance"}}
    return run_program(program(cfg), stack="dev")


def _subnet_id(graph: Graph, name: str) -> str:
    # Mock subnet ids are stable: find the id the subnet got by where it is used as an input.
    subnet = graph.one("aws:ec2/subnet:Subnet", name)
    nat = graph.one("aws:ec2/routeTableAssociation:RouteTableAssociation", f"{name}-rta")
    assert graph.depends_on(nat, subnet)
    return str(nat.inputs["subnetId"])


def test_no_gateway_and_every_private_route_goes_to_the_fixed_interface(net: Graph) -> None:
    assert net.by_type("aws:ec2/natGateway:NatGateway") == []
    assert net.by_type("aws:ec2/eip:Eip") == []
    eni = net.one(ENI, "nat-eni")
    assert eni.inputs["sourceDestCheck"] is False
    routes = [r for r in net.by_type("aws:ec2/route:Route") if "private" in r.name]
    assert len(routes) == 2
    for route in routes:
        assert route.inputs["destinationCidrBlock"] == "0.0.0.0/0"
        assert route.inputs["networkInterfaceId"].startswith("eni-")
        assert "natGatewayId" not in route.inputs
        assert net.depends_on(route, eni)
    # The interface sits in a public subnet, and the instance launches in that same subnet (AZ).
    public0 = _subnet_id(net, "net-public-0")
    assert eni.inputs["subnetId"] == public0
    assert net.one(ASG).inputs["vpcZoneIdentifiers"] == [public0]


def test_security_group_admits_only_the_private_subnets(net: Graph) -> None:
    sg = net.one(SG, "nat-sg")
    (ingress,) = sg.inputs["ingress"]
    private = sorted(
        s.inputs["cidrBlock"] for s in net.by_type("aws:ec2/subnet:Subnet") if "private" in s.name
    )
    assert sorted(ingress["cidrBlocks"]) == private
    assert ingress["protocol"] == "-1"
    # The route interface and the instance's own interface share that group.
    (nic,) = net.one(LT, "nat-lt").inputs["networkInterfaces"]
    assert net.one(ENI).inputs["securityGroups"] == nic["securityGroups"]
    assert net.depends_on(net.one(ENI), sg) and net.depends_on(net.one(LT, "nat-lt"), sg)


def test_launch_template_is_hardened_and_boots_the_current_al2023_arm64(net: Graph) -> None:
    lt = net.one(LT, "nat-lt")
    assert lt.inputs["imageId"] == f"resolve:ssm:{AMI_PARAMETER}"
    assert AMI_PARAMETER.endswith("al2023-ami-kernel-default-arm64")
    assert lt.inputs["instanceType"] == "t4g.nano"
    meta = lt.inputs["metadataOptions"]
    assert meta["httpTokens"] == "required" and meta["httpPutResponseHopLimit"] == 1
    (root,) = lt.inputs["blockDeviceMappings"]
    assert root["deviceName"] == "/dev/xvda"
    assert root["ebs"] == {
        "volumeSize": 8,
        "volumeType": "gp3",
        "encrypted": "true",
        "deleteOnTermination": "true",
    }
    (nic,) = lt.inputs["networkInterfaces"]
    assert nic["associatePublicIpAddress"] == "true" and nic["deviceIndex"] == 0
    tagged = {t["resourceType"]: t["tags"] for t in lt.inputs["tagSpecifications"]}
    assert set(tagged) == {"instance", "volume", "network-interface"}
    assert all(t[NAT_TAG] == "net-nat" for t in tagged.values())


def test_user_data_installs_the_script_with_the_interface_and_vpc_range(net: Graph) -> None:
    lt = net.one(LT, "nat-lt")
    text = base64.b64decode(lt.inputs["userData"]).decode()
    assert text.startswith("#cloud-config\n")
    doc = yaml.safe_load(text)
    files = {f["path"]: f for f in doc["write_files"]}
    eni_id = net.one("aws:ec2/route:Route", "private-0-default").inputs["networkInterfaceId"]
    assert files[ENV_PATH]["content"] == f"ENI_ID={eni_id}\nVPC_CIDR=10.0.0.0/16\n"
    assert files[SCRIPT_PATH]["content"] == (ASSETS / "mlplatform-nat.sh").read_text()
    assert files[SCRIPT_PATH]["permissions"] == "0755"
    unit = files[f"/etc/systemd/system/{UNIT}"]["content"]
    assert f"ExecStart={SCRIPT_PATH}" in unit and "WantedBy=multi-user.target" in unit
    assert ["systemctl", "enable", "--now", UNIT] in doc["runcmd"]


def test_group_of_one_replaces_the_instance_and_waits_for_the_internet_gateway(net: Graph) -> None:
    asg = net.one(ASG, "nat-asg")
    assert (asg.inputs["minSize"], asg.inputs["maxSize"], asg.inputs["desiredCapacity"]) == (
        1,
        1,
        1,
    )
    assert asg.inputs["healthCheckType"] == "EC2"
    assert asg.inputs["instanceRefresh"]["preferences"]["minHealthyPercentage"] == 0
    assert asg.inputs["launchTemplate"]["version"] == "1"  # the template's latest version
    assert net.depends_on(asg, net.one(LT, "nat-lt"))
    assert net.depends_on(asg, net.one("aws:ec2/internetGateway:InternetGateway"))
    assert net.depends_on(asg, net.one("aws:ec2/route:Route", "public-default"))
    tags = {t["key"]: t["value"] for t in asg.inputs["tags"]}
    assert tags[NAT_TAG] == "net-nat" and tags["Name"] == "net-nat-asg"


def test_role_may_only_attach_and_unblock_its_own_tagged_interfaces(net: Graph) -> None:
    role = net.one("aws:iam/role:Role", "nat-role")
    trust = json.loads(role.inputs["assumeRolePolicy"])
    assert trust["Statement"][0]["Principal"] == {"Service": "ec2.amazonaws.com"}
    assert iam_findings(trust, trust=True) == []
    policy = json.loads(net.one("aws:iam/rolePolicy:RolePolicy", "nat-attach").inputs["policy"])
    assert iam_findings(policy) == []
    actions = sorted(s["Action"] for s in policy["Statement"])
    assert actions == ["ec2:AttachNetworkInterface", "ec2:ModifyNetworkInterfaceAttribute"]
    for statement in policy["Statement"]:
        assert statement["Condition"] == {"StringEquals": {f"aws:ResourceTag/{NAT_TAG}": "net-nat"}}
        resources = statement["Resource"]
        resources = resources if isinstance(resources, list) else [resources]
        assert "*" not in resources
    attach = next(s for s in policy["Statement"] if s["Action"] == "ec2:AttachNetworkInterface")
    eni_id = net.one("aws:ec2/route:Route", "private-0-default").inputs["networkInterfaceId"]
    assert f"network-interface/{eni_id}" in attach["Resource"][0]
    assert net.one(ENI).inputs["tags"][NAT_TAG] == "net-nat"


def test_cluster_waits_for_the_nat_so_it_is_deleted_after_everything_using_it(net: Graph) -> None:
    cluster = net.one("aws:eks/cluster:Cluster")
    for part in (net.one(ASG), net.one(ENI), net.one(SG, "nat-sg")):
        assert net.depends_on(cluster, part), part.name


def test_nat_script_passes_shellcheck() -> None:
    shellcheck = require_tool("shellcheck")
    script = ASSETS / "mlplatform-nat.sh"
    result = subprocess.run(
        [shellcheck, "--severity=style", str(script)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout


def test_shellcheck_catches_a_broken_script(tmp_path) -> None:
    shellcheck = require_tool("shellcheck")
    broken = tmp_path / "broken.sh"
    broken.write_text("#!/usr/bin/env bash\nrm -rf $DIR/*\n")
    result = subprocess.run([shellcheck, str(broken)], capture_output=True, text=True, check=False)
    assert result.returncode != 0
