"""MLflow tracking server and model registry on the cluster.

* Image: MLflow's official ``-full`` image (``mlflow[extras,db,auth,...]``: boto3, psycopg2, the
  auth app), pinned; nothing is installed at start. Pulled ``Always`` while pinned by tag, or pin
  a digest (``name:tag@sha256:...``).
* Database, a typed choice (:mod:`components.registry_database`): RDS PostgreSQL on AWS
  (KMS-encrypted, backups >= 7 days, deletion protection and a final snapshot when protected,
  private subnets, reachable only from the cluster's security groups), in-cluster PostgreSQL on
  a volume of the cluster's encrypted class, or SQLite for the local stack. The password is
  generated, kept in Secrets Manager (RDS) and a Kubernetes Secret, and reaches the server as a
  mounted file, never its env or argv.
* Authentication (:mod:`components.registry_auth`): MLflow's basic-auth app with no default
  permission, one generated user per project, credentials handed to the project's namespaces.
* Artifacts are proxied by the server (``--serve-artifacts``) into the model store under
  ``mlflow/``: on AWS through EKS Pod Identity (no static keys), locally in MinIO. The proxy
  checks each experiment's permissions, so one role for the server does not cross projects.
* Reached through an internal ClusterIP Service, from the projects' namespaces only
  (NetworkPolicy); an ingress is optional and must be authenticated
  (:mod:`components.registry_server`).
* Architecture: the images' platforms (``architectures``); MLflow's and PostgreSQL's official
  images run on amd64 and arm64, so by default any node will do.
"""

from __future__ import annotations

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
    arch_selector,
    check_dns_label,
    check_image,
    container_security_context,
    merge_tags,
)
from components.project_access import AccessLevel, pod_identity_role, s3_prefix_policy
from components.registry_auth import (
    AuthWiring,
    RegistryAuth,
    client_credentials,
    create_auth_db_container,
)
from components.registry_database import (
    APP,
    DB_URI_DIR,
    DIGEST_SKIP,
    InClusterPostgres,
    RdsDatabase,
    RdsInputs,
    Resources,
    SqliteDatabase,
    checkov_skips,
    declare_database,
    declare_rds,
    labels,
    meta,
    pull_policy,
)
from components.registry_server import (
    PORT,
    AlbOidcAuth,
    NginxExternalAuth,
    RegistryIngress,
    ingress_manifest,
    network_policy,
    server_args,
    server_pod,
)

__all__ = [
    "AlbOidcAuth",
    "InClusterPostgres",
    "ModelRegistry",
    "ModelRegistryArgs",
    "NginxExternalAuth",
    "RdsDatabase",
    "RegistryAuth",
    "RegistryIngress",
    "RegistryNetwork",
    "Resources",
    "SqliteDatabase",
]

# MLflow 3.18.0 (PyPI, 2026-11-03). `-full` is docker/Dockerfile.full: pip install
# mlflow[extras,azure,db,gateway,genai,auth] (boto3, psycopg2-binary, Flask-WTF for the auth
# app, per mlflow's docker/README.md and the 3.18.0 package metadata); mlflow's push-images
# workflow publishes each release for linux/amd64 and linux/arm64.
MLFLOW_IMAGE = "ghcr.io/mlflow/mlflow:v3.18.0-full"

Arch = Literal["amd64", "arm64"]


def _both_architectures() -> list[Arch]:
    return ["amd64", "arm64"]


Database = Annotated[RdsDatabase | InClusterPostgres | SqliteDatabase, Field(discriminator="kind")]


class ModelRegistryArgs(ArgsModel):
    enabled: bool = True
    # Explicit in every stack: deletion protection, final snapshot, protect + retain.
    protect: bool
    database: Database
    namespace: str = "mlflow"
    create_namespace: bool = True
    image: str = MLFLOW_IMAGE
    # The platforms the images (MLflow's and PostgreSQL's) are published for.
    architectures: list[Arch] = Field(default_factory=_both_architectures, min_length=1)
    replicas: int = Field(1, ge=1, le=10)
    workers: int = Field(2, ge=1, le=16)
    artifact_prefix: str = "mlflow/"
    resources: Resources = Field(default_factory=Resources)
    auth: RegistryAuth = Field(default_factory=RegistryAuth)
    ingress: RegistryIngress = Field(default_factory=RegistryIngress)

    def issues(self) -> list[Issue]:
        found = [
            *super().issues(),
            *check_image("image", self.image),
            *check_dns_label("namespace", self.namespace),
        ]
        if isinstance(self.database, SqliteDatabase) and self.replicas > 1:
            found.append(
                Issue(("replicas",), "must be 1 with database kind sqlite (one writer on a PVC)")
            )
        if not self.artifact_prefix.endswith("/") or self.artifact_prefix.startswith("/"):
            found.append(
                Issue(("artifactPrefix",), "must be a relative prefix ending in '/', e.g. mlflow/")
            )
        return found


@dataclass(frozen=True)
class RegistryNetwork:
    """Where RDS goes (AWS only): private subnets and the security groups allowed to connect."""

    vpc_id: Any  # pulumi.Input[str]
    private_subnet_ids: Any  # pulumi.Input[list[str]]
    client_security_group_ids: Sequence[Any]  # the EKS cluster security group (and node SGs)


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
        clients: Mapping[str, str] | None = None,
        client_namespaces: Mapping[str, pulumi.Resource] | None = None,
        reader_namespaces: Sequence[str] = (),
        tags: Mapping[str, str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ):
        """``clients`` maps each namespace that may reach the registry to its MLflow user (the
        project); each gets a ``mlflow-tracking`` Secret. ``client_namespaces``: the Namespace
        resources of those the platform declares (the Secrets wait for them).
        ``reader_namespaces``: more namespaces admitted by the NetworkPolicy, whose workloads get
        their project's credentials from :meth:`credentials` (serving endpoints)."""
        args.raise_if_invalid("ModelRegistry")
        _check_runtime(args, target, storage, network, kms_key_arn)
        super().__init__("mlplatform:registry:ModelRegistry", name, None, opts)
        self._tags = merge_tags(tags, {"mlplatform.io/component": "model-registry"})
        ns_name, clients = args.namespace, dict(clients or {})
        nodes = arch_selector(args.architectures)

        k8s_opts = self._namespace(name, args, target)
        sa = k8s.core.v1.ServiceAccount(
            f"{name}-sa",
            metadata=meta(APP, ns_name),
            automount_service_account_token=False,
            opts=k8s_opts,
        )
        pod_deps: list[pulumi.Resource] = [sa]
        self.role_arn = None
        if storage.kind == "s3":
            pod_deps.append(self._artifact_identity(name, args, target, storage, kms_key_arn))
        db = self._database(name, args, target, network, kms_key_arn, nodes, k8s_opts)
        self.db_endpoint, self.db_secret_arn = db.endpoint, db.secret_arn
        pod_deps += db.pod_deps
        auth = None
        if args.auth.enabled:
            auth = AuthWiring(
                self,
                name,
                args.auth,
                namespace=ns_name,
                database_uri=db.auth_uri,
                clients=clients,
                client_namespaces=dict(client_namespaces or {}),
                k8s_opts=k8s_opts,
            )
            pod_deps.append(auth.config)

        deployment = self._server(name, args, storage, db, auth, nodes, pod_deps, k8s_opts)
        service = k8s.core.v1.Service(
            f"{name}-service",
            metadata=meta(APP, ns_name),
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
        self.tracking_uri = pulumi.Output.from_input(
            f"http://{APP}.{ns_name}.svc.cluster.local:{PORT}"
        )
        if auth is not None:
            auth.declare_sync(
                name,
                image=args.image,
                tracking_url=f"http://{APP}.{ns_name}.svc.cluster.local:{PORT}",
                resources=Resources(cpu_request="50m", memory_request="128Mi").spec(),
                node_selector=nodes,
                k8s_opts=k8s_opts,
                after=[deployment, service],
            )
        self._auth = auth
        admitted = sorted({*clients, *reader_namespaces})
        self._exposure(name, args, storage, admitted, service, target, k8s_opts)
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

    def credentials(self, project: str) -> pulumi.Output[str] | None:
        """The ``~/.mlflow/credentials`` file of a project's user (secret); None without auth."""
        if self._auth is None:
            return None
        if project not in self._auth.passwords:
            known = ", ".join(self._auth.users) or "(none)"
            raise ValueError(f"no MLflow user for project {project!r}; users: {known}")
        return client_credentials(project, self._auth.passwords[project])

    # --- helpers ---------------------------------------------------------------------------

    def _namespace(
        self, name: str, args: ModelRegistryArgs, target: KubeTarget
    ) -> pulumi.ResourceOptions:
        """The registry's namespace (unless shared), and options that wait for it."""
        deps: list[pulumi.Resource] = list(target.depends_on)
        if args.create_namespace:
            deps.append(
                k8s.core.v1.Namespace(
                    f"{name}-namespace",
                    metadata={
                        "name": args.namespace,
                        "labels": {**RESTRICTED_NAMESPACE_LABELS, **labels()},
                    },
                    opts=self._k8s(target, deps),
                )
            )
        return self._k8s(target, deps)

    def _database(
        self,
        name: str,
        args: ModelRegistryArgs,
        target: KubeTarget,
        network: RegistryNetwork | None,
        kms_key_arn: Any,
        nodes: dict[str, str],
        k8s_opts: pulumi.ResourceOptions,
    ) -> Any:
        def rds(password: Any) -> Any:
            assert isinstance(args.database, RdsDatabase) and network is not None  # checked
            inputs = RdsInputs(
                vpc_id=network.vpc_id,
                private_subnet_ids=network.private_subnet_ids,
                client_security_group_ids=network.client_security_group_ids,
                kms_key_arn=kms_key_arn,
                tags=self._tags,
            )
            return declare_rds(self, name, args.database, inputs, password, protect=args.protect)

        return declare_database(
            self,
            name,
            args.database,
            namespace=args.namespace,
            protect=args.protect,
            storage_class=target.storage_class,
            node_selector=nodes,
            network_policy=target.network_policy,
            k8s_opts=k8s_opts,
            rds=rds,
        )

    def _k8s(self, target: KubeTarget, deps: Sequence[pulumi.Resource]) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self, provider=target.provider, depends_on=list(deps))

    def _artifact_identity(
        self,
        name: str,
        args: ModelRegistryArgs,
        target: KubeTarget,
        storage: StorageBackend,
        kms_key_arn: Any,
    ) -> pulumi.Resource:
        """Pod Identity role for the artifact proxy: read-write on the artifact prefix only."""
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
        self.role_arn = role.arn
        return aws.eks.PodIdentityAssociation(
            f"{name}-pod-identity",
            cluster_name=target.cluster_name,
            namespace=args.namespace,
            service_account=APP,
            role_arn=role.arn,
            tags=self._tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[role_policy]),
        )

    def _server(
        self,
        name: str,
        args: ModelRegistryArgs,
        storage: StorageBackend,
        db: Any,
        auth: AuthWiring | None,
        nodes: dict[str, str],
        pod_deps: list[pulumi.Resource],
        k8s_opts: pulumi.ResourceOptions,
    ) -> k8s.apps.v1.Deployment:
        artifacts = pulumi.Output.concat("s3://", storage.bucket, "/", args.artifact_prefix)
        env: list[Any] = [
            {"name": "HOME", "value": "/tmp"},  # noqa: S108 - an emptyDir, not the image's /tmp
            {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
            # MLflow >= 3.5 refuses requests whose Host header it does not list (DNS
            # rebinding guard; default: localhost and private IPs): clients use the
            # Service's names, probes and the ALB the pod's private IP.
            {"name": "MLFLOW_SERVER_ALLOWED_HOSTS", "value": ",".join(allowed_hosts(args))},
        ]
        if storage.region:
            env.append({"name": "AWS_DEFAULT_REGION", "value": storage.region})
        volumes = [*db.volumes, {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}]
        mounts = [*db.mounts, {"name": "tmp", "mountPath": "/tmp"}]  # noqa: S108
        init: list[dict[str, Any]] = []
        if auth is not None:
            env += auth.env()
            volumes += auth.volumes()
            mounts += auth.mounts()
            if db.create_auth_db:
                init.append(
                    create_auth_db_container(
                        args.image,
                        args.resources.spec(),
                        f"{DB_URI_DIR}/backend-store-uri",
                        [m for m in db.mounts if m["name"] == "db-uri"],
                    )
                )
        skips = [] if "@sha256:" in args.image else [DIGEST_SKIP]
        container: dict[str, Any] = {
            "name": APP,
            "image": args.image,
            "imagePullPolicy": pull_policy(args.image),
            "env": env,
            "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
            "securityContext": container_security_context(),
            "resources": args.resources.spec(),
            "volumeMounts": mounts,
        }
        container["command"], container["args"] = server_args(
            workers=args.workers,
            artifacts=artifacts,
            backend_uri=db.backend_uri,
            auth=auth is not None,
        )
        probe = {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": 10}
        container["readinessProbe"] = {**probe, "initialDelaySeconds": 5}
        container["livenessProbe"] = {**probe, "initialDelaySeconds": 30, "failureThreshold": 6}
        if storage.kind == "minio":
            env.append({"name": "MLFLOW_S3_ENDPOINT_URL", "value": storage.endpoint_url})
            # The Secret must hold AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
            container["envFrom"] = [{"secretRef": {"name": storage.credentials_secret}}]
            skips.append(
                "CKV_K8S_35=local stack only: the MinIO keys come as a Secret of "
                "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, which boto3 reads from the environment"
            )
        single_writer = isinstance(args.database, SqliteDatabase)
        return k8s.apps.v1.Deployment(
            f"{name}-server",
            metadata=meta(APP, args.namespace, annotations=checkov_skips(*skips)),
            spec=_spec(
                {
                    "replicas": args.replicas,
                    "selector": {"matchLabels": labels()},
                    # SQLite: never two writers on the volume, even during a rollout.
                    "strategy": {"type": "Recreate" if single_writer else "RollingUpdate"},
                    "template": {
                        "metadata": {"labels": labels()},
                        "spec": server_pod(
                            container=container,
                            init_containers=init,
                            volumes=volumes,
                            node_selector=nodes,
                        ),
                    },
                }
            ),
            opts=pulumi.ResourceOptions.merge(
                k8s_opts, pulumi.ResourceOptions(depends_on=pod_deps)
            ),
        )

    def _exposure(
        self,
        name: str,
        args: ModelRegistryArgs,
        storage: StorageBackend,
        admitted: Sequence[str],
        service: pulumi.Resource,
        target: KubeTarget,
        k8s_opts: pulumi.ResourceOptions,
    ) -> None:
        """NetworkPolicy (the projects' namespaces only) and the optional Ingress."""
        alb_cidrs: list[str] = []
        if args.ingress.enabled and isinstance(args.ingress.auth, AlbOidcAuth):
            alb_cidrs = list(args.ingress.auth.source_cidrs)
        if target.network_policy:
            np = network_policy(
                args.namespace,
                storage_kind=storage.kind,
                db_kind=args.database.kind,
                client_namespaces=admitted,
                ingress_cidrs=alb_cidrs,
            )
            k8s.networking.v1.NetworkPolicy(
                f"{name}-netpol", metadata=np["metadata"], spec=np["spec"], opts=k8s_opts
            )
        self.external_url: pulumi.Output[str] | None = None
        if args.ingress.enabled:
            ing = ingress_manifest(args.namespace, args.ingress)
            k8s.networking.v1.Ingress(
                f"{name}-ingress",
                metadata=ing["metadata"],
                spec=ing["spec"],
                opts=pulumi.ResourceOptions.merge(
                    k8s_opts, pulumi.ResourceOptions(depends_on=[service])
                ),
            )
            self.external_url = pulumi.Output.from_input(f"https://{args.ingress.host}")


def allowed_hosts(args: ModelRegistryArgs) -> list[str]:
    """Host headers the server accepts: its Service's DNS names (with and without the port),
    the ingress host, loopback and the private ranges pod IPs come from."""
    ns = args.namespace
    names = [APP, f"{APP}.{ns}", f"{APP}.{ns}.svc", f"{APP}.{ns}.svc.cluster.local"]
    if args.ingress.enabled and args.ingress.host:
        names.append(args.ingress.host)
    hosts = [h for name in names for h in (name, f"{name}:{PORT}")]
    return [*hosts, "localhost:*", "127.0.0.1:*", "10.*", "172.*", "192.168.*"]


def _spec(spec: dict[str, Any]) -> Any:
    """Typed identity: lets mypy accept nested dict literals as k8s spec inputs."""
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
