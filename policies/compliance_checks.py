"""The checks behind the compliance profiles (``compliance.py``), as pure functions over a stack.

Each check yields ``(urn, message)`` findings for the resources that break it. A reference to a
value not known yet (a key's ARN during a preview) counts as set; a check never reports what it
cannot see, and ``pulumi up`` runs it again with the real values.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pulumi_policy import PolicyResource

if __package__:
    from . import compliance_resources as r
else:  # the engine runs the pack's files as top-level modules from the pack's directory
    import compliance_resources as r  # type: ignore[no-redef]


# --------------------------------------------------------------------------------------------
# data residency


def check_regions(stack: r.Stack, limits: r.Limits) -> Iterator[r.Finding]:
    """Every AWS resource is created in an allowed region (provider region or its own)."""
    allowed = limits.allowed_regions
    if allowed is None:
        return
    shown = ", ".join(allowed)
    providers: dict[str, tuple[Any, int]] = {}
    for res in stack.resources:
        if not res.resource_type.startswith("aws:"):
            continue
        prov = res.provider
        key = prov.urn if prov is not None else ""
        region = r.val(prov.props, "region") if prov is not None else None
        # pulumi-aws 7 resources may override the provider's region (and report it as an
        # output): only a different region is the resource's own finding.
        own = r.val(res.props, "region")
        if r.is_set(own) and own is not r.UNKNOWN and own != region:
            if own not in allowed:
                yield res.urn, f"{r.label(res)} is placed in {own}; allowed regions: {shown}"
            continue
        seen = providers.get(key)
        providers[key] = (region, (seen[1] if seen else 0) + 1)
    for key, (region, count) in sorted(providers.items()):
        name = key.rsplit("::", 1)[-1] or "default"
        if region is r.UNKNOWN:
            continue
        if not region:
            yield (
                key,
                (
                    f"AWS provider '{name}' sets no region, so the region of its {count} resources "
                    f"cannot be checked; set aws:region (allowed: {shown})"
                ),
            )
        elif region not in allowed:
            yield (
                key,
                (
                    f"AWS provider '{name}' places {count} resources in {region}; "
                    f"allowed regions: {shown}"
                ),
            )


# --------------------------------------------------------------------------------------------
# encryption with customer-managed keys

# type -> (input holding the key, what to set)
_KEY_PROPS = {
    r.LOG_GROUP: ("kmsKeyId", "kmsKeyId"),
    "aws:sns/topic:Topic": ("kmsMasterKeyId", "kmsMasterKeyId (not alias/aws/sns)"),
    "aws:sqs/queue:Queue": ("kmsMasterKeyId", "kmsMasterKeyId (SQS-managed SSE is not a CMK)"),
    "aws:secretsmanager/secret:Secret": ("kmsKeyId", "kmsKeyId"),
    r.TRAIL: ("kmsKeyId", "kmsKeyId"),
    "aws:fsx/lustreFileSystem:LustreFileSystem": ("kmsKeyId", "kmsKeyId"),
}


def _ebs_problem(ebs: Any, key_prop: str) -> str | None:
    if not r.is_true(r.val(ebs, "encrypted")):
        return "is not encrypted"
    if not r.cmk(r.val(ebs, key_prop)):
        return f"uses the AWS-managed EBS key; set {key_prop}"
    return None


def _block_devices(res: PolicyResource) -> Iterator[tuple[str, Any, str]]:
    """(where, ebs settings, key input) for every EBS volume a resource declares."""
    rtype = res.resource_type
    props = res.props
    if rtype == "aws:ec2/launchTemplate:LaunchTemplate":
        for i, bdm in enumerate(r.items(r.val(props, "blockDeviceMappings"))):
            if r.val(bdm, "ebs") is not None:
                yield f"blockDeviceMappings[{i}]", r.val(bdm, "ebs"), "kmsKeyId"
    elif rtype == "aws:ec2/instance:Instance":
        yield "rootBlockDevice", r.val(props, "rootBlockDevice") or {}, "kmsKeyId"
        for i, dev in enumerate(r.items(r.val(props, "ebsBlockDevices"))):
            yield f"ebsBlockDevices[{i}]", dev, "kmsKeyId"
    elif rtype == "aws:ebs/volume:Volume":
        yield "volume", props, "kmsKeyId"
    elif rtype.startswith("kubernetes:karpenter.k8s.aws/") and rtype.endswith(":EC2NodeClass"):
        for i, bdm in enumerate(r.items(r.val(props, "spec", "blockDeviceMappings"))):
            if r.val(bdm, "ebs") is not None:
                yield f"spec.blockDeviceMappings[{i}].ebs", r.val(bdm, "ebs"), "kmsKeyID"


def _sse_problem(res: PolicyResource) -> str | None:
    rules = r.items(r.val(res.props, "rules"))
    if not rules:
        return "sets no default encryption"
    for rule in rules:
        algo = r.val(rule, "applyServerSideEncryptionByDefault", "sseAlgorithm")
        key = r.val(rule, "applyServerSideEncryptionByDefault", "kmsMasterKeyId")
        if algo is r.UNKNOWN:
            continue
        if algo not in ("aws:kms", "aws:kms:dsse"):
            return f"uses {algo}; use aws:kms with a customer-managed kmsMasterKeyId"
        if not r.cmk(key):
            return "uses the AWS-managed aws/s3 key; set kmsMasterKeyId"
    return None


def check_encryption(stack: r.Stack, _limits: r.Limits) -> Iterator[r.Finding]:
    """Data at rest is encrypted with customer-managed KMS keys that rotate."""
    log_targets = stack.access_log_targets()
    for res in stack.resources:
        rtype = r.normalize_type(res.resource_type)
        props = res.props
        if rtype == r.BUCKET_SSE:
            problem = _sse_problem(res)
            targets = stack.refers(res, "bucket", log_targets)
            sse_s3 = all(
                r.val(rule, "applyServerSideEncryptionByDefault", "sseAlgorithm") == "AES256"
                for rule in r.items(r.val(props, "rules"))
            )
            # S3 server access logging delivers only to SSE-S3 buckets (AWS documents SSE-KMS
            # destinations as unsupported), so a declared log destination may use AES256.
            if problem and not (targets and sse_s3):
                yield res.urn, f"bucket encryption {r.label(res)} {problem}"
        elif rtype == r.BUCKET and r.val(props, "serverSideEncryptionConfiguration") is not None:
            # The deprecated inline setting; after deployment the provider also reports the
            # bucket's actual encryption here, which the companion resource already decides.
            if stack.for_bucket(res, r.BUCKET_SSE):
                continue
            default = r.val(props, "serverSideEncryptionConfiguration", "rule")
            default = r.val(default, "applyServerSideEncryptionByDefault")
            if r.val(default, "sseAlgorithm") == "AES256" and res in log_targets:
                continue
            if not r.cmk(r.val(default, "kmsMasterKeyId")):
                yield res.urn, f"{r.label(res)} inline encryption has no customer-managed key"
        elif rtype in _KEY_PROPS:
            prop, what = _KEY_PROPS[rtype]
            if not r.cmk(r.val(props, prop)):
                yield (
                    res.urn,
                    f"{r.label(res)} is not encrypted with a customer-managed key: set {what}",
                )
        elif rtype in r.RDS_TYPES:
            if not r.is_true(r.val(props, "storageEncrypted")) or not r.cmk(
                r.val(props, "kmsKeyId")
            ):
                yield res.urn, f"{r.label(res)} must set storageEncrypted=true and kmsKeyId (a CMK)"
            if r.val(props, "performanceInsightsEnabled") is True and not r.cmk(
                r.val(props, "performanceInsightsKmsKeyId")
            ):
                yield (
                    res.urn,
                    f"{r.label(res)} Performance Insights needs performanceInsightsKmsKeyId",
                )
        elif rtype == "aws:ecr/repository:Repository":
            confs = r.items(r.val(props, "encryptionConfigurations"))
            if not any(
                r.val(c, "encryptionType") in ("KMS", r.UNKNOWN) and r.cmk(r.val(c, "kmsKey"))
                for c in confs
            ):
                yield (
                    res.urn,
                    (
                        f"{r.label(res)} must set encryptionConfigurations "
                        "[{encryptionType: KMS, kmsKey: <CMK>}] (AES256 and the aws/ecr key are not CMKs)"
                    ),
                )
        elif rtype == r.EKS_CLUSTER:
            if not any(
                "secrets" in r.items(r.val(c, "resources"))
                and r.cmk(r.val(c, "provider", "keyArn"))
                for c in r.items(r.val(props, "encryptionConfig"))
            ):
                yield res.urn, f"{r.label(res)} must envelope-encrypt secrets with a CMK"
        elif rtype == "aws:efs/fileSystem:FileSystem":
            if not r.is_true(r.val(props, "encrypted")) or not r.cmk(r.val(props, "kmsKeyId")):
                yield res.urn, f"{r.label(res)} must set encrypted=true and kmsKeyId"
        elif rtype == "aws:dynamodb/table:Table":
            if not r.is_true(r.val(props, "serverSideEncryption", "enabled")) or not r.cmk(
                r.val(props, "serverSideEncryption", "kmsKeyArn")
            ):
                yield res.urn, f"{r.label(res)} must set serverSideEncryption with a kmsKeyArn"
        elif rtype == "aws:kms/key:Key":
            spec = r.val(props, "customerMasterKeySpec") or r.val(props, "keySpec")
            symmetric = spec in (None, r.UNKNOWN, "SYMMETRIC_DEFAULT")
            if symmetric and not r.is_true(r.val(props, "enableKeyRotation")):
                yield res.urn, f"{r.label(res)} must rotate (enableKeyRotation=true)"
        elif rtype.startswith("kubernetes:storage.k8s.io/") and rtype.endswith(":StorageClass"):
            if r.val(props, "provisioner") not in r.EBS_PROVISIONERS:
                continue
            params = r.val(props, "parameters") or {}
            if not r.is_true(r.val(params, "encrypted")) or not r.cmk(r.val(params, "kmsKeyId")):
                yield (
                    res.urn,
                    (
                        f'EBS {r.label(res)} must set parameters encrypted: "true" and kmsKeyId (a CMK)'
                    ),
                )
        else:
            declared = list(_block_devices(res))
            if rtype == "aws:ec2/launchTemplate:LaunchTemplate" and not declared:
                yield (
                    res.urn,
                    (
                        f"{r.label(res)} declares no EBS block device, so the root volume takes the "
                        "AMI's encryption; map it with encrypted=true and a kmsKeyId"
                    ),
                )
            for where, ebs, key_prop in declared:
                problem = _ebs_problem(ebs, key_prop)
                if problem:
                    yield res.urn, f"{r.label(res)} {where} {problem}"


# --------------------------------------------------------------------------------------------
# audit logging and its retention


def check_audit_logging(stack: r.Stack, _limits: r.Limits) -> Iterator[r.Finding]:
    """Control-plane audit logs, S3 access logs, VPC flow logs and database logs are on."""
    for cluster in stack.of(r.EKS_CLUSTER):
        enabled = r.items(r.val(cluster.props, "enabledClusterLogTypes"))
        missing = [t for t in r.EKS_AUDIT_LOG_TYPES if t not in enabled]
        if missing and r.UNKNOWN not in enabled:
            yield (
                cluster.urn,
                f"{r.label(cluster)} must enable control-plane logs: {', '.join(missing)}",
            )
    logged = stack.logged_buckets()
    for bucket in stack.data_buckets():
        # `loggings`/`logging`: the deprecated inline setting (and, deployed, the actual state)
        inline = r.items(r.val(bucket.props, "loggings")) + r.items(r.val(bucket.props, "logging"))
        if bucket.urn not in logged and not inline:
            yield (
                bucket.urn,
                (
                    f"{r.label(bucket)} has no server access logging (aws.s3.BucketLogging to a log bucket)"
                ),
            )
    vpcs = stack.of("aws:ec2/vpc:Vpc")
    flowed = {
        v.urn for f in stack.of("aws:ec2/flowLog:FlowLog") for v in stack.refers(f, "vpcId", vpcs)
    }
    for vpc in vpcs:
        if vpc.urn not in flowed:
            yield vpc.urn, f"{r.label(vpc)} has no flow log (aws.ec2.FlowLog with trafficType ALL)"
    for db in stack.of(*r.RDS_TYPES):
        if (
            not r.items(r.val(db.props, "enabledCloudwatchLogsExports"))
            and r.val(db.props, "enabledCloudwatchLogsExports") is not r.UNKNOWN
        ):
            yield db.urn, f"{r.label(db)} exports no logs (enabledCloudwatchLogsExports)"
    for trail in stack.of(r.TRAIL):
        props = trail.props
        for key, what in (
            ("isMultiRegionTrail", "record every region (isMultiRegionTrail=true)"),
            ("enableLogFileValidation", "validate log files (enableLogFileValidation=true)"),
        ):
            if not r.is_true(r.val(props, key)):
                yield trail.urn, f"{r.label(trail)} must {what}"
        if r.val(props, "enableLogging") is False:
            yield trail.urn, f"{r.label(trail)} has logging turned off"


def check_log_retention(stack: r.Stack, limits: r.Limits) -> Iterator[r.Finding]:
    """Log groups and access-log buckets keep logs at least the profile's minimum."""
    need = limits.audit_log_min_days
    for group in stack.of(r.LOG_GROUP):
        days = r.number(r.val(group.props, "retentionInDays"))
        if days is not None and 0 < days < need:
            yield group.urn, f"{r.label(group)} keeps logs {days:g} days; the minimum is {need}"
    buckets = stack.buckets()
    seen: set[tuple[str, str]] = set()
    for logging in stack.of(r.BUCKET_LOGGING):
        prefix = r.val(logging.props, "targetPrefix")
        prefix = prefix if isinstance(prefix, str) else ""
        for target in stack.refers(logging, "targetBucket", buckets):
            if (target.urn, prefix) in seen:
                continue
            seen.add((target.urn, prefix))
            days = r.expiration_days(stack, target, prefix)
            if days is not None and days < need:
                yield (
                    target.urn,
                    (
                        f"access-log {r.label(target)} expires {prefix or 'logs'} after {days:g} days; "
                        f"the minimum is {need}"
                    ),
                )


# --------------------------------------------------------------------------------------------
# raw inference logs: maximum retention


def check_inference_logs(stack: r.Stack, limits: r.Limits) -> Iterator[r.Finding]:
    """Each project's raw inference log under the model bucket expires within the maximum."""
    most = limits.inference_log_max_days
    projects = stack.projects()
    for bucket in stack.model_buckets():
        for project in projects:
            prefix = r.inference_log_prefix(project)
            found = r.retention_of(stack, bucket, prefix)
            if found is None:
                yield (
                    bucket.urn,
                    (
                        f"{r.label(bucket)} keeps {prefix} forever: add a lifecycle rule expiring it "
                        f"(and its noncurrent versions) within {most} days"
                    ),
                )
            elif found[0] > most:
                yield (
                    bucket.urn,
                    (
                        f"{r.label(bucket)} keeps {prefix} up to {found[0]:g} days ({found[1]}); "
                        f"the maximum is {most}"
                    ),
                )


# --------------------------------------------------------------------------------------------
# no public endpoints

_SCHEME = "alb.ingress.kubernetes.io/scheme"
_SVC_SCHEME = "service.beta.kubernetes.io/aws-load-balancer-scheme"
_SVC_INTERNAL = "service.beta.kubernetes.io/aws-load-balancer-internal"


def check_public_endpoints(stack: r.Stack, _limits: r.Limits) -> Iterator[r.Finding]:
    """Nothing is reachable from the internet: private EKS API, internal load balancers,
    no public IPs, no publicly accessible databases (public S3 is the base pack's s3 rules)."""
    for cluster in stack.of(r.EKS_CLUSTER):
        if r.val(cluster.props, "vpcConfig", "endpointPublicAccess") in (None, True, "true"):
            yield (
                cluster.urn,
                (
                    f"{r.label(cluster)} has a public API endpoint (set endpointPublicAccess=false; "
                    "CIDR allow-lists still expose it)"
                ),
            )
    for lb in stack.of("aws:lb/loadBalancer:LoadBalancer", "aws:alb/loadBalancer:LoadBalancer"):
        if r.val(lb.props, "internal") not in (True, "true", r.UNKNOWN):
            yield lb.urn, f"{r.label(lb)} is internet-facing (set internal=true)"
    for lb in stack.of("aws:elb/loadBalancer:LoadBalancer"):
        if r.val(lb.props, "internal") not in (True, "true", r.UNKNOWN):
            yield lb.urn, f"{r.label(lb)} is internet-facing (set internal=true)"
    for ing in stack.kube("Ingress", "networking.k8s.io"):
        if r.val(ing.props, "metadata", "annotations", _SCHEME) == "internet-facing":
            yield ing.urn, f"Ingress '{ing.name}' asks for an internet-facing ALB ({_SCHEME})"
    for params in stack.kube("IngressClassParams", "elbv2.k8s.aws"):
        if r.val(params.props, "spec", "scheme") == "internet-facing":
            yield params.urn, f"IngressClassParams '{params.name}' makes ALBs internet-facing"
    for svc in stack.kube("Service", "core"):
        if r.val(svc.props, "spec", "type") != "LoadBalancer":
            continue
        notes = r.val(svc.props, "metadata", "annotations") or {}
        internal = r.val(notes, _SVC_SCHEME) == "internal" or r.is_true(
            r.val(notes, _SVC_INTERNAL) or ""
        )
        if not internal:
            yield (
                svc.urn,
                (
                    f"Service '{svc.name}' of type LoadBalancer is internet-facing unless annotated "
                    f"{_SVC_SCHEME}: internal"
                ),
            )
    for db in stack.of(*r.RDS_TYPES):
        if (
            r.is_true(r.val(db.props, "publiclyAccessible") or False)
            and r.val(db.props, "publiclyAccessible") is not r.UNKNOWN
        ):
            yield db.urn, f"{r.label(db)} is publicly accessible"
    for subnet in stack.of("aws:ec2/subnet:Subnet"):
        if r.val(subnet.props, "mapPublicIpOnLaunch") is True:
            yield (
                subnet.urn,
                f"{r.label(subnet)} gives every instance a public IP (mapPublicIpOnLaunch)",
            )
    for lt in stack.of("aws:ec2/launchTemplate:LaunchTemplate"):
        for i, nic in enumerate(r.items(r.val(lt.props, "networkInterfaces"))):
            if r.val(nic, "associatePublicIpAddress") in (True, "true"):
                yield lt.urn, f"{r.label(lt)} networkInterfaces[{i}] associates a public IP"
    for inst in stack.of("aws:ec2/instance:Instance"):
        if r.val(inst.props, "associatePublicIpAddress") is True:
            yield inst.urn, f"{r.label(inst)} has a public IP"
    for nc in stack.kube("EC2NodeClass", "karpenter.k8s.aws"):
        if r.val(nc.props, "spec", "associatePublicIPAddress") is True:
            yield nc.urn, f"EC2NodeClass '{nc.name}' gives nodes public IPs"


# --------------------------------------------------------------------------------------------
# backups


def check_backups(stack: r.Stack, limits: r.Limits) -> Iterator[r.Finding]:
    """Databases keep automated backups and a final snapshot; data buckets are r.versioned, and
    locked where the profile asks for it."""
    need = limits.backup_min_days
    for db in stack.of(*r.RDS_TYPES):
        props = db.props
        days = r.number(r.val(props, "backupRetentionPeriod"))
        if r.val(props, "backupRetentionPeriod") is not r.UNKNOWN and (days or 0) < need:
            shown = "unset" if days is None else f"{days:g} days"
            yield (
                db.urn,
                f"{r.label(db)} keeps automated backups {shown}; the minimum is {need} days",
            )
        if r.val(props, "skipFinalSnapshot") is True:
            yield db.urn, f"{r.label(db)} skips the final snapshot on delete"
        if r.normalize_type(db.resource_type) == r.RDS_TYPES[0] and r.val(
            props, "deleteAutomatedBackups"
        ) in (None, True):
            yield (
                db.urn,
                f"{r.label(db)} deletes its automated backups with it (deleteAutomatedBackups)",
            )
        if r.val(props, "deletionProtection") not in (True, r.UNKNOWN):
            yield db.urn, f"{r.label(db)} has no deletion protection"
    for table in stack.of("aws:dynamodb/table:Table"):
        if not r.is_true(r.val(table.props, "pointInTimeRecovery", "enabled") or False):
            yield table.urn, f"{r.label(table)} has no point-in-time recovery"
    for bucket in stack.data_buckets():
        if not r.versioned(stack, bucket, enabled=True):
            yield bucket.urn, f"{r.label(bucket)} does not version new writes (status Enabled)"
    if limits.object_lock:
        for bucket in stack.model_buckets():
            if r.val(bucket.props, "objectLockEnabled") not in (True, r.UNKNOWN) or not r.lock_days(
                stack, bucket
            ):
                yield (
                    bucket.urn,
                    (
                        f"{r.label(bucket)} needs object lock with a default retention "
                        "(modelStore.objectLock.enabled: true)"
                    ),
                )
