"""The model store as a file system (builders for ModelStore): the Mountpoint for S3 CSI driver
add-on, and FSx for Lustre linked to the bucket."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components.model_store_args import FsxArgs, MountpointArgs
from components.project_access import AccessLevel, pod_identity_role, s3_prefix_policy

MOUNTPOINT_ADDON = "aws-mountpoint-s3-csi-driver"
MOUNTPOINT_SERVICE_ACCOUNT = "s3-csi-driver-sa"
# Lustre LNET ports (988) and the extra range used by the client (1018-1023).
LUSTRE_PORTS = ((988, 988), (1018, 1023))


@dataclass(frozen=True)
class StoreNetwork:
    """Where FSx for Lustre goes (only needed with ``fsx.enabled``)."""

    vpc_id: Any  # pulumi.Input[str]
    subnet_id: Any  # one private subnet (Lustre file systems live in one AZ)
    client_security_group_ids: Sequence[Any] = ()  # e.g. the EKS cluster/node security groups


def mountpoint_driver(
    parent: pulumi.Resource,
    name: str,
    args: MountpointArgs,
    *,
    cluster_name: pulumi.Input[str],
    bucket: aws.s3.Bucket,
    key: aws.kms.Key,
    tags: dict[str, str],
) -> pulumi.Output[str]:
    """The add-on with a Pod Identity role on the whole bucket; returns the role's ARN."""
    access = AccessLevel.READ if args.read_only else AccessLevel.READ_WRITE

    def mountpoint_policy(r: pulumi.Output[str]) -> pulumi.Output[dict[str, Any]]:
        return pulumi.Output.all(r, bucket.arn, key.arn).apply(
            lambda a: s3_prefix_policy(
                bucket_arn=a[1], prefix="", access=access, kms_key_arn=a[2], region=a[0]
            )
        )

    role, role_policy = pod_identity_role(
        parent,
        f"{name}-mountpoint",
        cluster_name=cluster_name,
        policy_for=mountpoint_policy,
        description=f"Mountpoint for S3 CSI driver ({access.value}) on {name}",
        tags=tags,
    )
    aws.eks.Addon(
        f"{name}-mountpoint-s3-csi",
        cluster_name=cluster_name,
        addon_name=MOUNTPOINT_ADDON,
        addon_version=args.addon_version,
        pod_identity_associations=[
            {"role_arn": role.arn, "service_account": MOUNTPOINT_SERVICE_ACCOUNT}
        ],
        resolve_conflicts_on_create="OVERWRITE",
        resolve_conflicts_on_update="PRESERVE",
        tags=tags,
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[role_policy]),
    )
    return role.arn


def lustre_file_system(
    parent: pulumi.Resource,
    name: str,
    fsx: FsxArgs,
    *,
    network: StoreNetwork,
    key: aws.kms.Key,
    bucket: aws.s3.Bucket,
    bucket_ready: list[Any],
    keep: pulumi.ResourceOptions,
    tags: dict[str, str],
) -> aws.fsx.LustreFileSystem:
    """The file system in its own security group, linked to ``fsx.bucket_prefix`` of the
    bucket; ``keep``: the store's options for stateful resources."""
    sg = _lustre_security_group(parent, name, network, tags)
    persistent = fsx.deployment_type == "PERSISTENT_2"
    fs = aws.fsx.LustreFileSystem(
        f"{name}-fsx",
        deployment_type=fsx.deployment_type,
        storage_capacity=fsx.storage_capacity_gib,
        storage_type="SSD",
        per_unit_storage_throughput=fsx.per_unit_storage_throughput if persistent else None,
        subnet_ids=network.subnet_id,
        security_group_ids=[sg.id],
        kms_key_id=key.arn if persistent else None,
        data_compression_type="LZ4",
        file_system_type_version="2.15",
        automatic_backup_retention_days=fsx.automatic_backup_retention_days if persistent else None,
        copy_tags_to_backups=True if persistent else None,
        skip_final_backup=not keep.protect if persistent else None,
        tags=tags,
        opts=pulumi.ResourceOptions.merge(keep, pulumi.ResourceOptions(depends_on=[sg])),
    )
    aws.fsx.DataRepositoryAssociation(
        f"{name}-fsx-link",
        file_system_id=fs.id,
        file_system_path=fsx.file_system_path,
        data_repository_path=pulumi.Output.concat("s3://", bucket.bucket, "/", fsx.bucket_prefix),
        batch_import_meta_data_on_create=True,
        # Never delete bucket data when the link goes away.
        delete_data_in_filesystem=False,
        s3={
            "auto_import_policy": {"events": ["NEW", "CHANGED", "DELETED"]},
            "auto_export_policy": {"events": ["NEW", "CHANGED", "DELETED"]},
        },
        tags=tags,
        opts=pulumi.ResourceOptions(parent=fs, depends_on=bucket_ready),
    )
    return fs


def _lustre_security_group(
    parent: pulumi.Resource, name: str, network: StoreNetwork, tags: dict[str, str]
) -> aws.ec2.SecurityGroup:
    sg = aws.ec2.SecurityGroup(
        f"{name}-fsx-sg",
        vpc_id=network.vpc_id,
        description="FSx for Lustre: Lustre traffic from itself and the cluster only",
        tags=tags,
        opts=pulumi.ResourceOptions(parent=parent),
    )
    sg_opts = pulumi.ResourceOptions(parent=sg)
    sources: list[tuple[str, Any]] = [("self", sg.id)] + [
        (f"client{i}", sg_id) for i, sg_id in enumerate(network.client_security_group_ids)
    ]
    for label, source in sources:
        for low, high in LUSTRE_PORTS:
            aws.vpc.SecurityGroupIngressRule(
                f"{name}-fsx-{label}-{low}",
                security_group_id=sg.id,
                referenced_security_group_id=source,
                ip_protocol="tcp",
                from_port=low,
                to_port=high,
                description=f"Lustre {low}-{high} from {label}",
                opts=sg_opts,
            )
    # Lustre servers talk to each other within the group.
    for low, high in LUSTRE_PORTS:
        aws.vpc.SecurityGroupEgressRule(
            f"{name}-fsx-egress-{low}",
            security_group_id=sg.id,
            referenced_security_group_id=sg.id,
            ip_protocol="tcp",
            from_port=low,
            to_port=high,
            description=f"Lustre {low}-{high} within the file system",
            opts=sg_opts,
        )
    return sg
