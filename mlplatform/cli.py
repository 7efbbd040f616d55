"""`mlplatform`: offline plan, cost, diff, verify and project generation.

Exit codes: 0 success; 1 a mandatory policy is violated (``plan``); 2 a usage or config error
(bad option, unreadable or invalid stack file, bad plan file); 70 an internal error (a bug). All
are reported without a Python traceback (``MLPLATFORM_DEBUG=1`` shows it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

EXIT_OK, EXIT_POLICY, EXIT_USAGE = 0, 1, 2
EXIT_INTERNAL = 70  # EX_SOFTWARE: a bug, reported without a traceback
PLATFORM_PROJECT = "ml-platform"


class UsageError(Exception):
    """A problem with what the user asked for: printed as ``error: ...``, exit code 2."""


class _Output:
    """stdout that survives a closed pipe (`mlplatform plan | head`): the rest is dropped."""

    closed = False

    def write(self, text: str) -> None:
        if self.closed:
            return
        try:
            sys.stdout.write(text if text.endswith("\n") else text + "\n")
            sys.stdout.flush()
        except BrokenPipeError:
            self.closed = True
            # Python flushes stdout again at exit; point it at /dev/null so that cannot fail.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)


OUT = _Output()


# Stacks -----------------------------------------------------------------------------------
def find_stacks_dir(start: Path | None = None) -> Path | None:
    """The platform's stack folder: ``stackConfigDir`` of the nearest ``Pulumi.yaml`` of project
    ``ml-platform`` in ``start`` (default: the working directory) or its parents; else the
    stacks of the source checkout this package runs from; else None."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        project_file = folder / "Pulumi.yaml"
        if not project_file.is_file():
            continue
        try:
            doc = yaml.safe_load(project_file.read_text())
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(doc, dict) and doc.get("name") == PLATFORM_PROJECT:
            return folder / str(doc.get("stackConfigDir") or ".")
    from mlplatform.config import STACKS_DIR

    return STACKS_DIR if STACKS_DIR.is_dir() else None


def _stacks_dir(args: argparse.Namespace) -> Path:
    if args.stacks_dir:
        path = Path(args.stacks_dir)
        if not path.is_dir():
            raise UsageError(f"--stacks-dir {args.stacks_dir}: not a folder")
        return path
    found = find_stacks_dir()
    if found is None or not found.is_dir():
        raise UsageError(
            "no platform stacks found: run mlplatform inside a checkout of the platform (a "
            "folder with the ml-platform Pulumi.yaml, or below one), or pass --stacks-dir DIR"
        )
    return found


def _load_plan(args: argparse.Namespace) -> dict[str, Any]:
    from mlplatform.report import build_plan

    return build_plan(args.stack, stacks_dir=_stacks_dir(args))


# Commands ---------------------------------------------------------------------------------
def cmd_plan(args: argparse.Namespace) -> int:
    from mlplatform.render import prepare_out_dir, render_markdown, render_table, write_manifests

    out_dir = prepare_out_dir(Path(args.out), force=args.force) if args.out else None
    plan = _load_plan(args)
    if out_dir is not None:
        written = write_manifests(plan, out_dir)
        print(f"wrote {len(written)} manifests and README.md to {out_dir}", file=sys.stderr)
    mandatory = [
        v
        for v in plan.get("policy", {}).get("violations", [])
        if v["enforcementLevel"] == "mandatory"
    ]
    if args.format == "json":
        OUT.write(json.dumps(plan, indent=2, sort_keys=False))
    elif args.format == "markdown":
        OUT.write(render_markdown(plan))
    else:
        OUT.write(render_table(plan))
    return EXIT_POLICY if mandatory else EXIT_OK


def cmd_cost(args: argparse.Namespace) -> int:
    from mlplatform.cost import render_cost_table

    plan = _load_plan(args)
    if args.format == "json":
        OUT.write(json.dumps(plan["cost"], indent=2))
    else:
        OUT.write(render_cost_table(plan["cost"]))
    return EXIT_OK


def read_plan_file(path: str) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except IsADirectoryError:
        raise UsageError(f"cannot read plan {path}: it is a folder") from None
    except OSError as exc:
        raise UsageError(f"cannot read plan {path}: {exc.strerror or exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"plan {path} is not valid JSON: {exc}") from None
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("resources"), list)
        or not all(isinstance(r, dict) and isinstance(r.get("urn"), str) for r in data["resources"])
    ):
        raise UsageError(
            f"{path} is not a plan: expected the object `mlplatform plan --format json` writes "
            f"(with a `resources` list), got {type(data).__name__}"
        )
    return data


def cmd_diff(args: argparse.Namespace) -> int:
    from mlplatform.diff import DifferentStacksError, diff_plans, render_diff_markdown

    base, head = read_plan_file(args.base), read_plan_file(args.head)
    try:
        result = diff_plans(base, head, across_stacks=args.across_stacks)
    except DifferentStacksError as exc:
        raise UsageError(str(exc)) from None
    OUT.write(
        json.dumps(result, indent=2) if args.format == "json" else render_diff_markdown(result)
    )
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    from mlplatform.verify import main as verify_main

    if args.stacks_dir is None:
        found = find_stacks_dir()
        args.stacks_dir = str(found) if found is not None else None
    return verify_main(args)


def _key_values(pairs: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(
                f"--set {pair}: expected KEY=VALUE, for example --set framework=pytorch"
            )
        out[key.strip()] = value
    return out


def cmd_new_project(args: argparse.Namespace) -> int:
    from mlplatform.new_project import new_project, platform_offer

    extra = _key_values(args.set or [])
    offer = platform_offer(args.stack, _stacks_dir(args))
    path = new_project(
        offer, Path(args.output_dir), extra, no_input=args.no_input, repository=args.repository
    )
    print(path)
    return EXIT_OK


# Parser -----------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse's own usage errors: exit 2, no traceback
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"error: {message}\n")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(PLATFORM_PROJECT)
    except PackageNotFoundError:  # run from a checkout without being installed
        return "unknown (not installed)"


def parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="mlplatform",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    def stack_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--stack",
            default="dev",
            help="platform stack: reads <stacks dir>/Pulumi.<stack>.yaml (default: dev)",
        )
        sp.add_argument(
            "--stacks-dir",
            metavar="DIR",
            help="folder of the stack files (default: the stackConfigDir of the ml-platform "
            "Pulumi.yaml in the working directory or its parents)",
        )

    plan = sub.add_parser(
        "plan",
        help="show what `pulumi up` would build, offline (no cloud, no Pulumi CLI)",
        description="Run the platform program under mocks and show what it would build, its "
        "idle cost and policy violations. Exits 1 when a mandatory policy is violated.",
    )
    stack_args(plan)
    plan.add_argument(
        "--format",
        choices=["table", "json", "markdown"],
        default="table",
        help="table (default), json (input of `mlplatform diff`) or markdown (a PR comment)",
    )
    plan.add_argument(
        "--out",
        metavar="DIR",
        help="also write every Kubernetes object as YAML into DIR (for `kubectl apply -f DIR` "
        "or GitOps), secrets redacted, with a README of what is not rendered there",
    )
    plan.add_argument(
        "--force",
        action="store_true",
        help="with --out: replace the YAML files of a non-empty DIR that an earlier "
        "`plan --out` did not write",
    )
    plan.set_defaults(func=cmd_plan)

    cost = sub.add_parser(
        "cost",
        help="estimate the stack's monthly idle cost and GPU hourly prices",
        description="The stack's idle cost per month, line by line, and GPU prices per hour.",
    )
    stack_args(cost)
    cost.add_argument(
        "--format", choices=["table", "json"], default="table", help="table (default) or json"
    )
    cost.set_defaults(func=cmd_cost)

    diff = sub.add_parser(
        "diff",
        help="compare two `plan --format json` outputs",
        description="Resources added, removed and changed (old → new values, likely "
        "replacements), the idle cost delta and new policy violations between two plans.",
    )
    diff.add_argument("base", help="the plan before the change (JSON from `plan --format json`)")
    diff.add_argument("head", help="the plan after the change")
    diff.add_argument(
        "--format",
        choices=["markdown", "json"],
        default="markdown",
        help="markdown (default, fits a PR comment) or json",
    )
    diff.add_argument(
        "--across-stacks",
        action="store_true",
        help="compare plans of two different stacks (for example dev and prod) by resource "
        "name; without it, plans of different stacks are refused",
    )
    diff.set_defaults(func=cmd_diff)

    verify = sub.add_parser(
        "verify",
        help="check a deployed environment really works",
        description="After `pulumi up`: check the live AWS resources and Kubernetes objects.",
    )
    stack_args(verify)
    verify.add_argument(
        "--outputs",
        metavar="FILE",
        help="stack outputs JSON (default: `pulumi stack output --json --show-secrets`)",
    )
    verify.add_argument(
        "--format", choices=["table", "json"], default="table", help="table (default) or json"
    )
    verify.add_argument("--skip-aws", action="store_true", help="skip the AWS checks")
    verify.add_argument("--skip-kubernetes", action="store_true", help="skip the Kubernetes checks")
    verify.set_defaults(func=cmd_verify)

    new = sub.add_parser(
        "new-project",
        help="generate an ML project wired to a platform stack",
        description="Generate an ML project from the ml-project template, wired to what the "
        "stack's plan offers: its region, registries, training teams and GPU pools. AWS "
        "stacks only.",
    )
    stack_args(new)
    new.add_argument(
        "--output-dir", default=".", metavar="DIR", help="where to create the project (default: .)"
    )
    new.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="a template option, repeatable: project_name, framework, accelerator, gpu_pool, "
        "team, serving, ... (see templates/ml-project/README.md)",
    )
    new.add_argument(
        "--no-input", action="store_true", help="do not prompt; use the defaults for the rest"
    )
    new.add_argument(
        "--repository",
        metavar="OWNER/NAME",
        help="the project's GitHub repository: the stack-config entry new-project prints for an "
        "unregistered project names it, so the platform gives it its own CI runner and roles",
    )
    new.set_defaults(func=cmd_new_project)
    return p


def _run(func: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    from components.common import InvalidArgsError
    from mlplatform.config import ConfigError
    from mlplatform.new_project import NewProjectError
    from mlplatform.render import OutDirError

    try:
        return int(func(args))
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
    except InvalidArgsError as exc:  # a component's own checks: still the config's fault
        print(f"error: {exc}", file=sys.stderr)
    except (UsageError, NewProjectError, OutDirError) as exc:
        print(f"error: {exc}", file=sys.stderr)
    except Exception as exc:
        if os.environ.get("MLPLATFORM_DEBUG"):
            raise
        print(
            f"error: internal error: {type(exc).__name__}: {exc}\n"
            "This is a bug in mlplatform; rerun with MLPLATFORM_DEBUG=1 for the traceback and "
            "report it.",
            file=sys.stderr,
        )
        return EXIT_INTERNAL
    return EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return _run(args.func, args)
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
