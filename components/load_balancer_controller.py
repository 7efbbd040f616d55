"""AWS Load Balancer Controller: turns Ingress objects into ALBs.

The chart is pinned; the controller's IAM role is bound through EKS Pod Identity (no OIDC provider,
no service-account annotation). Its policy is the controller's published policy, trimmed:

* only ALBs (``loadbalancer/app``); the Service (NLB) mutating webhook is turned off;
* no WAF, WAF Regional, Shield or Cognito calls (disabled in the chart values);
* no IAM server certificates (TLS comes from ACM certificate ARNs);
* every write to an existing load balancer, target group or security group is limited to
  resources tagged ``elbv2.k8s.aws/cluster=<this cluster>``, instead of "any cluster".

Teardown order: the release depends on the cluster target and on the network's teardown anchor,
and each ServingEndpoint's Ingress depends on this component. On ``destroy`` the Ingresses go first
(the controller deletes their ALBs and security groups), then the controller, then subnets and VPC.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import pulumi
from pydantic import Field

from components.common import (
    ArgsModel,
    Issue,
    KubeTarget,
    check_chart_version,
    merge_tags,
    pod_identity_trust_json,
)

CHART = "aws-load-balancer-controller"
CHART_REPO = "https://aws.github.io/eks-charts"
# Chart 3.5.0 = controller v3.5.0, the newest release (kubernetes-sigs/aws-load-balancer-controller
# tag v3.5.0, 2026-08-03; helm/aws-load-balancer-controller/Chart.yaml). Every value set below
# exists in its values.yaml, and its docs/install/iam_policy.json adds no action to
# controller_policy beyond the Shield/WAF/Cognito/Outposts ones this platform leaves off.
CHART_VERSION = "3.5.0"
CLUSTER_TAG = "elbv2.k8s.aws/cluster"


class LoadBalancerControllerArgs(ArgsModel):
    chart_version: str = CHART_VERSION
    namespace: str = "kube-system"
    service_account: str = "aws-load-balancer-controller"
    replicas: int = Field(default=2, ge=1, le=5)
    cpu: str = "100m"
    memory: str = "256Mi"

    def issues(self) -> list[Issue]:
        return [*super().issues(), *check_chart_version("chartVersion", self.chart_version)]


def _stmt(actions: Sequence[str], resources: Any = "*", **condition: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"Effect": "Allow", "Action": sorted(actions), "Resource": resources}
    if condition:
        out["Condition"] = condition
    return out


def controller_policy(cluster_name: str, partition: str = "aws") -> dict[str, Any]:
    """The controller's IAM policy document, least privilege for ALB ingresses of one cluster."""
    elb = f"arn:{partition}:elasticloadbalancing:*:*"
    owned = {"StringEquals": {f"aws:ResourceTag/{CLUSTER_TAG}": cluster_name}}
    requested = {"StringEquals": {f"aws:RequestTag/{CLUSTER_TAG}": cluster_name}}
    alb_arns = [f"{elb}:loadbalancer/app/*/*", f"{elb}:targetgroup/*/*"]
    return {
        "Version": "2012-10-17",
        "Statement": [
            _stmt(
                ["iam:CreateServiceLinkedRole"],
                StringEquals={"iam:AWSServiceName": "elasticloadbalancing.amazonaws.com"},
            ),
            # Discovery: read-only, and these APIs do not support resource-level permissions.
            _stmt(
                [
                    "ec2:DescribeAccountAttributes",
                    "ec2:DescribeAddresses",
                    "ec2:DescribeAvailabilityZones",
                    "ec2:DescribeInternetGateways",
                    "ec2:DescribeVpcs",
                    "ec2:DescribeVpcPeeringConnections",
                    "ec2:DescribeSubnets",
                    "ec2:DescribeSecurityGroups",
                    "ec2:DescribeInstances",
                    "ec2:DescribeNetworkInterfaces",
                    "ec2:DescribeTags",
                    "ec2:DescribeRouteTables",
                    "ec2:DescribeIpamPools",
                    "ec2:GetSecurityGroupsForVpc",
                    "elasticloadbalancing:DescribeLoadBalancers",
                    "elasticloadbalancing:DescribeLoadBalancerAttributes",
                    "elasticloadbalancing:DescribeListeners",
                    "elasticloadbalancing:DescribeListenerAttributes",
                    "elasticloadbalancing:DescribeListenerCertificates",
                    "elasticloadbalancing:DescribeSSLPolicies",
                    "elasticloadbalancing:DescribeRules",
                    "elasticloadbalancing:DescribeTargetGroups",
                    "elasticloadbalancing:DescribeTargetGroupAttributes",
                    "elasticloadbalancing:DescribeTargetHealth",
                    "elasticloadbalancing:DescribeTags",
                    "elasticloadbalancing:DescribeTrustStores",
                    "elasticloadbalancing:DescribeCapacityReservation",
                    "acm:ListCertificates",
                    "acm:DescribeCertificate",
                ]
            ),
            # Node/pod security groups are not the controller's, but it must open them to the ALB.
            _stmt(["ec2:AuthorizeSecurityGroupIngress", "ec2:RevokeSecurityGroupIngress"]),
            _stmt(["ec2:CreateSecurityGroup"]),
            _stmt(
                ["ec2:CreateTags"],
                f"arn:{partition}:ec2:*:*:security-group/*",
                StringEquals={
                    "ec2:CreateAction": "CreateSecurityGroup",
                    f"aws:RequestTag/{CLUSTER_TAG}": cluster_name,
                },
            ),
            _stmt(
                ["ec2:CreateTags", "ec2:DeleteTags"],
                f"arn:{partition}:ec2:*:*:security-group/*",
                Null={f"aws:RequestTag/{CLUSTER_TAG}": "true"},
                **owned,
            ),
            _stmt(
                [
                    "ec2:AuthorizeSecurityGroupIngress",
                    "ec2:RevokeSecurityGroupIngress",
                    "ec2:DeleteSecurityGroup",
                ],
                **owned,
            ),
            _stmt(
                [
                    "elasticloadbalancing:CreateLoadBalancer",
                    "elasticloadbalancing:CreateTargetGroup",
                ],
                **requested,
            ),
            _stmt(
                [
                    "elasticloadbalancing:CreateListener",
                    "elasticloadbalancing:DeleteListener",
                    "elasticloadbalancing:CreateRule",
                    "elasticloadbalancing:DeleteRule",
                ],
                [
                    f"{elb}:loadbalancer/app/*/*",
                    f"{elb}:listener/app/*/*/*",
                    f"{elb}:listener-rule/app/*/*/*/*",
                ],
            ),
            _stmt(
                ["elasticloadbalancing:AddTags", "elasticloadbalancing:RemoveTags"],
                alb_arns,
                Null={f"aws:RequestTag/{CLUSTER_TAG}": "true"},
                **owned,
            ),
            _stmt(
                ["elasticloadbalancing:AddTags", "elasticloadbalancing:RemoveTags"],
                [f"{elb}:listener/app/*/*/*", f"{elb}:listener-rule/app/*/*/*/*"],
            ),
            _stmt(
                ["elasticloadbalancing:AddTags"],
                alb_arns,
                StringEquals={
                    "elasticloadbalancing:CreateAction": [
                        "CreateTargetGroup",
                        "CreateLoadBalancer",
                    ],
                    f"aws:RequestTag/{CLUSTER_TAG}": cluster_name,
                },
            ),
            _stmt(
                [
                    "elasticloadbalancing:ModifyLoadBalancerAttributes",
                    "elasticloadbalancing:SetIpAddressType",
                    "elasticloadbalancing:SetSecurityGroups",
                    "elasticloadbalancing:SetSubnets",
                    "elasticloadbalancing:DeleteLoadBalancer",
                    "elasticloadbalancing:ModifyTargetGroup",
                    "elasticloadbalancing:ModifyTargetGroupAttributes",
                    "elasticloadbalancing:DeleteTargetGroup",
                    "elasticloadbalancing:ModifyListenerAttributes",
                    "elasticloadbalancing:ModifyCapacityReservation",
                    "elasticloadbalancing:ModifyIpPools",
                ],
                **owned,
            ),
            _stmt(
                ["elasticloadbalancing:RegisterTargets", "elasticloadbalancing:DeregisterTargets"],
                f"{elb}:targetgroup/*/*",
                **owned,
            ),
            _stmt(
                [
                    "elasticloadbalancing:ModifyListener",
                    "elasticloadbalancing:AddListenerCertificates",
                    "elasticloadbalancing:RemoveListenerCertificates",
                    "elasticloadbalancing:ModifyRule",
                    "elasticloadbalancing:SetRulePriorities",
                ],
                [f"{elb}:listener/app/*/*/*", f"{elb}:listener-rule/app/*/*/*/*"],
            ),
        ],
    }


def helm_values(
    args: LoadBalancerControllerArgs,
    *,
    cluster_name: Any,
    region: Any,
    vpc_id: Any,
    tags: Mapping[str, str],
) -> dict[str, Any]:
    return {
        "clusterName": cluster_name,
        # Given explicitly so the controller never needs the instance metadata service.
        "region": region,
        "vpcId": vpc_id,
        "replicaCount": args.replicas,
        "serviceAccount": {"create": True, "name": args.service_account},
        "enableShield": False,
        "enableWaf": False,
        "enableWafv2": False,
        "enableServiceMutatorWebhook": False,  # ALBs for Ingress only; leave Services alone
        "createIngressClassResource": True,
        "ingressClass": "alb",
        "defaultTags": dict(tags),
        "podDisruptionBudget": {"maxUnavailable": 1},
        "resources": {
            "requests": {"cpu": args.cpu, "memory": args.memory},
            "limits": {"memory": args.memory},
        },
        "priorityClassName": "system-cluster-critical",
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {
                    "matchLabels": {"app.kubernetes.io/name": "aws-load-balancer-controller"}
                },
            }
        ],
    }


class LoadBalancerController(pulumi.ComponentResource):
    """Installs the AWS Load Balancer Controller with a Pod Identity IAM role."""

    role_arn: pulumi.Output[str]
    release_name: pulumi.Output[str | None]

    def __init__(
        self,
        name: str,
        args: LoadBalancerControllerArgs,
        *,
        target: KubeTarget,
        vpc_id: pulumi.Input[str],
        region: pulumi.Input[str],
        network_anchor: Sequence[pulumi.Resource] = (),
        tags: Mapping[str, str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ):
        args.raise_if_invalid("LoadBalancerController")
        super().__init__("mlplatform:serving:LoadBalancerController", name, None, opts)
        import pulumi_aws as aws
        import pulumi_kubernetes as k8s

        all_tags = merge_tags({"mlplatform.io/component": "load-balancer-controller"}, tags)
        aws_opts = pulumi.ResourceOptions(parent=self)
        ident = aws.get_caller_identity_output(opts=pulumi.InvokeOutputOptions(parent=self))
        part = aws.get_partition_output(opts=pulumi.InvokeOutputOptions(parent=self))
        cluster_name = pulumi.Output.from_input(target.cluster_name)

        role = aws.iam.Role(
            f"{name}-role",
            assume_role_policy=pod_identity_trust_json(
                partition=part.partition,
                region=aws.get_region_output(opts=pulumi.InvokeOutputOptions(parent=self)).region,
                account_id=ident.account_id,
                cluster_name=cluster_name,
            ),
            description="AWS Load Balancer Controller (EKS Pod Identity)",
            max_session_duration=3600,
            tags=all_tags,
            opts=aws_opts,
        )
        policy = aws.iam.RolePolicy(
            f"{name}-policy",
            role=role.id,
            policy=pulumi.Output.all(cluster_name, part.partition).apply(
                lambda v: json.dumps(controller_policy(v[0], v[1]))
            ),
            opts=aws_opts,
        )
        association = aws.eks.PodIdentityAssociation(
            f"{name}-pod-identity",
            cluster_name=cluster_name,
            namespace=args.namespace,
            service_account=args.service_account,
            role_arn=role.arn,
            tags=all_tags,
            # Credentials are issued when the pod starts: with the role's permissions in place.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*target.depends_on, policy]),
        )
        release = k8s.helm.v3.Release(
            f"{name}-release",
            name="aws-load-balancer-controller",
            chart=CHART,
            version=args.chart_version,
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=CHART_REPO),
            namespace=args.namespace,
            values=helm_values(
                args, cluster_name=cluster_name, region=region, vpc_id=vpc_id, tags=all_tags
            ),
            atomic=True,
            cleanup_on_fail=True,
            opts=pulumi.ResourceOptions(
                parent=self,
                provider=target.provider,
                # Credentials exist before the controller starts; and the controller outlives
                # nothing it needs on destroy: it goes before the subnets and the VPC.
                depends_on=[*target.depends_on, *network_anchor, association, policy],
            ),
        )
        self.release = release
        self.role_arn = role.arn
        self.release_name = release.name
        self.register_outputs({"roleArn": self.role_arn, "releaseName": self.release_name})
