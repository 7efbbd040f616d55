"""The model registry's database: RDS PostgreSQL, in-cluster PostgreSQL or SQLite on a volume.

Part of :mod:`components.model_registry` (its children keep that component as their parent). The
password is generated and reaches pods only as mounted Secret files; :class:`DatabaseWiring` is
what the tracking server needs from here (backend and auth-store URIs, volumes, mounts).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
from pydantic import Field

from components.common import (
    ArgsModel,
    Issue,
    check_image,
    container_security_context,
    pod_security_context,
)
from components.generated_secret import GeneratedSecret

APP = "mlflow"
DB_PORT = 5432
DB_NAME = "mlflow"
# MLflow's auth store keeps its own alembic history, so it needs a database of its own.
AUTH_DB_NAME = "mlflow_auth"
DB_USER = "mlflow"
DB_URI_DIR = "/etc/mlflow/db"
PG_CREDENTIALS_MOUNT = "/etc/postgres/credentials"
SQLITE_DIR = "/mlflow/db"
# The newest 16.x of the official image (docker-library/postgres versions.json, 2026-02-26:
# 16.13, bookworm variant, amd64 and arm64). The major stays 16: a new major cannot open an
# existing data directory without pg_upgrade.
POSTGRES_IMAGE = "docker.io/library/postgres:16.13-bookworm"
DIGEST_SKIP = (
    "CKV_K8S_43=tags are pinned and validated (never latest) and pulled with imagePullPolicy "
    "Always; set the image to name:tag@sha256:... to pin a digest instead"
)


def pull_policy(image: str) -> str:
    """A digest cannot move; a tag can, so the kubelet checks it with the registry at each start."""
    return "IfNotPresent" if "@sha256:" in image else "Always"


def checkov_skips(*reasons: str) -> dict[str, str]:
    """In-line checkov skips, each "CHECK_ID=reason", as annotations on the object."""
    return {f"checkov.io/skip{i}": reason for i, reason in enumerate(reasons, 1)}


def labels(component: str = APP) -> dict[str, str]:
    return {"app.kubernetes.io/name": component, "app.kubernetes.io/part-of": "mlplatform"}


def meta(
    name: str, namespace: str, component: str = APP, annotations: dict[str, str] | None = None
) -> Any:
    out: dict[str, Any] = {"name": name, "namespace": namespace, "labels": labels(component)}
    if annotations:
        out["annotations"] = annotations
    return out


class Resources(ArgsModel):
    cpu_request: str = "250m"
    memory_request: str = "512Mi"
    cpu_limit: str = "1"
    memory_limit: str = "1Gi"

    def spec(self) -> dict[str, Any]:
        return {
            "requests": {"cpu": self.cpu_request, "memory": self.memory_request},
            "limits": {"cpu": self.cpu_limit, "memory": self.memory_limit},
        }


class RdsDatabase(ArgsModel):
    """Amazon RDS for PostgreSQL (AWS stacks)."""

    kind: Literal["rds"] = "rds"
    instance_class: str = "db.t4g.small"
    # Major version pinned; minor security releases applied in the maintenance window.
    engine_version: str = "16"
    allocated_storage_gib: int = Field(20, ge=20, le=65536)
    max_allocated_storage_gib: int = Field(100, ge=20, le=65536)
    backup_retention_days: int = Field(7, ge=7, le=35)
    multi_az: bool = False

    def issues(self) -> list[Issue]:
        found = super().issues()
        if self.max_allocated_storage_gib < self.allocated_storage_gib:
            found.append(
                Issue(
                    ("maxAllocatedStorageGib",),
                    f"must be >= allocatedStorageGib ({self.allocated_storage_gib})",
                )
            )
        if not re.match(r"^\d+(\.\d+)?$", self.engine_version):
            found.append(
                Issue(("engineVersion",), f"must be like 16 or 16.8, got {self.engine_version!r}")
            )
        return found

    @property
    def family(self) -> str:
        return f"postgres{self.engine_version.split('.')[0]}"


class InClusterPostgres(ArgsModel):
    """A single PostgreSQL pod with a volume (dev and local stacks)."""

    kind: Literal["postgres"] = "postgres"
    image: str = POSTGRES_IMAGE
    storage_gib: int = Field(10, ge=1)
    # None: the cluster's default class (on AWS the platform names its encrypted gp3 class).
    storage_class: str | None = None
    resources: Resources = Field(
        default_factory=lambda: Resources(cpu_request="100m", memory_request="256Mi")
    )

    def issues(self) -> list[Issue]:
        return super().issues() + check_image("image", self.image)


class SqliteDatabase(ArgsModel):
    """SQLite on a volume (local stack, one replica only)."""

    kind: Literal["sqlite"] = "sqlite"
    storage_gib: int = Field(5, ge=1)
    storage_class: str | None = None


def pvc_spec(size_gib: int, storage_class: str | None) -> Any:
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": f"{size_gib}Gi"}},
    }
    if storage_class:
        spec["storageClassName"] = storage_class
    return spec


@dataclass
class DatabaseWiring:
    """What the tracking server needs from its database."""

    # Plain when it holds no secret (SQLite); otherwise None and read from DB_URI_DIR.
    backend_uri: str | None
    # The auth store's URI: plain for SQLite, else an Output (secret) for the auth config.
    auth_uri: Any
    # True when the auth database must be created before the server starts (PostgreSQL).
    create_auth_db: bool
    volumes: list[dict[str, Any]] = field(default_factory=list)
    mounts: list[dict[str, Any]] = field(default_factory=list)
    pod_deps: list[pulumi.Resource] = field(default_factory=list)
    endpoint: pulumi.Output[str] | None = None
    secret_arn: pulumi.Output[str] | None = None


def postgres_network_policy(namespace: str) -> dict[str, Any]:
    """Only the MLflow pods reach PostgreSQL; PostgreSQL reaches nothing."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": f"{APP}-postgres", "namespace": namespace},
        "spec": {
            "podSelector": {"matchLabels": labels(f"{APP}-postgres")},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [
                {
                    "from": [{"podSelector": {"matchLabels": labels()}}],
                    "ports": [{"protocol": "TCP", "port": DB_PORT}],
                }
            ],
            "egress": [],
        },
    }


def postgres_statefulset(
    db: InClusterPostgres,
    namespace: str,
    *,
    protect: bool,
    storage_class: str | None,
    node_selector: dict[str, str],
) -> dict[str, Any]:
    """The in-cluster PostgreSQL StatefulSet, its data on a claim of ``storage_class``."""
    pg = f"{APP}-postgres"
    uid = 999  # the postgres user in the official Debian image
    skips = [
        "CKV_K8S_40=999 is the official image's postgres user, which owns the data "
        "directory of every existing volume; another UID would not start on them"
    ]
    if "@sha256:" not in db.image:
        skips.append(DIGEST_SKIP)
    pg_ready = {"exec": {"command": ["pg_isready", "-U", DB_USER, "-d", DB_NAME]}}
    container = {
        "name": "postgres",
        "image": db.image,
        "imagePullPolicy": pull_policy(db.image),
        # The image's entrypoint reads *_FILE variables at initdb.
        "env": [
            {"name": "POSTGRES_USER", "value": DB_USER},
            {"name": "POSTGRES_DB", "value": DB_NAME},
            {"name": "POSTGRES_PASSWORD_FILE", "value": f"{PG_CREDENTIALS_MOUNT}/password"},
            {"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"},
        ],
        "ports": [{"name": "postgres", "containerPort": DB_PORT, "protocol": "TCP"}],
        # Crash recovery can take a while: liveness starts only once the startup probe passed.
        "startupProbe": {**pg_ready, "periodSeconds": 10, "failureThreshold": 60},
        "readinessProbe": {**pg_ready, "periodSeconds": 10},
        "livenessProbe": {
            **pg_ready,
            "periodSeconds": 20,
            "timeoutSeconds": 5,
            "failureThreshold": 6,
        },
        "securityContext": container_security_context(uid=uid),
        "resources": db.resources.spec(),
        "volumeMounts": [
            {"name": "data", "mountPath": "/var/lib/postgresql/data"},
            {"name": "run", "mountPath": "/var/run/postgresql"},
            {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108
            {"name": "credentials", "mountPath": PG_CREDENTIALS_MOUNT, "readOnly": True},
        ],
    }
    pod: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "securityContext": pod_security_context(uid=uid, fs_group=uid),
        "containers": [container],
        "volumes": [
            {"name": "run", "emptyDir": {}},
            {"name": "tmp", "emptyDir": {}},
            {"name": "credentials", "secret": {"secretName": pg, "defaultMode": 0o440}},
        ],
    }
    if node_selector:
        pod["nodeSelector"] = dict(node_selector)
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": meta(pg, namespace, pg, annotations=checkov_skips(*skips)),
        "spec": {
            "serviceName": pg,
            "replicas": 1,
            "selector": {"matchLabels": labels(pg)},
            "template": {"metadata": {"labels": labels(pg)}, "spec": pod},
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data"},
                    "spec": pvc_spec(db.storage_gib, db.storage_class or storage_class),
                }
            ],
            "persistentVolumeClaimRetentionPolicy": {
                "whenDeleted": "Retain" if protect else "Delete",
                "whenScaled": "Retain",
            },
        },
    }


def _postgres_uri(password: Any, host: Any, database: str, sslmode: str) -> pulumi.Output[str]:
    return pulumi.Output.concat(
        f"postgresql://{DB_USER}:", password, "@", host, f":{DB_PORT}/{database}?sslmode={sslmode}"
    )


def declare_database(
    owner: pulumi.ComponentResource,
    name: str,
    db: RdsDatabase | InClusterPostgres | SqliteDatabase,
    *,
    namespace: str,
    protect: bool,
    storage_class: str | None,
    node_selector: dict[str, str],
    network_policy: bool,
    k8s_opts: pulumi.ResourceOptions,
    rds: Any = None,
) -> DatabaseWiring:
    """Declare the database (children of ``owner``) and return how the server reaches it.

    ``rds`` is a callable declaring the RDS instance (AWS only), given the password resource.
    """
    keep = pulumi.ResourceOptions(protect=protect, retain_on_delete=protect)
    if isinstance(db, SqliteDatabase):
        pvc = k8s.core.v1.PersistentVolumeClaim(
            f"{name}-db",
            metadata=meta(f"{APP}-db", namespace),
            spec=pvc_spec(db.storage_gib, db.storage_class or storage_class),
            opts=pulumi.ResourceOptions.merge(k8s_opts, keep),
        )
        return DatabaseWiring(
            backend_uri=f"sqlite:///{SQLITE_DIR}/mlflow.db",
            auth_uri=f"sqlite:///{SQLITE_DIR}/auth.db",
            create_auth_db=False,
            volumes=[{"name": "db", "persistentVolumeClaim": {"claimName": f"{APP}-db"}}],
            mounts=[{"name": "db", "mountPath": SQLITE_DIR}],
            pod_deps=[pvc],
        )
    password = GeneratedSecret(
        f"{name}-db-password",
        length=32,  # alphanumeric: safe unescaped in URIs and configs
        opts=pulumi.ResourceOptions(parent=owner),
    )
    wiring = DatabaseWiring(backend_uri=None, auth_uri=None, create_auth_db=True)
    if isinstance(db, RdsDatabase):
        host, wiring.endpoint, wiring.secret_arn = rds(password)
        sslmode = "require"
    else:
        host = pulumi.Output.from_input(f"{APP}-postgres.{namespace}.svc.cluster.local")
        sslmode = "disable"  # pod-to-pod inside the namespace, NetworkPolicy-fenced
        _declare_postgres(
            name,
            db,
            namespace,
            password,
            k8s_opts,
            protect=protect,
            storage_class=storage_class,
            node_selector=node_selector,
            network_policy=network_policy,
        )
    # Secret because password.result is: the URIs never show in plain text.
    uri = _postgres_uri(password.result, host, DB_NAME, sslmode)
    wiring.auth_uri = _postgres_uri(password.result, host, AUTH_DB_NAME, sslmode)
    wiring.pod_deps.append(
        k8s.core.v1.Secret(
            f"{name}-db-uri",
            metadata=meta(f"{APP}-db", namespace),
            type="Opaque",
            string_data={"backend-store-uri": uri},
            opts=k8s_opts,
        )
    )
    wiring.volumes.append(
        {"name": "db-uri", "secret": {"secretName": f"{APP}-db", "defaultMode": 0o440}}
    )
    wiring.mounts.append({"name": "db-uri", "mountPath": DB_URI_DIR, "readOnly": True})
    return wiring


def _declare_postgres(
    name: str,
    db: InClusterPostgres,
    namespace: str,
    password: GeneratedSecret,
    k8s_opts: pulumi.ResourceOptions,
    *,
    protect: bool,
    storage_class: str | None,
    node_selector: dict[str, str],
    network_policy: bool,
) -> None:
    pg = f"{APP}-postgres"
    k8s.core.v1.Secret(
        f"{name}-postgres-credentials",
        metadata=meta(pg, namespace, pg),
        type="Opaque",
        string_data={"password": password.result},
        opts=k8s_opts,
    )
    sts = postgres_statefulset(
        db, namespace, protect=protect, storage_class=storage_class, node_selector=node_selector
    )
    k8s.apps.v1.StatefulSet(
        f"{name}-postgres",
        metadata=sts["metadata"],
        spec=sts["spec"],
        opts=pulumi.ResourceOptions.merge(
            k8s_opts, pulumi.ResourceOptions(protect=protect, retain_on_delete=protect)
        ),
    )
    service: Any = {
        "type": "ClusterIP",
        "selector": labels(pg),
        "ports": [{"name": "postgres", "port": DB_PORT, "targetPort": "postgres"}],
    }
    k8s.core.v1.Service(
        f"{name}-postgres-service",
        metadata=meta(pg, namespace, pg),
        spec=service,
        opts=k8s_opts,
    )
    if network_policy:
        np = postgres_network_policy(namespace)
        k8s.networking.v1.NetworkPolicy(
            f"{name}-postgres-netpol", metadata=np["metadata"], spec=np["spec"], opts=k8s_opts
        )


@dataclass(frozen=True)
class RdsInputs:
    vpc_id: Any
    private_subnet_ids: Any
    client_security_group_ids: Any
    kms_key_arn: Any
    tags: dict[str, str]


def declare_rds(
    owner: pulumi.ComponentResource,
    name: str,
    db: RdsDatabase,
    net: RdsInputs,
    password: GeneratedSecret,
    *,
    protect: bool,
) -> tuple[pulumi.Output[str], pulumi.Output[str], pulumi.Output[str]]:
    """RDS PostgreSQL: private, TLS only, encrypted, reachable from the cluster only. Returns
    (address, endpoint, credentials secret ARN)."""
    child = pulumi.ResourceOptions(parent=owner)
    keep = pulumi.ResourceOptions(parent=owner, protect=protect, retain_on_delete=protect)
    sg = aws.ec2.SecurityGroup(
        f"{name}-db-sg",
        vpc_id=net.vpc_id,
        description="MLflow PostgreSQL: 5432 from the cluster only",
        tags=net.tags,
        opts=child,
    )
    for i, source in enumerate(net.client_security_group_ids):
        aws.vpc.SecurityGroupIngressRule(
            f"{name}-db-from-cluster-{i}",
            security_group_id=sg.id,
            referenced_security_group_id=source,
            ip_protocol="tcp",
            from_port=DB_PORT,
            to_port=DB_PORT,
            description="PostgreSQL from the EKS cluster",
            opts=pulumi.ResourceOptions(parent=sg),
        )
    subnets = aws.rds.SubnetGroup(
        f"{name}-db-subnets",
        subnet_ids=net.private_subnet_ids,
        description="MLflow PostgreSQL: private subnets",
        tags=net.tags,
        opts=child,
    )
    params = aws.rds.ParameterGroup(
        f"{name}-db-params",
        family=db.family,
        description="MLflow PostgreSQL: TLS only",
        parameters=[
            {"name": "rds.force_ssl", "value": "1"},
            {"name": "log_connections", "value": "1"},
        ],
        tags=net.tags,
        opts=child,
    )
    final_snapshot = re.sub(
        r"[^a-zA-Z0-9-]", "-", f"{pulumi.get_project()}-{pulumi.get_stack()}-{name}-final"
    )
    instance = aws.rds.Instance(
        f"{name}-db",
        engine="postgres",
        engine_version=db.engine_version,
        auto_minor_version_upgrade=True,
        instance_class=db.instance_class,
        allocated_storage=db.allocated_storage_gib,
        max_allocated_storage=db.max_allocated_storage_gib,
        storage_type="gp3",
        storage_encrypted=True,
        kms_key_id=net.kms_key_arn,
        db_name=DB_NAME,
        username=DB_USER,
        password=password.result,
        port=DB_PORT,
        db_subnet_group_name=subnets.name,
        vpc_security_group_ids=[sg.id],
        parameter_group_name=params.name,
        publicly_accessible=False,
        multi_az=db.multi_az,
        backup_retention_period=db.backup_retention_days,
        backup_window="03:00-04:00",
        maintenance_window="sun:04:30-sun:05:30",
        copy_tags_to_snapshot=True,
        deletion_protection=protect,
        skip_final_snapshot=not protect,
        final_snapshot_identifier=final_snapshot if protect else None,
        delete_automated_backups=not protect,
        enabled_cloudwatch_logs_exports=["postgresql", "upgrade"],
        ca_cert_identifier="rds-ca-rsa2048-g1",
        tags=net.tags,
        opts=keep,
    )
    secret = aws.secretsmanager.Secret(
        f"{name}-db-secret",
        description="MLflow PostgreSQL credentials",
        kms_key_id=net.kms_key_arn,
        recovery_window_in_days=30 if protect else 0,
        tags=net.tags,
        opts=keep,
    )
    aws.secretsmanager.SecretVersion(
        f"{name}-db-secret-value",
        secret_id=secret.id,
        secret_string=pulumi.Output.all(password.result, instance.address).apply(
            lambda a: json.dumps(
                {
                    "engine": "postgres",
                    "username": DB_USER,
                    "password": a[0],
                    "host": a[1],
                    "port": DB_PORT,
                    "dbname": DB_NAME,
                }
            )
        ),
        opts=pulumi.ResourceOptions(parent=secret),
    )
    return instance.address, instance.endpoint, secret.arn
