"""Every object in every shipped stack's plan passes the API server's validation, offline.

kubectl-validate checks custom resources against the CRDs of the versions the platform installs
(schemas and CEL rules) and built-in kinds against Kubernetes' own OpenAPI documents
(tests/kube_validate.py). scripts/crd-sources.txt says where each CRD set comes from, and names
each pin whose exact release the Go module proxy does not serve (the nearest served one is used).
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from components.training_cluster import DEFAULT_VERSION
from components.training_operator import TRAINING_OPERATOR_VERSION
from mlplatform.report import build_plan
from tests import kube_validate
from tests.kube_validate import KubectlValidate, sources

ROOT = Path(__file__).resolve().parents[2]
STACKS = sorted(p.name.split(".")[1] for p in (ROOT / "stacks").glob("Pulumi.*.yaml"))
# Charts whose CRDs the platform's own objects use, by the last part of the chart name.
CRD_CHARTS = ("karpenter-crd", "kueue", "prometheus-operator-crds", "keda")


@functools.cache
def _plan(stack: str) -> dict[str, Any]:
    return build_plan(stack)


@pytest.fixture(params=STACKS)
def plan(request: pytest.FixtureRequest) -> dict[str, Any]:
    return _plan(request.param)


def _custom(m: dict[str, Any]) -> bool:
    """Built-in groups are "" (core), one word (apps, batch) or end in .k8s.io (not x-k8s.io)."""
    group = m["apiVersion"].rpartition("/")[0]
    return "." in group and not group.endswith(".k8s.io")


def test_every_object_of_the_plan_passes_kubectl_validate(
    plan: dict[str, Any], kubectl_validate: KubectlValidate
) -> None:
    manifests = plan["manifests"]
    assert any(_custom(m) for m in manifests), "the plan declares no custom resource"
    kubectl_validate.assert_valid(manifests)


def test_the_plans_use_these_custom_resource_kinds() -> None:
    """What the validation above covers; a new kind is welcome, a lost one is a regression."""
    kinds = {(m["apiVersion"], m["kind"]) for s in STACKS for m in _plan(s)["manifests"]}
    assert {k for k in kinds if _custom({"apiVersion": k[0]})} >= {
        ("karpenter.sh/v1", "NodePool"),
        ("karpenter.k8s.aws/v1", "EC2NodeClass"),
        ("kueue.x-k8s.io/v1beta2", "ClusterQueue"),
        ("kueue.x-k8s.io/v1beta2", "LocalQueue"),
        ("kueue.x-k8s.io/v1beta2", "ResourceFlavor"),
        ("kueue.x-k8s.io/v1beta2", "WorkloadPriorityClass"),
        ("monitoring.coreos.com/v1", "PrometheusRule"),
        ("monitoring.coreos.com/v1", "ServiceMonitor"),
    }


# The CRDs follow the pins ---------------------------------------------------------------------
def _chart_versions() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for stack in STACKS:
        for release in _plan(stack)["helmReleases"]:
            out.setdefault(release["chart"].rsplit("/", 1)[-1], set()).add(release["version"])
    return out


@pytest.mark.parametrize("chart", CRD_CHARTS)
def test_crds_come_from_the_chart_version_the_stacks_install(chart: str) -> None:
    pinned = sources()[chart].pinned
    installed = _chart_versions().get(chart, set())
    if pinned == "-":
        assert not installed, f"{chart} {installed} is installed now: pin it in crd-sources.txt"
    else:
        assert installed == {pinned}, (
            f"stacks install {chart} {sorted(installed)}; scripts/crd-sources.txt builds the CRDs "
            f"of {pinned}: update its row (module version too) and rerun build-validators.sh"
        )


def test_pytorchjob_crd_follows_the_training_operator_release() -> None:
    assert sources()["training-operator"].pinned == TRAINING_OPERATOR_VERSION


def test_native_schemas_are_those_of_the_clusters_version() -> None:
    assert sources()["kubernetes"].pinned == DEFAULT_VERSION
    for stack in STACKS:
        for r in _plan(stack)["resources"]:
            if r["type"] == "aws:eks/cluster:Cluster":
                assert r["inputs"]["version"] == DEFAULT_VERSION, stack


# The validation can fail ----------------------------------------------------------------------
def _first(kind: str) -> dict[str, Any]:
    return copy.deepcopy(next(m for m in _plan("dev")["manifests"] if m["kind"] == kind))


def _unknown_field(m: dict[str, Any]) -> None:
    m["spec"]["cohort"] = m["spec"].pop("cohortName")  # Kueue v1beta1's spelling


def _wrong_type(m: dict[str, Any]) -> None:
    m["spec"]["weight"] = "ten"


def _enum(m: dict[str, Any]) -> None:
    m["spec"]["disruption"]["consolidationPolicy"] = "Always"


def _cel_cohort(m: dict[str, Any]) -> None:
    del m["spec"]["cohortName"]  # the queue keeps its borrowing limits


def _cel_one_of(m: dict[str, Any]) -> None:
    m["spec"]["instanceProfile"] = "extra"  # next to spec.role


def _cel_tags(m: dict[str, Any]) -> None:
    m["spec"]["tags"]["kubernetes.io/cluster/other"] = "owned"


def _monitor_typo(m: dict[str, Any]) -> None:
    m["spec"]["endpoints"][0]["intervall"] = "30s"


def _rule_duration(m: dict[str, Any]) -> None:
    rule = next(r for g in m["spec"]["groups"] for r in g["rules"] if "alert" in r)
    rule["for"] = "ten minutes"


def _discovery_role(m: dict[str, Any]) -> None:
    m["spec"]["serviceDiscoveryRole"] = "Pod"


def _negative_limit(m: dict[str, Any]) -> None:
    m["spec"]["sampleLimit"] = -1


def _duplicate_env(m: dict[str, Any]) -> None:
    container = m["spec"]["template"]["spec"]["containers"][0]
    container["env"] = [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]


def _long_label(m: dict[str, Any]) -> None:
    m["metadata"].setdefault("labels", {})["mlplatform.io/project"] = "p" * 64


def _unserved_version(m: dict[str, Any]) -> None:
    m["apiVersion"] = "kueue.x-k8s.io/v1beta9"


BREAKAGES: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    (
        "ClusterQueue",
        _unknown_field,
        "spec.cohort: Invalid value: value provided for unknown field",
    ),
    ("NodePool", _wrong_type, "spec.weight in body must be of type integer"),
    ("NodePool", _enum, 'Unsupported value: "Always"'),
    ("ClusterQueue", _cel_cohort, "borrowingLimit must be nil when cohort is empty"),
    ("EC2NodeClass", _cel_one_of, "must specify exactly one of ['role', 'instanceProfile']"),
    ("EC2NodeClass", _cel_tags, "tag contains a restricted tag matching kubernetes.io/cluster/"),
    ("ServiceMonitor", _monitor_typo, "spec.endpoints[0].intervall"),
    ("PrometheusRule", _rule_duration, "should match"),
    # Prometheus Operator v0.85.0's CRD would call the first an unknown field and accept the second
    ("ServiceMonitor", _discovery_role, 'spec.serviceDiscoveryRole: Unsupported value: "Pod"'),
    ("ServiceMonitor", _negative_limit, "spec.sampleLimit in body should be greater than or equal"),
    # built-in kinds: what kubernetes-validate's JSON schemas cannot see
    ("Deployment", _duplicate_env, "env[1]: Duplicate value"),
    ("Service", _long_label, "must be no more than 63 characters"),
    ("ResourceFlavor", _unserved_version, "failed to locate OpenAPI spec for GV"),
]


@pytest.mark.parametrize(
    ("kind", "breakage", "message"), BREAKAGES, ids=[b[1].__name__.strip("_") for b in BREAKAGES]
)
def test_a_broken_object_is_rejected_with_the_reason(
    kind: str,
    breakage: Callable[[dict[str, Any]], None],
    message: str,
    kubectl_validate: KubectlValidate,
) -> None:
    good = _first(kind)
    broken = copy.deepcopy(good)
    breakage(broken)
    assert kubectl_validate.problems([good]) == [[]]
    (problems,) = kubectl_validate.problems([broken])
    assert any(message in p for p in problems), problems


def test_monitors_may_use_the_fields_of_the_operator_release_the_platform_runs(
    kubectl_validate: KubectlValidate,
) -> None:
    """Fields the CRDs of Prometheus Operator v0.85.0 (the previous source) lack: the CRDs are
    v0.93.1's, as prometheus-operator-crds 31.0.1 installs them."""
    monitor = _first("ServiceMonitor")
    monitor["spec"]["serviceDiscoveryRole"] = "EndpointSlice"  # since v0.86.0
    monitor["spec"]["scrapeNativeHistograms"] = True  # since v0.88.0
    monitor["spec"]["endpoints"][0]["scheme"] = "HTTPS"  # upper case accepted since v0.93.0
    assert kubectl_validate.problems([monitor]) == [[]]


# The handover for clusters from before the CRD charts ------------------------------------------
def test_the_handover_adopts_every_crd_the_crd_charts_ship(
    kubectl_validate: KubectlValidate,
) -> None:
    """docs/upgrading-crds.md lists Karpenter's CRDs by name: exactly those of the pinned release
    (its pkg/apis/crds, the files the karpenter-crd chart's templates are made from)."""
    doc = (ROOT / "docs" / "upgrading-crds.md").read_text()
    karpenter = sources()["karpenter-crd"]
    assert f"`karpenter-crd` {karpenter.pinned} ships" in doc, "the doc names another release"
    loop = re.search(r'for crd in ([^;]*); do\s+adopt "\$crd" karpenter-crd ', doc)
    assert loop, "docs/upgrading-crds.md has no adoption loop for karpenter-crd"
    assert set(loop[1].replace("\\", " ").split()) == set(
        kubectl_validate.crd_names(karpenter.name)
    )
    # the Prometheus Operator's are found by their group: one the chart adds is adopted too
    groups = {n.partition(".")[2] for n in kubectl_validate.crd_names("prometheus-operator-crds")}
    assert groups == {"monitoring.coreos.com"}
    assert "grep 'monitoring\\.coreos\\.com$'" in doc


# Finding the validator ------------------------------------------------------------------------
def _point_at(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    for key, (var, _) in kube_validate.ENV.items():
        monkeypatch.setenv(var, str(folder / key))


def test_a_missing_validator_fails_in_ci_and_skips_elsewhere(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _point_at(monkeypatch, tmp_path)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"required in CI.*build-validators\.sh"):
        kube_validate.find()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match=r"no .*crds \(MLPLATFORM_CRDS_DIR\)"):
        kube_validate.find()


def test_crds_built_from_other_sources_are_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _point_at(monkeypatch, tmp_path)
    monkeypatch.setenv("CI", "true")
    rows = [s.line for s in sources().values()]
    for key in kube_validate.ENV:
        (tmp_path / key).mkdir()
    (tmp_path / "openapi" / "SOURCES").write_text(
        "\n".join(r for r in rows if r.startswith("kubernetes "))
    )
    old = [r.replace(sources()["kueue"].version, "v0.16.0") for r in rows if r.endswith(".yaml")]
    (tmp_path / "crds" / "SOURCES").write_text("\n".join(old))
    with pytest.raises(pytest.fail.Exception, match=r"crds was not built from"):
        kube_validate.find()
    (tmp_path / "crds" / "SOURCES").write_text("\n".join(r for r in rows if r.endswith(".yaml")))
    assert kube_validate.find().crds == tmp_path / "crds"
