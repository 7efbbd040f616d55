"""The outputs projects build on, checked on every shipped AWS stack's real plan.

``mlplatform.contract.ProjectOutputs`` is the one schema of what projects read; generated
projects check their stand-in outputs against it too. Here the real plans must satisfy it, every
team queue it names must exist and admit the namespaces it says, and every Pod Identity
association must name a ServiceAccount that the plan (or a chart it installs) creates.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from components.registry_auth import CLIENT_PASSWORD_KEY, CLIENT_USERNAME_KEY
from mlplatform.contract import ContractError, project_problems, validate_outputs
from tests.shipped import shipped_plan

ROOT = Path(__file__).resolve().parents[2]
AWS_STACKS = sorted(
    p.name.split(".")[1]
    for p in (ROOT / "stacks").glob("Pulumi.*.yaml")
    if "platform: local" not in p.read_text()
)
POD_IDENTITY = "aws:eks/podIdentityAssociation:PodIdentityAssociation"


@pytest.fixture(scope="module", params=AWS_STACKS)
def plan(request: pytest.FixtureRequest) -> dict[str, Any]:
    return shipped_plan(request.param)


def test_the_shipped_aws_stacks_are_dev_and_prod() -> None:
    assert AWS_STACKS == ["dev", "prod"]


def test_real_outputs_follow_the_contract(plan: dict[str, Any]) -> None:
    offer = validate_outputs(plan["outputs"])
    assert offer.trainingQueues, "a stack without teams cannot run a project's job"
    assert offer.ecrRepositories.training != offer.ecrRepositories.serving


@pytest.mark.parametrize(
    ("path", "value", "named"),
    [
        (("trainingQueues",), {"research": "research"}, "trainingQueues.research"),
        (("trainingQueues", "research", "namespaceLabels"), {}, "namespaceLabels"),
        (("ecrRepositories", "training"), "docker.io/x", "ecrRepositories.training"),
        (
            ("trainingQueues", "research", "gpuPools"),
            {"nope": {"accelerator": "x", "gpus": 1}},
            "nope",
        ),
        (("gpuPools",), "a10g-spot", "gpuPools"),
    ],
)
def test_the_contract_catches_a_broken_output(
    plan: dict[str, Any], path: tuple[str, ...], value: Any, named: str
) -> None:
    outputs = copy.deepcopy(plan["outputs"])
    node = outputs
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(ContractError, match=named):
        validate_outputs(outputs)


def _manifests(plan: dict[str, Any], kind: str) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (m["metadata"].get("namespace", ""), m["metadata"]["name"]): m
        for m in plan["manifests"]
        if m["kind"] == kind
    }


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    # The platform's ClusterQueues select by labels only; anything else is a new design.
    assert set(selector) == {"matchLabels"}, selector
    return all(labels.get(k) == v for k, v in selector["matchLabels"].items())


def test_each_team_queue_exists_and_admits_what_the_output_says(plan: dict[str, Any]) -> None:
    offer = validate_outputs(plan["outputs"])
    cqs = {name: m for (_, name), m in _manifests(plan, "ClusterQueue").items()}
    lqs = _manifests(plan, "LocalQueue")
    namespaces = {name: m for (_, name), m in _manifests(plan, "Namespace").items()}
    for team, queue in offer.trainingQueues.items():
        cq = cqs[queue.clusterQueue]
        selector = cq["spec"]["namespaceSelector"]
        # A project's namespace labelled as the output says is admitted ...
        assert _selects(selector, dict(queue.namespaceLabels)), team
        # ... and so is each of the platform's own namespaces for the team, with its queue.
        for ns in queue.namespaces:
            assert _selects(selector, namespaces[ns]["metadata"]["labels"]), (team, ns)
            assert lqs[(ns, queue.localQueue)]["spec"]["clusterQueue"] == queue.clusterQueue
        flavors = {f["name"] for g in cq["spec"]["resourceGroups"] for f in g["flavors"]}
        assert set(queue.gpuPools) <= flavors, team
        for pool, quota in queue.gpuPools.items():
            (flavor,) = [
                m for (_, name), m in _manifests(plan, "ResourceFlavor").items() if name == pool
            ]
            assert flavor["spec"]["nodeLabels"]["mlplatform.io/accelerator"] == quota.accelerator


def test_no_other_team_admits_a_team_labelled_namespace(plan: dict[str, Any]) -> None:
    offer = validate_outputs(plan["outputs"])
    cqs = {name: m for (_, name), m in _manifests(plan, "ClusterQueue").items()}
    for team, queue in offer.trainingQueues.items():
        admitting = [
            name
            for name, cq in cqs.items()
            if _selects(cq["spec"]["namespaceSelector"], dict(queue.namespaceLabels))
        ]
        assert admitting == [queue.clusterQueue], team


def test_project_choices_are_checked_against_the_offer(plan: dict[str, Any]) -> None:
    offer = validate_outputs(plan["outputs"])
    team, queue = next(iter(offer.trainingQueues.items()))
    training = offer.ecrRepositories.training
    assert (
        project_problems(
            offer,
            stack="s",
            team=team,
            namespace="new-project",
            images={"trainingImage": f"{training}:1"},
        )
        == []
    )
    problems = project_problems(
        offer,
        stack="s",
        team="nobody",
        namespace=queue.namespaces[0],
        images={"trainingImage": "docker.io/library/python:3"},
    )
    assert [p.split(":", 1)[0] for p in problems] == ["team", "namespace", "trainingImage"]


# Pod Identity ---------------------------------------------------------------------------------
def chart_service_accounts(plan: dict[str, Any]) -> set[tuple[str, str]]:
    """(namespace, name) of each ServiceAccount a Helm release creates: every
    ``serviceAccount: {create: true, name: ...}`` in its values, in the release's namespace."""
    found: set[tuple[str, str]] = set()

    def walk(value: Any, namespace: str) -> None:
        if isinstance(value, dict):
            sa = value.get("serviceAccount")
            if isinstance(sa, dict) and sa.get("create") is True and sa.get("name"):
                found.add((namespace, sa["name"]))
            for item in value.values():
                walk(item, namespace)
        elif isinstance(value, list):
            for item in value:
                walk(item, namespace)

    for release in plan["helmReleases"]:
        walk(release["values"], release["namespace"])
    return found


def service_accounts(plan: dict[str, Any]) -> set[tuple[str, str]]:
    declared = set(_manifests(plan, "ServiceAccount"))
    # EKS add-ons bind their own accounts (podIdentityAssociations on the Addon): created by it.
    addons = {
        ("kube-system", a["serviceAccount"])
        for r in plan["resources"]
        if r["type"] == "aws:eks/addon:Addon"
        for a in r["inputs"].get("podIdentityAssociations") or []
    }
    return declared | chart_service_accounts(plan) | addons


def unbound_associations(plan: dict[str, Any]) -> list[tuple[str, str]]:
    accounts = service_accounts(plan)
    return [
        (r["inputs"]["namespace"], r["inputs"]["serviceAccount"])
        for r in plan["resources"]
        if r["type"] == POD_IDENTITY
        and (r["inputs"]["namespace"], r["inputs"]["serviceAccount"]) not in accounts
    ]


def test_every_pod_identity_association_names_a_created_service_account(
    plan: dict[str, Any],
) -> None:
    assert [r for r in plan["resources"] if r["type"] == POD_IDENTITY]
    assert unbound_associations(plan) == []


def test_the_pod_identity_check_catches_an_account_nobody_creates(plan: dict[str, Any]) -> None:
    broken = copy.deepcopy(plan)
    broken["manifests"] = [
        m
        for m in broken["manifests"]
        if not (m["kind"] == "ServiceAccount" and m["metadata"]["name"].endswith("-trainer"))
    ]
    assert ("churn", "churn-trainer") in unbound_associations(broken)


def test_stack_grants_use_the_templates_service_account_names(plan: dict[str, Any]) -> None:
    # Generated projects name their trainer <project>-trainer; the stacks' grants agree.
    grants = [
        r["inputs"]
        for r in plan["resources"]
        if r["type"] == POD_IDENTITY and "project-access" in r["urn"]
    ]
    trainers = [g for g in grants if g["serviceAccount"].endswith("trainer")]
    assert trainers
    for grant in trainers:
        assert grant["serviceAccount"] == f"{grant['namespace']}-trainer"


# Registered projects ------------------------------------------------------------------------
def test_each_registered_project_gets_what_its_entry_says(plan: dict[str, Any]) -> None:
    """The ``projects`` output against the plan's objects: the namespace (admitted by the
    team's queue, with its LocalQueue), the MLflow user's Secret and the registry's admission,
    and the Pod Identity association of each service account."""
    offer = validate_outputs(plan["outputs"])
    assert offer.projects, "the shipped stacks register their example projects"
    namespaces = {name: m for (_, name), m in _manifests(plan, "Namespace").items()}
    secrets = _manifests(plan, "Secret")
    (registry,) = [
        m for (_, n), m in _manifests(plan, "NetworkPolicy").items() if n == "mlflow"
    ]  # fmt: skip
    admitted = {
        ns
        for rule in registry["spec"]["ingress"]
        for peer in rule["from"]
        for expr in (peer.get("namespaceSelector") or {}).get("matchExpressions") or []
        if expr["key"] == "kubernetes.io/metadata.name" and expr["operator"] == "In"
        for ns in expr["values"]
    }
    assocs = {
        (r["inputs"]["namespace"], r["inputs"]["serviceAccount"])
        for r in plan["resources"]
        if r["type"] == POD_IDENTITY
    }
    for name, entry in offer.projects.items():
        ns = entry.namespace
        labels = namespaces[ns]["metadata"]["labels"]
        assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
        if entry.team is not None:
            queue = offer.trainingQueues[entry.team]
            assert all(labels.get(k) == v for k, v in queue.namespaceLabels.items()), name
            assert (ns, queue.localQueue) in _manifests(plan, "LocalQueue")
        assert entry.mlflowSecret is not None, name
        # The values are secret in the plan; the keys are the ones registry_auth writes.
        assert secrets[(ns, entry.mlflowSecret.name)]["type"] == "Opaque"
        assert (entry.mlflowSecret.usernameKey, entry.mlflowSecret.passwordKey) == (
            CLIENT_USERNAME_KEY,
            CLIENT_PASSWORD_KEY,
        )
        assert ns in admitted, f"the registry's NetworkPolicy does not admit {ns}"
        for account in entry.serviceAccounts:
            assert (ns, account) in assocs, (name, account)


def test_the_registration_check_names_what_is_missing(plan: dict[str, Any]) -> None:
    offer = validate_outputs(plan["outputs"])
    name, entry = next(iter(offer.projects.items()))
    team = entry.team or "research"
    needs = {f"{name}-trainer": "read-write"}
    assert (
        project_problems(
            offer,
            stack="s",
            team=team,
            namespace=entry.namespace,
            project=name,
            service_accounts=needs,
        )
        == []
    ), "a registered project may use its own (platform-declared) namespace"
    got = project_problems(
        offer, stack="s", team=team, namespace="elsewhere", project="unregistered"
    )
    assert [p.split(":", 1)[0] for p in got] == ["project"]
    assert "not registered on s" in got[0]
    got = project_problems(
        offer,
        stack="s",
        team="nobody",
        namespace="other",
        project=name,
        service_accounts={f"{name}-server": "read", f"{name}-trainer": "read-write", "x": "read"},
    )
    assert [p.split(":", 1)[0] for p in got] == [
        "namespace",
        "team",
        "serviceAccounts",
        "serviceAccounts",
        "team",  # and the queue check: "nobody" has no queue
    ]
    assert "needs read" in got[2] and f"{name}-server" in got[2]
