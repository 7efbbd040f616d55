"""Build the offline plan: run the real platform program under mocks and shape the result."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlplatform.config import STACKS_DIR, load_stack, read_stack_file
from mlplatform.graph import Graph
from mlplatform.placement import placement_report
from mlplatform.plan import run_program


def run_stack(stack: str, stacks_dir: Path = STACKS_DIR) -> tuple[Graph, str]:
    """Validate the stack's config, then run the platform program on it. Returns (graph, environment)."""
    from mlplatform import program

    settings = load_stack(stack, stacks_dir)  # raises ConfigError before any resource exists
    raw, secret_keys = read_stack_file(stack, stacks_dir)
    region = settings.region or "us-east-1"
    graph = run_program(
        program.main, stack=stack, config=raw, secret_keys=secret_keys, region=region
    )
    return graph, settings.config.environment.value


def plan_from_graph(graph: Graph, environment: str) -> dict[str, Any]:
    plan: dict[str, Any] = {
        "stack": graph.stack,
        "environment": environment,
        "resources": [r.to_json() for r in graph.resources],
        "outputs": graph.outputs,
        "manifests": graph.manifests(),
        "helmReleases": graph.helm_releases(),
        # Where each workload can run (node groups and NodePools, by arch, taints, selectors).
        "placement": placement_report(graph),
    }
    try:
        from mlplatform.cost import estimate_cost
    except ImportError:  # pragma: no cover - cost module ships with the package
        pass
    else:
        if graph.outputs.get("platform") == "local":
            plan["cost"] = {
                "monthlyIdle": 0.0,
                "lines": [],
                "gpuHourly": [],
                "assumptions": [
                    "local platform: runs on an existing cluster, declares no AWS resources"
                ],
            }
        else:
            plan["cost"] = estimate_cost(plan)
    from mlplatform.policy import compliance_report, evaluate_policies

    violations = evaluate_policies(plan, environment)
    plan["policy"] = {"violations": violations, "compliance": compliance_report(plan, violations)}
    return plan


def build_plan(stack: str, stacks_dir: Path = STACKS_DIR) -> dict[str, Any]:
    graph, environment = run_stack(stack, stacks_dir)
    return plan_from_graph(graph, environment)
