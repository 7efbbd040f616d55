"""CodeBuild runners cost per build-minute: $0 idle, their rate stated beside the total."""

from __future__ import annotations

from mlplatform.cost import estimate_cost
from tests.cost.helpers import dev_plan, res


def _with_project(compute: str) -> dict:
    plan = dev_plan()
    plan["resources"].append(
        res(
            "aws:codebuild/project:Project",
            "ci-runners-project",
            {"name": "mlp-dev-ci", "environment": {"computeType": compute}},
        )
    )
    return plan


def test_runner_costs_nothing_idle_and_states_its_minute_rate() -> None:
    base = estimate_cost(dev_plan())
    cost = estimate_cost(_with_project("BUILD_GENERAL1_MEDIUM"))
    assert cost["monthlyIdle"] == base["monthlyIdle"]
    [note] = [a for a in cost["assumptions"] if a.startswith("CI runners mlp-dev-ci")]
    assert "$0.01 per build-minute" in note and "$0 idle" in note
    assert not cost["unpriced"]


def test_unknown_compute_type_is_reported_unpriced() -> None:
    cost = estimate_cost(_with_project("BUILD_GENERAL1_2XLARGE"))
    assert [u["reason"] for u in cost["unpriced"]] == ["no price for BUILD_GENERAL1_2XLARGE"]
