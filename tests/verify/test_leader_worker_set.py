"""`verify` on a multi-node endpoint: its LeaderWorkerSet, read by its status, not a Deployment.

The object is tests/verify/fixtures/leaderworkerset.json: prod's multi-node example from the
offline plan, applied to a control plane with the LWS CRD and read back with `kubectl get -o
json` (CRD defaults included), its status in the LWS 0.10 controller's shape (lws_status.py).
test_control_plane.py runs the same check against the CRD itself.
"""

from __future__ import annotations

from typing import Any

import pytest

from mlplatform import verify
from tests.verify.kube_fake import FakeApiServer, fixture
from tests.verify.lws_status import lws_status

LWS_PATH = "/apis/leaderworkerset.x-k8s.io/v1/namespaces/llama-405b/leaderworkersets/llama-405b"
DEPLOYMENT = "/apis/apps/v1/namespaces/serving-demo/deployments/sentiment"
# servingEndpoints as mlplatform/platform.py exports them; `sentiment` from a stack exported
# before `workload` existed.
ENDPOINTS: dict[str, Any] = {
    "llama-405b": {
        "namespace": "llama-405b",
        "service": "llama-405b",
        "url": "https://llama.ml.example.com",
        "deployment": "llama-405b",
        "workload": "LeaderWorkerSet",
        "healthPath": "/health",
    },
    "sentiment": {"namespace": "serving-demo", "service": "sentiment"},
}
READY = "k8s.serving.llama-405b.ready"


def lws(state: str | None = "available", *, ready: int = 1, wanted: int = 1, surge: int = 0) -> Any:
    """The recorded object with ``wanted`` groups (spec.replicas, the HPA's count), ``surge``
    extra groups of a rolling update and ``ready`` ready groups."""
    obj = fixture("leaderworkerset.json")
    obj["spec"]["replicas"] = wanted
    if state is None:
        del obj["status"]
    else:
        obj["status"] = lws_status(
            "llama-405b",
            state,
            ready=ready,
            replicas=wanted + surge,
        )
    return obj


def ready_results(server: FakeApiServer, obj: dict[str, Any] | None) -> dict[str, Any]:
    server.routes[DEPLOYMENT] = (200, fixture("deployment.json"))
    if obj is not None:
        server.routes[LWS_PATH] = (200, obj)
    kube = verify.Kube(server.api_client())
    return {name: verify.check_serving_ready(kube, name, spec) for name, spec in ENDPOINTS.items()}


def test_a_ready_leader_worker_set_passes(apiserver: FakeApiServer) -> None:
    results = ready_results(apiserver, lws())
    assert results["llama-405b"].ok, results["llama-405b"].detail
    assert results["llama-405b"].detail == (
        "llama-405b/llama-405b Available, 1/1 groups of 2 pods ready"
    )
    assert results["sentiment"].ok  # no `workload`: a Deployment, as before
    paths = [p for p, _ in apiserver.requests]
    assert LWS_PATH in paths and DEPLOYMENT in paths
    assert not any("deployments/llama-405b" in p for p in paths)


def _stale() -> dict[str, Any]:
    obj = lws()
    obj["metadata"]["generation"] = 2  # a new template the controller has not seen
    return obj


CASES = [
    ("group not ready", lws("progressing", ready=0), "Progressing: Replicas are progressing"),
    ("one of two groups", lws("progressing", ready=1, wanted=2), "1/2 groups of 2 pods"),
    (
        "update losing capacity",
        lws("updating", ready=1, wanted=2, surge=1),
        "UpdateInProgress: Rolling Upgrade is in progress",
    ),
    ("no status", lws(None), "no status yet: is the LWS controller running?"),
    ("stale status", _stale(), "status is of generation 1, the object is at 2"),
    ("scaled to zero", lws(ready=0, wanted=0), "has no ready group"),
    ("deleted", None, "LeaderWorkerSet llama-405b/llama-405b not found"),
]


@pytest.mark.parametrize(("obj", "expected"), [pytest.param(o, e, id=c) for c, o, e in CASES])
def test_a_leader_worker_set_that_does_not_serve_fails(
    apiserver: FakeApiServer, obj: dict[str, Any] | None, expected: str
) -> None:
    result = ready_results(apiserver, obj)["llama-405b"]
    assert not result.ok
    assert expected in result.detail, result.detail


def test_a_rolling_update_that_keeps_every_group_passes(apiserver: FakeApiServer) -> None:
    # maxUnavailable 0, maxSurge 1 (serving_multinode.py): the surge group is on its way while
    # both wanted groups still serve.
    result = ready_results(apiserver, lws("updating", ready=2, wanted=2, surge=1))["llama-405b"]
    assert result.ok, result.detail
    assert "rolling update in progress, 2/2 groups of 2 pods ready" in result.detail


def test_an_unknown_workload_is_named(apiserver: FakeApiServer) -> None:
    kube = verify.Kube(apiserver.api_client())
    spec = {**ENDPOINTS["llama-405b"], "workload": "StatefulSet"}
    result = verify.check_serving_ready(kube, "llama-405b", spec)
    assert not result.ok
    assert "unknown workload 'StatefulSet'" in result.detail
    assert "Deployment, LeaderWorkerSet" in result.detail
    assert apiserver.requests == []


def test_the_whole_run_checks_the_leader_worker_set(apiserver: FakeApiServer) -> None:
    apiserver.routes[LWS_PATH] = (200, lws("progressing", ready=0))
    outputs = {"platform": "local", "servingEndpoints": {"llama-405b": ENDPOINTS["llama-405b"]}}
    results = {r.name: r for r in verify.kubernetes_checks(outputs, apiserver.api_client())}
    assert not results[READY].ok
    assert "Progressing" in results[READY].detail
