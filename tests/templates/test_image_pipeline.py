"""The generated project's image pipeline and its PyTorch packaging, checked against what they meet:
the Dockerfile's stages, pyproject's extras, the infra program's settings and the platform's
architecture pin. The workflows' shell steps run here against stand-in ``aws``/``cosign``/``docker``
commands, so the skip, sign and scan-gate logic is exercised, not just read."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.serving_args import ServingEndpointArgs
from components.training_job import TrainingJobArgs
from tests.templates.helpers import bake

# (framework, accelerator, serving): the four shapes of the pipeline.
SHAPES = [
    ("sklearn", "none", "yes"),
    ("pytorch", "none", "no"),
    ("pytorch", "nvidia-l4", "yes"),
    ("pytorch", "nvidia-a100", "no"),
]
BUILD_ACTION = "docker/build-push-action@"


@pytest.fixture(scope="module")
def projects(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str, str], Path]:
    root = tmp_path_factory.mktemp("pipeline")
    return {
        shape: bake(
            root / "-".join(shape), framework=shape[0], accelerator=shape[1], serving=shape[2]
        )
        for shape in SHAPES
    }


def workflow(root: Path, name: str) -> dict[str, Any]:
    return yaml.safe_load((root / ".github" / "workflows" / f"{name}.yml").read_text())


def steps_using(job: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [s for s in job.get("steps", []) if s.get("uses", "").startswith(action)]


def step(job: dict[str, Any], step_id: str) -> dict[str, Any]:
    (found,) = [s for s in job["steps"] if s.get("id") == step_id]
    return found


def stages(root: Path) -> list[str]:
    return re.findall(r"^FROM \S+ AS (\S+)$", (root / "Dockerfile").read_text(), flags=re.M)


def extras(root: Path) -> dict[str, list[str]]:
    return tomllib.loads((root / "pyproject.toml").read_text())["project"]["optional-dependencies"]


def gpu(shape: tuple[str, str, str]) -> bool:
    return shape[0] == "pytorch" and shape[1] != "none"


@pytest.mark.parametrize("shape", SHAPES, ids="-".join)
def test_each_commit_is_built_once_by_the_image_workflow(
    projects: dict[tuple[str, str, str], Path], shape: tuple[str, str, str]
) -> None:
    root = projects[shape]
    calls = {}
    for name in ("deploy", "infra-preview"):
        (caller,) = [j for j in workflow(root, name)["jobs"].values() if "uses" in j]
        assert caller["uses"] == "$/.github/workflows/image.yml"
        assert caller["permissions"] == {"contents": "read", "id-token": "write"}
        calls[name] = caller["with"]
        # Nothing else in these workflows builds.
        for job in workflow(root, name)["jobs"].values():
            assert not steps_using(job, BUILD_ACTION)
            assert "docker build" not in yaml.safe_dump(job)
    assert calls["deploy"]["sha"] == "${{ github.sha }}"
    assert calls["infra-preview"]["sha"] == "${{ github.event.pull_request.head.sha }}"
    # ci.yml builds only what image.yml never sees: a fork's pull request, not pushed.
    ci_image = workflow(root, "ci")["jobs"]["image"]
    assert "head.repo.full_name != github.repository" in ci_image["if"]
    (build,) = steps_using(ci_image, BUILD_ACTION)
    assert build["with"]["push"] is False
    assert "cache-to" not in build["with"]


@pytest.mark.parametrize("shape", SHAPES, ids="-".join)
def test_builds_target_the_platforms_architecture_with_sbom_provenance_and_cache(
    projects: dict[tuple[str, str, str], Path], shape: tuple[str, str, str]
) -> None:
    root = projects[shape]
    job = workflow(root, "image")["jobs"]["build"]
    builds = steps_using(job, BUILD_ACTION)
    # The platform pins project workloads to the architecture the template builds for.
    arch = TrainingJobArgs.model_fields["architecture"].default
    assert arch == ServingEndpointArgs.model_fields["architecture"].default == "amd64"
    # First a local build of the runtime image and a training run in it, as on the cluster.
    smoke, *builds = builds
    assert smoke["with"]["load"] is True
    assert "push" not in smoke["with"]
    assert smoke["with"]["target"] == "runtime"
    (run,) = [s for s in job["steps"] if s.get("name") == "Train in the image, as on the cluster"]
    assert job["steps"].index(smoke) < job["steps"].index(run) < job["steps"].index(builds[0])
    for flag in ("--read-only", "--tmpfs /tmp", "--user 10001:10001", "MODEL_DIR=/tmp/models"):
        assert flag in run["run"]
    assert f"{smoke['with']['tags']} python -m churn_model.train --upload no" in run["run"]
    targets = {}
    for build in builds:
        w = build["with"]
        assert w["platforms"] == f"linux/{arch}"
        assert (w["push"], w["sbom"], w["provenance"]) == (True, True, "mode=max")
        assert w["cache-from"] == f"type=gha,scope={w['target']}"
        assert w["cache-to"] == f"type=gha,mode=max,scope={w['target']}"
        assert w["target"] in stages(root)
        key = build["id"].removeprefix("build-")
        # An immutable tag already in ECR is reused, never pushed again.
        assert build["if"] == f"steps.existing.outputs.{key} == ''"
        targets[key] = w["target"]
    expected = {"training": "train-gpu" if gpu(shape) else "runtime"}
    if gpu(shape) and shape[2] == "yes":
        expected["serving"] = "runtime"  # CPU-only torch for serving
    assert targets == expected


@pytest.mark.parametrize("shape", SHAPES, ids="-".join)
def test_pulumi_gets_the_images_by_digest(
    projects: dict[tuple[str, str, str], Path], shape: tuple[str, str, str]
) -> None:
    root = projects[shape]
    serving = shape[2] == "yes"
    image = workflow(root, "image")
    call = image[True]["workflow_call"]  # YAML 1.1 reads the key `on` as True
    keys = ["training-image", *(["serving-image"] if serving else [])]
    assert sorted(call["outputs"]) == sorted(keys)
    build = image["jobs"]["build"]
    ids = {s.get("id") for s in build["steps"]}
    for key in keys:
        assert call["outputs"][key]["value"] == f"${{{{ jobs.build.outputs.{key} }}}}"
        step_id = key.removesuffix("-image")
        assert build["outputs"][key] == f"${{{{ steps.{step_id}.outputs.image }}}}"
        assert step_id in ids
    # The program reads these names (infra/program.py) ...
    program = (root / "infra" / "program.py").read_text()
    names = {"TRAINING_IMAGE": "training-image", "SERVING_IMAGE": "serving-image"}
    wanted = {n: k for n, k in names.items() if f'os.environ.get("{n}"' in program}
    assert set(wanted) == ({"TRAINING_IMAGE", "SERVING_IMAGE"} if serving else {"TRAINING_IMAGE"})
    # ... and the job that runs Pulumi sets them from the image workflow's digests.
    for name in ("deploy", "infra-preview"):
        jobs = workflow(root, name)["jobs"]
        (pulumi_job,) = [j for j in jobs.values() if steps_using(j, "pulumi/actions@")]
        assert pulumi_job["needs"] == "image"
        for var, key in wanted.items():
            assert pulumi_job["env"][var] == f"${{{{ needs.image.outputs.{key} }}}}"
        assert "IMAGE_TAG" not in pulumi_job["env"]


def _fake(bin_dir: Path, name: str, script: str) -> None:
    path = bin_dir / name
    path.write_text("#!/bin/bash\n" + f'echo "{name} $*" >> "$CALLS"\n' + script)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def _run_step(
    run: str, tmp_path: Path, env: dict[str, str], fakes: dict[str, str]
) -> tuple[subprocess.CompletedProcess[str], list[str], str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, script in fakes.items():
        _fake(bin_dir, name, script)
    calls, output = tmp_path / "calls", tmp_path / "output"
    calls.write_text("")
    output.write_text("")
    full = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "CALLS": str(calls),
        "GITHUB_OUTPUT": str(output),
        "TAG": "churn-model-abc",
        "SIGNER": "https://github.com/org/churn/.github/workflows/image.yml@",
        **env,
    }
    # GitHub runs `run:` with bash -e {0}.
    done = subprocess.run(
        ["bash", "-e", "-c", run], env=full, capture_output=True, text=True, timeout=60
    )
    return done, calls.read_text().splitlines(), output.read_text()


TRAINING = "123456789012.dkr.ecr.us-east-1.amazonaws.com/ml-platform/dev/training"
SERVING = "123456789012.dkr.ecr.us-east-1.amazonaws.com/ml-platform/dev/serving"
INDEX = "sha256:" + "1" * 64
AMD64 = "sha256:" + "2" * 64


def test_an_image_already_in_ecr_is_reused(
    projects: dict[tuple[str, str, str], Path], tmp_path: Path
) -> None:
    run = step(workflow(projects[SHAPES[0]], "image")["jobs"]["build"], "existing")["run"]
    # ECR knows the training tag (a re-run), not the serving one.
    aws = f"""case "$*" in *ml-platform/dev/training*) echo {INDEX} ;; *) exit 254 ;; esac\n"""
    done, calls, output = _run_step(
        run, tmp_path, {"TRAINING_REPO": TRAINING, "SERVING_REPO": SERVING}, {"aws": aws}
    )
    assert done.returncode == 0, done.stderr
    assert output.splitlines() == [f"training={INDEX}", "serving="]
    assert all("--repository-name ml-platform/dev/" in c for c in calls)
    assert all("imageTag=churn-model-abc" in c for c in calls)


SCAN_STEP = "Sign, then wait for ECR's scan and fail on critical findings"


def _scan(
    projects: dict[tuple[str, str, str], Path], tmp_path: Path, *, critical: str, signed: bool
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    job = workflow(projects[SHAPES[0]], "image")["jobs"]["build"]
    (scan,) = [s for s in job["steps"] if s.get("name") == SCAN_STEP]
    index = (
        '{"manifests": [{"digest": "' + AMD64 + '", "platform": '
        '{"os": "linux", "architecture": "amd64"}}, {"digest": "sha256:'
        + "3" * 64
        + '", "platform": {"os": "unknown", "architecture": "unknown"}}]}'
    )
    fakes = {
        "cosign": f'[ "$1" = verify ] && exit {0 if signed else 1}\nexit 0\n',
        "docker": f"echo '{index}'\n",
        "aws": f'case "$*" in *describe-image-scan-findings*) echo {critical} ;; esac\n',
    }
    env = {"IMAGES": f"{TRAINING}@{INDEX} {SERVING}@{INDEX}"}
    done, calls, _ = _run_step(scan["run"], tmp_path, env, fakes)
    return done, calls


def test_images_are_signed_once_and_scanned_by_their_amd64_manifest(
    projects: dict[tuple[str, str, str], Path], tmp_path: Path
) -> None:
    done, calls = _scan(projects, tmp_path, critical="None", signed=False)
    assert done.returncode == 0, done.stderr
    signs = [c for c in calls if c.startswith("cosign sign")]
    assert signs == [
        f"cosign sign --yes {TRAINING}@{INDEX}",
        f"cosign sign --yes {SERVING}@{INDEX}",
    ]
    waits = [c for c in calls if "wait image-scan-complete" in c]
    assert len(waits) == 2 and all(f"imageDigest={AMD64}" in w for w in waits)
    assert any("--repository-name ml-platform/dev/serving" in w for w in waits)
    # Already signed (a re-run): ECR's immutable tags would refuse a second signature.
    again, calls = _scan(projects, tmp_path, critical="None", signed=True)
    assert again.returncode == 0, again.stderr
    assert not [c for c in calls if c.startswith("cosign sign")]


def test_critical_findings_fail_the_build(
    projects: dict[tuple[str, str, str], Path], tmp_path: Path
) -> None:
    done, _ = _scan(projects, tmp_path, critical="2", signed=True)
    assert done.returncode == 1
    assert "2 CRITICAL findings" in done.stdout
    assert f"{TRAINING}@{AMD64}" in done.stdout


def test_the_image_workflow_is_least_privilege(projects: dict[tuple[str, str, str], Path]) -> None:
    image = workflow(projects[SHAPES[0]], "image")
    assert image["permissions"] == {}
    job = image["jobs"]["build"]
    assert job["permissions"] == {"contents": "read", "id-token": "write"}
    assert job["environment"] == "${{ inputs.environment }}"


@pytest.mark.parametrize("shape", SHAPES, ids="-".join)
def test_torch_is_cpu_only_except_in_the_gpu_training_image(
    projects: dict[tuple[str, str, str], Path], shape: tuple[str, str, str]
) -> None:
    root = projects[shape]
    pyproject = tomllib.loads((root / "pyproject.toml").read_text())
    deps = pyproject["project"]["dependencies"]
    assert not [d for d in deps if d.startswith("torch")], "torch only through an extra"
    found = extras(root)
    dockerfile = (root / "Dockerfile").read_text()
    used = set(re.findall(r"--extra (\w+)", dockerfile))
    used |= set(re.findall(r"--extra (\w+)", (root / "Makefile").read_text()))
    ci = (root / ".github" / "workflows" / "ci.yml").read_text()
    used |= set(re.findall(r"--extra (\w+)", ci))
    assert used <= set(found), f"extras used but not declared: {used - set(found)}"
    if shape[0] == "sklearn":
        assert "tool" not in pyproject or "sources" not in pyproject["tool"].get("uv", {})
        assert "torch" not in dockerfile
        return
    uv = pyproject["tool"]["uv"]
    assert found["cpu"] == ["torch>=2.4"]
    assert uv["sources"]["torch"] == [{"index": "pytorch-cpu", "extra": "cpu"}]
    assert uv["index"] == [
        {"name": "pytorch-cpu", "url": "https://download.pytorch.org/whl/cpu", "explicit": True}
    ]
    # The runtime (serving) image syncs the cpu extra; only train-gpu takes the CUDA build.
    runtime_builder = dockerfile.split("FROM base AS builder\n")[1].split("\nFROM ")[0]
    assert "--extra cpu" in runtime_builder and "cuda" not in runtime_builder
    if gpu(shape):
        assert found["cuda"] == ["torch>=2.4"]
        assert uv["conflicts"] == [[{"extra": "cpu"}, {"extra": "cuda"}]]
        gpu_builder = dockerfile.split("FROM base AS builder-gpu\n")[1].split("\nFROM ")[0]
        assert "--extra cuda" in gpu_builder and "--extra cpu" not in gpu_builder
        train_gpu = dockerfile.split("AS train-gpu\n")[1].split("\nFROM ")[0]
        assert "--from=builder-gpu" in train_gpu
    else:
        assert "cuda" not in found and "conflicts" not in uv
        assert "train-gpu" not in stages(root)
