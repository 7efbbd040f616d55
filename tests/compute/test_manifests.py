"""Every rendered manifest is valid: built-in kinds against the Kubernetes schema (strict),
Karpenter's custom resources against the fields their v1 CRDs require."""

from __future__ import annotations

import json
import re

import kubernetes_validate
import pytest

from mlplatform.plan import run_program
from tests.compute.stacks import PROD, program

K8S_VERSION = "1.33"
DURATION = re.compile(r"^(Never|([0-9]+(s|m|h))+)$")
QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|Ki|Mi|Gi|Ti|M|G|T)?$")
KARPENTER_KINDS = {("karpenter.sh/v1", "NodePool"), ("karpenter.k8s.aws/v1", "EC2NodeClass")}
NODEPOOL_KEYS = {"template", "disruption", "limits", "weight", "replicas"}
NODECLASS_KEYS = {
    "role", "instanceProfile", "amiSelectorTerms", "amiFamily", "subnetSelectorTerms",
    "securityGroupSelectorTerms", "capacityReservationSelectorTerms", "metadataOptions",
    "blockDeviceMappings", "tags", "kubelet", "userData", "associatePublicIPAddress",
    "detailedMonitoring", "instanceStorePolicy", "context",
}  # fmt: skip
OPERATORS = {"In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt", "Gte", "Lte"}


@pytest.fixture(scope="module")
def prod_sliced():
    cfg = json.loads(json.dumps(PROD))
    cfg["gpuPools"][1]["timeSlicingReplicas"] = 2
    return run_program(program(cfg))


def _all(*graphs):
    return [m for g in graphs for m in g.manifests()]


def test_builtin_kinds_pass_strict_schema(dev, prod, prod_sliced):
    builtin = [
        m
        for m in _all(dev, prod, prod_sliced)
        if (m["apiVersion"], m["kind"]) not in KARPENTER_KINDS
    ]
    assert {m["kind"] for m in builtin} >= {"Namespace", "ConfigMap"}
    for m in builtin:
        kubernetes_validate.validate(m, K8S_VERSION, strict=True)


def test_strict_validation_catches_a_typo(prod_sliced):
    (cm,) = [m for m in prod_sliced.manifests() if m["kind"] == "ConfigMap"]
    broken = {**cm, "dataa": cm["data"]}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def _check_nodepool(m):
    spec = m["spec"]
    assert set(spec) <= NODEPOOL_KEYS
    tmpl = spec["template"]["spec"]
    ref = tmpl["nodeClassRef"]
    assert set(ref) == {"group", "kind", "name"} and ref["kind"] == "EC2NodeClass"
    assert tmpl["requirements"]
    for r in tmpl["requirements"]:
        assert r["operator"] in OPERATORS
        if r["operator"] in ("In", "NotIn"):
            assert r["values"] and all(isinstance(v, str) for v in r["values"])
        if r["operator"] in ("Gt", "Lt"):
            assert len(r["values"]) == 1 and r["values"][0].isdigit()
    assert DURATION.match(tmpl["expireAfter"])
    for t in tmpl.get("taints", []):
        assert t["effect"] in ("NoSchedule", "PreferNoSchedule", "NoExecute")
    d = spec["disruption"]
    assert d["consolidationPolicy"] in ("WhenEmpty", "WhenEmptyOrUnderutilized")
    assert DURATION.match(d["consolidateAfter"])
    for b in d.get("budgets", []):
        assert re.match(r"^((100|[0-9]{1,2})%|[0-9]+)$", b["nodes"])
        assert set(b.get("reasons", [])) <= {"Underutilized", "Empty", "Drifted", "Unhealthy"}
    assert all(QUANTITY.match(v) for v in spec["limits"].values())
    labels = spec["template"]["metadata"]["labels"]
    assert all(re.match(r"^[a-z0-9A-Z]([-a-z0-9A-Z_.]*[a-zA-Z0-9])?$", v) for v in labels.values())


def _check_nodeclass(m):
    spec = m["spec"]
    assert set(spec) <= NODECLASS_KEYS
    # CRD: exactly one of role / instanceProfile; the three selector lists are required
    assert ("role" in spec) != ("instanceProfile" in spec)
    for key in ("amiSelectorTerms", "subnetSelectorTerms", "securityGroupSelectorTerms"):
        assert 1 <= len(spec[key]) <= 30
    md = spec["metadataOptions"]
    assert md["httpTokens"] in ("required", "optional")
    assert 1 <= md["httpPutResponseHopLimit"] <= 64
    for bdm in spec["blockDeviceMappings"]:
        assert bdm["ebs"]["volumeType"] in ("standard", "io1", "io2", "gp2", "sc1", "st1", "gp3")
        assert QUANTITY.match(bdm["ebs"]["volumeSize"])
        if "throughput" in bdm["ebs"]:
            assert 125 <= bdm["ebs"]["throughput"] <= 1000
    for term in spec.get("capacityReservationSelectorTerms", []):
        assert ("id" in term) != ("tags" in term)
    for key in spec["tags"]:
        # Karpenter rejects these tag keys on an EC2NodeClass
        assert not key.startswith(("kubernetes.io/cluster", "karpenter.sh/nodepool", "eks:"))


def test_karpenter_custom_resources_have_required_fields(dev, prod):
    crs = [m for m in _all(dev, prod) if (m["apiVersion"], m["kind"]) in KARPENTER_KINDS]
    assert {m["kind"] for m in crs} == {"NodePool", "EC2NodeClass"}
    for m in crs:
        assert re.match(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", m["metadata"]["name"])
        assert "namespace" not in m["metadata"]  # cluster-scoped
        (_check_nodepool if m["kind"] == "NodePool" else _check_nodeclass)(m)


def test_nodepool_checker_can_fail(dev):
    pool = next(m for m in dev.manifests() if m["kind"] == "NodePool")
    broken = json.loads(json.dumps(pool))
    broken["spec"]["disruption"]["consolidationPolicy"] = "Always"
    with pytest.raises(AssertionError):
        _check_nodepool(broken)
