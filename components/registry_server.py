"""The model registry's tracking server: its pod, NetworkPolicy and optional Ingress.

Part of :mod:`components.model_registry`. Pure builders: manifests as data, declared by the
component.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import Field

from components.common import ArgsModel, Issue, check_cidr
from components.registry_database import APP, DB_PORT, DB_URI_DIR, labels

PORT = 5000
POD_IDENTITY_AGENT = "169.254.170.23/32"  # EKS Pod Identity agent (link-local, port 80)
# The backend URI carries the database password. The shell reads it from the mounted Secret into
# the server's own environment (`mlflow server` reads MLFLOW_BACKEND_STORE_URI), so it is neither
# in the pod spec's env (inherited by every `kubectl exec` shell) nor in any process's argv.
SERVE_WITH_DB_URI = (
    f'MLFLOW_BACKEND_STORE_URI="$(cat {DB_URI_DIR}/backend-store-uri)"'
    ' && export MLFLOW_BACKEND_STORE_URI && exec mlflow server "$@"'
)


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


def _camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(p.title() for p in rest)


def network_policy(
    namespace: str,
    *,
    storage_kind: str,
    db_kind: str,
    client_namespaces: Sequence[str],
    ingress_cidrs: Sequence[str],
) -> dict[str, Any]:
    """Ingress from the projects' namespaces (and the registry's own, for the user Job) only."""
    dns = {
        "to": [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}
        ],
        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
    }
    egress: list[dict[str, Any]] = [dns, {"ports": [{"protocol": "TCP", "port": 443}]}]  # S3, STS
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
    allowed = sorted({namespace, *client_namespaces})
    sources: list[dict[str, Any]] = [
        {
            "namespaceSelector": {
                "matchExpressions": [
                    {"key": "kubernetes.io/metadata.name", "operator": "In", "values": allowed}
                ]
            }
        }
    ]
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


def ingress_manifest(namespace: str, ingress: RegistryIngress) -> dict[str, Any]:
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
    backend = {"service": {"name": APP, "port": {"number": PORT}}}
    spec: dict[str, Any] = {
        "ingressClassName": class_name,
        "rules": [
            {
                "host": ingress.host,
                "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]},
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


def server_args(
    *, workers: int, artifacts: Any, backend_uri: str | None, auth: bool
) -> tuple[list[str], list[Any]]:
    """(command, args) of ``mlflow server``: the backend URI from its Secret file unless it holds
    no secret (SQLite); the basic-auth app when authentication is on."""
    args: list[Any] = [
        "--host",
        "0.0.0.0",  # noqa: S104 - inside the pod; the Service and NetworkPolicy fence it
        "--port",
        str(PORT),
        "--workers",
        str(workers),
        "--serve-artifacts",
        "--artifacts-destination",
        artifacts,
    ]
    if auth:
        args += ["--app-name", "basic-auth"]
    if backend_uri is None:
        return ["/bin/sh", "-c", SERVE_WITH_DB_URI, "mlflow"], args
    return ["mlflow", "server"], ["--backend-store-uri", backend_uri, *args]


def server_pod(
    *,
    container: dict[str, Any],
    init_containers: list[dict[str, Any]],
    volumes: list[dict[str, Any]],
    node_selector: Mapping[str, str],
) -> dict[str, Any]:
    pod: dict[str, Any] = {
        "serviceAccountName": APP,
        "automountServiceAccountToken": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "runAsGroup": 10001,
            "fsGroup": 10001,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "initContainers": init_containers,
        "containers": [container],
        "volumes": volumes,
    }
    if node_selector:
        pod["nodeSelector"] = dict(node_selector)
    return pod
