"""The platform's typed stack config: one model, validated before any resource is declared.

The engine hands a program its config as strings keyed ``<namespace>:<key>``, with structured values
as JSON. :func:`parse_config` takes exactly that shape, so ``pulumi up`` and the offline plan (which
reads ``stacks/Pulumi.<stack>.yaml`` itself) go through the same code.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, SecretStr, ValidationError, field_validator

from components.capacity_blocks import block_team_issues
from components.ci_runners import CiRunnersArgs
from components.common import ArgsModel, Environment, Issue, format_path
from components.cost_guardrails import CostGuardrailsArgs
from components.gpu_capacity import region_issues
from components.gpu_node_pool import GpuNodePoolArgs, pool_list_issues
from components.gpu_software import GpuSoftwareArgs
from components.karpenter import KarpenterArgs
from components.leader_worker_set import LeaderWorkerSetArgs
from components.load_balancer_controller import LoadBalancerControllerArgs
from components.local_object_store import LocalObjectStoreArgs
from components.model_registry import ModelRegistryArgs
from components.model_store import ModelStoreArgs
from components.monitoring_stack import MonitoringStackArgs
from components.network import NatMode, NetworkArgs
from components.project_access import (
    INFERENCE_LOG_DIR,
    AccessGrant,
    AccessLevel,
    ProjectAccessArgs,
)
from components.serving_endpoint import (
    Runtime,
    ScaleMetric,
    ServingEndpointArgs,
    check_endpoint,
)
from components.training_cluster import TrainingClusterArgs
from components.training_operator import TrainingOperatorArgs
from components.training_queues import TrainingQueuesArgs, check_pool_quotas
from mlplatform.compliance import ComplianceArgs, compliance_issues
from mlplatform.mocks import SECRET_PLACEHOLDER

PROJECT = "ml-platform"
ROOT = Path(__file__).resolve().parent.parent
STACKS_DIR = ROOT / "stacks"

# Commercial regions where EKS, Karpenter and GPU instances are offered.
AWS_REGIONS = (
    "us-east-1", "us-east-2", "us-west-1", "us-west-2", "ca-central-1", "ca-west-1",
    "sa-east-1", "eu-west-1", "eu-west-2", "eu-west-3", "eu-central-1", "eu-central-2",
    "eu-north-1", "eu-south-1", "eu-south-2", "ap-south-1", "ap-south-2", "ap-northeast-1",
    "ap-northeast-2", "ap-northeast-3", "ap-southeast-1", "ap-southeast-2", "ap-southeast-3",
    "ap-southeast-4", "ap-east-1", "me-south-1", "me-central-1", "il-central-1", "af-south-1",
)  # fmt: skip


class Platform(StrEnum):
    aws = "aws"
    local = "local"


class PlatformConfig(ArgsModel):
    """Everything under the ``ml-platform:`` namespace of a stack file."""

    environment: Environment = Field(
        description="Environment class: dev (cheap, explicit protection) or prod (HA, protected)."
    )
    platform: Platform = Field(
        default=Platform.aws,
        description="Where the platform runs: aws (EKS) or local (an existing Kubernetes cluster).",
    )
    owner: str = Field(
        min_length=1, description="Team or person that owns the stack (tag `owner`)."
    )
    cost_center: str = Field(
        min_length=1, description="Cost center billed for the stack (tag `cost-center`)."
    )
    tags: dict[str, str] = Field(
        default_factory=dict,
        description="Extra tags for every AWS resource; the most specific tag wins.",
    )
    kube_context: str | None = Field(
        default=None, description="Kubeconfig context of the cluster used by the local platform."
    )
    kube_network_policies: bool = Field(
        default=True,
        description="local only: the cluster's CNI enforces NetworkPolicy (kind >= 0.24, Calico, "
        "Cilium). false for one that ignores them (minikube's default, Docker Desktop): the "
        "platform then declares none. On aws the platform turns enforcement on in vpc-cni.",
    )
    network: NetworkArgs = Field(
        default_factory=NetworkArgs,
        description="VPC: CIDR, AZ count, NAT mode, interface endpoints, flow logs, or an existing VPC.",
    )
    cluster: TrainingClusterArgs = Field(
        default_factory=TrainingClusterArgs,
        description="EKS: version, endpoint access, admin roles, add-on versions, system nodes.",
    )
    karpenter: KarpenterArgs = Field(
        default_factory=KarpenterArgs,
        description="Karpenter controller chart, node classes and the general CPU pool.",
    )
    gpu_pools: list[GpuNodePoolArgs] = Field(
        default_factory=list,
        description="GPU node pools: accelerator preset, capacity types and reservations, GPU "
        "limit, EFA, time-slicing, image cache volume, SOCI pull, warm pool.",
    )
    gpu_software: GpuSoftwareArgs = Field(
        default_factory=GpuSoftwareArgs,
        description="NVIDIA device plugin or GPU Operator (driver and toolkit from the AMI).",
    )
    training_queues: TrainingQueuesArgs = Field(
        default_factory=TrainingQueuesArgs,
        description="Kueue: team ClusterQueues in a cohort, GPU/CPU/memory quotas, LocalQueues.",
    )
    training_operator: TrainingOperatorArgs = Field(
        default_factory=TrainingOperatorArgs,
        description="Kubeflow Training Operator (multi-node PyTorchJob) version.",
    )
    load_balancer_controller: LoadBalancerControllerArgs = Field(
        default_factory=LoadBalancerControllerArgs,
        description="AWS Load Balancer Controller chart (one shared internal ALB for serving).",
    )
    leader_worker_set: LeaderWorkerSetArgs = Field(
        default_factory=LeaderWorkerSetArgs,
        description="LeaderWorkerSet controller chart (installed only for multiNode endpoints).",
    )
    monitoring: MonitoringStackArgs = Field(
        default_factory=MonitoringStackArgs,
        description="kube-prometheus-stack, Alertmanager receivers, Grafana, DCGM exporter.",
    )
    cost: CostGuardrailsArgs = Field(
        default_factory=CostGuardrailsArgs,
        description="Monthly AWS budget with alert thresholds, and the encrypted alarm topic.",
    )
    model_store: ModelStoreArgs | None = Field(
        default=None,
        description="S3 model store and ECR (aws; required there, with `protect` set explicitly).",
    )
    model_registry: ModelRegistryArgs | None = Field(
        default=None,
        description="MLflow tracking server and model registry (RDS on aws, in-cluster locally).",
    )
    projects: ProjectAccessArgs = Field(
        default_factory=ProjectAccessArgs,
        description="ML projects and the service accounts granted their S3 prefix and ECR repos.",
    )
    serving_endpoints: dict[str, ServingEndpointArgs] = Field(
        default_factory=dict,
        description="Model serving endpoints by name (http or vllm runtime).",
    )
    local_object_store: LocalObjectStoreArgs | None = Field(
        default=None,
        description="MinIO model store (local platform only; AWS uses the S3 model store).",
    )
    compliance: ComplianceArgs = Field(
        default_factory=ComplianceArgs,
        description="Compliance profiles (gdpr, hipaa) whose policy rules the stack must pass, "
        "allowed regions, and the account's CloudTrail trail.",
    )
    ci: CiRunnersArgs = Field(
        default_factory=CiRunnersArgs,
        description="CI: GitHub Actions runners in the VPC (CodeBuild) and the deploy and preview "
        "roles the workflows assume (cluster admin and cluster-wide read).",
    )
    secrets: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="Secret values by name (receiver credentials, grafanaAdminPassword). Set each "
        "with `pulumi config set --secret --path 'secrets.<name>' <value>`.",
    )

    @field_validator("tags")
    @classmethod
    def _reserved_tags(cls, value: dict[str, str]) -> dict[str, str]:
        clash = sorted(set(value) & {"project", "environment", "owner", "cost-center"})
        if clash:
            raise ValueError(f"tags {clash} are set by the platform; use the owner/costCenter keys")
        return value

    def issues(self) -> list[Issue]:
        found = super().issues()
        if self.platform is Platform.local and not self.kube_context:
            found.append(
                Issue(
                    ("kubeContext",), "required when platform is local (a kubeconfig context name)"
                )
            )
        if self.platform is Platform.aws and self.kube_context:
            found.append(Issue(("kubeContext",), "only valid when platform is local"))
        if self.platform is Platform.aws and not self.kube_network_policies:
            found.append(
                Issue(
                    ("kubeNetworkPolicies",),
                    "only valid when platform is local (on aws vpc-cni always enforces them)",
                )
            )
        if self.platform is Platform.aws and self.local_object_store is not None:
            found.append(Issue(("localObjectStore",), "only valid when platform is local"))
        if self.platform is Platform.aws and self.model_store is None:
            found.append(
                Issue(("modelStore",), "required on aws; set at least `protect: true|false`")
            )
        if self.platform is Platform.local and self.model_store is not None:
            found.append(
                Issue(
                    ("modelStore",), "only valid on aws; the local platform uses localObjectStore"
                )
            )
        projects = {p.name for p in self.projects.projects}
        on_aws = self.platform is Platform.aws
        for name, ep in self.serving_endpoints.items():
            found += [
                i.at("servingEndpoints", name)
                for i in check_endpoint(ep, self.gpu_limits(), name=name, on_aws=on_aws)
            ]
            found += unmanaged_autoscaler_issues(name, ep)
            if ep.project not in projects:
                known = ", ".join(sorted(projects)) or "(none declared under projects.projects)"
                found.append(
                    Issue(
                        ("servingEndpoints", name, "project"),
                        f"unknown project {ep.project!r}; declared: {known}",
                    )
                )
        found += [
            i.at("gpuPools")
            for i in pool_list_issues(list(self.gpu_pools), self.karpenter.ami_alias)
        ]
        found += block_team_issues(self.gpu_pools, self.training_queues.teams)
        found += [i.at("monitoring") for i in self.monitoring.secret_issues(self.secrets)]
        found += [
            i.at("trainingQueues")
            for i in check_pool_quotas(self.training_queues, self.gpu_limits())
        ]
        found += compliance_issues(self)
        found += ci_issues(self)
        return found

    def access_args(self) -> ProjectAccessArgs:
        """Declared grants plus one read grant per serving endpoint's service account (with
        put-only access to the inference log where its server samples requests into one)."""
        grants = list(self.projects.grants)
        for name, ep in self.serving_endpoints.items():
            grants.append(
                AccessGrant(
                    project=ep.project,
                    service_account=serving_service_account(name),
                    namespace=ep.namespace or name,
                    access=AccessLevel.READ,
                    create_service_account=False,  # the ServingEndpoint declares it
                    prefixes=model_prefixes(ep),
                    write_only_prefixes=[INFERENCE_LOG_DIR] if ep.inference_log_rate else [],
                )
            )
        return self.projects.model_copy(update={"grants": grants})

    def gpu_limits(self) -> dict[str, int]:
        """Most GPUs each pool can schedule (time-slicing multiplies what pods can request)."""
        return {p.name: p.max_gpus * (p.time_slicing_replicas or 1) for p in self.gpu_pools}


def ci_issues(cfg: PlatformConfig) -> list[Issue]:
    """Where the CI runners and roles meet the rest of the stack."""
    ci = cfg.ci
    found = []
    if cfg.platform is Platform.local and (ci.enabled or ci.roles()):
        found.append(Issue(("ci",), "only valid on aws (runners and access entries are EKS's)"))
    if ci.enabled and cfg.network.nat is NatMode.NONE and cfg.network.existing is None:
        found.append(
            Issue(
                ("ci", "enabled"),
                "runners in the private subnets reach GitHub and package indexes through NAT; "
                "network.nat 'none' gives them no route (allowed with runners: "
                + ", ".join(repr(m.value) for m in NatMode if m is not NatMode.NONE)
                + ")",
            )
        )
    if ci.preview_role_arn is not None and ci.preview_role_arn in cfg.cluster.admin_role_arns:
        found.append(
            Issue(
                ("ci", "previewRoleArn"),
                "is also in cluster.adminRoleArns: previews must not run as cluster admin",
            )
        )
    if ci.deploy_role_arn is not None and ci.deploy_role_arn in cfg.cluster.reader_role_arns:
        found.append(
            Issue(
                ("ci", "deployRoleArn"),
                "is also in cluster.readerRoleArns: one principal gets one access entry",
            )
        )
    return found + project_ci_issues(cfg)


def project_ci_issues(cfg: PlatformConfig) -> list[Issue]:
    """A project's repository gets its own runner: one repository, one runner project."""
    found: list[Issue] = []
    seen: dict[str, int] = {}
    for i, p in enumerate(cfg.projects.projects):
        if p.repository is None:
            continue
        path = ("projects", "projects", i, "repository")
        if not cfg.ci.enabled:
            found.append(
                Issue(
                    path,
                    "needs ci.enabled: true (the project's runner uses the stack's CI "
                    "connection and VPC)",
                )
            )
        if p.repository == cfg.ci.repository:
            found.append(
                Issue(
                    path,
                    f"{p.repository!r} is the platform's own repository (ci.repository), served "
                    "by the platform's runner; a project needs a repository of its own",
                )
            )
        if p.repository in seen:
            found.append(
                Issue(
                    path,
                    f"{p.repository!r} is already projects.projects[{seen[p.repository]}]'s "
                    "repository; one CodeBuild runner project serves one repository",
                )
            )
        seen.setdefault(p.repository, i)
    if seen and cfg.ci.enabled and cfg.ci.state_bucket is None:
        found.append(
            Issue(
                ("ci", "stateBucket"),
                "required when a project names its repository: the project's CI roles read "
                "this stack's outputs from the Pulumi backend's bucket",
            )
        )
    return found


def unmanaged_autoscaler_issues(name: str, ep: ServingEndpointArgs) -> list[Issue]:
    """Options that need a controller the platform does not install: refused, not left inert."""
    found = []
    if ep.keda.enabled:
        found.append(
            Issue(
                ("servingEndpoints", name, "keda", "enabled"),
                "KEDA is not installed by this platform, so a ScaledObject would never scale "
                "the endpoint; use autoscaling (HPA on cpu) instead",
            )
        )
    if ep.autoscaling.metric is ScaleMetric.REQUESTS:
        found.append(
            Issue(
                ("servingEndpoints", name, "autoscaling", "metric"),
                "'requests' needs a custom-metrics API (prometheus-adapter), which this platform "
                "does not install; allowed here: 'cpu'",
            )
        )
    return found


def reservation_issues(cfg: PlatformConfig, region: str) -> list[Issue]:
    """Reservations in another region (or in a zone without a subnet) can never be used."""
    zones = cfg.network.availability_zones
    return [
        issue.at("gpuPools", i, "reservations")
        for i, pool in enumerate(cfg.gpu_pools)
        if pool.reservations is not None
        for issue in region_issues(pool.reservations, region, zones)
    ]


def model_prefixes(ep: ServingEndpointArgs) -> list[str]:
    """The prefixes a vllm endpoint reads (its models'), under its project's; [] = the whole
    project prefix (the http template's server lists the project's models itself)."""
    if ep.runtime is not Runtime.VLLM:
        return []
    sources = [ep.model] + ([ep.canary.model] if ep.canary else [])
    return sorted({s.path.strip("/") + "/" for s in sources})


def serving_service_account(endpoint: str) -> str:
    return f"{endpoint}-server"


@dataclass(frozen=True)
class StackSettings:
    """The parsed config plus what lives outside the ``ml-platform:`` namespace."""

    stack: str
    region: str
    config: PlatformConfig
    secret_keys: frozenset[str]

    @property
    def base_tags(self) -> dict[str, str]:
        return {
            "project": PROJECT,
            "environment": self.config.environment.value,
            "owner": self.config.owner,
            "cost-center": self.config.cost_center,
            "managed-by": "pulumi",
            "stack": self.stack,
        }


class ConfigError(Exception):
    """Every problem with a stack's config, each located by its key path."""

    def __init__(self, stack: str, problems: Iterable[tuple[str, str]]):
        self.stack = stack
        self.problems = list(problems)
        n = len(self.problems)
        lines = [f"stack '{stack}': {n} config problem{'s' if n != 1 else ''}:"]
        lines += [f"  - {key}: {msg}" for key, msg in self.problems]
        super().__init__("\n".join(lines))


# Reading ----------------------------------------------------------------------------------
def _decode(value: str) -> Any:
    """Structured config arrives as JSON text; plain strings stay strings."""
    text = value.strip()
    if text[:1] in "[{":
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return value
    return value


def _pydantic_message(err: Mapping[str, Any], model: type[ArgsModel]) -> str:
    kind, msg = err["type"], err["msg"]
    if kind == "extra_forbidden":
        allowed = _allowed_keys(model, err["loc"][:-1])
        if not allowed:
            return "unknown key"
        close = difflib.get_close_matches(str(err["loc"][-1]), allowed, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        return f"unknown key; {hint}allowed keys: {', '.join(allowed)}"
    if kind == "missing":
        return "required key is missing"
    if kind == "value_error":  # a validator's own message: drop pydantic's "Value error, "
        return msg.removeprefix("Value error, ")
    got = err.get("input")
    if kind.startswith(("greater", "less")) or kind in (
        "int_parsing",
        "bool_parsing",
        "float_parsing",
    ):
        return f"{msg} (got {got!r})"
    return msg


def _allowed_keys(model: type[ArgsModel], loc: tuple[Any, ...]) -> list[str]:
    """Walk the model along a pydantic error location to list the keys allowed there."""
    current: Any = model
    for part in loc:
        if isinstance(part, int) or current is None:
            continue
        fields = getattr(current, "model_fields", None)
        if not fields:
            return []
        match = next((f for n, f in fields.items() if (f.alias or n) == part), None)
        if match is None:
            return []
        current = _model_in(match.annotation)
    fields = getattr(current, "model_fields", {})
    return sorted(f.alias or n for n, f in fields.items())


def _model_in(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, ArgsModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def parse_config(
    stack: str, raw: Mapping[str, str], secret_keys: Iterable[str] = ()
) -> StackSettings:
    """Validate a stack's config (engine shape: ``ns:key`` → string) and collect every problem."""
    secrets = frozenset(secret_keys)
    problems: list[tuple[str, str]] = []
    data: dict[str, Any] = {}
    prefix = f"{PROJECT}:"
    for key, value in raw.items():
        if key.startswith(prefix):
            data[key[len(prefix) :]] = _decode(value) if isinstance(value, str) else value

    platform = data.get("platform", Platform.aws.value)
    region = raw.get("aws:region", "")
    if platform == Platform.aws.value:
        if not region:
            problems.append(("aws:region", f"required; one of {', '.join(AWS_REGIONS)}"))
        elif region not in AWS_REGIONS:
            problems.append(
                ("aws:region", f"unknown region {region!r}; one of {', '.join(AWS_REGIONS)}")
            )

    problems += _inject_environment(data)
    cfg: PlatformConfig | None = None
    try:
        cfg = PlatformConfig.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            problems.append(
                (format_path(tuple(err["loc"]), prefix), _pydantic_message(err, PlatformConfig))
            )
        broken = {err["loc"][0] for err in exc.errors() if err["loc"]}
        problems += _section_issues(data, broken, prefix)
    if cfg is not None:
        problems += [(format_path(i.path, prefix), i.message) for i in cfg.issues()]
        if region:
            problems += [
                (format_path(i.path, prefix), i.message) for i in reservation_issues(cfg, region)
            ]
        problems += _plaintext_secrets(cfg, secrets)
    if problems:
        raise ConfigError(stack, problems)
    assert cfg is not None
    return StackSettings(stack=stack, region=region, config=cfg, secret_keys=secrets)


def _section_issues(data: dict[str, Any], broken: set[Any], prefix: str) -> list[tuple[str, str]]:
    """With some sections invalid, still run the semantic checks of the sections that are valid,
    so one run reports every problem (cross-section checks wait for a fully valid config)."""
    from pydantic import TypeAdapter

    found: list[tuple[str, str]] = []
    for name, field in PlatformConfig.model_fields.items():
        key = field.alias or name
        if key in broken or key not in data or field.annotation is None:
            continue
        try:
            value = TypeAdapter(field.annotation).validate_python(data[key])
        except ValidationError:
            continue
        if isinstance(value, dict):
            items: list[tuple[Any, Any]] = list(value.items())
        elif isinstance(value, list):
            items = list(enumerate(value))
        else:
            items = [(None, value)]
        for idx, item in items:
            if isinstance(item, ArgsModel):
                base: tuple[str | int, ...] = (key,) if idx is None else (key, idx)
                found += [(format_path((*base, *i.path), prefix), i.message) for i in item.issues()]
    return found


def _inject_environment(data: dict[str, Any]) -> list[tuple[str, str]]:
    """Sections with their own `environment` field follow the stack's; setting it twice is an error."""
    env = data.get("environment")
    valid_env = isinstance(env, str) and env in {e.value for e in Environment}
    problems = []
    for name, field in PlatformConfig.model_fields.items():
        key = field.alias or name
        section = _model_in(field.annotation)
        if key == "environment" or section is None or "environment" not in section.model_fields:
            continue
        items = data.get(key)
        if items is None and not isinstance(field.get_default(call_default_factory=True), list):
            items = data[key] = {}
        entries = items if isinstance(items, list) else [items]
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict):
                continue
            if "environment" in entry:
                where = f"{PROJECT}:{key}" + (f"[{i}]" if isinstance(items, list) else "")
                problems.append(
                    (f"{where}.environment", f"set by {PROJECT}:environment; remove it here")
                )
            elif valid_env:
                entry["environment"] = env
    return problems


def _plaintext_secrets(cfg: PlatformConfig, secrets: frozenset[str]) -> list[tuple[str, str]]:
    """Secret fields must come from `pulumi config set --secret`, never from plain text."""
    out = []
    for path in secret_paths(cfg):
        top = f"{PROJECT}:{path[0]}"
        if top not in secrets:
            key = format_path(path, f"{PROJECT}:")
            out.append((key, f"is a secret: set it with `pulumi config set --secret {top} ...`"))
    return out


def secret_paths(model: ArgsModel, base: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    """Paths of every populated SecretStr field in the model tree."""
    from pydantic import SecretStr

    found: list[tuple[str | int, ...]] = []
    for name, field in type(model).model_fields.items():
        key = field.alias or name
        value = getattr(model, name)
        items: list[tuple[tuple[str | int, ...], Any]] = [((*base, key), value)]
        if isinstance(value, (list, tuple)):
            items = [((*base, key, i), v) for i, v in enumerate(value)]
        elif isinstance(value, dict):
            items = [((*base, key, k), v) for k, v in value.items()]
        for path, item in items:
            if isinstance(item, SecretStr):
                found.append(path)
            elif isinstance(item, ArgsModel):
                found.extend(secret_paths(item, path))
    return found


def read_stack_file(stack: str, stacks_dir: Path = STACKS_DIR) -> tuple[dict[str, str], list[str]]:
    """Read a stack file into the engine's shape. Secure values become a placeholder."""
    path = stacks_dir / f"Pulumi.{stack}.yaml"
    if not path.is_file():
        known = sorted(
            p.name[len("Pulumi.") : -len(".yaml")] for p in stacks_dir.glob("Pulumi.*.yaml")
        )
        raise ConfigError(
            stack, [("--stack", f"no stack file {path}; known stacks: {', '.join(known)}")]
        )
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(stack, [(str(path), f"not valid YAML: {exc}")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(stack, [(str(path), f"cannot read it: {exc}")]) from None
    if not isinstance(doc, dict):
        raise ConfigError(
            stack,
            [(str(path), f"must be a mapping with a `config:` key, got {type(doc).__name__}")],
        )
    section = doc.get("config") or {}
    if not isinstance(section, dict):
        raise ConfigError(
            stack,
            [("config", f"must map keys to values (key: value), got {type(section).__name__}")],
        )
    bad = [k for k in section if not isinstance(k, str)]
    if bad:
        raise ConfigError(stack, [(f"config.{k}", "keys must be strings") for k in bad])
    raw: dict[str, str] = {}
    secret_keys: list[str] = []
    for key, value in section.items():
        if ":" not in key:
            key = f"{PROJECT}:{key}"
        has_secret, plain = _strip_secure(value)
        if has_secret:
            secret_keys.append(key)
        raw[key] = _engine_string(plain)
    return raw, secret_keys


def _strip_secure(value: Any) -> tuple[bool, Any]:
    """Replace ``{secure: ...}`` ciphertexts (nested too) with a placeholder, noting they were there."""
    if isinstance(value, dict):
        if set(value) == {"secure"}:
            return True, SECRET_PLACEHOLDER
        found = False
        out = {}
        for k, v in value.items():
            f, out[k] = _strip_secure(v)
            found |= f
        return found, out
    if isinstance(value, list):
        pairs = [_strip_secure(v) for v in value]
        return any(f for f, _ in pairs), [v for _, v in pairs]
    return False, value


def _engine_string(value: Any) -> str:
    """How the engine passes a config value to a program: scalars as text, the rest as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(value)


def load_stack(stack: str, stacks_dir: Path = STACKS_DIR) -> StackSettings:
    raw, secret_keys = read_stack_file(stack, stacks_dir)
    return parse_config(stack, raw, secret_keys)


def config_from_runtime() -> tuple[dict[str, str], list[str]]:
    """The config the engine handed this process (what `pulumi up` runs with)."""
    from pulumi.runtime import config as rc

    raw = {**rc.get_config_env(), **rc.CONFIG.get()}
    secret = set(rc.get_config_secret_keys_env()) | set(rc._SECRET_KEYS.get())
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in raw.items()}, sorted(secret)
