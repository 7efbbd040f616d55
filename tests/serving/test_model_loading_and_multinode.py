"""Issue 19's serving half: how vllm endpoints load weights (Run:ai streamer or a download), the
read grant scoped to the model's prefix, and multi-node endpoints as a LeaderWorkerSet."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml

from components.common import GPU_RESOURCE, GPU_TOLERATION, POOL_LABEL
from components.leader_worker_set import LWS_CHART_VERSION, lws_values
from components.project_access import AccessLevel, s3_prefix_policy
from components.serving_endpoint import check_endpoint
from mlplatform.config import model_prefixes, parse_config, read_stack_file
from mlplatform.graph import Graph
from mlplatform.placement import workloads
from mlplatform.plan import run_program
from tests.iam import iam_findings
from tests.kube_validate import KubectlValidate, sources
from tests.serving.helpers import (
    POOLS,
    VLLM_ENDPOINT,
    by_kind,
    endpoint_args,
    endpoint_program,
    env_of,
    one,
)

ROOT = Path(__file__).resolve().parents[2]
MULTI = {
    **VLLM_ENDPOINT,
    "gpuPool": "gpu-h100",
    "resources": {"cpu": "90", "memory": "900Gi", "gpus": 8},
    "multiNode": {"nodes": 2},
    "autoscaling": {"minReplicas": 1, "maxReplicas": 2},
}


def _with_lws(name: str, args: Any, **kw: Any) -> Any:
    def program() -> None:
        # The stand-in of the controller's release (components.leader_worker_set).
        lws = pulumi.CustomResource("test:index:Release", "lws", {})
        endpoint_program(name, args, leader_worker_set=lws, **kw)()

    return program


@pytest.fixture(scope="module")
def multi_aws() -> Graph:
    return run_program(_with_lws("big-chat", endpoint_args(MULTI)))


@pytest.fixture(scope="module")
def download_local() -> Graph:
    args = endpoint_args(
        VLLM_ENDPOINT,
        model={"path": "models/llama", "loadFormat": "download", "downloadSize": "40Gi"},
    )
    return run_program(endpoint_program("chat", args, on_aws=False, storage_kind="minio"))


def _server(pod_spec: dict[str, Any]) -> dict[str, Any]:
    return pod_spec["containers"][0]


# --- Model loading ----------------------------------------------------------------------------


def test_the_streamer_is_the_default_and_reads_s3_directly() -> None:
    g = run_program(
        endpoint_program(
            "chat",
            endpoint_args(VLLM_ENDPOINT, model={"path": "models/x/", "streamerConcurrency": 32}),
        )
    )
    deploy = one(g.manifests(), "Deployment")
    server = _server(deploy["spec"]["template"]["spec"])
    args = server["args"]
    assert args[args.index("--model") + 1] == "$(MODEL_URI)"
    assert args[args.index("--load-format") + 1] == "runai_streamer"
    env = env_of(server)
    assert env["MODEL_URI"] == "s3://ml-dev-models/projects/chat/models/x"
    assert env["RUNAI_STREAMER_CONCURRENCY"] == "32"
    assert env["AWS_REGION"] == "us-east-1"
    # On AWS the streamer talks to S3 itself: no endpoint override, no static keys.
    assert "RUNAI_STREAMER_S3_ENDPOINT" not in env and "envFrom" not in server
    assert "initContainers" not in deploy["spec"]["template"]["spec"]


def test_the_streamer_reaches_minio_on_the_local_stack() -> None:
    g = run_program(
        endpoint_program("chat", endpoint_args(VLLM_ENDPOINT), on_aws=False, storage_kind="minio")
    )
    env = env_of(_server(one(g.manifests(), "Deployment")["spec"]["template"]["spec"]))
    # vLLM copies AWS_ENDPOINT_URL to the streamer only with --model-loader-extra-config.
    assert env["RUNAI_STREAMER_S3_ENDPOINT"] == "http://minio.minio.svc:9000"
    assert env["RUNAI_STREAMER_S3_USE_VIRTUAL_ADDRESSING"] == "0"


def test_download_copies_the_prefix_before_the_server_starts(download_local: Graph) -> None:
    spec = one(download_local.manifests(), "Deployment")["spec"]["template"]["spec"]
    (init,) = spec["initContainers"]
    assert init["image"] == _server(spec)["image"]
    assert init["command"][:2] == ["python3", "-c"] and "pull_files" in init["command"][2]
    assert init["args"] == ["$(MODEL_URI)/", "/models/weights"]
    assert init["securityContext"]["readOnlyRootFilesystem"] is True
    assert init["envFrom"] == [{"secretRef": {"name": "minio-credentials"}}]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["model"] == {"name": "model", "emptyDir": {"sizeLimit": "40Gi"}}
    server = _server(spec)
    assert {"name": "model", "mountPath": "/models", "readOnly": True} in server["volumeMounts"]
    args = server["args"]
    assert args[args.index("--model") + 1] == "/models/weights"
    assert args[args.index("--load-format") + 1] == "auto"


@pytest.mark.parametrize(
    ("overrides", "path", "message"),
    [
        (
            {"model": {"path": "m/", "loadFormat": "download", "streamerConcurrency": 8}},
            ("model", "streamerConcurrency"),
            "only applies to loadFormat runai_streamer",
        ),
        (
            {"model": {"path": "m/", "downloadSize": "10Gi"}},
            ("model", "downloadSize"),
            "only applies to loadFormat download",
        ),
        (
            {"model": {"path": "m/", "loadFormat": "download", "downloadSize": "ten"}},
            ("model", "downloadSize"),
            "quantity",
        ),
        (
            {
                "runtime": "http",
                "image": "r.example.com/x:1",
                "vllmArgs": [],
                "model": {"path": "m/", "loadFormat": "runai_streamer"},
            },
            ("model", "loadFormat"),
            "only applies to the vllm runtime",
        ),
    ],
)
def test_impossible_load_formats_are_config_errors(
    overrides: dict[str, Any], path: tuple[str, ...], message: str
) -> None:
    found = {
        i.path: i.message for i in check_endpoint(endpoint_args(VLLM_ENDPOINT, **overrides), POOLS)
    }
    assert path in found and message in found[path], found


def test_the_streamer_cannot_read_from_mlflow() -> None:
    args = endpoint_args(
        VLLM_ENDPOINT, model={"store": "mlflow", "path": "models:/chat/3", "loadFormat": "download"}
    )
    found = {i.path: i.message for i in check_endpoint(args, POOLS)}
    assert "only applies to models in the s3 model store" in found[("model", "loadFormat")]
    assert "vllm loads weights from s3" in found[("model", "store")]


# --- The grant, scoped to the model's prefix -------------------------------------------------


def test_a_vllm_endpoint_reads_only_its_models_prefixes() -> None:
    args = endpoint_args(
        VLLM_ENDPOINT,
        model={"path": "models/llama-8b"},
        canary={"model": {"path": "models/llama-8b-v2/"}, "weight": 5},
    )
    assert model_prefixes(args) == ["models/llama-8b-v2/", "models/llama-8b/"]
    bucket = "arn:aws:s3:::ml-prod-models"
    doc = s3_prefix_policy(
        bucket_arn=bucket,
        prefix=[f"projects/chat/{p}" for p in model_prefixes(args)],
        access=AccessLevel.READ,
        kms_key_arn="arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        region="us-east-1",
    )
    stmts = {s["Sid"]: s for s in doc["Statement"]}
    objects = [
        f"{bucket}/projects/chat/models/llama-8b-v2/*",
        f"{bucket}/projects/chat/models/llama-8b/*",
    ]
    assert stmts["ReadObjects"]["Resource"] == objects
    assert stmts["ReadObjects"]["Action"] == [
        "s3:GetObject",
        "s3:GetObjectTagging",
        "s3:GetObjectVersion",
    ]
    listed = stmts["ListPrefix"]["Condition"]["StringLike"]["s3:prefix"]
    assert "projects/chat/models/llama-8b/*" in listed and "projects/chat/*" not in listed
    kms = stmts["UseBucketKeyThroughS3"]
    assert kms["Action"] == ["kms:Decrypt"]
    assert kms["Condition"]["StringEquals"] == {"kms:ViaService": "s3.us-east-1.amazonaws.com"}
    assert set(stmts) == {"ListPrefix", "ReadObjects", "UseBucketKeyThroughS3"}
    assert iam_findings(doc) == []


def test_the_shipped_stacks_grant_vllm_endpoints_their_model_prefix_only() -> None:
    cfg = parse_config("t", _raw_with_example()).config
    grants = {g.service_account: g for g in cfg.access_args().grants}
    assert grants["llama-405b-server"].prefixes == ["models/llama-3.1-405b-instruct-fp8/"]
    # http endpoints keep the project prefix: the template's server lists the project's models.
    assert grants["churn-scorer-server"].prefixes == []


def test_http_servers_may_put_their_inference_log_and_vllm_servers_may_not() -> None:
    raw = _raw_with_example()
    cfg = parse_config("t", raw).config
    grants = {g.service_account: g for g in cfg.access_args().grants}
    assert grants["churn-scorer-server"].write_only_prefixes == ["inference-logs/"]
    assert grants["churn-scorer-server"].access is AccessLevel.READ
    assert grants["llama-405b-server"].write_only_prefixes == []
    # Sampling off: no write access at all.
    endpoints = json.loads(raw["ml-platform:servingEndpoints"])
    endpoints["churn-scorer"]["inferenceLogSampleRate"] = 0
    off = parse_config("t", {**raw, "ml-platform:servingEndpoints": json.dumps(endpoints)}).config
    grants = {g.service_account: g for g in off.access_args().grants}
    assert grants["churn-scorer-server"].write_only_prefixes == []


def test_parliament_flags_a_broken_grant() -> None:
    # The check can fail: object reads granted on the bucket instead of its objects.
    doc = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::ml-prod-models"}
        ],
    }
    assert [issue for issue, _ in iam_findings(doc)] == ["RESOURCE_MISMATCH"]


# --- Multi-node: a LeaderWorkerSet -----------------------------------------------------------


def test_a_multi_node_endpoint_is_a_leader_worker_set(multi_aws: Graph) -> None:
    ms = multi_aws.manifests()
    assert by_kind(ms, "Deployment") == []
    lws = one(ms, "LeaderWorkerSet")
    assert lws["apiVersion"] == "leaderworkerset.x-k8s.io/v1"
    spec = lws["spec"]
    assert "replicas" not in spec  # the HPA owns the group count
    lwt = spec["leaderWorkerTemplate"]
    assert lwt["size"] == 2 and lwt["restartPolicy"] == "RecreateGroupOnPodRestart"
    assert spec["startupPolicy"] == "LeaderCreated"
    assert spec["rolloutStrategy"]["rollingUpdateConfiguration"] == {
        "maxSurge": 1,
        "maxUnavailable": 0,
    }
    leader, worker = lwt["leaderTemplate"]["spec"], lwt["workerTemplate"]["spec"]
    server = _server(leader)
    line = server["args"][0]
    assert server["command"] == ["/bin/bash", "-c"]
    assert line.startswith(
        'bash /vllm-workspace/examples/online_serving/multi-node-serving.sh leader --ray_cluster_size="$LWS_GROUP_SIZE" && exec python3 -m vllm.entrypoints.openai.api_server '
    )
    assert (
        "--tensor-parallel-size 8 --load-format runai_streamer --pipeline-parallel-size 2 --distributed-executor-backend ray"
        in line
    )
    assert {"startupProbe", "readinessProbe", "livenessProbe"} <= server.keys()
    w = _server(worker)
    assert w["args"] == [
        'exec bash /vllm-workspace/examples/online_serving/multi-node-serving.sh worker --ray_address="$LWS_LEADER_ADDRESS"'
    ]
    assert "ports" not in w and "readinessProbe" not in w
    for pod in (leader, worker):
        c = _server(pod)
        assert c["resources"]["limits"][GPU_RESOURCE] == "8"
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["automountServiceAccountToken"] is False
        assert pod["serviceAccountName"] == "big-chat-server"
        assert pod["tolerations"] == [GPU_TOLERATION]
        assert pod["nodeSelector"] == {"kubernetes.io/arch": "amd64", POOL_LABEL: "gpu-h100"}
        affinity = pod["affinity"]
        same_zone = affinity["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]
        assert same_zone["matchLabelKeys"] == ["leaderworkerset.sigs.k8s.io/group-key"]
        assert same_zone["topologyKey"] == "topology.kubernetes.io/zone"
        apart = affinity["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]
        assert apart["topologyKey"] == "kubernetes.io/hostname"


def test_only_leaders_serve_and_the_hpa_scales_groups(multi_aws: Graph) -> None:
    ms = multi_aws.manifests()
    svc = one(ms, "Service")
    assert svc["spec"]["selector"]["leaderworkerset.sigs.k8s.io/worker-index"] == "0"
    hpa = one(ms, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "leaderworkerset.x-k8s.io/v1",
        "kind": "LeaderWorkerSet",
        "name": "big-chat",
    }
    pdb = one(ms, "PodDisruptionBudget")
    assert pdb["spec"]["selector"] == {"matchLabels": {"mlplatform.io/endpoint": "big-chat"}}
    monitor = one(ms, "ServiceMonitor")
    assert monitor["spec"]["selector"]["matchLabels"]["mlplatform.io/endpoint"] == "big-chat"
    policy = one(ms, "NetworkPolicy")
    rules = policy["spec"]["ingress"]
    group_rule = {
        "from": [{"podSelector": {"matchLabels": {"mlplatform.io/endpoint": "big-chat"}}}]
    }
    assert group_rule in rules
    # every other rule keeps to the server port
    assert all(
        r.get("ports") == [{"protocol": "TCP", "port": 8000}] for r in rules if r != group_rule
    )


def test_the_leader_worker_set_waits_for_its_controller(multi_aws: Graph) -> None:
    lws = [
        r
        for r in multi_aws.resources
        if r.type == "kubernetes:leaderworkerset.x-k8s.io/v1:LeaderWorkerSet"
    ]
    assert len(lws) == 1
    assert any(d.endswith("test:index:Release::lws") for d in lws[0].dependencies)


def test_placement_reads_leader_and_worker_templates(multi_aws: Graph) -> None:
    names = {w.name for w in workloads(multi_aws)}
    assert {
        "LeaderWorkerSet big-chat/big-chat/leader",
        "LeaderWorkerSet big-chat/big-chat/worker",
    } <= names


def test_the_leader_worker_set_passes_its_real_crd(
    multi_aws: Graph, kubectl_validate: KubectlValidate
) -> None:
    """Every object of the endpoint, the LeaderWorkerSet against LWS's own CRD."""
    kubectl_validate.assert_valid(multi_aws.manifests())
    lws = one(multi_aws.manifests(), "LeaderWorkerSet")
    broken = copy.deepcopy(lws)
    broken["spec"]["leaderWorkerTemplate"]["restartPolicy"] = "Always"
    no_workers = copy.deepcopy(lws)
    del no_workers["spec"]["leaderWorkerTemplate"]["workerTemplate"]
    bad_policy, missing = kubectl_validate.problems([broken, no_workers])
    assert any("restartPolicy" in p and "Unsupported value" in p for p in bad_policy), bad_policy
    assert any("workerTemplate: Required value" in p for p in missing), missing


def test_the_lws_crd_row_follows_the_chart_the_platform_installs() -> None:
    row = sources()["lws"]
    assert row.pinned == LWS_CHART_VERSION
    assert row.module == "sigs.k8s.io/lws"
    values = lws_values(
        __import__("components.leader_worker_set", fromlist=["x"]).LeaderWorkerSetArgs(),
        prometheus=True,
    )
    assert values["image"]["manager"]["tag"] == f"v{LWS_CHART_VERSION}"


@pytest.mark.parametrize(
    ("overrides", "path", "message"),
    [
        (
            {"multiNode": {"nodes": 1}},
            ("multiNode", "nodes"),
            "a one-node model runs as a Deployment",
        ),
        (
            {"multiNode": {"nodes": 3}},
            ("multiNode", "nodes"),
            "more than pool 'gpu-h100' can hold (16)",
        ),
        (
            {"multiNode": {"nodes": 2, "tensorParallelSize": 4}},
            ("multiNode",),
            "must equal every GPU",
        ),
        (
            {"runtime": "http", "image": "r.example.com/x:1", "vllmArgs": []},
            ("multiNode",),
            "only the vllm runtime runs across nodes",
        ),
    ],
)
def test_impossible_multi_node_layouts_are_config_errors(
    overrides: dict[str, Any], path: tuple[str, ...], message: str
) -> None:
    args = endpoint_args(MULTI, **overrides)
    found = {i.path: i.message for i in check_endpoint(args, {"gpu-a10g": 4, "gpu-h100": 16})}
    assert path in found and message in found[path], found


# --- The shipped example, and the CLI -------------------------------------------------------


def _raw_with_example() -> dict[str, Any]:
    """prod's stack config with its commented multi-node endpoint turned on."""
    text = (ROOT / "stacks" / "Pulumi.prod.yaml").read_text()
    block = re.search(r"# BEGIN multi-node example\n(.*?)\n *# END multi-node example", text, re.S)
    assert block is not None
    on = "\n".join(re.sub(r"^(\s*)# ", r"\1", line) for line in block.group(1).splitlines())
    text = text.replace(block.group(1), on)
    raw = yaml.safe_load(text)["config"]
    return {k: (v if isinstance(v, str) else json.dumps(v)) for k, v in raw.items()}


def test_prods_commented_example_is_a_valid_endpoint() -> None:
    cfg = parse_config("prod", _raw_with_example()).config
    ep = cfg.serving_endpoints["llama-405b"]
    assert ep.multi_node is not None and ep.gpus_per_replica == 16
    assert read_stack_file  # the stack file itself stays valid (tests/config covers it)


def test_the_cli_reports_every_problem_at_once_with_exit_2(tmp_path: Path) -> None:
    raw = _raw_with_example()
    eps = json.loads(raw["ml-platform:servingEndpoints"])
    eps["llama-405b"]["multiNode"] = {"nodes": 3}  # 24 GPUs > the pool's 16
    eps["llama-405b"]["model"]["downloadSize"] = "10Gi"  # not a download
    eps["churn-scorer"]["multiNode"] = {"nodes": 2}  # http cannot span nodes
    eps["churn-scorer"]["model"]["loadFormat"] = "download"
    eps["tiny"] = {**copy.deepcopy(eps["llama-405b"]), "multiNode": {"nodes": 1}}
    eps["tiny"]["ingress"]["host"] = "tiny.ml.example.com"
    raw["ml-platform:servingEndpoints"] = json.dumps(eps)
    (tmp_path / "Pulumi.bad.yaml").write_text(yaml.safe_dump({"config": raw}))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlplatform.cli",
            "plan",
            "--stack",
            "bad",
            "--stacks-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    for key in (
        "servingEndpoints.llama-405b.multiNode.nodes",
        "servingEndpoints.llama-405b.model.downloadSize",
        "servingEndpoints.churn-scorer.multiNode",
        "servingEndpoints.churn-scorer.model.loadFormat",
        "servingEndpoints.tiny.multiNode.nodes",
    ):
        assert key in proc.stderr, (key, proc.stderr)


# --- The policy pack sees every pod of a group ------------------------------------------------


def test_the_container_policy_checks_leader_and_worker_pods(multi_aws: Graph) -> None:
    from policies import rules
    from tests.policies.helpers import args as policy_args
    from tests.policies.helpers import violations

    lws = one(multi_aws.manifests(), "LeaderWorkerSet")
    rtype = "kubernetes:leaderworkerset.x-k8s.io/v1:LeaderWorkerSet"
    assert violations(rules.validate_containers, policy_args(rtype, lws)) == []
    assert violations(rules.validate_image_tags, policy_args(rtype, lws)) == []
    # The check can fail: a worker that may run as root, with no memory limit, is reported.
    root = copy.deepcopy(lws)
    worker = root["spec"]["leaderWorkerTemplate"]["workerTemplate"]["spec"]
    worker["securityContext"] = {}
    worker["containers"][0]["securityContext"] = {"runAsUser": 0}
    del worker["containers"][0]["resources"]["limits"]["memory"]
    found = violations(rules.validate_containers, policy_args(rtype, root))
    assert any("must run as non-root" in f for f in found), found
    assert any("limits.memory" in f for f in found), found


def test_workers_of_a_downloaded_model_download_their_own_copy() -> None:
    args = endpoint_args(
        MULTI, model={"path": "models/big/", "loadFormat": "download", "downloadSize": "900Gi"}
    )
    g = run_program(_with_lws("big-chat", args))
    lwt = one(g.manifests(), "LeaderWorkerSet")["spec"]["leaderWorkerTemplate"]
    for role in ("leaderTemplate", "workerTemplate"):
        spec = lwt[role]["spec"]
        assert [c["name"] for c in spec["initContainers"]] == ["download-model"]
        assert {"name": "model", "emptyDir": {"sizeLimit": "900Gi"}} in spec["volumes"]
    # Only leaders spread over zones: a worker counted against them could not follow its leader.
    assert "topologySpreadConstraints" not in lwt["workerTemplate"]["spec"]
    spread = lwt["leaderTemplate"]["spec"]["topologySpreadConstraints"]
    assert [c["topologyKey"] for c in spread] == ["topology.kubernetes.io/zone"]
    assert (
        spread[0]["labelSelector"]["matchLabels"]["leaderworkerset.sigs.k8s.io/worker-index"] == "0"
    )


# --- The whole platform, prod with its multi-node example on --------------------------------


@pytest.fixture(scope="module")
def prod_with_example(tmp_path_factory: pytest.TempPathFactory) -> Graph:
    from mlplatform.report import run_stack

    folder = tmp_path_factory.mktemp("stacks")
    raw = _raw_with_example()
    (folder / "Pulumi.prod.yaml").write_text(yaml.safe_dump({"config": raw}))
    return run_stack("prod", folder)[0]


def test_prod_installs_the_controller_before_the_leader_worker_set(
    prod_with_example: Graph,
) -> None:
    g = prod_with_example
    (release,) = [r for r in g.helm_releases() if r["chart"].endswith("/lws")]
    assert release["chart"] == "oci://registry.k8s.io/lws/charts/lws"
    assert release["version"] == LWS_CHART_VERSION
    (lws,) = g.by_type("kubernetes:leaderworkerset.x-k8s.io/v1:LeaderWorkerSet")
    (rel,) = [
        r for r in g.by_type("kubernetes:helm.sh/v3:Release") if r.name == "leader-worker-set-lws"
    ]
    assert rel.urn in lws.dependencies
    # Only the multi-node endpoint is an LWS; the http endpoint stays a Deployment.
    assert one(g.manifests(), "Deployment", "churn-scorer")
    assert g.outputs["servingEndpoints"]["llama-405b"]["workload"] == "LeaderWorkerSet"


def test_prods_endpoint_role_reads_only_its_model(prod_with_example: Graph) -> None:
    (policy,) = [
        r
        for r in prod_with_example.by_type("aws:iam/rolePolicy:RolePolicy")
        if "llama-405b-server" in r.name
    ]
    doc = json.loads(policy.inputs["policy"])
    stmts = {s["Sid"]: s for s in doc["Statement"]}
    assert stmts["ReadObjects"]["Resource"].endswith(
        "/projects/churn/models/llama-3.1-405b-instruct-fp8/*"
    )
    assert stmts["UseBucketKeyThroughS3"]["Action"] == ["kms:Decrypt"]
    assert iam_findings(doc) == []
