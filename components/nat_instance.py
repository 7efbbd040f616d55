"""NatInstance: a small Graviton instance doing NAT for a dev VPC, for a tenth of a NAT gateway.

A NAT gateway costs $32.85 a month before its address and data; a t4g.nano costs about $3. The
price is availability: one instance in one AZ, replaced (not failed over) when it dies, and a few
minutes without internet egress while that happens. Hence dev only; prod keeps a gateway per AZ
(config validation and the policy pack both refuse an instance there).

How it stays up without anyone rewriting routes:

* a **network interface owned by Pulumi** (source/destination check off, its own security group)
  is where every private route table sends ``0.0.0.0/0``, so routes never change at runtime;
* an **Auto Scaling group of one** launches the instance from a launch template (AL2023 arm64 from
  AWS's public SSM parameter, resolved at every launch, so a replacement is patched; IMDSv2 only,
  encrypted gp3 root). EC2 status checks failing, or the instance stopping, make the group
  replace it;
* at every boot ``mlplatform-nat.sh`` attaches that interface, turns off the primary interface's
  source/destination check and masquerades the VPC's traffic out of the instance's public IPv4.
  Its role may do exactly that, on interfaces and instances tagged as this NAT's.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pulumi
import pulumi_aws as aws
import yaml
from pydantic import Field

from components.common import ArgsModel, merge_tags, service_trust_policy

ASSETS = Path(__file__).parent / "assets" / "nat-instance"
# AL2023, arm64, default kernel: AWS publishes the current AMI id under this public parameter, and
# launch templates may name it as `resolve:ssm:<parameter>` (EC2 Auto Scaling user guide, "Use AWS
# Systems Manager parameters instead of AMI IDs in launch templates"; confirmed 2026-12).
AMI_PARAMETER = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64"
NAT_TAG = "mlplatform.io/nat-instance"
SCRIPT_PATH = "/usr/local/sbin/mlplatform-nat"
ENV_PATH = "/etc/mlplatform-nat.env"
UNIT = "mlplatform-nat.service"


class NatInstanceArgs(ArgsModel):
    """The NAT instance of ``network.nat: instance``."""

    # Graviton only: the AMI parameter above is the arm64 build.
    instance_type: str = Field(default="t4g.nano", pattern=r"^[a-z]+[0-9]+g[a-z0-9-]*\.[a-z0-9]+$")
    # The AL2023 AMI's root snapshot is 8 GiB; a launch with less fails.
    root_volume_gib: int = Field(default=8, ge=8, le=64)


def cloud_config(eni_id: str, vpc_cidr: str) -> str:
    """User data: the NAT script, its settings and a unit that runs it at every boot."""
    doc = {
        "write_files": [
            {
                "path": ENV_PATH,
                "permissions": "0644",
                "content": f"ENI_ID={eni_id}\nVPC_CIDR={vpc_cidr}\n",
            },
            {
                "path": SCRIPT_PATH,
                "permissions": "0755",
                "content": (ASSETS / "mlplatform-nat.sh").read_text(encoding="utf-8"),
            },
            {
                "path": f"/etc/systemd/system/{UNIT}",
                "permissions": "0644",
                "content": (ASSETS / UNIT).read_text(encoding="utf-8"),
            },
        ],
        "runcmd": [["systemctl", "daemon-reload"], ["systemctl", "enable", "--now", UNIT]],
    }
    return "#cloud-config\n" + yaml.safe_dump(doc, sort_keys=False)


def instance_policy(
    *, partition: str, region: str, account: str, eni_arn: str, nat_name: str
) -> dict[str, Any]:
    """Attach the route interface; turn off the source/destination check of its own interfaces.

    Both are limited to resources carrying this NAT's tag (the launch template tags the instance
    and its primary interface; Pulumi tags the route interface), so the role cannot touch any
    other instance or interface in the account.
    """
    ec2 = f"arn:{partition}:ec2:{region}:{account}"
    tagged = {"StringEquals": {f"aws:ResourceTag/{NAT_TAG}": nat_name}}
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "AttachRouteInterface",
                "Effect": "Allow",
                "Action": "ec2:AttachNetworkInterface",
                "Resource": [eni_arn, f"{ec2}:instance/*"],
                "Condition": tagged,
            },
            {
                "Sid": "DisableSourceDestCheck",
                "Effect": "Allow",
                "Action": "ec2:ModifyNetworkInterfaceAttribute",
                "Resource": f"{ec2}:network-interface/*",
                "Condition": tagged,
            },
        ],
    }


class NatInstance(pulumi.ComponentResource):
    """One auto-replaced NAT instance behind a fixed route interface."""

    #: The interface every private route table sends 0.0.0.0/0 to.
    network_interface_id: pulumi.Output[str]
    #: What load balancers and nodes must be deleted before (and created after).
    resources: list[pulumi.Resource]

    def __init__(
        self,
        name: str,
        args: NatInstanceArgs,
        *,
        vpc_id: pulumi.Input[str],
        vpc_cidr: str,
        subnet_id: pulumi.Input[str],
        client_cidrs: list[str],
        after: list[pulumi.Resource] | None = None,
        tags: dict[str, str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("mlplatform:network:NatInstance", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        own = {NAT_TAG: name}
        base = merge_tags(tags, own)

        sg = aws.ec2.SecurityGroup(
            f"{name}-sg",
            vpc_id=vpc_id,
            description=f"NAT instance {name}: anything from the private subnets, out to anywhere",
            ingress=[
                aws.ec2.SecurityGroupIngressArgs(
                    protocol="-1",
                    from_port=0,
                    to_port=0,
                    cidr_blocks=list(client_cidrs),
                    description="traffic to NAT from the private subnets",
                )
            ],
            egress=[
                aws.ec2.SecurityGroupEgressArgs(
                    protocol="-1",
                    from_port=0,
                    to_port=0,
                    cidr_blocks=["0.0.0.0/0"],
                    description="NAT egress to the internet",
                )
            ],
            tags=merge_tags(base, {"Name": f"{name}-sg"}),
            opts=child,
        )
        eni = aws.ec2.NetworkInterface(
            f"{name}-eni",
            subnet_id=subnet_id,
            security_groups=[sg.id],
            # Forwarding needs it off: packets through a NAT are neither from nor to it.
            source_dest_check=False,
            description=f"Route target of NAT instance {name}",
            tags=merge_tags(base, {"Name": f"{name}-route"}),
            opts=child,
        )

        role = aws.iam.Role(
            f"{name}-role",
            description=f"NAT instance {name}: attach its route interface, nothing else",
            assume_role_policy=json.dumps(service_trust_policy("ec2.amazonaws.com")),
            tags=base,
            opts=child,
        )
        ident = aws.get_caller_identity_output(opts=pulumi.InvokeOutputOptions(parent=self))
        region = aws.get_region_output(opts=pulumi.InvokeOutputOptions(parent=self))
        partition = aws.get_partition_output(opts=pulumi.InvokeOutputOptions(parent=self))
        aws.iam.RolePolicy(
            f"{name}-attach",
            role=role.id,
            policy=pulumi.Output.all(
                partition.partition, region.region, ident.account_id, eni.arn
            ).apply(
                lambda a: json.dumps(
                    instance_policy(
                        partition=a[0], region=a[1], account=a[2], eni_arn=a[3], nat_name=name
                    ),
                    sort_keys=True,
                )
            ),
            opts=child,
        )
        profile = aws.iam.InstanceProfile(f"{name}-profile", role=role.name, tags=base, opts=child)

        template = aws.ec2.LaunchTemplate(
            f"{name}-lt",
            description=f"NAT instance {name}: AL2023 arm64, IMDSv2 only, encrypted gp3 root",
            # Resolved by EC2 at each launch: a replacement instance boots the current AMI.
            image_id=f"resolve:ssm:{AMI_PARAMETER}",
            instance_type=args.instance_type,
            iam_instance_profile=aws.ec2.LaunchTemplateIamInstanceProfileArgs(arn=profile.arn),
            metadata_options=aws.ec2.LaunchTemplateMetadataOptionsArgs(
                http_endpoint="enabled",
                http_tokens="required",
                http_put_response_hop_limit=1,
            ),
            network_interfaces=[
                aws.ec2.LaunchTemplateNetworkInterfaceArgs(
                    device_index=0,
                    # Its egress address: one public IPv4, priced like an Elastic IP.
                    associate_public_ip_address="true",
                    security_groups=[sg.id],
                    delete_on_termination="true",
                )
            ],
            block_device_mappings=[
                aws.ec2.LaunchTemplateBlockDeviceMappingArgs(
                    device_name="/dev/xvda",
                    ebs=aws.ec2.LaunchTemplateBlockDeviceMappingEbsArgs(
                        volume_size=args.root_volume_gib,
                        volume_type="gp3",
                        encrypted="true",
                        delete_on_termination="true",
                    ),
                )
            ],
            user_data=eni.id.apply(
                lambda eni_id: base64.b64encode(
                    cloud_config(eni_id, vpc_cidr).encode("utf-8")
                ).decode("ascii")
            ),
            tag_specifications=[
                aws.ec2.LaunchTemplateTagSpecificationArgs(
                    resource_type=kind, tags=merge_tags(base, {"Name": name})
                )
                for kind in ("instance", "volume", "network-interface")
            ],
            update_default_version=True,
            tags=base,
            opts=child,
        )
        group = aws.autoscaling.Group(
            f"{name}-asg",
            min_size=1,
            max_size=1,
            desired_capacity=1,
            # The route interface lives in this subnet, and an interface attaches only in its AZ.
            vpc_zone_identifiers=[subnet_id],
            launch_template=aws.autoscaling.GroupLaunchTemplateArgs(
                id=template.id, version=template.latest_version.apply(str)
            ),
            health_check_type="EC2",
            health_check_grace_period=120,
            # A template change (instance type, AMI parameter, script) replaces the instance.
            instance_refresh=aws.autoscaling.GroupInstanceRefreshArgs(
                strategy="Rolling",
                preferences=aws.autoscaling.GroupInstanceRefreshPreferencesArgs(
                    min_healthy_percentage=0
                ),
            ),
            tags=[
                aws.autoscaling.GroupTagArgs(key=k, value=v, propagate_at_launch=False)
                for k, v in sorted(merge_tags(base, {"Name": f"{name}-asg"}).items())
            ],
            # It boots through the internet gateway (package install, EC2 API calls).
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(after or [])),
        )

        self.network_interface_id = eni.id
        self.resources = [sg, eni, template, group]
        self.register_outputs({"networkInterfaceId": eni.id, "autoScalingGroup": group.name})
