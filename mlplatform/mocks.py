"""Deterministic mocks for running the platform program without an engine or a cloud account.

`PlatformMocks` answers resource registrations and data-source calls with plausible, stable values
(the same input always yields the same plan). `RecordingMonitor` keeps each full RegisterResource
request, which carries what the plain mocks cannot see: parent, protect, retainOnDelete, the
provider and the dependencies.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pulumi.runtime import rpc
from pulumi.runtime.mocks import MockCallArgs, MockMonitor, MockResourceArgs, Mocks

from components.generated_secret import TYPE_TOKEN as GENERATED_SECRET

ACCOUNT_ID = "123456789012"
SECRET_PLACEHOLDER = "[secret]"  # noqa: S105 - a placeholder, not a password
UNKNOWN_PLACEHOLDER = "[unknown]"
DEPLOYER_ROLE_ARN = f"arn:aws:iam::{ACCOUNT_ID}:role/platform-deployer"
DEPLOYER_SESSION_ARN = f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/platform-deployer/deploy"


def _digest(*parts: str, length: int = 17) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:length]


def _region(inputs: dict[str, Any], default: str) -> str:
    region = inputs.get("region")
    return region if isinstance(region, str) and region else default


class PlatformMocks(Mocks):
    """Answers for AWS and Kubernetes resources and the data sources the program calls."""

    def __init__(
        self,
        region: str = "us-east-1",
        stack_references: Mapping[str, Mapping[str, Any]] | None = None,
    ):
        self.region = region
        # Outputs of other stacks, by the name a pulumi.StackReference gives (org/project/stack).
        self.stack_references = dict(stack_references or {})

    # Resource registrations -------------------------------------------------------------
    def new_resource(self, args: MockResourceArgs) -> tuple[str, dict[str, Any]]:
        typ, name, inputs = args.typ, args.name, dict(args.inputs)
        if typ == "pulumi:pulumi:StackReference":
            ref = str(inputs.get("name") or name)
            if ref not in self.stack_references:
                known = ", ".join(sorted(self.stack_references)) or "none"
                raise KeyError(f"no outputs given for stack reference {ref!r} (given: {known})")
            return ref, {"name": ref, "outputs": dict(self.stack_references[ref])}
        rid = f"{name}-{_digest(typ, name, length=8)}"
        state: dict[str, Any] = dict(inputs)
        service = typ.split(":")[1].split("/")[0] if typ.startswith("aws:") else ""
        region = _region(inputs, self.region)
        if typ.startswith("aws:"):
            res_name = inputs.get("name") or inputs.get("bucket") or rid
            state.setdefault(
                "arn",
                f"arn:aws:{service}:{region}:{ACCOUNT_ID}:{typ.split(':')[-1].lower()}/{res_name}",
            )
        if typ == "aws:ec2/vpc:Vpc":
            rid = f"vpc-{_digest(name)}"
            state.update(
                defaultSecurityGroupId=f"sg-{_digest(name, 'default')}",
                mainRouteTableId=f"rtb-{_digest(name)}",
            )
        elif typ == "aws:ec2/subnet:Subnet":
            rid = f"subnet-{_digest(name)}"
        elif typ == "aws:ec2/securityGroup:SecurityGroup":
            rid = f"sg-{_digest(name)}"
        elif typ == "aws:ec2/natGateway:NatGateway":
            rid = f"nat-{_digest(name)}"
        elif typ == "aws:ec2/networkInterface:NetworkInterface":
            rid = f"eni-{_digest(name)}"
            state["arn"] = f"arn:aws:ec2:{region}:{ACCOUNT_ID}:network-interface/{rid}"
        elif typ == "aws:ec2/eip:Eip":
            rid = f"eipalloc-{_digest(name)}"
            state["publicIp"] = "203.0.113." + str(int(_digest(name, length=2), 16) % 250 + 1)
        elif typ == "aws:ec2/launchTemplate:LaunchTemplate":
            rid = f"lt-{_digest(name)}"
            state["latestVersion"] = 1
        elif typ == "aws:kms/key:Key":
            rid = _uuid(name)
            state["arn"] = f"arn:aws:kms:{region}:{ACCOUNT_ID}:key/{rid}"
            state["keyId"] = rid
        elif typ == "aws:iam/role:Role":
            role = inputs.get("name") or rid
            state["arn"] = f"arn:aws:iam::{ACCOUNT_ID}:role/{role}"
            state["name"] = role
        elif typ == "aws:iam/policy:Policy":
            state["arn"] = f"arn:aws:iam::{ACCOUNT_ID}:policy/{inputs.get('name') or rid}"
        elif typ == "aws:s3/bucket:Bucket":
            bucket = inputs.get("bucket") or f"{name}-{_digest(name, length=7)}"
            rid = bucket
            state.update(
                bucket=bucket,
                arn=f"arn:aws:s3:::{bucket}",
                bucketRegionalDomainName=f"{bucket}.s3.{region}.amazonaws.com",
            )
        elif typ == "aws:eks/cluster:Cluster":
            cluster = inputs.get("name") or rid
            rid = cluster
            state.update(
                name=cluster,
                arn=f"arn:aws:eks:{region}:{ACCOUNT_ID}:cluster/{cluster}",
                endpoint=f"https://{_digest(cluster, length=32).upper()}.gr7.{region}.eks.amazonaws.com",
                certificateAuthority={
                    "data": "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1PQ0sKLS0tLS1FTkQgQ0VSVElGSUNBVEUtLS0tLQo="
                },
                identities=[
                    {
                        "oidcs": [
                            {
                                "issuer": f"https://oidc.eks.{region}.amazonaws.com/id/{_digest(cluster, length=32).upper()}"
                            }
                        ]
                    }
                ],
                vpcConfig={
                    **(inputs.get("vpcConfig") or {}),
                    "clusterSecurityGroupId": f"sg-{_digest(cluster, 'cluster')}",
                },
                status="ACTIVE",
                platformVersion="eks.1",
            )
        elif typ == "aws:ecr/repository:Repository":
            repo = inputs.get("name") or rid
            state["repositoryUrl"] = f"{ACCOUNT_ID}.dkr.ecr.{region}.amazonaws.com/{repo}"
            state["registryId"] = ACCOUNT_ID
        elif typ == "aws:sqs/queue:Queue":
            queue = inputs.get("name") or rid
            state["url"] = f"https://sqs.{region}.amazonaws.com/{ACCOUNT_ID}/{queue}"
            state["arn"] = f"arn:aws:sqs:{region}:{ACCOUNT_ID}:{queue}"
        elif typ == "aws:rds/instance:Instance":
            state["address"] = (
                f"{inputs.get('identifier') or rid}.c{_digest(name, length=10)}.{region}.rds.amazonaws.com"
            )
            state["port"] = inputs.get("port") or 5432
            state["endpoint"] = f"{state['address']}:{state['port']}"
        elif typ == "aws:cloudwatch/logGroup:LogGroup":
            state["arn"] = (
                f"arn:aws:logs:{region}:{ACCOUNT_ID}:log-group:{inputs.get('name') or rid}"
            )
        elif typ == "aws:sns/topic:Topic":
            state["arn"] = f"arn:aws:sns:{region}:{ACCOUNT_ID}:{inputs.get('name') or rid}"
        elif typ.startswith("kubernetes:"):
            meta = dict(inputs.get("metadata") or {})
            meta.setdefault("name", name)
            meta.setdefault("uid", _uuid(typ + name))
            state["metadata"] = meta
            rid = f"{meta.get('namespace', '')}/{meta['name']}".lstrip("/")
            if typ == "kubernetes:helm.sh/v3:Release":
                state["status"] = {
                    "name": inputs.get("name") or name,
                    "namespace": inputs.get("namespace") or "default",
                    "status": "deployed",
                    "version": inputs.get("version"),
                }
        elif typ.startswith("random:") or typ == GENERATED_SECRET:
            state["result"] = "mock-" + _digest(typ, name, length=24)
        return rid, state

    # Data sources -----------------------------------------------------------------------
    def call(self, args: MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        return self._answer(args), []

    def _answer(self, args: MockCallArgs) -> dict[str, Any]:
        tok, a = args.token, dict(args.args)
        region = _region(a, self.region)
        if tok == "aws:index/getAvailabilityZones:getAvailabilityZones":
            letters = "abcdef"
            return {
                "names": [f"{region}{c}" for c in letters],
                "zoneIds": [f"use1-az{i + 1}" for i in range(6)],
                "id": region,
                "state": "available",
            }
        if tok == "aws:index/getCallerIdentity:getCallerIdentity":
            # Deployments run as an assumed role (CI through OIDC, people through SSO).
            return {
                "accountId": ACCOUNT_ID,
                "arn": DEPLOYER_SESSION_ARN,
                "userId": "AROAMOCK:deploy",
                "id": ACCOUNT_ID,
            }
        if tok == "aws:iam/getSessionContext:getSessionContext":
            arn = str(a.get("arn", ""))
            role = (
                arn.split(":assumed-role/", 1)[-1].split("/")[0] if ":assumed-role/" in arn else ""
            )
            issuer = f"arn:aws:iam::{ACCOUNT_ID}:role/{role}" if role else arn
            return {"arn": arn, "issuerArn": issuer, "issuerName": role, "id": arn}
        if tok == "aws:index/getRegion:getRegion":
            return {
                "name": region,
                "region": region,
                "id": region,
                "endpoint": f"ec2.{region}.amazonaws.com",
                "description": region,
            }
        if tok == "aws:index/getPartition:getPartition":
            return {
                "partition": "aws",
                "dnsSuffix": "amazonaws.com",
                "id": "aws",
                "reverseDnsPrefix": "com.amazonaws",
            }
        if tok == "aws:ssm/getParameter:getParameter":
            name = a.get("name", "")
            return {
                "name": name,
                "value": f"ami-{_digest(name)}",
                "type": "String",
                "arn": f"arn:aws:ssm:{region}::parameter{name}",
                "version": 1,
                "id": name,
                "insecureValue": f"ami-{_digest(name)}",
            }
        if tok == "aws:ec2/getAmi:getAmi":
            return {
                "id": f"ami-{_digest(str(a))}",
                "imageId": f"ami-{_digest(str(a))}",
                "architecture": "x86_64",
            }
        if tok == "aws:ec2/getSubnet:getSubnet":
            sid = str(a.get("id", ""))
            n = int(_digest(sid, length=4), 16) % 250
            return {"id": sid, "cidrBlock": f"10.{n}.0.0/20", "vpcId": "vpc-existing"}
        if tok == "aws:iam/getPolicyDocument:getPolicyDocument":
            return {"json": "{}", "id": "policy"}
        if tok == "aws:eks/getAddonVersion:getAddonVersion":
            return {
                "version": "v1.0.0-eksbuild.1",
                "addonName": a.get("addonName"),
                "kubernetesVersion": a.get("kubernetesVersion"),
                "id": "x",
            }
        return {}


def _uuid(seed: str) -> str:
    h = _digest(seed, length=32)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


@dataclass
class RecordedResource:
    urn: str
    type: str
    name: str
    custom: bool
    parent: str
    inputs: dict[str, Any]
    protect: bool
    retain_on_delete: bool
    dependencies: list[str]
    provider: str
    delete_before_replace: bool = False
    aliases: list[str] = field(default_factory=list)
    ignore_changes: list[str] = field(default_factory=list)
    # input name -> URNs it is computed from (what stack policies resolve references with)
    property_dependencies: dict[str, list[str]] = field(default_factory=dict)
    # Inputs whose whole value is a secret map (a Secret's stringData): their keys, not values.
    secret_keys: dict[str, list[str]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out = {
            "urn": self.urn,
            "type": self.type,
            "custom": self.custom,
            "parent": self.parent,
            "inputs": self.inputs,
            "protect": self.protect,
            "retainOnDelete": self.retain_on_delete,
            "dependencies": self.dependencies,
            "propertyDependencies": self.property_dependencies,
            "provider": self.provider,
        }
        if self.secret_keys:
            out["secretKeys"] = self.secret_keys
        return out


def scrub(value: Any) -> Any:
    """Replace secret and unknown markers in deserialized inputs with printable placeholders."""
    if isinstance(value, dict):
        sig = value.get(rpc._special_sig_key)
        if sig == rpc._special_secret_sig:
            return SECRET_PLACEHOLDER
        if sig is not None and sig != rpc._special_secret_sig:
            # resource references and assets: keep only their identity
            return value.get("urn") or value.get("path") or value.get("text") or "[reference]"
        return {k: scrub(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub(v) for v in value]
    if value == rpc.UNKNOWN:
        return UNKNOWN_PLACEHOLDER
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


class RecordingMonitor(MockMonitor):
    """A MockMonitor that keeps every RegisterResource request and the stack's outputs."""

    def __init__(self, mocks: Mocks):
        super().__init__(mocks)
        self.recorded: list[RecordedResource] = []
        self.stack_urn = ""
        self.stack_outputs: dict[str, Any] = {}

    def RegisterResource(self, request):  # noqa: N802 - gRPC method name
        response = super().RegisterResource(request)
        if request.type == "pulumi:pulumi:Stack":
            self.stack_urn = response.urn
            return response
        self.recorded.append(
            RecordedResource(
                urn=response.urn,
                type=request.type,
                name=request.name,
                custom=bool(request.custom),
                parent=request.parent,
                inputs=_raw_struct(request.object),
                secret_keys=_secret_map_keys(request.object),
                protect=bool(request.protect),
                retain_on_delete=bool(request.retainOnDelete),
                dependencies=list(request.dependencies),
                provider=request.provider,
                delete_before_replace=bool(request.deleteBeforeReplace),
                aliases=[a.urn or a.spec.name for a in request.aliases] if request.aliases else [],
                ignore_changes=list(request.ignoreChanges),
                property_dependencies={
                    k: sorted(set(v.urns))
                    for k, v in sorted(request.propertyDependencies.items())
                    if v.urns
                },
            )
        )
        return response

    def RegisterResourceOutputs(self, request):  # noqa: N802 - gRPC method name
        if request.urn == self.stack_urn or request.urn.endswith(
            "::pulumi:pulumi:Stack::" + request.urn.split("::")[-1]
        ):
            self.stack_outputs = _raw_struct(request.outputs)
        return super().RegisterResourceOutputs(request)


def _secret_map_keys(struct: Any) -> dict[str, list[str]]:
    """For each top-level input that is a secret map, its keys (the values stay secret)."""
    from google.protobuf import json_format

    if struct is None:
        return {}
    out: dict[str, list[str]] = {}
    for key, value in json_format.MessageToDict(struct).items():
        if (
            isinstance(value, dict)
            and value.get(rpc._special_sig_key) == rpc._special_secret_sig
            and isinstance(value.get("value"), dict)
        ):
            out[key] = sorted(value["value"])
    return out


def _raw_struct(struct: Any) -> dict[str, Any]:
    """Convert a protobuf Struct to plain Python; secret and unknown markers become placeholders."""
    from google.protobuf import json_format

    return scrub(json_format.MessageToDict(struct)) if struct is not None else {}
