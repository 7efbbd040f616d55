"""Submit one training run of {{ cookiecutter.project_name }}: ``make submit`` (or the train workflow).

    python submit.py --stack {{ cookiecutter.__stack }} --data s3://<bucket>/projects/<project>/data/train.csv \\
        --param C=0.5 --seed 3

Reads the stack's ``trainingRun`` output (what ``pulumi up`` deployed: image, queue, service
account, bucket, MLflow), names the run uniquely, renders it with the platform's TrainingJob
builders (:mod:`runs`) and creates it with the Kubernetes API (your kubeconfig's context). Kueue
admits it when the team's quota allows. ``--dry-run`` prints the manifest instead.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from typing import Any

from components.training_operator import PYTORCHJOB_API_VERSION
from runs import RunSpec, job_manifest, run_name, train_args


def stack_spec(stack: str) -> RunSpec:
    """The deployed ``trainingRun`` output of ``stack``."""
    done = subprocess.run(  # noqa: S603 - fixed argv
        ["pulumi", "stack", "output", "trainingRun", "--json", "--stack", stack],  # noqa: S607
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"cannot read trainingRun from stack {stack!r}: {done.stderr.strip()}")
    return RunSpec.from_output(json.loads(done.stdout))


def create(manifest: dict[str, Any], api_client: Any = None) -> dict[str, Any]:
    """Create the run's Job or PyTorchJob; returns what the API server stored."""
    from kubernetes import client, config

    if api_client is None:
        config.load_kube_config()
        api_client = client.ApiClient()
    namespace = manifest["metadata"]["namespace"]
    if manifest["kind"] == "Job":
        created = client.BatchV1Api(api_client).create_namespaced_job(namespace, manifest)
        return dict(api_client.sanitize_for_serialization(created))
    group, version = PYTORCHJOB_API_VERSION.split("/")
    return dict(
        client.CustomObjectsApi(api_client).create_namespaced_custom_object(
            group, version, namespace, "pytorchjobs", manifest
        )
    )


def _param(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def main(argv: list[str] | None = None, api_client: Any = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", default="{{ cookiecutter.__stack }}")
    parser.add_argument("--spec", help="a trainingRun JSON file instead of the stack's output")
    parser.add_argument(
        "--data", help="training data: s3://... (default: the stack's trainingData)"
    )
    parser.add_argument("--param", type=_param, action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--image", help="another image of the training repository, by digest")
    parser.add_argument("--name", help="the run's name (default: <project>-<UTC time>-<random>)")
    parser.add_argument("--dry-run", action="store_true", help="print the manifest, create nothing")
    args = parser.parse_args(argv)

    if args.spec:
        with open(args.spec, encoding="utf-8") as fh:
            spec = RunSpec.from_output(json.load(fh))
    else:
        spec = stack_spec(args.stack)
    changes: dict[str, Any] = {}
    if args.data:
        changes["data"] = args.data
    if args.image:
        changes["image"] = args.image
    if changes:
        spec = RunSpec(**{**spec.to_output(), **changes})
    name = args.name or run_name(spec.project)
    manifest = job_manifest(spec, name, train_args(spec, dict(args.param), args.seed))
    if args.dry_run:
        print(json.dumps(manifest, indent=2))
        return 0
    create(manifest, api_client)
    print(
        json.dumps(
            {
                "run": name,
                "kind": manifest["kind"],
                "namespace": spec.namespace,
                "queue": spec.queue,
                "follow": f"kubectl -n {spec.namespace} logs -f job/{name}",
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
