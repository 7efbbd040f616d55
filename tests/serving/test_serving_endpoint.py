"""ServingEndpoint under mocks: every property a user relies on, read from the recorded manifests."""

from __future__ import annotations

import copy
import json
from typing import Any

import kubernetes_validate
import pytest

from components.common import GPU_RESOURCE, GPU_TOLERATION, POOL_LABEL
from components.serving_args import DEFAULT_INFERENCE_LOG_SAMPLE_RATE
from components.serving_endpoint import (
    ENDPOINT_LABEL,
    PROJECT_LABEL,
    VLLM_IMAGE,
)
from mlplatform.graph import Graph
from mlplatform.plan import run_program
from tests.conftest import missing_tool
from tests.kube_validate import KubectlValidate
from tests.serving.helpers import (
    CERT,
    HTTP_ENDPOINT,
    IMAGE,
    PRIVATE_SUBNETS,
    VLLM_ENDPOINT,
    by_kind,
    endpoint_args,
    endpoint_program,
    env_of,
    one,
)

K8S_VERSIONS = ("1.31.0", "1.34.0")
CR_GROUPS = ("monitoring.coreos.com", "keda.sh")


@pytest.fixture(scope="module")
def http_aws() -> Graph:
    return run_program(endpoint_program("fraud-scorer", endpoint_args(HTTP_ENDPOINT)))


@pytest.fixture(scope="module")
def canary_aws() -> Graph:
    args = endpoint_args(
        HTTP_ENDPOINT,
        canary={"model": {"path": "models/fraud-scorer", "version": "8"}, "weight": 15},
    )
    return run_program(endpoint_program("fraud-scorer", args))


@pytest.fixture(scope="module")
def vllm_aws() -> Graph:
    return run_program(endpoint_program("chat", endpoint_args(VLLM_ENDPOINT)))


@pytest.fixture(scope="module")
def keda_aws() -> Graph:
    args = endpoint_args(
        VLLM_ENDPOINT,
        keda={
            "enabled": True,
            "query": 'sum(chat_queue_depth{queue="chat"})',
            "threshold": 4,
            "activationThreshold": 1,
        },
        autoscaling={"minReplicas": 1, "maxReplicas": 3},
    )
    return run_program(endpoint_program("chat", args))


@pytest.fixture(scope="module")
def http_local() -> Graph:
    args = endpoint_args(
        HTTP_ENDPOINT,
        ingress={"host": "fraud.ml.localtest.me", "className": "nginx"},
    )
    return run_program(endpoint_program("fraud-scorer", args, on_aws=False, storage_kind="minio"))


ALL = ("http_aws", "canary_aws", "vllm_aws", "keda_aws", "http_local")


@pytest.fixture(params=ALL)
def graph(request: pytest.FixtureRequest) -> Graph:
    return request.getfixturevalue(request.param)


def pod_specs(g: Graph) -> list[dict[str, Any]]:
    return [d["spec"]["template"]["spec"] for d in by_kind(g.manifests(), "Deployment")]


# --- validity ----------------------------------------------------------------------------


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_builtin_manifests_pass_strict_schema(graph: Graph, version: str) -> None:
    builtin = [m for m in graph.manifests() if m["apiVersion"].split("/")[0] not in CR_GROUPS]
    assert len(builtin) >= 7
    for m in builtin:
        kubernetes_validate.validate(m, version, strict=True)


def test_strict_validation_catches_a_typo() -> None:
    bad = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "x"},
        "spec": {"prots": [{"port": 80}]},
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSIONS[-1], strict=True)


def test_every_manifest_passes_kubectl_validate(
    graph: Graph, kubectl_validate: KubectlValidate
) -> None:
    """ServiceMonitor and PrometheusRule against prometheus-operator v0.85.0's CRDs (the nearest
    served to kube-prometheus-stack 79.7.1's v0.86.2), ScaledObject against KEDA v2.21.1's."""
    kubectl_validate.assert_valid(graph.manifests())


def test_a_scaled_object_breaking_its_crd_is_rejected(
    keda_aws: Graph, kubectl_validate: KubectlValidate
) -> None:
    so = one(keda_aws.manifests(), "ScaledObject")
    number = copy.deepcopy(so)
    number["spec"]["triggers"][0]["metadata"]["threshold"] = 4  # KEDA wants strings
    no_target = copy.deepcopy(so)
    del no_target["spec"]["scaleTargetRef"]["name"]
    assert kubectl_validate.problems([so]) == [[]]
    number_problems, target_problems = kubectl_validate.problems([number, no_target])
    assert any("threshold in body must be of type string" in p for p in number_problems)
    assert any("scaleTargetRef.name: Required value" in p for p in target_problems)


def test_custom_resources_have_required_fields(graph: Graph) -> None:
    ms = graph.manifests()
    sm = one(ms, "ServiceMonitor")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["spec"]["selector"]["matchLabels"]
    assert sm["spec"]["endpoints"][0]["port"] == "http"
    assert sm["spec"]["endpoints"][0]["path"] == "/metrics"
    rule = one(ms, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    for group in rule["spec"]["groups"]:
        assert group["name"] and group["rules"]
        for r in group["rules"]:
            assert ("record" in r) != ("alert" in r) and r["expr"]
    for so in by_kind(ms, "ScaledObject"):
        assert so["apiVersion"] == "keda.sh/v1alpha1"
        assert so["spec"]["scaleTargetRef"]["name"]
        trig = so["spec"]["triggers"][0]
        assert trig["type"] == "prometheus"
        assert {"serverAddress", "query", "threshold"} <= set(trig["metadata"])
        assert all(isinstance(v, str) for v in trig["metadata"].values())


# --- namespace and identity ---------------------------------------------------------------


def test_namespace_enforces_restricted_pod_security(http_aws: Graph) -> None:
    ns = one(http_aws.manifests(), "Namespace")
    labels = ns["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    assert labels[PROJECT_LABEL] == "fraud"
    assert http_aws.outputs["namespace"] == ns["metadata"]["name"] == "fraud-scorer"


def test_project_namespace_is_reused_not_created() -> None:
    args = endpoint_args(HTTP_ENDPOINT, namespace="fraud", createNamespace=False)
    g = run_program(endpoint_program("fraud-scorer", args))
    assert by_kind(g.manifests(), "Namespace") == []
    assert {m["metadata"]["namespace"] for m in g.manifests()} == {"fraud"}


def test_service_account_is_the_given_one_and_pods_use_it(http_aws: Graph) -> None:
    sa = one(http_aws.manifests(), "ServiceAccount")
    assert sa["metadata"]["name"] == "fraud-scorer-server"
    assert sa["automountServiceAccountToken"] is False
    for spec in pod_specs(http_aws):
        assert spec["serviceAccountName"] == "fraud-scorer-server"


def test_iam_role_arn_is_recorded_on_the_service_account() -> None:
    arn = "arn:aws:iam::123456789012:role/fraud-serving"
    g = run_program(
        endpoint_program("fraud-scorer", endpoint_args(HTTP_ENDPOINT), iam_role_arn=arn)
    )
    sa = one(g.manifests(), "ServiceAccount")
    assert sa["metadata"]["annotations"]["mlplatform.io/iam-role-arn"] == arn


# --- the deployment ----------------------------------------------------------------------


def test_pods_are_hardened(graph: Graph) -> None:
    for spec in pod_specs(graph):
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"] == {"drop": ["ALL"]}
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
            assert sc["runAsNonRoot"] is True
            assert {"cpu", "memory"} <= set(c["resources"]["requests"])
            assert {"cpu", "memory"} <= set(c["resources"]["limits"])
            assert ":" in c["image"].rsplit("/", 1)[-1]
            assert not c["image"].endswith(":latest")


def test_tmp_is_a_writable_empty_dir(graph: Graph) -> None:
    for spec in pod_specs(graph):
        volumes = {v["name"]: v for v in spec["volumes"]}
        mounts = {m["mountPath"]: m["name"] for m in spec["containers"][0]["volumeMounts"]}
        assert "emptyDir" in volumes[mounts["/tmp"]]
        env = env_of(spec["containers"][0])
        assert env["HOME"].startswith("/tmp") and env["MODEL_DIR"].startswith("/tmp")


def test_probes_hit_the_runtime_health_path(http_aws: Graph, vllm_aws: Graph) -> None:
    for g, path in ((http_aws, "/healthz"), (vllm_aws, "/health")):
        c = pod_specs(g)[0]["containers"][0]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert c[probe]["httpGet"]["path"] == path, probe
        # The startup probe covers the model load budget before liveness can kill the pod.
        startup = c["startupProbe"]
        assert startup["periodSeconds"] * startup["failureThreshold"] >= 600


def test_liveness_can_have_its_own_path() -> None:
    """A server that says "alive" apart from "ready" is not restarted for lacking a model."""
    args = endpoint_args(HTTP_ENDPOINT, probes={"livenessPath": "/livez"})
    c = pod_specs(run_program(endpoint_program("fraud-scorer", args)))[0]["containers"][0]
    assert c["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    assert c["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["startupProbe"]["httpGet"]["path"] == "/healthz"
    with pytest.raises(ValueError, match="livenessPath"):
        endpoint_args(HTTP_ENDPOINT, probes={"livenessPath": "livez"})


def test_zone_spread(graph: Graph) -> None:
    for spec in pod_specs(graph):
        keys = {t["topologyKey"] for t in spec["topologySpreadConstraints"]}
        assert "topology.kubernetes.io/zone" in keys


def test_required_zone_spread_is_hard() -> None:
    g = run_program(
        endpoint_program("fraud-scorer", endpoint_args(HTTP_ENDPOINT, zoneSpread="required"))
    )
    (zone,) = [
        t
        for t in pod_specs(g)[0]["topologySpreadConstraints"]
        if t["topologyKey"] == "topology.kubernetes.io/zone"
    ]
    assert zone["whenUnsatisfiable"] == "DoNotSchedule"


def test_graceful_shutdown_outlasts_alb_deregistration(http_aws: Graph) -> None:
    spec = pod_specs(http_aws)[0]
    sleep = spec["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"]
    ingress = one(http_aws.manifests(), "Ingress")
    attrs = ingress["metadata"]["annotations"]["alb.ingress.kubernetes.io/target-group-attributes"]
    delay = int(attrs.split("deregistration_delay.timeout_seconds=")[1])
    assert sleep >= delay > 0
    assert spec["terminationGracePeriodSeconds"] > sleep


def test_cpu_model_has_no_gpu_scheduling_and_stays_on_its_images_architecture(
    http_aws: Graph,
) -> None:
    spec = pod_specs(http_aws)[0]
    assert GPU_RESOURCE not in spec["containers"][0]["resources"]["limits"]
    assert "tolerations" not in spec
    # the template builds amd64 images: never on an arm64 node (exec format error)
    assert spec["nodeSelector"] == {"kubernetes.io/arch": "amd64"}


def test_gpu_model_requests_gpus_tolerates_taint_and_targets_pool(vllm_aws: Graph) -> None:
    spec = pod_specs(vllm_aws)[0]
    res = spec["containers"][0]["resources"]
    assert res["requests"][GPU_RESOURCE] == res["limits"][GPU_RESOURCE] == "1"
    assert GPU_TOLERATION in spec["tolerations"]
    assert spec["nodeSelector"] == {POOL_LABEL: "gpu-a10g", "kubernetes.io/arch": "amd64"}


def test_model_location_comes_from_the_store(http_aws: Graph) -> None:
    env = env_of(pod_specs(http_aws)[0]["containers"][0])
    assert env["MODEL_URI"] == "s3://ml-dev-models/projects/fraud/models/fraud-scorer"
    # What the project template's server reads.
    assert env["MODEL_BUCKET"] == "ml-dev-models"
    assert env["MODEL_PREFIX"] == "projects/fraud/"
    assert env["MODEL_VERSION"] == "7"
    # The server's inference-log sampling: the platform's one default, unless the endpoint says.
    assert env["INFERENCE_LOG_SAMPLE_RATE"] == str(DEFAULT_INFERENCE_LOG_SAMPLE_RATE) == "0.01"


def test_inference_log_sample_rate_reaches_both_tracks() -> None:
    args = endpoint_args(
        HTTP_ENDPOINT, inferenceLogSampleRate=0.25, canary={"model": {"path": "m"}, "weight": 10}
    )
    specs = pod_specs(run_program(endpoint_program("fraud-scorer", args)))
    assert len(specs) == 2
    assert {env_of(s["containers"][0])["INFERENCE_LOG_SAMPLE_RATE"] for s in specs} == {"0.25"}


def test_vllm_gets_no_inference_log_setting(vllm_aws: Graph) -> None:
    assert "INFERENCE_LOG_SAMPLE_RATE" not in env_of(pod_specs(vllm_aws)[0]["containers"][0])


def test_mlflow_registry_model() -> None:
    args = endpoint_args(HTTP_ENDPOINT, model={"store": "mlflow", "path": "models:/fraud@champion"})
    g = run_program(
        endpoint_program("fraud-scorer", args, mlflow_tracking_uri="http://mlflow.mlflow.svc:5000")
    )
    env = env_of(pod_specs(g)[0]["containers"][0])
    assert env["MODEL_URI"] == "models:/fraud@champion"
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow.mlflow.svc:5000"
    assert "MODEL_BUCKET" not in env


def test_vllm_serves_the_model_from_s3_with_streaming(vllm_aws: Graph) -> None:
    c = pod_specs(vllm_aws)[0]["containers"][0]
    assert c["image"] == VLLM_IMAGE
    args = c["args"]
    assert args[args.index("--model") + 1] == "$(MODEL_URI)"
    assert env_of(c)["MODEL_URI"] == "s3://ml-dev-models/projects/chat/models/llama-3.1-8b-instruct"
    assert args[args.index("--load-format") + 1] == "runai_streamer"
    assert args[args.index("--tensor-parallel-size") + 1] == "1"
    assert args[-2:] == ["--max-model-len", "8192"]
    assert c["ports"][0]["containerPort"] == 8000
    shm = [m for m in c["volumeMounts"] if m["mountPath"] == "/dev/shm"]
    assert shm


def test_local_minio_store_settings(http_local: Graph) -> None:
    c = pod_specs(http_local)[0]["containers"][0]
    env = env_of(c)
    assert env["AWS_ENDPOINT_URL_S3"] == "http://minio.minio.svc:9000"
    assert c["envFrom"] == [{"secretRef": {"name": "minio-credentials"}}]


def test_replicas_are_left_to_the_autoscaler(http_aws: Graph) -> None:
    dep = one(http_aws.manifests(), "Deployment")
    assert "replicas" not in dep["spec"]
    assert dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


# --- service, autoscaling, availability -------------------------------------------------


def test_service_targets_stable_pods(http_aws: Graph) -> None:
    ms = http_aws.manifests()
    svc = one(ms, "Service")
    dep = one(ms, "Deployment")
    assert svc["spec"]["selector"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    assert svc["spec"]["ports"][0]["targetPort"] == "http"


def test_hpa_cpu(http_aws: Graph) -> None:
    hpa = one(http_aws.manifests(), "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 4)
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    assert hpa["spec"]["scaleTargetRef"]["name"] == "fraud-scorer"


def test_hpa_on_a_request_metric() -> None:
    args = endpoint_args(
        HTTP_ENDPOINT,
        autoscaling={"minReplicas": 3, "maxReplicas": 9, "metric": "requests"},
    )
    g = run_program(endpoint_program("fraud-scorer", args))
    hpa = one(g.manifests(), "HorizontalPodAutoscaler")
    metric = hpa["spec"]["metrics"][0]
    assert metric["type"] == "Pods"
    assert metric["pods"]["metric"]["name"] == "http_requests_in_flight"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 9)


def test_keda_replaces_the_hpa_and_scales_to_zero(keda_aws: Graph) -> None:
    ms = keda_aws.manifests()
    assert by_kind(ms, "HorizontalPodAutoscaler") == []
    so = one(ms, "ScaledObject")
    assert so["spec"]["minReplicaCount"] == 0
    assert so["spec"]["maxReplicaCount"] == 3
    meta = so["spec"]["triggers"][0]["metadata"]
    assert meta["query"] == 'sum(chat_queue_depth{queue="chat"})'
    assert (meta["threshold"], meta["activationThreshold"]) == ("4", "1")
    assert meta["serverAddress"].startswith("http://")


def test_pdb_allows_one_disruption(graph: Graph) -> None:
    pdb = one(graph.manifests(), "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"][ENDPOINT_LABEL]


# --- network policy and ingress -----------------------------------------------------------


def _sources(np: dict[str, Any]) -> list[dict[str, Any]]:
    return [src for rule in np["spec"]["ingress"] for src in rule["from"]]


def test_network_policy_admits_only_ingress_monitoring_project_and_alb(http_aws: Graph) -> None:
    np = one(http_aws.manifests(), "NetworkPolicy")
    assert np["spec"]["policyTypes"] == ["Ingress"]
    assert np["spec"]["podSelector"]["matchLabels"] == {ENDPOINT_LABEL: "fraud-scorer"}
    selectors = [
        s["namespaceSelector"]["matchLabels"] for s in _sources(np) if "namespaceSelector" in s
    ]
    assert selectors == [
        {"kubernetes.io/metadata.name": "kube-system"},
        {"kubernetes.io/metadata.name": "monitoring"},
        {PROJECT_LABEL: "fraud"},
    ]
    blocks = [s["ipBlock"]["cidr"] for s in _sources(np) if "ipBlock" in s]
    # the load balancer subnets only, not the VPC (every pod has a VPC address with VPC CNI)
    assert blocks == PRIVATE_SUBNETS
    for rule in np["spec"]["ingress"]:
        assert rule["ports"] == [{"protocol": "TCP", "port": 8080}]


def test_local_network_policy_has_no_alb_block(http_local: Graph) -> None:
    np = one(http_local.manifests(), "NetworkPolicy")
    assert all("ipBlock" not in s for s in _sources(np))


def test_alb_ingress_is_internal_tls_and_shared(http_aws: Graph) -> None:
    ing = one(http_aws.manifests(), "Ingress")
    ann = ing["metadata"]["annotations"]
    assert ing["spec"]["ingressClassName"] == "alb"
    assert ann["alb.ingress.kubernetes.io/scheme"] == "internal"
    assert ann["alb.ingress.kubernetes.io/group.name"] == "mlplatform-serving"
    assert ann["alb.ingress.kubernetes.io/certificate-arn"] == CERT
    assert json.loads(ann["alb.ingress.kubernetes.io/listen-ports"]) == [{"HTTPS": 443}]
    assert ann["alb.ingress.kubernetes.io/target-type"] == "ip"
    assert ann["alb.ingress.kubernetes.io/healthcheck-path"] == "/healthz"
    assert ing["spec"]["rules"][0]["host"] == "fraud.ml.example.com"
    assert http_aws.outputs["url"] == "https://fraud.ml.example.com"


def test_two_endpoints_share_one_alb_group() -> None:
    other = endpoint_args(
        HTTP_ENDPOINT, ingress={"host": "b.ml.example.com", "certificateArn": CERT}
    )
    ga = run_program(endpoint_program("a", endpoint_args(HTTP_ENDPOINT)))
    gb = run_program(endpoint_program("b", other))
    groups = {
        one(g.manifests(), "Ingress")["metadata"]["annotations"][
            "alb.ingress.kubernetes.io/group.name"
        ]
        for g in (ga, gb)
    }
    assert len(groups) == 1


def test_internet_facing_is_opt_in() -> None:
    args = endpoint_args(
        HTTP_ENDPOINT,
        ingress={
            "host": "fraud.ml.example.com",
            "certificateArn": CERT,
            "scheme": "internet-facing",
        },
    )
    ing = one(run_program(endpoint_program("fraud-scorer", args)).manifests(), "Ingress")
    assert ing["metadata"]["annotations"]["alb.ingress.kubernetes.io/scheme"] == "internet-facing"


def test_local_ingress_has_no_alb_annotations(http_local: Graph) -> None:
    ing = one(http_local.manifests(), "Ingress")
    assert ing["spec"]["ingressClassName"] == "nginx"
    assert not any(k.startswith("alb.") for k in ing["metadata"].get("annotations", {}))
    assert http_local.outputs["url"] == "http://fraud.ml.localtest.me"


def test_local_without_ingress_class_declares_no_ingress() -> None:
    g = run_program(
        endpoint_program(
            "fraud-scorer", endpoint_args(HTTP_ENDPOINT), on_aws=False, storage_kind="minio"
        )
    )
    assert by_kind(g.manifests(), "Ingress") == []
    assert g.outputs["url"] == "http://fraud-scorer.fraud-scorer.svc.cluster.local"


def test_ingress_is_destroyed_before_the_alb_controller(http_aws: Graph) -> None:
    ingress = http_aws.one("kubernetes:networking.k8s.io/v1:Ingress")
    controller = http_aws.by_name("alb-controller")
    assert http_aws.depends_on(ingress, controller)


def test_everything_waits_for_cluster_and_namespace(http_aws: Graph) -> None:
    cluster = http_aws.by_name("cluster")
    ns = http_aws.one("kubernetes:core/v1:Namespace")
    for r in http_aws.resources:
        if r.type.startswith("kubernetes:") and r.custom and r.type != ns.type:
            if r.type.startswith("pulumi:providers"):
                continue
            assert http_aws.depends_on(r, cluster), r.name
            assert http_aws.depends_on(r, ns), r.name


def test_children_are_parented_and_named(http_aws: Graph) -> None:
    comp = http_aws.one("mlplatform:serving:ServingEndpoint")
    kids = http_aws.children(comp.urn)
    assert len(kids) >= 10
    assert all(k.name.startswith("fraud-scorer-") for k in kids)


# --- canary -------------------------------------------------------------------------------


def test_canary_is_a_second_deployment_with_weighted_forward(canary_aws: Graph) -> None:
    ms = canary_aws.manifests()
    stable = one(ms, "Deployment", "fraud-scorer")
    canary = one(ms, "Deployment", "fraud-scorer-canary")
    assert env_of(canary["spec"]["template"]["spec"]["containers"][0])["MODEL_VERSION"] == "8"
    assert env_of(stable["spec"]["template"]["spec"]["containers"][0])["MODEL_VERSION"] == "7"
    # The selectors do not overlap, so each Service reaches exactly one track.
    s_sel = one(ms, "Service", "fraud-scorer")["spec"]["selector"]
    c_sel = one(ms, "Service", "fraud-scorer-canary")["spec"]["selector"]
    assert s_sel != c_sel
    assert s_sel.items() <= stable["spec"]["template"]["metadata"]["labels"].items()
    assert c_sel.items() <= canary["spec"]["template"]["metadata"]["labels"].items()
    assert not c_sel.items() <= stable["spec"]["template"]["metadata"]["labels"].items()

    ing = one(ms, "Ingress")
    backend = ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["port"] == {"name": "use-annotation"}
    action = json.loads(
        ing["metadata"]["annotations"][f"alb.ingress.kubernetes.io/actions.{backend['name']}"]
    )
    weights = {tg["serviceName"]: tg["weight"] for tg in action["forwardConfig"]["targetGroups"]}
    assert weights == {"fraud-scorer": 85, "fraud-scorer-canary": 15}


def test_canary_image_override() -> None:
    args = endpoint_args(
        HTTP_ENDPOINT,
        canary={"model": {"path": "models/fraud-scorer"}, "weight": 5, "image": IMAGE[:-1] + "3"},
    )
    ms = run_program(endpoint_program("fraud-scorer", args)).manifests()
    canary = one(ms, "Deployment", "fraud-scorer-canary")
    assert canary["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":1.4.3")


# --- monitoring ---------------------------------------------------------------------------


def test_service_monitor_scrapes_both_tracks(canary_aws: Graph) -> None:
    ms = canary_aws.manifests()
    sm = one(ms, "ServiceMonitor")
    sel = sm["spec"]["selector"]["matchLabels"]
    for svc in by_kind(ms, "Service"):
        assert sel.items() <= svc["metadata"]["labels"].items()
    assert sm["spec"]["namespaceSelector"]["matchNames"] == ["fraud-scorer"]


def test_monitoring_labels_reach_the_prometheus_selectors() -> None:
    g = run_program(
        endpoint_program(
            "fraud-scorer",
            endpoint_args(HTTP_ENDPOINT),
            monitoring_labels={"release": "kube-prometheus-stack"},
        )
    )
    for kind in ("ServiceMonitor", "PrometheusRule"):
        assert one(g.manifests(), kind)["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_prometheus_rule_alerts_on_three_slos(http_aws: Graph) -> None:
    rule = one(http_aws.manifests(), "PrometheusRule")
    alerts = [r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r]
    assert {a["labels"]["slo"] for a in alerts} == {"errors", "latency", "availability"}
    assert {a["labels"]["severity"] for a in alerts} == {"critical", "warning"}
    for a in alerts:
        # multi-window: every clause pairs a long and a short window
        assert a["expr"].count(" and\n") + a["expr"].count("\nand\n") >= 2


# --- checkov ------------------------------------------------------------------------------


def _checkov() -> str:
    import shutil
    from pathlib import Path

    local = Path(__file__).resolve().parents[2] / ".tools" / "checkov" / "bin" / "checkov"
    found = shutil.which("checkov") or (str(local) if local.exists() else None)
    if found is None:
        missing_tool("checkov is not installed (.ci/run installs it)")
    return found


def test_checkov_reports_no_failures(
    tmp_path: Any, canary_aws: Graph, keda_aws: Graph, http_local: Graph
) -> None:
    import subprocess

    import yaml

    checkov = _checkov()
    for i, g in enumerate((canary_aws, keda_aws, http_local)):
        (tmp_path / f"endpoint{i}.yaml").write_text(yaml.safe_dump_all(g.manifests()))
    out = subprocess.run(
        [
            checkov,
            "-d",
            str(tmp_path),
            "--framework",
            "kubernetes",
            "--quiet",
            "--compact",
            "--skip-download",
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    report = json.loads(out.stdout)
    summary = report["summary"] if isinstance(report, dict) else report[0]["summary"]
    assert summary["passed"] > 100
    assert summary["failed"] == 0, out.stdout[-4000:]
    # Every skip carries a reason.
    results = report["results"] if isinstance(report, dict) else report[0]["results"]
    for skipped in results.get("skipped_checks", []):
        assert skipped["check_result"].get("suppress_comment"), skipped["check_id"]


def test_a_multi_arch_image_may_run_anywhere() -> None:
    args = endpoint_args({**HTTP_ENDPOINT, "architecture": None})
    g = run_program(endpoint_program("fraud-scorer", args))
    spec = by_kind(g.manifests(), "Deployment")[0]["spec"]["template"]["spec"]
    assert "nodeSelector" not in spec
    arm = endpoint_args({**HTTP_ENDPOINT, "architecture": "arm64"})
    g = run_program(endpoint_program("fraud-scorer", arm))
    spec = by_kind(g.manifests(), "Deployment")[0]["spec"]["template"]["spec"]
    assert spec["nodeSelector"] == {"kubernetes.io/arch": "arm64"}


def test_no_network_policy_where_the_cni_would_ignore_it() -> None:
    g = run_program(
        endpoint_program("fraud-scorer", endpoint_args(HTTP_ENDPOINT), network_policy=False)
    )
    assert by_kind(g.manifests(), "NetworkPolicy") == []


def test_models_from_mlflow_get_the_projects_registry_credentials() -> None:
    data = {**HTTP_ENDPOINT, "model": {"store": "mlflow", "path": "models:/fraud/3"}}
    g = run_program(
        endpoint_program(
            "fraud-scorer",
            endpoint_args(data),
            mlflow_tracking_uri="http://mlflow.mlflow.svc.cluster.local:5000",
            mlflow_credentials="[mlflow]\nmlflow_tracking_username = fraud\n",
        )
    )
    secret = one(g.manifests(), "Secret", "mlflow-tracking")
    assert secret["metadata"]["namespace"] == "fraud-scorer"
    spec = by_kind(g.manifests(), "Deployment")[0]["spec"]["template"]["spec"]
    (vol,) = [v for v in spec["volumes"] if v["name"] == "mlflow-credentials"]
    assert vol["secret"]["secretName"] == "mlflow-tracking"
    (c,) = spec["containers"]
    assert {"name": "mlflow-credentials", "mountPath": "/tmp/.mlflow", "readOnly": True} in c[
        "volumeMounts"
    ]
    assert env_of(c)["HOME"] == "/tmp"
    # the pods wait for their credentials
    deploy = g.by_name("fraud-scorer-deploy")
    assert g.depends_on(deploy, g.by_name("fraud-scorer-mlflow-credentials"))
