"""Every rendered manifest is valid: built-in kinds against the Kubernetes schema (strict),
Karpenter's custom resources against its CRDs (schemas and CEL rules) through kubectl-validate.

The CRDs are those of the pinned karpenter-provider-aws release (pkg/apis/crds, what the
karpenter-crd chart renders; scripts/crd-sources.txt).
"""

from __future__ import annotations

import copy
import json

import kubernetes_validate
import pytest

from mlplatform.plan import run_program
from tests.compute.stacks import PROD, program
from tests.kube_validate import KubectlValidate

K8S_VERSION = "1.33"
KARPENTER_KINDS = {("karpenter.sh/v1", "NodePool"), ("karpenter.k8s.aws/v1", "EC2NodeClass")}


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


def test_karpenter_custom_resources_pass_kubectl_validate(
    dev, prod, prod_sliced, kubectl_validate: KubectlValidate
):
    crs = [
        m for m in _all(dev, prod, prod_sliced) if (m["apiVersion"], m["kind"]) in KARPENTER_KINDS
    ]
    assert {m["kind"] for m in crs} == {"NodePool", "EC2NodeClass"}
    kubectl_validate.assert_valid(crs)


def test_karpenter_custom_resources_are_cluster_scoped(dev, prod):
    """The validator does not check scope; a namespace here would be dropped or refused."""
    for m in _all(dev, prod):
        if (m["apiVersion"], m["kind"]) in KARPENTER_KINDS:
            assert "namespace" not in m["metadata"], m["metadata"]["name"]


def test_a_nodepool_breaking_its_crd_is_rejected(dev, kubectl_validate: KubectlValidate):
    pool = next(m for m in dev.manifests() if m["kind"] == "NodePool")
    policy = copy.deepcopy(pool)
    policy["spec"]["disruption"]["consolidationPolicy"] = "Always"
    budget = copy.deepcopy(pool)
    budget["spec"]["disruption"]["budgets"] = [{"nodes": "150%"}]
    policy_problems, budget_problems = kubectl_validate.problems([policy, budget])
    assert any('Unsupported value: "Always"' in p for p in policy_problems), policy_problems
    assert any("budgets[0].nodes" in p for p in budget_problems), budget_problems
