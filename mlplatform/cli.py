"""`mlplatform`: offline plan, cost, diff, verify and project generation."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_POLICY, EXIT_USAGE = 0, 1, 2


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_USAGE


def cmd_plan(args: argparse.Namespace) -> int:
    from mlplatform.config import ConfigError
    from mlplatform.render import render_markdown, render_table, write_manifests
    from mlplatform.report import build_plan

    try:
        plan = build_plan(args.stack, stacks_dir=Path(args.stacks_dir))
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    if args.out:
        written = write_manifests(plan, Path(args.out))
        print(f"wrote {len(written)} manifests to {args.out}", file=sys.stderr)
    if args.format == "json":
        print(json.dumps(plan, indent=2, sort_keys=False))
    elif args.format == "markdown":
        print(render_markdown(plan))
    else:
        print(render_table(plan))
    mandatory = [
        v
        for v in plan.get("policy", {}).get("violations", [])
        if v["enforcementLevel"] == "mandatory"
    ]
    return EXIT_POLICY if mandatory else EXIT_OK


def cmd_cost(args: argparse.Namespace) -> int:
    from mlplatform.config import ConfigError
    from mlplatform.report import build_plan

    try:
        plan = build_plan(args.stack, stacks_dir=Path(args.stacks_dir))
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    from mlplatform.cost import render_cost_table

    if args.format == "json":
        print(json.dumps(plan["cost"], indent=2))
    else:
        print(render_cost_table(plan["cost"]))
    return EXIT_OK


def cmd_diff(args: argparse.Namespace) -> int:
    from mlplatform.diff import diff_plans, render_diff_markdown

    plans: list[dict[str, Any]] = []
    for path in (args.base, args.head):
        try:
            plans.append(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            return _fail(f"cannot read plan {path}: {exc}")
    result = diff_plans(plans[0], plans[1])
    print(json.dumps(result, indent=2) if args.format == "json" else render_diff_markdown(result))
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    from mlplatform.verify import main as verify_main

    return verify_main(args)


def cmd_new_project(args: argparse.Namespace) -> int:
    from mlplatform.config import ConfigError, load_stack
    from mlplatform.new_project import new_project

    try:
        settings = load_stack(args.stack, Path(args.stacks_dir))
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    extra = dict(kv.split("=", 1) for kv in args.set or [])
    try:
        path = new_project(settings, Path(args.output_dir), extra, no_input=args.no_input)
    except ValueError as exc:
        return _fail(str(exc))
    print(path)
    return EXIT_OK


def parser() -> argparse.ArgumentParser:
    from mlplatform.config import STACKS_DIR

    p = argparse.ArgumentParser(prog="mlplatform", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    def stack_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--stack", default="dev", help="stack name: stacks/Pulumi.<stack>.yaml")
        sp.add_argument("--stacks-dir", default=str(STACKS_DIR), help=argparse.SUPPRESS)

    plan = sub.add_parser(
        "plan", help="show what `pulumi up` would build, offline (no cloud, no CLI)"
    )
    stack_args(plan)
    plan.add_argument("--format", choices=["table", "json", "markdown"], default="table")
    plan.add_argument("--out", help="also write every Kubernetes manifest as YAML into this folder")
    plan.set_defaults(func=cmd_plan)

    cost = sub.add_parser(
        "cost", help="estimate the stack's monthly idle cost and GPU hourly prices"
    )
    stack_args(cost)
    cost.add_argument("--format", choices=["table", "json"], default="table")
    cost.set_defaults(func=cmd_cost)

    diff = sub.add_parser("diff", help="compare two `plan --format json` outputs")
    diff.add_argument("base")
    diff.add_argument("head")
    diff.add_argument("--format", choices=["markdown", "json"], default="markdown")
    diff.set_defaults(func=cmd_diff)

    verify = sub.add_parser("verify", help="check a deployed environment really works")
    stack_args(verify)
    verify.add_argument(
        "--outputs", help="stack outputs JSON (default: `pulumi stack output --json`)"
    )
    verify.add_argument("--format", choices=["table", "json"], default="table")
    verify.add_argument("--skip-aws", action="store_true", help="skip the AWS checks")
    verify.add_argument("--skip-kubernetes", action="store_true", help="skip the Kubernetes checks")
    verify.set_defaults(func=cmd_verify)

    new = sub.add_parser("new-project", help="generate an ML project wired to a platform stack")
    stack_args(new)
    new.add_argument("--output-dir", default=".")
    new.add_argument("--set", action="append", metavar="KEY=VALUE", help="template option")
    new.add_argument("--no-input", action="store_true", help="do not prompt; use defaults")
    new.set_defaults(func=cmd_new_project)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130


def keep_bytecode_in_venv() -> None:
    """Cache compiled modules inside the virtual environment even under PYTHONDONTWRITEBYTECODE.

    A plan imports about 750 modules of the AWS and Kubernetes SDKs; compiling them again on
    every run costs seconds. Where the variable is set (containers, CI images) the bytecode goes
    to ``<venv>/.pycache`` (``sys.pycache_prefix``): the environment the CLI was
    installed into, never the source tree. Outside a virtual environment the setting stands.
    """
    if sys.dont_write_bytecode and sys.prefix != sys.base_prefix:
        sys.pycache_prefix = str(Path(sys.prefix) / ".pycache")
        sys.dont_write_bytecode = False


def entry() -> int:
    """The `mlplatform` command."""
    keep_bytecode_in_venv()
    return main()


if __name__ == "__main__":
    raise SystemExit(entry())
