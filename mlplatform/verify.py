"""`mlplatform verify`: check that a deployed stack really works.

The stack's outputs (``pulumi stack output --json`` or a file) name what to check. AWS settings
are read back through boto3, the cluster through the official Kubernetes client. Every check is a
small function returning a ``CheckResult``; ``_guarded`` turns any exception into a failed result,
so one broken check (or a missing permission) never hides the others.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from components.common import ACCELERATOR_LABEL, GPU_RESOURCE

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

# Seconds per API call: a hung endpoint must fail its check, not the whole run.
TIMEOUT_S = 15

CONTROL_PLANE_LOGS = ("api", "audit", "authenticator")
DEFAULT_PROMETHEUS_URL = "http://prometheus-operated.monitoring.svc:9090"
DEFAULT_ALERTMANAGER_URL = "http://alertmanager-operated.monitoring.svc:9093"
DEFAULT_HEALTH_PATH = "/healthz"
DEVICE_PLUGIN_NAME = "nvidia-device-plugin"
KARPENTER = ("karpenter.sh", "v1", "nodepools")
# The `workload` of a servingEndpoints output entry (mlplatform/platform.py); older stacks' entries
# have none and are Deployments.
DEPLOYMENT, LEADER_WORKER_SET = "Deployment", "LeaderWorkerSet"
# LWS 0.10.0 (components/leader_worker_set.py): group, version, plural of its CRD.
LWS = ("leaderworkerset.x-k8s.io", "v1", "leaderworkersets")


class VerifyError(Exception):
    """A usage problem (no outputs to read): reported as one line, exit code 2."""


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str
    # A skipped check does not apply to this stack (e.g. no GPU node is up); it counts as ok.
    skipped: bool = False

    @property
    def status(self) -> str:
        return "skip" if self.skipped else ("pass" if self.ok else "fail")


def passed(name: str, detail: str) -> CheckResult:
    return CheckResult(name, True, detail)


def failed(name: str, detail: str) -> CheckResult:
    return CheckResult(name, False, detail)


def skipped(name: str, detail: str) -> CheckResult:
    return CheckResult(name, True, detail, skipped=True)


def _error_detail(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and "Error" in response:  # botocore ClientError
        err = response["Error"]
        return f"{err.get('Code', 'Error')}: {err.get('Message', '')}".strip()
    status = getattr(exc, "status", None)
    if status is not None and hasattr(exc, "reason"):  # kubernetes ApiException
        return f"HTTP {status} {exc.reason}".strip()
    return f"{type(exc).__name__}: {exc}"


def _guarded(name: str, fn: Callable[[], CheckResult | list[CheckResult]]) -> list[CheckResult]:
    try:
        result = fn()
    except Exception as exc:  # any failure is this check's result, never the run's
        return [failed(name, _error_detail(exc))]
    return result if isinstance(result, list) else [result]


def _missing(name: str, *keys: str) -> CheckResult:
    return failed(name, "stack output " + ", ".join(f"`{k}`" for k in keys) + " is missing")


# --- Stack outputs ---------------------------------------------------------------------------


def _project_dir(stacks_dir: str | None) -> Path:
    """The folder holding Pulumi.yaml: the stacks folder's parent in this repository."""
    if stacks_dir:
        for candidate in (Path(stacks_dir), Path(stacks_dir).parent):
            if (candidate / "Pulumi.yaml").is_file():
                return candidate
    return Path.cwd()


def load_outputs(stack: str, outputs_file: str | None, stacks_dir: str | None = None) -> dict:
    if outputs_file:
        try:
            data = json.loads(Path(outputs_file).read_text())
        except OSError as exc:
            raise VerifyError(f"cannot read --outputs {outputs_file}: {exc.strerror}") from None
        except json.JSONDecodeError as exc:
            raise VerifyError(f"--outputs {outputs_file} is not valid JSON: {exc}") from None
    else:
        pulumi = shutil.which("pulumi")
        if pulumi is None:
            raise VerifyError(
                "the pulumi CLI is not on PATH, so the stack outputs cannot be read; install it "
                "(https://www.pulumi.com/docs/install/) or pass --outputs FILE, a file written by "
                f"`pulumi stack output --json --show-secrets --stack {stack} > FILE`"
            )
        cmd = [pulumi, "stack", "output", "--json", "--show-secrets", "--stack", stack]
        try:
            proc = subprocess.run(
                cmd,
                cwd=_project_dir(stacks_dir),
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise VerifyError(f"`{' '.join(cmd[1:])}` did not answer in 120 s") from None
        if proc.returncode != 0:
            msg = proc.stderr.strip() or proc.stdout.strip()
            raise VerifyError(f"`pulumi stack output` failed for stack {stack}: {msg}")
        try:
            data = json.loads(proc.stdout or "{}")
        except json.JSONDecodeError as exc:
            raise VerifyError(f"`pulumi stack output --json` printed invalid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise VerifyError("stack outputs must be a JSON object of output names to values")
    if not data:
        raise VerifyError(f"stack {stack} has no outputs: has it been deployed (`pulumi up`)?")
    return data


# --- AWS checks ------------------------------------------------------------------------------


@dataclass
class AwsClients:
    s3: Any
    eks: Any
    ecr: Any
    sts: Any
    budgets: Any

    @classmethod
    def from_session(cls, session: Any, region: str) -> AwsClients:
        from botocore.config import Config

        cfg = Config(connect_timeout=TIMEOUT_S, read_timeout=TIMEOUT_S, retries={"max_attempts": 3})

        def client(service: str, region_name: str = region) -> Any:
            return session.client(service, region_name=region_name, config=cfg)

        # AWS Budgets is a global service served from us-east-1 in the commercial partition.
        return cls(
            client("s3"),
            client("eks"),
            client("ecr"),
            client("sts"),
            client("budgets", "us-east-1"),
        )


def check_bucket_encryption(s3: Any, bucket: str, kms_key_arn: str | None) -> CheckResult:
    name = "aws.s3.encryption"
    try:
        rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"][
            "Rules"
        ]
    except Exception as exc:
        if "ServerSideEncryptionConfigurationNotFound" in _error_detail(exc):
            return failed(name, f"{bucket}: no default encryption (want aws:kms)")
        raise
    default = rules[0].get("ApplyServerSideEncryptionByDefault", {}) if rules else {}
    algorithm = default.get("SSEAlgorithm", "none")
    if algorithm not in ("aws:kms", "aws:kms:dsse"):
        return failed(name, f"{bucket}: default encryption is {algorithm} (want aws:kms)")
    key = default.get("KMSMasterKeyID")
    if kms_key_arn and key and not _same_kms_key(key, kms_key_arn):
        return failed(name, f"{bucket}: encrypted with {key}, not the stack's key {kms_key_arn}")
    if not rules[0].get("BucketKeyEnabled", False):
        return passed(name, f"{bucket}: {algorithm} (bucket key off: more KMS requests)")
    return passed(name, f"{bucket}: {algorithm} with the stack's key")


def _same_kms_key(configured: str, key_arn: str) -> bool:
    # S3 may hold the key as an ARN or as the bare key id.
    return configured == key_arn or key_arn.endswith("/" + configured.rsplit("/", 1)[-1])


def check_bucket_versioning(s3: Any, bucket: str) -> CheckResult:
    name = "aws.s3.versioning"
    status = s3.get_bucket_versioning(Bucket=bucket).get("Status", "never enabled")
    if status != "Enabled":
        return failed(name, f"{bucket}: versioning is {status} (want Enabled)")
    return passed(name, f"{bucket}: versioning Enabled")


PUBLIC_ACCESS_FLAGS = (
    "BlockPublicAcls",
    "IgnorePublicAcls",
    "BlockPublicPolicy",
    "RestrictPublicBuckets",
)


def check_public_access_block(s3: Any, bucket: str) -> CheckResult:
    name = "aws.s3.public-access-block"
    try:
        conf = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    except Exception as exc:
        if "NoSuchPublicAccessBlockConfiguration" in _error_detail(exc):
            return failed(name, f"{bucket}: no public access block")
        raise
    off = [flag for flag in PUBLIC_ACCESS_FLAGS if conf.get(flag) is not True]
    if off:
        return failed(name, f"{bucket}: {', '.join(off)} not true")
    return passed(name, f"{bucket}: all four settings true")


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def denies_insecure_transport(policy: Mapping[str, Any], object_arn: str) -> bool:
    """Whether a statement denies everyone every S3 action on the objects without TLS."""
    for st in _as_list(policy.get("Statement", [])):
        if st.get("Effect") != "Deny":
            continue
        principal = st.get("Principal")
        if isinstance(principal, dict):
            principal = principal.get("AWS")
        if "*" not in _as_list(principal):
            continue
        if not {"s3:*", "*"} & set(_as_list(st.get("Action", []))):
            continue
        if not {object_arn, "*"} & set(_as_list(st.get("Resource", []))):
            continue
        secure = st.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport")
        if any(str(v).lower() == "false" for v in _as_list(secure)):
            return True
    return False


def check_bucket_policy(s3: Any, bucket: str, bucket_arn: str | None) -> CheckResult:
    name = "aws.s3.tls-only-policy"
    try:
        policy = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
    except Exception as exc:
        if "NoSuchBucketPolicy" in _error_detail(exc):
            return failed(
                name, f"{bucket}: no bucket policy (want a deny on aws:SecureTransport false)"
            )
        raise
    arn = bucket_arn or f"arn:aws:s3:::{bucket}"
    if not denies_insecure_transport(policy, f"{arn}/*"):
        return failed(
            name,
            f"{bucket}: policy does not deny s3:* to everyone when aws:SecureTransport is false",
        )
    return passed(name, f"{bucket}: denies requests without TLS")


def _open_to_internet(cidrs: Iterable[str]) -> bool:
    return any(ipaddress.ip_network(c, strict=False).prefixlen == 0 for c in cidrs)


def check_eks_endpoint(cluster: Mapping[str, Any]) -> CheckResult:
    name = "aws.eks.endpoint-access"
    vpc = cluster.get("resourcesVpcConfig", {})
    cidrs = vpc.get("publicAccessCidrs") or []
    problems = []
    if not vpc.get("endpointPrivateAccess"):
        problems.append("endpointPrivateAccess is false")
    # EKS reports publicAccessCidrs ["0.0.0.0/0"] when a public endpoint has no limit.
    if vpc.get("endpointPublicAccess") and (not cidrs or _open_to_internet(cidrs)):
        problems.append(
            f"public endpoint open to the internet (publicAccessCidrs {cidrs or ['0.0.0.0/0']})"
        )
    if problems:
        return failed(name, f"{cluster.get('name')}: " + "; ".join(problems))
    public = (
        f"public limited to {', '.join(cidrs)}" if vpc.get("endpointPublicAccess") else "public off"
    )
    return passed(name, f"{cluster.get('name')}: private on, {public}")


def check_eks_logging(cluster: Mapping[str, Any]) -> CheckResult:
    name = "aws.eks.control-plane-logs"
    enabled = {
        t
        for entry in cluster.get("logging", {}).get("clusterLogging", [])
        if entry.get("enabled")
        for t in entry.get("types", [])
    }
    missing = [t for t in CONTROL_PLANE_LOGS if t not in enabled]
    if missing:
        return failed(name, f"{cluster.get('name')}: {', '.join(missing)} log(s) disabled")
    return passed(name, f"{cluster.get('name')}: {', '.join(CONTROL_PLANE_LOGS)} enabled")


def ecr_repository_name(url: str) -> str:
    """`<account>.dkr.ecr.<region>.amazonaws.com/<name>` -> `<name>` (a bare name passes through)."""
    return url.split("/", 1)[1] if "/" in url else url


def check_ecr_repository(ecr: Any, role: str, url: str) -> CheckResult:
    name = f"aws.ecr.{role}"
    repo_name = ecr_repository_name(url)
    repo = ecr.describe_repositories(repositoryNames=[repo_name])["repositories"][0]
    problems = []
    if not repo.get("imageScanningConfiguration", {}).get("scanOnPush"):
        problems.append("scanOnPush is false")
    if repo.get("imageTagMutability") != "IMMUTABLE":
        problems.append(f"imageTagMutability is {repo.get('imageTagMutability')} (want IMMUTABLE)")
    if problems:
        return failed(name, f"{repo_name}: " + "; ".join(problems))
    return passed(name, f"{repo_name}: scanOnPush, IMMUTABLE tags")


def check_budget(sts: Any, budgets: Any, budget_name: str) -> CheckResult:
    name = "aws.budget"
    account = sts.get_caller_identity()["Account"]
    try:
        budget = budgets.describe_budget(AccountId=account, BudgetName=budget_name)["Budget"]
    except Exception as exc:
        if "NotFound" in _error_detail(exc):
            return failed(name, f"budget {budget_name} not found in account {account}")
        raise
    limit = budget.get("BudgetLimit", {})
    amount = f" ({limit.get('Amount')} {limit.get('Unit')})" if limit else ""
    return passed(name, f"{budget_name}{amount}")


def aws_checks(outputs: Mapping[str, Any], session: Any = None) -> list[CheckResult]:
    region = outputs.get("region")
    if not region:
        return [_missing("aws.outputs", "region")]
    if session is None:
        import boto3

        session = boto3.session.Session()
    try:
        c = AwsClients.from_session(session, region)
    except Exception as exc:
        return [failed("aws.credentials", _error_detail(exc))]
    results: list[CheckResult] = []

    bucket = outputs.get("modelBucket")
    if bucket:
        kms, arn = outputs.get("kmsKeyArn"), outputs.get("modelBucketArn")
        results += _guarded("aws.s3.encryption", lambda: check_bucket_encryption(c.s3, bucket, kms))
        results += _guarded("aws.s3.versioning", lambda: check_bucket_versioning(c.s3, bucket))
        results += _guarded(
            "aws.s3.public-access-block", lambda: check_public_access_block(c.s3, bucket)
        )
        results += _guarded(
            "aws.s3.tls-only-policy", lambda: check_bucket_policy(c.s3, bucket, arn)
        )
    else:
        results.append(_missing("aws.s3", "modelBucket"))

    cluster_name = outputs.get("clusterName")
    if cluster_name:
        try:
            cluster = c.eks.describe_cluster(name=cluster_name)["cluster"]
        except Exception as exc:
            results.append(failed("aws.eks", f"{cluster_name}: {_error_detail(exc)}"))
        else:
            results += _guarded("aws.eks.endpoint-access", lambda: check_eks_endpoint(cluster))
            results += _guarded("aws.eks.control-plane-logs", lambda: check_eks_logging(cluster))
    else:
        results.append(_missing("aws.eks", "clusterName"))

    repos = outputs.get("ecrRepositories")
    if isinstance(repos, dict) and repos:
        for role, url in sorted(repos.items()):
            results += _guarded(f"aws.ecr.{role}", partial(check_ecr_repository, c.ecr, role, url))
    else:
        results.append(_missing("aws.ecr", "ecrRepositories"))

    budget_name = outputs.get("budgetName")
    if budget_name:
        results += _guarded("aws.budget", lambda: check_budget(c.sts, c.budgets, budget_name))
    else:
        results.append(_missing("aws.budget", "budgetName"))
    return results


# --- Kubernetes checks -----------------------------------------------------------------------


def kube_api_client(outputs: Mapping[str, Any]) -> Any:
    """An ApiClient for the stack's cluster: its kubeconfig output, else the kubeContext output
    (or the current context) of the local kubeconfig."""
    import yaml
    from kubernetes import config

    kubeconfig = outputs.get("kubeconfig")
    context = outputs.get("kubeContext")
    if kubeconfig:
        data = yaml.safe_load(kubeconfig) if isinstance(kubeconfig, str) else kubeconfig
        return config.new_client_from_config_dict(data, context=context)
    # KUBECONFIG read now: the client library reads it once, when it is first imported.
    return config.new_client_from_config(config_file=os.environ.get("KUBECONFIG"), context=context)


@dataclass(frozen=True)
class HttpReply:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def short(self) -> str:
        text = self.body.decode("utf-8", "replace").strip().replace("\n", " ")
        return f"HTTP {self.status}" + (f" {text[:160]}" if text else "")


class Kube:
    """The few cluster reads the checks need, through one kubernetes ApiClient."""

    def __init__(self, api_client: Any) -> None:
        from kubernetes import client

        self.api_client = api_client
        self.core = client.CoreV1Api(api_client)
        self.apps = client.AppsV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)

    def service_get(self, namespace: str, service: str, path: str) -> HttpReply:
        """GET through the API server's service proxy; `service` is `[scheme:]name[:port]`.

        The path is built here rather than by connect_get_namespaced_service_proxy_with_path,
        which percent-encodes the `/` and `:` of the path and the port suffix."""
        resource = f"/api/v1/namespaces/{namespace}/services/{service}/proxy/{path.lstrip('/')}"
        request = self.api_client.param_serialize(
            method="GET",
            resource_path=resource,
            header_params={"Accept": "*/*"},
            auth_settings=["BearerToken"],
        )
        response = self.api_client.call_api(*request, _request_timeout=TIMEOUT_S)
        return HttpReply(response.status, response.read() or b"")


def _condition(conditions: Iterable[Any] | None, kind: str) -> Any:
    for cond in conditions or []:
        cond_type = cond.get("type") if isinstance(cond, dict) else cond.type
        if cond_type == kind:
            return cond
    return None


def _condition_true(conditions: Iterable[Any] | None, kind: str) -> bool:
    cond = _condition(conditions, kind)
    if cond is None:
        return False
    status = cond.get("status") if isinstance(cond, dict) else cond.status
    return status == "True"


def _names(items: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def check_nodes_ready(nodes: Sequence[Any]) -> CheckResult:
    name = "k8s.nodes-ready"
    if not nodes:
        return failed(name, "the cluster has no nodes")
    not_ready = [
        n.metadata.name for n in nodes if not _condition_true(n.status.conditions, "Ready")
    ]
    if not_ready:
        return failed(name, f"{len(not_ready)}/{len(nodes)} not Ready: {_names(not_ready)}")
    return passed(name, f"{len(nodes)}/{len(nodes)} Ready")


def check_node_pools(kube: Kube, platform: str, gpu_pools: Sequence[str]) -> CheckResult:
    name = "k8s.karpenter-nodepools"
    from kubernetes.client.exceptions import ApiException

    try:
        pools: Any = kube.custom.list_cluster_custom_object(*KARPENTER, _request_timeout=TIMEOUT_S)
    except ApiException as exc:
        if exc.status == 404:
            if platform == "local":
                return skipped(name, "Karpenter is not installed (local platform)")
            return failed(
                name, "the karpenter.sh/v1 NodePool API is not served: is Karpenter installed?"
            )
        raise
    items = pools.get("items", [])
    found = {p["metadata"]["name"] for p in items}
    missing = [p for p in gpu_pools if p not in found]
    not_ready = [
        p["metadata"]["name"]
        for p in items
        if not _condition_true(p.get("status", {}).get("conditions"), "Ready")
    ]
    problems = []
    if missing:
        problems.append(f"missing: {_names(missing)}")
    if not_ready:
        problems.append(f"not Ready: {_names(not_ready)}")
    if problems:
        return failed(name, "; ".join(problems))
    if not items:
        return skipped(name, "no NodePools declared")
    return passed(name, f"{len(items)} Ready: {_names(sorted(found))}")


def _is_device_plugin(ds: Any) -> bool:
    labels = ds.metadata.labels or {}
    return (
        DEVICE_PLUGIN_NAME in ds.metadata.name
        or labels.get("app.kubernetes.io/name") == DEVICE_PLUGIN_NAME
    )


def check_device_plugin(daemon_sets: Sequence[Any], gpu_expected: bool) -> CheckResult:
    name = "k8s.device-plugin"
    plugins = [ds for ds in daemon_sets if _is_device_plugin(ds)]
    if not plugins:
        if gpu_expected:
            return failed(
                name, f"no {DEVICE_PLUGIN_NAME} DaemonSet found, but GPU pools or nodes exist"
            )
        return skipped(name, "no GPU pools and no device plugin DaemonSet")
    problems, summary = [], []
    for ds in plugins:
        desired = ds.status.desired_number_scheduled
        ready = ds.status.number_ready
        ref = f"{ds.metadata.namespace}/{ds.metadata.name}"
        summary.append(f"{ref} {ready}/{desired}")
        if ready != desired:
            problems.append(f"{ref} {ready}/{desired} pods ready")
    if problems:
        return failed(name, "; ".join(problems))
    return passed(name, "; ".join(summary) + " ready")


def check_gpu_allocatable(nodes: Sequence[Any]) -> CheckResult:
    name = "k8s.gpu-allocatable"
    gpu_nodes = [n for n in nodes if ACCELERATOR_LABEL in (n.metadata.labels or {})]
    if not gpu_nodes:
        return skipped(name, "no GPU node is up (GPU pools scale to zero)")
    bad = []
    for n in gpu_nodes:
        count = (n.status.allocatable or {}).get(GPU_RESOURCE, "0")
        if int(count) < 1:
            bad.append(n.metadata.name)
    if bad:
        return failed(name, f"{GPU_RESOURCE} not allocatable on {_names(bad)}")
    return passed(name, f"{len(gpu_nodes)} GPU node(s) advertise {GPU_RESOURCE}")


@dataclass(frozen=True)
class ServiceRef:
    namespace: str
    name: str
    port: str

    @property
    def proxy(self) -> str:
        return f"{self.name}:{self.port}" if self.port else self.name


def service_ref(url: str) -> ServiceRef:
    """`http://<svc>.<namespace>.svc[.cluster.local][:port]` -> the service to proxy through."""
    parts = urlsplit(url)
    labels = (parts.hostname or "").split(".")
    if len(labels) < 3 or labels[2] != "svc":
        raise ValueError(f"{url} is not an in-cluster service URL (http://<svc>.<ns>.svc:<port>)")
    return ServiceRef(labels[1], labels[0], str(parts.port or ""))


def check_prometheus_targets(kube: Kube, url: str) -> CheckResult:
    name = "k8s.prometheus-targets"
    svc = service_ref(url)
    reply = kube.service_get(svc.namespace, svc.proxy, "api/v1/targets?state=active")
    if reply.status != 200:
        return failed(name, f"{svc.namespace}/{svc.name}: /api/v1/targets answered {reply.short}")
    targets = reply.json().get("data", {}).get("activeTargets", [])
    if not targets:
        return failed(name, "Prometheus has no active scrape targets")
    down = [
        f"{t.get('labels', {}).get('job', '?')} {t.get('scrapeUrl', '')}"
        + (f" ({t['lastError']})" if t.get("lastError") else "")
        for t in targets
        if t.get("health") != "up"
    ]
    if down:
        return failed(name, f"{len(down)}/{len(targets)} down: {_names(down, 3)}")
    return passed(name, f"{len(targets)}/{len(targets)} up")


def check_alertmanager(kube: Kube, url: str) -> CheckResult:
    name = "k8s.alertmanager"
    svc = service_ref(url)
    reply = kube.service_get(svc.namespace, svc.proxy, "-/ready")
    if reply.status != 200:
        return failed(name, f"{svc.namespace}/{svc.name}: /-/ready answered {reply.short}")
    return passed(name, f"{svc.namespace}/{svc.name} ready (HTTP {reply.status})")


def check_serving_ready(kube: Kube, endpoint: str, spec: Mapping[str, Any]) -> CheckResult:
    """The endpoint's workload is up: its kind comes from the output entry's ``workload``."""
    name = f"k8s.serving.{endpoint}.ready"
    namespace, workload = spec["namespace"], spec.get("deployment", spec["service"])
    kind = spec.get("workload", DEPLOYMENT)
    if kind == LEADER_WORKER_SET:
        return _leader_worker_set_ready(kube, name, namespace, workload)
    if kind != DEPLOYMENT:
        return failed(
            name, f"unknown workload {kind!r} (verify knows {DEPLOYMENT}, {LEADER_WORKER_SET})"
        )
    dep = kube.apps.read_namespaced_deployment(workload, namespace, _request_timeout=TIMEOUT_S)
    if dep.status is None:
        return failed(name, f"{namespace}/{workload} has no status yet")
    ready = dep.status.ready_replicas or 0
    if not _condition_true(dep.status.conditions, "Available"):
        cond = _condition(dep.status.conditions, "Available")
        why = f": {cond.message}" if cond is not None and cond.message else ""
        return failed(name, f"{namespace}/{workload} not Available{why}")
    if ready < 1:
        return failed(name, f"{namespace}/{workload} has no ready replica (scaled to zero?)")
    return passed(name, f"{namespace}/{workload} Available, {ready} ready")


def _leader_worker_set_ready(kube: Kube, name: str, namespace: str, workload: str) -> CheckResult:
    from kubernetes.client.exceptions import ApiException

    try:
        lws: Any = kube.custom.get_namespaced_custom_object(
            LWS[0], LWS[1], namespace, LWS[2], workload, _request_timeout=TIMEOUT_S
        )
    except ApiException as exc:
        if exc.status == 404:
            return failed(
                name,
                f"LeaderWorkerSet {namespace}/{workload} not found (or the {LWS[0]}/{LWS[1]} "
                "API is not served: is the LWS controller installed?)",
            )
        raise
    return leader_worker_set_readiness(name, lws)


def leader_worker_set_readiness(name: str, lws: Mapping[str, Any]) -> CheckResult:
    """A LeaderWorkerSet's readiness from its status, as the LWS 0.10 controller writes it
    (pkg/controllers/leaderworkerset_controller.go, updateConditions): ``Available`` is true
    only when every group (leader and workers) is ready and updated; during a rolling update
    ``UpdateInProgress`` and ``Progressing`` are true instead; ``readyReplicas`` counts ready
    groups, ``spec.replicas`` the groups wanted (the HPA's count)."""
    meta, spec = lws.get("metadata") or {}, lws.get("spec") or {}
    ref = f"{meta.get('namespace')}/{meta.get('name')}"
    status = lws.get("status") or {}
    if not status:
        return failed(name, f"{ref} has no status yet: is the LWS controller running?")
    generation, observed = meta.get("generation", 0), status.get("observedGeneration", 0)
    if observed < generation:
        return failed(
            name,
            f"{ref}: status is of generation {observed}, the object is at {generation} "
            "(is the LWS controller running?)",
        )
    wanted = spec.get("replicas", 1)
    ready = status.get("readyReplicas", 0)
    size = (spec.get("leaderWorkerTemplate") or {}).get("size", 1)
    groups = f"{ready}/{wanted} groups of {size} pods ready"
    conditions = status.get("conditions")
    if _condition_true(conditions, "Available"):
        if ready < 1:
            return failed(name, f"{ref} has no ready group (scaled to zero?)")
        return passed(name, f"{ref} Available, {groups}")
    if _condition_true(conditions, "UpdateInProgress") and ready >= max(wanted, 1):
        return passed(name, f"{ref} rolling update in progress, {groups} (no capacity lost)")
    why = [
        f"{c.get('type')}: {c.get('message') or c.get('reason')}"
        for c in conditions or []
        if c.get("status") == "True"
    ]
    return failed(name, f"{ref} not Available ({'; '.join(why) or 'no conditions'}), {groups}")


def check_serving_request(kube: Kube, endpoint: str, spec: Mapping[str, Any]) -> CheckResult:
    name = f"k8s.serving.{endpoint}.request"
    path = spec.get("healthPath", DEFAULT_HEALTH_PATH)
    reply = kube.service_get(spec["namespace"], f"{spec['service']}:http", path)
    if not 200 <= reply.status < 300:
        return failed(name, f"GET {path} via {spec['namespace']}/{spec['service']}: {reply.short}")
    return passed(
        name, f"GET {path} via {spec['namespace']}/{spec['service']}: HTTP {reply.status}"
    )


def kubernetes_checks(outputs: Mapping[str, Any], api_client: Any = None) -> list[CheckResult]:
    if api_client is None:
        try:
            api_client = kube_api_client(outputs)
        except Exception as exc:
            # Nothing below can run without a client: one failure says why.
            return [failed("k8s.connect", f"cannot load kubeconfig: {_error_detail(exc)}")]
    kube = Kube(api_client)
    platform = outputs.get("platform", "aws")
    gpu_pools = list(outputs.get("gpuPools") or [])
    results: list[CheckResult] = []

    nodes: list[Any] | None = None
    try:
        nodes = list(kube.core.list_node(_request_timeout=TIMEOUT_S).items or [])
    except Exception as exc:
        results.append(failed("k8s.nodes-ready", _error_detail(exc)))
    if nodes is not None:
        results += _guarded("k8s.nodes-ready", lambda: check_nodes_ready(nodes))
    results += _guarded(
        "k8s.karpenter-nodepools", lambda: check_node_pools(kube, platform, gpu_pools)
    )
    gpu_nodes_up = any(ACCELERATOR_LABEL in (n.metadata.labels or {}) for n in nodes or [])
    results += _guarded(
        "k8s.device-plugin",
        lambda: check_device_plugin(
            kube.apps.list_daemon_set_for_all_namespaces(_request_timeout=TIMEOUT_S).items,
            bool(gpu_pools) or gpu_nodes_up,
        ),
    )
    if nodes is not None:
        results += _guarded("k8s.gpu-allocatable", lambda: check_gpu_allocatable(nodes))

    prometheus = outputs.get("prometheusUrl") or DEFAULT_PROMETHEUS_URL
    alertmanager = outputs.get("alertmanagerUrl") or DEFAULT_ALERTMANAGER_URL
    results += _guarded(
        "k8s.prometheus-targets", lambda: check_prometheus_targets(kube, prometheus)
    )
    results += _guarded("k8s.alertmanager", lambda: check_alertmanager(kube, alertmanager))

    endpoints = outputs.get("servingEndpoints") or {}
    for endpoint, spec in sorted(endpoints.items()):
        if not isinstance(spec, dict) or not {"namespace", "service"} <= spec.keys():
            results.append(
                failed(f"k8s.serving.{endpoint}", "servingEndpoints entry lacks namespace/service")
            )
            continue
        results += _guarded(
            f"k8s.serving.{endpoint}.ready", partial(check_serving_ready, kube, endpoint, spec)
        )
        results += _guarded(
            f"k8s.serving.{endpoint}.request", partial(check_serving_request, kube, endpoint, spec)
        )
    return results


# --- Run and report --------------------------------------------------------------------------


def run_checks(
    outputs: Mapping[str, Any],
    *,
    skip_aws: bool = False,
    skip_kubernetes: bool = False,
    aws_session: Any = None,
    kube_client: Any = None,
) -> list[CheckResult]:
    results: list[CheckResult] = []
    if skip_aws:
        results.append(skipped("aws", "--skip-aws"))
    elif outputs.get("platform", "aws") != "aws":
        results.append(skipped("aws", f"platform is {outputs.get('platform')}: no AWS resources"))
    else:
        results += aws_checks(outputs, aws_session)
    if skip_kubernetes:
        results.append(skipped("k8s", "--skip-kubernetes"))
    else:
        results += kubernetes_checks(outputs, kube_client)
    return results


def render_table(results: Sequence[CheckResult]) -> str:
    width = max([len("CHECK"), *(len(r.name) for r in results)])
    lines = [f"{'CHECK':<{width}}  RESULT  DETAIL"]
    lines += [f"{r.name:<{width}}  {r.status.upper():<6}  {r.detail}" for r in results]
    failures = sum(not r.ok for r in results)
    lines.append("")
    lines.append(
        f"{failures} of {len(results)} checks failed"
        if failures
        else f"all {len(results)} checks passed"
    )
    return "\n".join(lines)


def render_json(stack: str, results: Sequence[CheckResult]) -> str:
    return json.dumps(
        {
            "stack": stack,
            "ok": all(r.ok for r in results),
            "checks": [{**asdict(r), "status": r.status} for r in results],
        },
        indent=2,
    )


def main(args: argparse.Namespace) -> int:
    try:
        outputs = load_outputs(args.stack, args.outputs, getattr(args, "stacks_dir", None))
    except VerifyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    results = run_checks(outputs, skip_aws=args.skip_aws, skip_kubernetes=args.skip_kubernetes)
    print(render_json(args.stack, results) if args.format == "json" else render_table(results))
    return EXIT_OK if all(r.ok for r in results) else EXIT_FAILED
