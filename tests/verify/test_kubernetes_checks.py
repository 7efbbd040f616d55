"""Kubernetes checks through the real client against a local HTTP server that answers in the
API's JSON shape (tests/verify/fixtures), so URL building, auth and deserialization are real."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mlplatform import verify
from tests.verify.kube_fake import FakeApiServer, fixture, status_body

PROMETHEUS = "/api/v1/namespaces/monitoring/services/prometheus-operated:9090/proxy"
ALERTMANAGER = "/api/v1/namespaces/monitoring/services/alertmanager-operated:9093/proxy"
DEPLOYMENT = "/apis/apps/v1/namespaces/serving-demo/deployments/sentiment"
HEALTHZ = "/api/v1/namespaces/serving-demo/services/sentiment:http/proxy/healthz"

OUTPUTS: dict[str, Any] = {
    "environment": "prod",
    "platform": "aws",
    "gpuPools": ["a10g"],
    "prometheusUrl": "http://prometheus-operated.monitoring.svc:9090",
    "alertmanagerUrl": "http://alertmanager-operated.monitoring.svc.cluster.local:9093",
    "servingEndpoints": {
        "sentiment": {
            "namespace": "serving-demo",
            "service": "sentiment",
            "url": "https://sentiment.models.example.com",
        }
    },
}

EXPECTED = {
    "k8s.nodes-ready",
    "k8s.karpenter-nodepools",
    "k8s.device-plugin",
    "k8s.gpu-allocatable",
    "k8s.prometheus-targets",
    "k8s.alertmanager",
    "k8s.serving.sentiment.ready",
    "k8s.serving.sentiment.request",
}


@pytest.fixture
def cluster(apiserver: FakeApiServer) -> FakeApiServer:
    """A healthy cluster: every route answers as a working platform does."""
    apiserver.routes.update(
        {
            "/api/v1/nodes": (200, fixture("nodes.json")),
            "/apis/karpenter.sh/v1/nodepools": (200, fixture("nodepools.json")),
            "/apis/apps/v1/daemonsets": (200, fixture("daemonsets.json")),
            f"{PROMETHEUS}/api/v1/targets?state=active": (200, fixture("prometheus_targets.json")),
            f"{ALERTMANAGER}/-/ready": (200, b"OK"),
            DEPLOYMENT: (200, fixture("deployment.json")),
            HEALTHZ: (200, b'{"status":"ok"}'),
        }
    )
    return apiserver


def run(
    server: FakeApiServer, outputs: dict[str, Any] | None = None
) -> dict[str, verify.CheckResult]:
    results = verify.kubernetes_checks(outputs or OUTPUTS, server.api_client())
    return {r.name: r for r in results}


def failing(results: dict[str, verify.CheckResult]) -> dict[str, str]:
    return {n: r.detail for n, r in results.items() if not r.ok}


def test_healthy_cluster_passes(cluster: FakeApiServer) -> None:
    results = run(cluster)
    assert failing(results) == {}
    assert set(results) == EXPECTED
    assert not any(r.skipped for r in results.values())
    assert results["k8s.nodes-ready"].detail == "3/3 Ready"
    assert results["k8s.prometheus-targets"].detail == "3/3 up"
    assert "gpu-operator/nvidia-device-plugin 1/1" in results["k8s.device-plugin"].detail
    # Every request carried the kubeconfig's credentials, the hand-built proxy paths included.
    assert {auth for _, auth in cluster.requests} == {"Bearer verify-test-token"}
    assert f"{PROMETHEUS}/api/v1/targets?state=active" in {p for p, _ in cluster.requests}


def test_kubeconfig_output_is_used(cluster: FakeApiServer) -> None:
    outputs = {**OUTPUTS, "kubeconfig": json.dumps(cluster.kubeconfig())}
    results = verify.kubernetes_checks(outputs)  # client built from the `kubeconfig` output
    assert failing({r.name: r for r in results}) == {}


def _node_not_ready(c: FakeApiServer) -> None:
    nodes = fixture("nodes.json")
    ready = next(x for x in nodes["items"][1]["status"]["conditions"] if x["type"] == "Ready")
    ready.update(status="False", reason="KubeletNotReady")
    c.routes["/api/v1/nodes"] = (200, nodes)


def _nodepool_not_ready(c: FakeApiServer) -> None:
    pools = fixture("nodepools.json")
    ready = next(x for x in pools["items"][0]["status"]["conditions"] if x["type"] == "Ready")
    ready.update(status="False", reason="NodeClassNotReady", message="NodeClassReady=False")
    c.routes["/apis/karpenter.sh/v1/nodepools"] = (200, pools)


def _nodepool_missing(c: FakeApiServer) -> None:
    pools = fixture("nodepools.json")
    pools["items"] = []
    c.routes["/apis/karpenter.sh/v1/nodepools"] = (200, pools)


def _device_plugin_not_ready(c: FakeApiServer) -> None:
    sets = fixture("daemonsets.json")
    status = sets["items"][1]["status"]
    status.update(desiredNumberScheduled=2, currentNumberScheduled=2, numberReady=1)
    c.routes["/apis/apps/v1/daemonsets"] = (200, sets)


def _device_plugin_absent(c: FakeApiServer) -> None:
    sets = fixture("daemonsets.json")
    sets["items"] = sets["items"][:1]
    c.routes["/apis/apps/v1/daemonsets"] = (200, sets)


def _gpu_not_advertised(c: FakeApiServer) -> None:
    nodes = fixture("nodes.json")
    del nodes["items"][2]["status"]["allocatable"]["nvidia.com/gpu"]
    c.routes["/api/v1/nodes"] = (200, nodes)


def _target_down(c: FakeApiServer) -> None:
    targets = fixture("prometheus_targets.json")
    t = targets["data"]["activeTargets"][2]
    t.update(health="down", lastError='Get "http://10.0.3.15:8080/metrics": connection refused')
    c.routes[f"{PROMETHEUS}/api/v1/targets?state=active"] = (200, targets)


def _prometheus_gone(c: FakeApiServer) -> None:
    c.routes[f"{PROMETHEUS}/api/v1/targets?state=active"] = (
        503,
        status_body(
            503, "ServiceUnavailable", 'no endpoints available for service "prometheus-operated"'
        ),
    )


def _deployment_unavailable(c: FakeApiServer) -> None:
    dep = fixture("deployment.json")
    dep["status"].update(readyReplicas=0, availableReplicas=0, unavailableReplicas=2)
    dep["status"]["conditions"][0].update(
        status="False",
        reason="MinimumReplicasUnavailable",
        message="Deployment does not have minimum availability.",
    )
    c.routes[DEPLOYMENT] = (200, dep)


BREAKS = [
    ("node NotReady", _node_not_ready, {"k8s.nodes-ready": "ip-10-0-2-41"}),
    ("nodepool not Ready", _nodepool_not_ready, {"k8s.karpenter-nodepools": "not Ready: a10g"}),
    ("nodepool missing", _nodepool_missing, {"k8s.karpenter-nodepools": "missing: a10g"}),
    ("device plugin 1/2", _device_plugin_not_ready, {"k8s.device-plugin": "1/2 pods ready"}),
    (
        "device plugin absent",
        _device_plugin_absent,
        {"k8s.device-plugin": "no nvidia-device-plugin"},
    ),
    ("GPU not allocatable", _gpu_not_advertised, {"k8s.gpu-allocatable": "ip-10-0-3-77"}),
    ("target down", _target_down, {"k8s.prometheus-targets": "1/3 down: sentiment"}),
    ("prometheus no endpoints", _prometheus_gone, {"k8s.prometheus-targets": "HTTP 503"}),
    (
        "alertmanager not ready",
        lambda c: c.routes.update({f"{ALERTMANAGER}/-/ready": (503, b"Service Unavailable")}),
        {"k8s.alertmanager": "HTTP 503"},
    ),
    (
        "deployment unavailable",
        _deployment_unavailable,
        {"k8s.serving.sentiment.ready": "minimum availability"},
    ),
    (
        "healthz 500",
        lambda c: c.routes.update({HEALTHZ: (500, b"model not loaded")}),
        {"k8s.serving.sentiment.request": "HTTP 500 model not loaded"},
    ),
    (
        "deployment deleted",
        lambda c: c.routes.pop(DEPLOYMENT),
        {"k8s.serving.sentiment.ready": "HTTP 404"},
    ),
]


@pytest.mark.parametrize(
    ("breaks", "expected"), [pytest.param(fn, exp, id=case) for case, fn, exp in BREAKS]
)
def test_broken_cluster_is_named(cluster: FakeApiServer, breaks: Any, expected: dict) -> None:
    breaks(cluster)
    results = run(cluster)
    got = failing(results)
    assert set(got) == set(expected), got
    for name, text in expected.items():
        assert text in got[name]
    assert set(results) == EXPECTED  # every other check still ran


def test_every_read_failing_is_reported_check_by_check(apiserver: FakeApiServer) -> None:
    results = run(apiserver)  # no routes: every read answers 404
    # GPU allocatable needs the node list, whose failure is already reported.
    assert set(failing(results)) == EXPECTED - {"k8s.gpu-allocatable"}
    assert "HTTP 404" in results["k8s.nodes-ready"].detail


def test_local_platform_without_karpenter_or_gpus(cluster: FakeApiServer) -> None:
    cluster.routes.pop("/apis/karpenter.sh/v1/nodepools")
    nodes = fixture("nodes.json")
    nodes["items"] = nodes["items"][:1]
    cluster.routes["/api/v1/nodes"] = (200, nodes)
    sets = fixture("daemonsets.json")
    sets["items"] = sets["items"][:1]
    cluster.routes["/apis/apps/v1/daemonsets"] = (200, sets)
    outputs = {**OUTPUTS, "platform": "local", "gpuPools": []}
    results = run(cluster, outputs)
    assert failing(results) == {}
    for name in ("k8s.karpenter-nodepools", "k8s.device-plugin", "k8s.gpu-allocatable"):
        assert results[name].skipped, name


def test_aws_without_karpenter_fails(cluster: FakeApiServer) -> None:
    cluster.routes.pop("/apis/karpenter.sh/v1/nodepools")
    got = failing(run(cluster))
    assert list(got) == ["k8s.karpenter-nodepools"]
    assert "is Karpenter installed" in got["k8s.karpenter-nodepools"]


def test_health_path_and_monitoring_urls_come_from_outputs(cluster: FakeApiServer) -> None:
    vllm = "/api/v1/namespaces/llm/services/chat:http/proxy/health"
    cluster.routes[vllm] = (200, b"")
    cluster.routes["/apis/apps/v1/namespaces/llm/deployments/chat"] = (
        200,
        fixture("deployment.json"),
    )
    outputs = {
        **OUTPUTS,
        "servingEndpoints": {
            "chat": {"namespace": "llm", "service": "chat", "healthPath": "/health"}
        },
    }
    results = run(cluster, outputs)
    assert results["k8s.serving.chat.request"].ok
    assert vllm in {p for p, _ in cluster.requests}


def test_bad_monitoring_url_is_reported(cluster: FakeApiServer) -> None:
    results = run(cluster, {**OUTPUTS, "prometheusUrl": "https://prometheus.example.com"})
    assert "not an in-cluster service URL" in failing(results)["k8s.prometheus-targets"]


def test_unloadable_kubeconfig_is_one_failure() -> None:
    results = verify.kubernetes_checks({**OUTPUTS, "kubeconfig": "clusters: []\ncontexts: []\n"})
    assert [r.name for r in results] == ["k8s.connect"]
    assert not results[0].ok
    assert "cannot load kubeconfig" in results[0].detail


@pytest.mark.parametrize(
    ("url", "ref"),
    [
        (
            "http://prometheus-operated.monitoring.svc:9090",
            ("monitoring", "prometheus-operated:9090"),
        ),
        ("http://am.obs.svc.cluster.local:9093/", ("obs", "am:9093")),
        ("http://grafana.monitoring.svc", ("monitoring", "grafana")),
    ],
)
def test_service_ref(url: str, ref: tuple[str, str]) -> None:
    svc = verify.service_ref(url)
    assert (svc.namespace, svc.proxy) == ref


def test_full_verify_of_a_deployed_aws_stack(
    deployed: dict, cluster: FakeApiServer, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """`mlplatform verify --outputs` end to end: AWS in moto, the cluster from the kubeconfig output."""
    from mlplatform.cli import main as cli_main

    outputs = {**OUTPUTS, **deployed, "kubeconfig": json.dumps(cluster.kubeconfig())}
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(outputs))
    argv = ["verify", "--stack", "prod", "--outputs", str(path), "--format", "json"]
    assert cli_main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    names = {c["name"] for c in report["checks"]}
    assert names >= EXPECTED
    assert {"aws.s3.versioning", "aws.budget"} <= names

    cluster.routes[HEALTHZ] = (503, b"warming up")
    assert cli_main(argv) == 1
    failed = [c for c in json.loads(capsys.readouterr().out)["checks"] if not c["ok"]]
    assert [c["name"] for c in failed] == ["k8s.serving.sentiment.request"]
