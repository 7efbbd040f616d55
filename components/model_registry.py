"""MLflow tracking server and model registry on the cluster.

* Pinned image; the Python drivers the stock image lacks (boto3, psycopg2) are pinned too.
* Database, a typed choice: RDS PostgreSQL on AWS (KMS-encrypted, backups >= 7 days, deletion
  protection and a final snapshot when protected, private subnets, reachable only from the
  cluster's security groups), or in-cluster PostgreSQL / SQLite on a PVC for the local stack.
* The database password is generated (GeneratedSecret), kept in Secrets Manager (KMS) and in a
  Kubernetes Secret; it never appears in stack config. Pods read it from a mounted file, never
  from the pod spec's env or a command line.
* Images from the upstream publishers, pinned by tag (validated, never latest) and pulled with
  ``Always`` so a moved tag is noticed, or pinned by digest. Scanner exceptions are recorded
  in-line (checkov annotations) or in ``.trivyignore.yaml``, each with its reason.
* Artifacts are proxied by the server (``--serve-artifacts``) into the model store under
  ``mlflow/``: on AWS through EKS Pod Identity (no static keys), locally in MinIO.
* Reached through an internal ClusterIP Service; an ingress is optional and must be authenticated.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
from pydantic import Field

from components.common import (
    RESTRICTED_NAMESPACE_LABELS,
    ArgsModel,
    InvalidArgsError,
    Issue,
    KubeTarget,
    StorageBackend,
    check_cidr,
    check_dns_label,
    check_image,
    container_security_context,
    merge_tags,
    pod_security_context,
)
from components.generated_secret import GeneratedSecret
from components.project_access import AccessLevel, pod_identity_role, s3_prefix_policy

PORT = 5000
DB_PORT = 5432
DB_NAME = "mlflow"
DB_USER = "mlflow"
APP = "mlflow"
POD_IDENTITY_AGENT = "169.254.170.23/32"  # EKS Pod Identity agent (link-local, port 80)
PINNED_PACKAGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*==[A-Za-z0-9.+!-]+$")
DB_URI_DIR = "/etc/mlflow/db"
# The backend URI carries the database password. The shell reads it from the mounted Secret into
# the server's own environment (`mlflow server` reads MLFLOW_BACKEND_STORE_URI), so it is neither
# in the pod spec's env (inherited by every `kubectl exec` shell) nor in any process's argv.
SERVE_WITH_DB_URI = (
    f'MLFLOW_BACKEND_STORE_URI="$(cat {DB_URI_DIR}/backend-store-uri)"'
    ' && export MLFLOW_BACKEND_STORE_URI && exec mlflow server "$@"'
)
PG_CREDENTIALS_MOUNT = "/etc/postgres/credentials"
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


# --- Database backends (a discriminated union on "kind") ------------------------------------


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
    """A single PostgreSQL pod with a PVC (local stack)."""

    kind: Literal["postgres"] = "postgres"
    image: str = "docker.io/library/postgres:16.8-bookworm"
    storage_gib: int = Field(10, ge=1)
    storage_class: str | None = None
    resources: Resources = Field(
        default_factory=lambda: Resources(cpu_request="100m", memory_request="256Mi")
    )

    def issues(self) -> list[Issue]:
        return super().issues() + check_image("image", self.image)


class SqliteDatabase(ArgsModel):
    """SQLite on a PVC (local stack, one replica only)."""

    kind: Literal["sqlite"] = "sqlite"
    storage_gib: int = Field(5, ge=1)
    storage_class: str | None = None


Database = Annotated[RdsDatabase | InClusterPostgres | SqliteDatabase, Field(discriminator="kind")]


# --- Ingress (optional, always authenticated) --------------------------------------------------


class AlbOidcAuth(ArgsModel):
    """AWS Load Balancer Controller with OIDC authentication at the ALB."""

    kind: Literal["alb-oidc"] = "alb-oidc"
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    user_info_endpoint: str
    # k8s Secret (same namespace) with keys clientID and clientSecret.
    client_secret_name: str
    certificate_arn: str
    internal: bool = True
    source_cidrs: list[str] = Field(default_factory=lambda: ["10.0.0.0/8"])

    def issues(self) -> list[Issue]:
        found = super().issues()
        for i, cidr in enumerate(self.source_cidrs):
            found += [x.at("sourceCidrs", i) for x in check_cidr("", cidr)]
        for key in ("issuer", "authorization_endpoint", "token_endpoint", "user_info_endpoint"):
            if not str(getattr(self, key)).startswith("https://"):
                found.append(Issue((_camel(key),), "must be an https:// URL"))
        return found


class NginxExternalAuth(ArgsModel):
    """ingress-nginx delegating authentication to e.g. oauth2-proxy."""

    kind: Literal["nginx-external-auth"] = "nginx-external-auth"
    auth_url: str
    signin_url: str
    tls_secret_name: str


IngressAuth = Annotated[AlbOidcAuth | NginxExternalAuth, Field(discriminator="kind")]


class RegistryIngress(ArgsModel):
    enabled: bool = False
    host: str | None = None
    auth: IngressAuth | None = None

    def issues(self) -> list[Issue]:
        found = super().issues()
        if self.enabled and not self.host:
            found.append(Issue(("host",), "is required when the ingress is enabled"))
        if self.enabled and self.auth is None:
            found.append(
                Issue(
                    ("auth",),
                    "is required when the ingress is enabled (the registry is never exposed "
                    "unauthenticated); kinds: alb-oidc, nginx-external-auth",
                )
            )
        return found


class ModelRegistryArgs(ArgsModel):
    enabled: bool = True
    # Explicit in every stack: deletion protection, final snapshot, protect + retain.
    protect: bool
    database: Database
    namespace: str = "mlflow"
    create_namespace: bool = True
    image: str = "ghcr.io/mlflow/mlflow:v2.22.0"
    # The stock image lacks the S3 and PostgreSQL drivers; installed (pinned) by an init
    # container. Leave empty when the image already has them.
    extra_pip_packages: list[str] = Field(
        default_factory=lambda: ["boto3==1.38.0", "psycopg2-binary==2.9.10"]
    )
    replicas: int = Field(1, ge=1, le=10)
    workers: int = Field(2, ge=1, le=16)
    artifact_prefix: str = "mlflow/"
    resources: Resources = Field(default_factory=Resources)
    ingress: RegistryIngress = Field(default_factory=RegistryIngress)

    def issues(self) -> list[Issue]:
        found = [
            *super().issues(),
            *check_image("image", self.image),
            *check_dns_label("namespace", self.namespace),
        ]
        for i, pkg in enumerate(self.extra_pip_packages):
            if not PINNED_PACKAGE.match(pkg):
                found.append(
                    Issue(("extraPipPackages", i), f"must be pinned as name==version, got {pkg!r}")
                )
        if isinstance(self.database, SqliteDatabase) and self.replicas > 1:
            found.append(
                Issue(("replicas",), "must be 1 with database kind sqlite (one writer on a PVC)")
            )
        if not self.artifact_prefix.endswith("/") or self.artifact_prefix.startswith("/"):
            found.append(
                Issue(("artifactPrefix",), "must be a relative prefix ending in '/', e.g. mlflow/")
            )
        return found


def _camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(p.title() for p in rest)


# --- Runtime inputs ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RegistryNetwork:
    """Where RDS goes (AWS only): private subnets and the security groups allowed to connect."""

    vpc_id: Any  # pulumi.Input[str]
    private_subnet_ids: Any  # pulumi.Input[list[str]]
    client_security_group_ids: Sequence[Any]  # the EKS cluster security group (and node SGs)


# --- Manifests as data (pure) -----------------------------------------------------------------


def labels(component: str = APP) -> dict[str, str]:
    return {"app.kubernetes.io/name": component, "app.kubernetes.io/part-of": "mlplatform"}


def network_policy(
    namespace: str, *, storage_kind: str, db_kind: str, ingress_cidrs: Sequence[str]
) -> dict:
    dns = {
        "to": [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}
        ],
        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
    }
    egress: list[dict[str, Any]] = [
        dns,
        # S3/STS/PyPI over TLS.
        {"ports": [{"protocol": "TCP", "port": 443}]},
    ]
    if storage_kind == "s3":
        egress.append(
            {
                "to": [{"ipBlock": {"cidr": POD_IDENTITY_AGENT}}],
                "ports": [{"protocol": "TCP", "port": 80}],
            }
        )
    else:
        egress.append(
            {"ports": [{"protocol": "TCP", "port": 9000}, {"protocol": "TCP", "port": 80}]}
        )
    if db_kind == "rds":
        # The RDS security group is the real gate; pods have no fixed address to name here.
        egress.append({"ports": [{"protocol": "TCP", "port": DB_PORT}]})
    elif db_kind == "postgres":
        egress.append(
            {
                "to": [{"podSelector": {"matchLabels": labels(f"{APP}-postgres")}}],
                "ports": [{"protocol": "TCP", "port": DB_PORT}],
            }
        )
    sources: list[dict[str, Any]] = [{"namespaceSelector": {}}]
    sources += [{"ipBlock": {"cidr": c}} for c in ingress_cidrs]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": APP, "namespace": namespace},
        "spec": {
            "podSelector": {"matchLabels": labels()},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": sources, "ports": [{"protocol": "TCP", "port": PORT}]}],
            "egress": egress,
        },
    }


def postgres_network_policy(namespace: str) -> dict:
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


def ingress_manifest(namespace: str, ingress: RegistryIngress) -> dict:
    auth = ingress.auth
    annotations: dict[str, str]
    tls: list[dict[str, Any]] = []
    if isinstance(auth, AlbOidcAuth):
        class_name = "alb"
        annotations = {
            "alb.ingress.kubernetes.io/scheme": "internal" if auth.internal else "internet-facing",
            "alb.ingress.kubernetes.io/target-type": "ip",
            "alb.ingress.kubernetes.io/listen-ports": '[{"HTTPS": 443}]',
            "alb.ingress.kubernetes.io/certificate-arn": auth.certificate_arn,
            "alb.ingress.kubernetes.io/ssl-policy": "ELBSecurityPolicy-TLS13-1-2-2021-06",
            "alb.ingress.kubernetes.io/healthcheck-path": "/health",
            "alb.ingress.kubernetes.io/auth-type": "oidc",
            "alb.ingress.kubernetes.io/auth-on-unauthenticated-request": "authenticate",
            "alb.ingress.kubernetes.io/auth-idp-oidc": json.dumps(
                {
                    "issuer": auth.issuer,
                    "authorizationEndpoint": auth.authorization_endpoint,
                    "tokenEndpoint": auth.token_endpoint,
                    "userInfoEndpoint": auth.user_info_endpoint,
                    "secretName": auth.client_secret_name,
                },
                sort_keys=True,
            ),
        }
    elif isinstance(auth, NginxExternalAuth):
        class_name = "nginx"
        annotations = {
            "nginx.ingress.kubernetes.io/auth-url": auth.auth_url,
            "nginx.ingress.kubernetes.io/auth-signin": auth.signin_url,
            "nginx.ingress.kubernetes.io/force-ssl-redirect": "true",
        }
        tls = [{"hosts": [ingress.host], "secretName": auth.tls_secret_name}]
    else:  # guarded by RegistryIngress.issues()
        raise ValueError("ingress.auth is required")
    spec: dict[str, Any] = {
        "ingressClassName": class_name,
        "rules": [
            {
                "host": ingress.host,
                "http": {
                    "paths": [
                        {
                            "path": "/",
                            "pathType": "Prefix",
                            "backend": {"service": {"name": APP, "port": {"number": PORT}}},
                        }
                    ]
                },
            }
        ],
    }
    if tls:
        spec["tls"] = tls
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "name": APP,
            "namespace": namespace,
            "labels": labels(),
            "annotations": annotations,
        },
        "spec": spec,
    }


# --- Component ---------------------------------------------------------------------------------


class ModelRegistry(pulumi.ComponentResource):
    tracking_uri: pulumi.Output[str]
    namespace: pulumi.Output[str]
    role_arn: pulumi.Output[str] | None
    db_endpoint: pulumi.Output[str] | None
    db_secret_arn: pulumi.Output[str] | None

    def __init__(
        self,
        name: str,
        args: ModelRegistryArgs,
        *,
        target: KubeTarget,
        storage: StorageBackend,
        network: RegistryNetwork | None = None,
        kms_key_arn: pulumi.Input[str] | None = None,
        tags: Mapping[str, str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ):
        args.raise_if_invalid("ModelRegistry")
        _check_runtime(args, target, storage, network, kms_key_arn)
        super().__init__("mlplatform:registry:ModelRegistry", name, None, opts)
        self._tags = merge_tags(tags, {"mlplatform.io/component": "model-registry"})
        ns_name = args.namespace
        protect = args.protect
        keep = pulumi.ResourceOptions(parent=self, protect=protect, retain_on_delete=protect)

        deps: list[pulumi.Resource] = list(target.depends_on)
        if args.create_namespace:
            ns = k8s.core.v1.Namespace(
                f"{name}-namespace",
                metadata={
                    "name": ns_name,
                    "labels": {**RESTRICTED_NAMESPACE_LABELS, **labels()},
                },
                opts=self._k8s(target, deps),
            )
            deps = [*deps, ns]
        k8s_opts = self._k8s(target, deps)

        sa = k8s.core.v1.ServiceAccount(
            f"{name}-sa",
            metadata=_meta(APP, ns_name),
            automount_service_account_token=False,
            opts=k8s_opts,
        )
        pod_deps: list[pulumi.Resource] = [sa]

        # Artifacts: Pod Identity on AWS, MinIO keys locally.
        self.role_arn = None
        if storage.kind == "s3":
            inv = pulumi.InvokeOutputOptions(parent=self)
            partition = aws.get_partition_output(opts=inv).partition
            bucket_arn = pulumi.Output.concat("arn:", partition, ":s3:::", storage.bucket)

            def policy_for(region: pulumi.Output[str]) -> pulumi.Output[dict[str, Any]]:
                return pulumi.Output.all(region, bucket_arn, kms_key_arn).apply(
                    lambda a: s3_prefix_policy(
                        bucket_arn=a[1],
                        prefix=args.artifact_prefix,
                        access=AccessLevel.READ_WRITE,
                        kms_key_arn=a[2],
                        region=a[0],
                    )
                )

            role, role_policy = pod_identity_role(
                self,
                f"{name}-artifacts",
                cluster_name=target.cluster_name,
                policy_for=policy_for,
                description=f"MLflow artifacts: read-write on {args.artifact_prefix}",
                tags=self._tags,
            )
            assoc = aws.eks.PodIdentityAssociation(
                f"{name}-pod-identity",
                cluster_name=target.cluster_name,
                namespace=ns_name,
                service_account=APP,
                role_arn=role.arn,
                tags=self._tags,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[role_policy]),
            )
            pod_deps.append(assoc)
            self.role_arn = role.arn

        # Database ----------------------------------------------------------------------------
        db = args.database
        self.db_endpoint = None
        self.db_secret_arn = None
        backend_uri: str | None = None  # only when it holds no secret
        volumes: list[dict[str, Any]] = []
        mounts: list[dict[str, Any]] = []
        if isinstance(db, SqliteDatabase):
            pvc = k8s.core.v1.PersistentVolumeClaim(
                f"{name}-db",
                metadata=_meta(f"{APP}-db", ns_name),
                spec=_pvc_spec(db.storage_gib, db.storage_class),
                opts=pulumi.ResourceOptions.merge(
                    k8s_opts, pulumi.ResourceOptions(protect=protect, retain_on_delete=protect)
                ),
            )
            pod_deps.append(pvc)
            backend_uri = "sqlite:////mlflow/db/mlflow.db"
            volumes.append({"name": "db", "persistentVolumeClaim": {"claimName": f"{APP}-db"}})
            mounts.append({"name": "db", "mountPath": "/mlflow/db"})
        else:
            password = GeneratedSecret(
                f"{name}-db-password",
                length=32,  # alphanumeric: goes into a connection URI unescaped
                opts=pulumi.ResourceOptions(parent=self),
            )
            if isinstance(db, RdsDatabase):
                assert network is not None and kms_key_arn is not None  # _check_runtime
                host = self._rds(name, db, network, kms_key_arn, password, keep)
                sslmode = "require"
            else:
                host = pulumi.Output.from_input(f"{APP}-postgres.{ns_name}.svc.cluster.local")
                self._postgres(name, db, ns_name, password, k8s_opts, protect)
                sslmode = "disable"  # pod-to-pod inside the namespace, NetworkPolicy-fenced
            # Secret because password.result is: the URI never shows in plain text.
            uri = pulumi.Output.concat(
                f"postgresql://{DB_USER}:",
                password.result,
                "@",
                host,
                f":{DB_PORT}/{DB_NAME}?sslmode={sslmode}",
            )
            db_secret = k8s.core.v1.Secret(
                f"{name}-db-uri",
                metadata=_meta(f"{APP}-db", ns_name),
                type="Opaque",
                string_data={"backend-store-uri": uri},
                opts=k8s_opts,
            )
            pod_deps.append(db_secret)
            volumes.append(
                {"name": "db-uri", "secret": {"secretName": f"{APP}-db", "defaultMode": 0o440}}
            )
            mounts.append({"name": "db-uri", "mountPath": DB_URI_DIR, "readOnly": True})

        # MLflow ------------------------------------------------------------------------------
        artifacts = pulumi.Output.concat("s3://", storage.bucket, "/", args.artifact_prefix)
        env: list[Any] = [
            {"name": "HOME", "value": "/tmp"},  # noqa: S108 - an emptyDir, not the image's /tmp
            {"name": "PYTHONPATH", "value": "/deps"},
            {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
        ]
        if storage.region:
            env.append({"name": "AWS_DEFAULT_REGION", "value": storage.region})
        env_from: list[dict[str, Any]] = []
        if storage.kind == "minio":
            env.append({"name": "MLFLOW_S3_ENDPOINT_URL", "value": storage.endpoint_url})
            # The Secret must hold AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
            env_from.append({"secretRef": {"name": storage.credentials_secret}})
        volumes += [
            {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
            {"name": "deps", "emptyDir": {"sizeLimit": "512Mi"}},
        ]
        mounts += [
            {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108
            {"name": "deps", "mountPath": "/deps", "readOnly": True},
        ]
        init_containers: list[dict[str, Any]] = []
        if args.extra_pip_packages:
            init_containers.append(
                {
                    "name": "install-drivers",
                    "image": args.image,
                    "imagePullPolicy": pull_policy(args.image),
                    "command": [
                        "python",
                        "-m",
                        "pip",
                        "install",
                        "--no-cache-dir",
                        "--disable-pip-version-check",
                        "--target",
                        "/deps",
                        *args.extra_pip_packages,
                    ],
                    "env": [{"name": "HOME", "value": "/tmp"}],  # noqa: S108
                    "securityContext": container_security_context(),
                    "resources": args.resources.spec(),
                    "volumeMounts": [
                        {"name": "deps", "mountPath": "/deps"},
                        {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108
                    ],
                }
            )
        probe = {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": 10}
        server_args: list[Any] = [
            "--host",
            "0.0.0.0",  # noqa: S104 - inside the pod; the Service and NetworkPolicy fence it
            "--port",
            str(PORT),
            "--workers",
            str(args.workers),
            "--serve-artifacts",
            "--artifacts-destination",
            artifacts,
        ]
        if backend_uri is None:
            command = ["/bin/sh", "-c", SERVE_WITH_DB_URI, "mlflow"]
        else:
            command = ["mlflow", "server"]
            server_args = ["--backend-store-uri", backend_uri, *server_args]
        container = {
            "name": APP,
            "image": args.image,
            "imagePullPolicy": pull_policy(args.image),
            "command": command,
            "args": server_args,
            "env": env,
            "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
            "readinessProbe": {**probe, "initialDelaySeconds": 5},
            "livenessProbe": {**probe, "initialDelaySeconds": 30, "failureThreshold": 6},
            "securityContext": container_security_context(),
            "resources": args.resources.spec(),
            "volumeMounts": mounts,
        }
        skips = []
        if "@sha256:" not in args.image:
            skips.append(DIGEST_SKIP)
        if env_from:
            container["envFrom"] = env_from
            skips.append(
                "CKV_K8S_35=local stack only: the MinIO keys come as a Secret of "
                "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, which boto3 reads from the environment"
            )
        k8s.apps.v1.Deployment(
            f"{name}-server",
            metadata=_meta(APP, ns_name, annotations=checkov_skips(*skips)),
            spec=_spec(
                {
                    "replicas": args.replicas,
                    "selector": {"matchLabels": labels()},
                    # SQLite: never two writers on the volume, even during a rollout.
                    "strategy": {"type": "Recreate"}
                    if isinstance(db, SqliteDatabase)
                    else {"type": "RollingUpdate"},
                    "template": {
                        "metadata": {"labels": labels()},
                        "spec": {
                            "serviceAccountName": APP,
                            "automountServiceAccountToken": False,
                            "securityContext": pod_security_context(),
                            "initContainers": init_containers,
                            "containers": [container],
                            "volumes": volumes,
                        },
                    },
                }
            ),
            opts=pulumi.ResourceOptions.merge(
                k8s_opts, pulumi.ResourceOptions(depends_on=pod_deps)
            ),
        )
        service = k8s.core.v1.Service(
            f"{name}-service",
            metadata=_meta(APP, ns_name),
            spec=_spec(
                {
                    "type": "ClusterIP",
                    "selector": labels(),
                    "ports": [
                        {"name": "http", "port": PORT, "targetPort": "http", "protocol": "TCP"}
                    ],
                }
            ),
            opts=k8s_opts,
        )
        alb_cidrs: list[str] = []
        if args.ingress.enabled and isinstance(args.ingress.auth, AlbOidcAuth):
            alb_cidrs = list(args.ingress.auth.source_cidrs)
        np = network_policy(
            ns_name, storage_kind=storage.kind, db_kind=db.kind, ingress_cidrs=alb_cidrs
        )
        k8s.networking.v1.NetworkPolicy(
            f"{name}-netpol", metadata=np["metadata"], spec=np["spec"], opts=k8s_opts
        )
        self.external_url: pulumi.Output[str] | None = None
        if args.ingress.enabled:
            ing = ingress_manifest(ns_name, args.ingress)
            k8s.networking.v1.Ingress(
                f"{name}-ingress",
                metadata=ing["metadata"],
                spec=ing["spec"],
                opts=pulumi.ResourceOptions.merge(
                    k8s_opts, pulumi.ResourceOptions(depends_on=[service])
                ),
            )
            self.external_url = pulumi.Output.from_input(f"https://{args.ingress.host}")

        self.tracking_uri = pulumi.Output.from_input(
            f"http://{APP}.{ns_name}.svc.cluster.local:{PORT}"
        )
        self.namespace = pulumi.Output.from_input(ns_name)
        self.register_outputs(
            {
                "tracking_uri": self.tracking_uri,
                "namespace": self.namespace,
                "external_url": self.external_url,
                "db_endpoint": self.db_endpoint,
                "db_secret_arn": self.db_secret_arn,
            }
        )

    # --- helpers ---------------------------------------------------------------------------

    def _k8s(self, target: KubeTarget, deps: Sequence[pulumi.Resource]) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self, provider=target.provider, depends_on=list(deps))

    def _rds(
        self,
        name: str,
        db: RdsDatabase,
        network: RegistryNetwork,
        kms_key_arn: pulumi.Input[str],
        password: GeneratedSecret,
        keep: pulumi.ResourceOptions,
    ) -> pulumi.Output[str]:
        protect = bool(keep.protect)
        sg = aws.ec2.SecurityGroup(
            f"{name}-db-sg",
            vpc_id=network.vpc_id,
            description="MLflow PostgreSQL: 5432 from the cluster only",
            tags=self._tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        for i, source in enumerate(network.client_security_group_ids):
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
            subnet_ids=network.private_subnet_ids,
            description="MLflow PostgreSQL: private subnets",
            tags=self._tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        params = aws.rds.ParameterGroup(
            f"{name}-db-params",
            family=db.family,
            description="MLflow PostgreSQL: TLS only",
            parameters=[
                {"name": "rds.force_ssl", "value": "1"},
                {"name": "log_connections", "value": "1"},
            ],
            tags=self._tags,
            opts=pulumi.ResourceOptions(parent=self),
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
            kms_key_id=kms_key_arn,
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
            tags=self._tags,
            opts=keep,
        )
        secret = aws.secretsmanager.Secret(
            f"{name}-db-secret",
            description="MLflow PostgreSQL credentials",
            kms_key_id=kms_key_arn,
            recovery_window_in_days=30 if protect else 0,
            tags=self._tags,
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
        self.db_endpoint = instance.endpoint
        self.db_secret_arn = secret.arn
        return instance.address

    def _postgres(
        self,
        name: str,
        db: InClusterPostgres,
        ns_name: str,
        password: GeneratedSecret,
        k8s_opts: pulumi.ResourceOptions,
        protect: bool,
    ) -> None:
        pg = f"{APP}-postgres"
        k8s.core.v1.Secret(
            f"{name}-postgres-credentials",
            metadata=_meta(pg, ns_name, pg),
            type="Opaque",
            string_data={"password": password.result},
            opts=k8s_opts,
        )
        uid = 999  # the postgres user in the official Debian image
        skips = [
            "CKV_K8S_40=999 is the official image's postgres user, which owns the data "
            "directory of every existing volume; another UID would not start on them"
        ]
        if "@sha256:" not in db.image:
            skips.append(DIGEST_SKIP)
        pg_ready = {"exec": {"command": ["pg_isready", "-U", DB_USER, "-d", DB_NAME]}}
        k8s.apps.v1.StatefulSet(
            f"{name}-postgres",
            metadata=_meta(pg, ns_name, pg, annotations=checkov_skips(*skips)),
            spec=_spec(
                {
                    "serviceName": pg,
                    "replicas": 1,
                    "selector": {"matchLabels": labels(pg)},
                    "template": {
                        "metadata": {"labels": labels(pg)},
                        "spec": {
                            "automountServiceAccountToken": False,
                            "securityContext": pod_security_context(uid=uid, fs_group=uid),
                            "containers": [
                                {
                                    "name": "postgres",
                                    "image": db.image,
                                    "imagePullPolicy": pull_policy(db.image),
                                    # The image's entrypoint reads *_FILE variables at initdb.
                                    "env": [
                                        {"name": "POSTGRES_USER", "value": DB_USER},
                                        {"name": "POSTGRES_DB", "value": DB_NAME},
                                        {
                                            "name": "POSTGRES_PASSWORD_FILE",
                                            "value": f"{PG_CREDENTIALS_MOUNT}/password",
                                        },
                                        {
                                            "name": "PGDATA",
                                            "value": "/var/lib/postgresql/data/pgdata",
                                        },
                                    ],
                                    "ports": [
                                        {
                                            "name": "postgres",
                                            "containerPort": DB_PORT,
                                            "protocol": "TCP",
                                        }
                                    ],
                                    # Crash recovery can take a while: liveness starts
                                    # only once the startup probe has passed.
                                    "startupProbe": {
                                        **pg_ready,
                                        "periodSeconds": 10,
                                        "failureThreshold": 60,
                                    },
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
                                        {
                                            "name": "credentials",
                                            "mountPath": PG_CREDENTIALS_MOUNT,
                                            "readOnly": True,
                                        },
                                    ],
                                }
                            ],
                            "volumes": [
                                {"name": "run", "emptyDir": {}},
                                {"name": "tmp", "emptyDir": {}},
                                {
                                    "name": "credentials",
                                    "secret": {"secretName": pg, "defaultMode": 0o440},
                                },
                            ],
                        },
                    },
                    "volumeClaimTemplates": [
                        {
                            "metadata": {"name": "data"},
                            "spec": _pvc_spec(db.storage_gib, db.storage_class),
                        }
                    ],
                    "persistentVolumeClaimRetentionPolicy": {
                        "whenDeleted": "Retain" if protect else "Delete",
                        "whenScaled": "Retain",
                    },
                }
            ),
            opts=pulumi.ResourceOptions.merge(
                k8s_opts, pulumi.ResourceOptions(protect=protect, retain_on_delete=protect)
            ),
        )
        k8s.core.v1.Service(
            f"{name}-postgres-service",
            metadata=_meta(pg, ns_name, pg),
            spec=_spec(
                {
                    "type": "ClusterIP",
                    "selector": labels(pg),
                    "ports": [{"name": "postgres", "port": DB_PORT, "targetPort": "postgres"}],
                }
            ),
            opts=k8s_opts,
        )
        np = postgres_network_policy(ns_name)
        k8s.networking.v1.NetworkPolicy(
            f"{name}-postgres-netpol", metadata=np["metadata"], spec=np["spec"], opts=k8s_opts
        )


def _spec(spec: dict[str, Any]) -> Any:
    """Typed identity: lets mypy accept nested dict literals as k8s spec inputs."""
    return spec


def _meta(
    name: str, namespace: str, component: str = APP, annotations: dict[str, str] | None = None
) -> Any:
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "labels": labels(component)}
    if annotations:
        meta["annotations"] = annotations
    return meta


def _pvc_spec(size_gib: int, storage_class: str | None) -> Any:
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": f"{size_gib}Gi"}},
    }
    if storage_class:
        spec["storageClassName"] = storage_class
    return spec


def _check_runtime(
    args: ModelRegistryArgs,
    target: KubeTarget,
    storage: StorageBackend,
    network: RegistryNetwork | None,
    kms_key_arn: Any,
) -> None:
    found: list[Issue] = []
    if storage.kind not in ("s3", "minio"):
        found.append(
            Issue(("storage",), f"unknown storage kind {storage.kind!r}; allowed: s3, minio")
        )
    if storage.kind == "s3" and not target.on_aws:
        found.append(Issue(("storage",), "S3 artifacts need the AWS stack; use minio locally"))
    if storage.kind == "s3" and (kms_key_arn is None or target.cluster_name is None):
        found.append(
            Issue(("storage",), "S3 artifacts need the store's KMS key and the EKS cluster name")
        )
    if storage.kind == "minio" and not (storage.endpoint_url and storage.credentials_secret):
        found.append(Issue(("storage",), "minio needs endpoint_url and credentials_secret"))
    if isinstance(args.database, RdsDatabase):
        if not target.on_aws:
            found.append(
                Issue(
                    ("database", "kind"),
                    "rds needs the AWS stack; allowed locally: postgres, sqlite",
                )
            )
        if network is None or kms_key_arn is None:
            found.append(
                Issue(("database", "kind"), "rds needs the VPC network and the KMS key inputs")
            )
    if found:
        raise InvalidArgsError("ModelRegistry", found)
