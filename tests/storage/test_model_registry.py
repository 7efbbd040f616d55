"""ModelRegistry: MLflow on the cluster, RDS on AWS, in-cluster database on the local stack."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from components.common import InvalidArgsError
from mlplatform.graph import Graph
from mlplatform.plan import run_program

from .helpers import (
    CLUSTER,
    CLUSTER_SG,
    KMS_ARN,
    iam_findings,
    registry_program,
    statements,
    validate_manifests,
)

OIDC = {
    "kind": "alb-oidc",
    "issuer": "https://login.example.com",
    "authorizationEndpoint": "https://login.example.com/authorize",
    "tokenEndpoint": "https://login.example.com/token",
    "userInfoEndpoint": "https://login.example.com/userinfo",
    "clientSecretName": "mlflow-oidc",
    "certificateArn": "arn:aws:acm:us-east-1:123456789012:certificate/abc",
}
PROD: dict[str, Any] = {
    "protect": True,
    "database": {"kind": "rds", "backupRetentionDays": 14, "multiAz": True},
    "ingress": {"enabled": True, "host": "mlflow.ml.example.com", "auth": OIDC},
}
DEV: dict[str, Any] = {"protect": False, "database": {"kind": "rds"}}


@pytest.fixture(scope="module")
def prod() -> Graph:
    return run_program(registry_program(PROD), stack="prod")


@pytest.fixture(scope="module")
def dev() -> Graph:
    return run_program(registry_program(DEV), stack="dev")


@pytest.fixture(scope="module", params=["postgres", "sqlite"])
def local(request: pytest.FixtureRequest) -> Graph:
    data = {"protect": False, "database": {"kind": request.param}}
    return run_program(registry_program(data, on_aws=False), stack="local")


def manifest(g: Graph, kind: str, name: str = "mlflow") -> dict[str, Any]:
    (m,) = [m for m in g.manifests() if m["kind"] == kind and m["metadata"]["name"] == name]
    return m


def server(g: Graph) -> dict[str, Any]:
    return manifest(g, "Deployment")["spec"]["template"]["spec"]


def env(g: Graph) -> dict[str, Any]:
    (c,) = server(g)["containers"]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c["env"]}


def secret_mount(pod: dict[str, Any], container: dict[str, Any], secret: str) -> dict[str, Any]:
    """The container's read-only mount of the named Secret."""
    (vol,) = [v for v in pod["volumes"] if v.get("secret", {}).get("secretName") == secret]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == vol["name"]]
    assert mount["readOnly"] is True
    return mount


def no_secret_in_env(container: dict[str, Any]) -> bool:
    refs = [e for e in container.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})]
    return not refs and "envFrom" not in container


def skips(m: dict[str, Any]) -> set[str]:
    """The checkov checks skipped in-line on a manifest."""
    ann = m["metadata"].get("annotations") or {}
    return {v.split("=")[0] for k, v in ann.items() if k.startswith("checkov.io/skip")}


# --- RDS ------------------------------------------------------------------------------------


def test_rds_is_encrypted_backed_up_private(prod: Graph) -> None:
    db = prod.one("aws:rds/instance:Instance").inputs
    assert db["engine"] == "postgres"
    assert db["storageEncrypted"] is True
    assert db["kmsKeyId"] == KMS_ARN
    assert db["backupRetentionPeriod"] == 14
    assert db["publiclyAccessible"] is False
    assert db["multiAz"] is True
    assert db["password"] == "[secret]"


def test_prod_database_has_deletion_protection_and_final_snapshot(prod: Graph) -> None:
    r = prod.one("aws:rds/instance:Instance")
    assert r.inputs["deletionProtection"] is True
    assert r.inputs["skipFinalSnapshot"] is False
    assert r.inputs["finalSnapshotIdentifier"] == "ml-platform-prod-registry-final"
    assert r.protect and r.retain_on_delete


def test_dev_database_follows_its_explicit_choice(dev: Graph) -> None:
    r = dev.one("aws:rds/instance:Instance")
    assert r.inputs["deletionProtection"] is False
    assert r.inputs["skipFinalSnapshot"] is True
    assert not r.protect and not r.retain_on_delete
    assert r.inputs["backupRetentionPeriod"] >= 7


def test_backups_under_seven_days_are_refused() -> None:
    with pytest.raises(ValueError, match="backupRetentionDays"):
        registry_program({"protect": False, "database": {"kind": "rds", "backupRetentionDays": 3}})


def test_rds_requires_tls(prod: Graph) -> None:
    params = prod.one("aws:rds/parameterGroup:ParameterGroup").inputs
    assert {"name": "rds.force_ssl", "value": "1"} in params["parameters"]
    assert params["family"] == "postgres16"


def test_database_accepts_only_the_cluster(prod: Graph) -> None:
    (rule,) = prod.by_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
    assert rule.inputs["referencedSecurityGroupId"] == CLUSTER_SG
    assert (rule.inputs["fromPort"], rule.inputs["toPort"]) == (5432, 5432)
    assert "cidrIpv4" not in rule.inputs
    subnets = prod.one("aws:rds/subnetGroup:SubnetGroup").inputs
    assert subnets["subnetIds"] == ["subnet-0a", "subnet-0b"]


def test_password_is_generated_and_kept_in_secrets_manager(prod: Graph) -> None:
    password = prod.by_name("registry-db-password")
    assert password.type == "pulumi-python:dynamic/mlplatform:GeneratedSecret"
    assert password.inputs["length"] >= 32
    secret = prod.one("aws:secretsmanager/secret:Secret")
    assert secret.inputs["kmsKeyId"] == KMS_ARN
    assert secret.protect and secret.retain_on_delete
    version = prod.one("aws:secretsmanager/secretVersion:SecretVersion")
    assert version.inputs["secretString"] == "[secret]"


def test_backend_uri_reaches_the_pod_only_as_a_mounted_secret(prod: Graph) -> None:
    secret = manifest(prod, "Secret", "mlflow-db")
    assert secret["stringData"] == "[secret]"
    (c,) = server(prod)["containers"]
    mount = secret_mount(server(prod), c, "mlflow-db")
    assert f"{mount['mountPath']}/backend-store-uri" in c["command"][2]
    assert no_secret_in_env(c)
    assert "MLFLOW_BACKEND_STORE_URI" not in env(prod)
    assert "--backend-store-uri" not in c["args"]
    # Only the local stack's MinIO keys come through the environment.
    assert "CKV_K8S_35" not in skips(manifest(prod, "Deployment"))


def _run_server_command(
    prod: Graph, tmp_path: Path, uri: str | None
) -> subprocess.CompletedProcess[str]:
    """Run the container's command with a stand-in `mlflow` that prints what it was given."""
    (c,) = server(prod)["containers"]
    mount = secret_mount(server(prod), c, "mlflow-db")
    files = tmp_path / "secret"
    files.mkdir()
    if uri is not None:
        (files / "backend-store-uri").write_text(uri)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "mlflow"
    fake.write_text('#!/bin/sh\nprintf "%s\\n" "uri=$MLFLOW_BACKEND_STORE_URI" "$@"\n')
    fake.chmod(0o755)
    shell, flag, script, *rest = c["command"]
    script = script.replace(mount["mountPath"], str(files))
    return subprocess.run(
        [shell, flag, script, *rest, *c["args"]],
        env={"PATH": f"{bin_dir}:{os.defpath}"},
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs a POSIX shell")
def test_server_gets_the_uri_in_its_environment_not_its_argv(prod: Graph, tmp_path: Path) -> None:
    uri = "postgresql://mlflow:s3cret@db.example:5432/mlflow?sslmode=require"
    proc = _run_server_command(prod, tmp_path, uri)
    assert proc.returncode == 0, proc.stderr
    first, *argv = proc.stdout.splitlines()
    assert first == f"uri={uri}"
    assert argv[0] == "server"
    assert "--serve-artifacts" in argv
    assert not [a for a in argv if "s3cret" in a]


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs a POSIX shell")
def test_server_does_not_start_without_the_uri_file(prod: Graph, tmp_path: Path) -> None:
    # Started without a URI, mlflow would fall back to a local ./mlruns store and lose data.
    proc = _run_server_command(prod, tmp_path, None)
    assert proc.returncode != 0
    assert "uri=" not in proc.stdout


# --- artifacts through Pod Identity ----------------------------------------------------------


def test_artifacts_use_pod_identity_not_keys(prod: Graph) -> None:
    assoc = prod.one("aws:eks/podIdentityAssociation:PodIdentityAssociation").inputs
    assert (assoc["clusterName"], assoc["namespace"], assoc["serviceAccount"]) == (
        CLUSTER,
        "mlflow",
        "mlflow",
    )
    assert server(prod)["serviceAccountName"] == "mlflow"
    (c,) = server(prod)["containers"]
    assert "AWS_ACCESS_KEY_ID" not in env(prod)
    assert "envFrom" not in c
    assert "s3://ml-prod-models/mlflow/" in c["args"]
    assert "--serve-artifacts" in c["args"]


def test_artifact_role_is_limited_to_the_mlflow_prefix(prod: Graph) -> None:
    doc = json.loads(prod.one("aws:iam/rolePolicy:RolePolicy").inputs["policy"])
    s = statements(doc)
    assert s["ReadWriteObjects"]["Resource"] == "arn:aws:s3:::ml-prod-models/mlflow/*"
    assert s["ListPrefix"]["Condition"]["StringLike"]["s3:prefix"] == ["mlflow/", "mlflow/*"]
    assert s["UseBucketKeyThroughS3"]["Resource"] == KMS_ARN
    assert iam_findings(doc) == []
    trust = prod.one("aws:iam/role:Role").inputs["assumeRolePolicy"]
    assert iam_findings(trust, trust=True) == []


# --- Kubernetes objects -----------------------------------------------------------------------


def test_image_has_its_drivers_and_installs_nothing_at_start(prod: Graph) -> None:
    """Issue 16 item 16: no pip install from PyPI at every start; `-full` carries the drivers."""
    (c,) = server(prod)["containers"]
    assert c["image"] == "ghcr.io/mlflow/mlflow:v3.18.0-full"
    pod = server(prod)
    for container in pod["containers"] + pod["initContainers"]:
        command = " ".join(map(str, container.get("command", []) + container.get("args", [])))
        assert "pip" not in command, container["name"]
        assert container["image"] == c["image"]
    assert "PYTHONPATH" not in env(prod)


def all_containers(m: dict[str, Any]) -> list[dict[str, Any]]:
    pod = m["spec"]["template"]["spec"]
    return pod["containers"] + pod.get("initContainers", [])


def test_tags_are_pulled_always_and_digests_are_not_skipped() -> None:
    digest = "sha256:" + "0" * 64
    data = {"protect": False, "database": {"kind": "postgres"}}
    tagged = run_program(registry_program(data, on_aws=False))
    pinned = run_program(
        registry_program(
            {
                **data,
                "image": f"ghcr.io/mlflow/mlflow:v3.18.0-full@{digest}",
                "database": {"kind": "postgres", "image": f"docker.io/library/postgres@{digest}"},
            },
            on_aws=False,
        )
    )
    for name, kind in (("mlflow", "Deployment"), ("mlflow-postgres", "StatefulSet")):
        # A tag can be moved: the kubelet checks it with the registry at every start.
        m = manifest(tagged, kind, name)
        assert {c["imagePullPolicy"] for c in all_containers(m)} == {"Always"}
        assert "CKV_K8S_43" in skips(m)
        # A digest cannot: no round trip, and no digest exception.
        m = manifest(pinned, kind, name)
        assert {c["imagePullPolicy"] for c in all_containers(m)} == {"IfNotPresent"}
        assert "CKV_K8S_43" not in skips(m)


def test_service_is_internal_and_uri_is_exported(prod: Graph) -> None:
    svc = manifest(prod, "Service")
    assert svc["spec"]["type"] == "ClusterIP"
    assert svc["spec"]["ports"][0]["port"] == 5000
    assert prod.outputs["mlflowTrackingUri"] == "http://mlflow.mlflow.svc.cluster.local:5000"


def test_pods_are_hardened(prod: Graph) -> None:
    spec = server(prod)
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["automountServiceAccountToken"] is False
    for c in spec["containers"] + spec["initContainers"]:
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert set(c["resources"]) == {"requests", "limits"}
    ns = manifest(prod, "Namespace")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_ingress_is_authenticated_and_internal(prod: Graph) -> None:
    ing = manifest(prod, "Ingress")
    ann = ing["metadata"]["annotations"]
    assert ann["alb.ingress.kubernetes.io/auth-type"] == "oidc"
    assert ann["alb.ingress.kubernetes.io/scheme"] == "internal"
    assert ann["alb.ingress.kubernetes.io/auth-on-unauthenticated-request"] == "authenticate"
    assert json.loads(ann["alb.ingress.kubernetes.io/auth-idp-oidc"])["secretName"] == (
        "mlflow-oidc"
    )
    assert ing["spec"]["rules"][0]["host"] == "mlflow.ml.example.com"


def test_no_ingress_unless_asked(dev: Graph) -> None:
    assert not [m for m in dev.manifests() if m["kind"] == "Ingress"]


def test_network_policy_fences_the_server(prod: Graph) -> None:
    np = manifest(prod, "NetworkPolicy")["spec"]
    assert set(np["policyTypes"]) == {"Ingress", "Egress"}
    (rule,) = np["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 5000}]
    # Issue 16 item 15: the projects' namespaces (and the registry's own, for the user Job),
    # not every namespace; the ALB by its source CIDRs
    (namespaces, alb) = rule["from"]
    assert namespaces == {
        "namespaceSelector": {
            "matchExpressions": [
                {
                    "key": "kubernetes.io/metadata.name",
                    "operator": "In",
                    "values": ["churn", "mlflow", "team-vision"],
                }
            ]
        }
    }
    assert alb == {"ipBlock": {"cidr": "10.0.0.0/8"}}


def test_manifests_are_valid_and_wait_for_the_cluster(prod: Graph, dev: Graph) -> None:
    for g in (prod, dev):
        assert validate_manifests(g) == []
    cluster = prod.by_name("cluster")
    for r in prod.resources:
        if r.type.startswith("kubernetes:") and not r.type.startswith("pulumi:"):
            assert prod.depends_on(r, cluster), r.name


# --- local stack -----------------------------------------------------------------------------


def test_local_stack_uses_minio_and_no_aws(local: Graph) -> None:
    assert not [r for r in local.resources if r.type.startswith("aws:")]
    e = env(local)
    assert e["MLFLOW_S3_ENDPOINT_URL"] == "http://minio.model-store.svc.cluster.local:9000"
    (c,) = server(local)["containers"]
    assert c["envFrom"] == [{"secretRef": {"name": "model-store-credentials"}}]
    # boto3 takes the MinIO keys from the environment: skipped in-line, with the reason.
    assert "CKV_K8S_35" in skips(manifest(local, "Deployment"))
    assert validate_manifests(local) == []


def test_local_postgres_is_in_cluster_and_fenced() -> None:
    g = run_program(
        registry_program({"protect": True, "database": {"kind": "postgres"}}, on_aws=False)
    )
    sts = manifest(g, "StatefulSet", "mlflow-postgres")
    pod = sts["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["image"] == "docker.io/library/postgres:16.13-bookworm"
    # The password is a file the image's entrypoint reads (POSTGRES_PASSWORD_FILE).
    assert no_secret_in_env(c)
    pw_file = {e["name"]: e.get("value") for e in c["env"]}["POSTGRES_PASSWORD_FILE"]
    assert pw_file.startswith(secret_mount(pod, c, "mlflow-postgres")["mountPath"] + "/")
    assert manifest(g, "Secret", "mlflow-postgres")["stringData"] == "[secret]"
    assert c["livenessProbe"]["exec"]["command"][0] == "pg_isready"
    assert sts["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] == "Retain"
    assert g.one("kubernetes:apps/v1:StatefulSet").protect
    np = manifest(g, "NetworkPolicy", "mlflow-postgres")["spec"]
    assert np["ingress"][0]["from"] == [
        {
            "podSelector": {
                "matchLabels": manifest(g, "Deployment")["spec"]["selector"]["matchLabels"]
            }
        }
    ]
    assert np["egress"] == []
    (server_c,) = server(g)["containers"]
    assert secret_mount(server(g), server_c, "mlflow-db")
    assert "MLFLOW_BACKEND_STORE_URI" not in env(g)


def test_local_sqlite_is_on_a_pvc_with_one_writer() -> None:
    g = run_program(
        registry_program({"protect": False, "database": {"kind": "sqlite"}}, on_aws=False)
    )
    pvc = manifest(g, "PersistentVolumeClaim", "mlflow-db")
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    dep = manifest(g, "Deployment")
    assert dep["spec"]["replicas"] == 1
    assert dep["spec"]["strategy"] == {"type": "Recreate"}
    # No secret in a SQLite path: given on the command line, no shell needed.
    (c,) = server(g)["containers"]
    assert c["command"] == ["mlflow", "server"]
    i = c["args"].index("--backend-store-uri")
    assert c["args"][i + 1] == "sqlite:////mlflow/db/mlflow.db"


# --- validation ------------------------------------------------------------------------------


def test_rds_on_the_local_stack_is_refused() -> None:
    with pytest.raises(InvalidArgsError, match=r"database\.kind: rds needs the AWS stack"):
        run_program(registry_program({"protect": False, "database": {"kind": "rds"}}, on_aws=False))


def test_unauthenticated_ingress_is_refused() -> None:
    data = {**DEV, "ingress": {"enabled": True, "host": "mlflow.example.com"}}
    with pytest.raises(InvalidArgsError, match=r"ingress\.auth: is required"):
        run_program(registry_program(data))


def test_sqlite_with_replicas_and_unpinned_images_are_all_reported() -> None:
    data = {
        "protect": False,
        "database": {"kind": "sqlite"},
        "replicas": 2,
        "image": "ghcr.io/mlflow/mlflow:latest",
        "auth": {"adminUsername": "Admin!"},
    }
    with pytest.raises(InvalidArgsError) as exc:
        run_program(registry_program(data, on_aws=False))
    text = str(exc.value)
    for path in ("replicas", "image", "auth.adminUsername"):
        assert f"  - {path}:" in text, path


def test_protect_and_database_must_be_stated() -> None:
    from pydantic import ValidationError

    from components.model_registry import ModelRegistryArgs

    with pytest.raises(ValidationError) as exc:
        ModelRegistryArgs.model_validate({})
    fields = {e["loc"][0] for e in exc.value.errors()}
    assert {"protect", "database"} <= fields
