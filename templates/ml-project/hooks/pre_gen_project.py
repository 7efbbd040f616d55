"""Validate the template's options before anything is written.

The block below is the only place cookiecutter renders: each value becomes a plain string literal
(``tojson`` output is a valid Python string literal, so quotes in a value cannot break the file).
Everything after it is ordinary, Jinja-free Python.
"""

import keyword
import re
import sys

OPTIONS = {
    "project_name": {{ cookiecutter.project_name | tojson }},
    "project_slug": {{ cookiecutter.project_slug | tojson }},
    "description": {{ cookiecutter.description | tojson }},
    "author": {{ cookiecutter.author | tojson }},
    "python_version": {{ cookiecutter.python_version | tojson }},
    "framework": {{ cookiecutter.framework | tojson }},
    "accelerator": {{ cookiecutter.accelerator | tojson }},
    "gpu_pool": {{ cookiecutter.gpu_pool | tojson }},
    "serving": {{ cookiecutter.serving | tojson }},
    "serving_min_replicas": {{ cookiecutter.serving_min_replicas | tojson }},
    "serving_max_replicas": {{ cookiecutter.serving_max_replicas | tojson }},
    "platform_stack": {{ cookiecutter.platform_stack | tojson }},
    "team": {{ cookiecutter.team | tojson }},
    "platform_requirement": {{ cookiecutter.platform_requirement | tojson }},
    "aws_region": {{ cookiecutter.aws_region | tojson }},
    "ci": {{ cookiecutter.ci | tojson }},
}

# ---- no Jinja below this line ----

CHOICES = {
    "framework": ("sklearn", "pytorch"),
    "accelerator": (
        "none",
        "nvidia-t4",
        "nvidia-a10g",
        "nvidia-l4",
        "nvidia-l40s",
        "nvidia-a100",
        "nvidia-h100",
    ),
    "serving": ("yes", "no"),
    "ci": ("github", "none"),
    "python_version": ("3.11", "3.12", "3.13"),
}
SERVING_ONLY = ("serving_min_replicas", "serving_max_replicas")
SLUG_RE = re.compile(r"^[a-z][a-z0-9_]*$")
# The slug also names the Kubernetes namespace (with '-' for '_'): a DNS label of at most 63
# characters, minus room for the suffixes the platform's components add to child names.
SLUG_MAX = 40
# Names that would shadow a module the project itself imports.
RESERVED_SLUGS = {
    "test",
    "tests",
    "src",
    "infra",
    "data",
    "models",
    "sklearn",
    "torch",
    "fastapi",
    "uvicorn",
    "boto3",
    "mlflow",
    "numpy",
    "pydantic",
    "pulumi",
    "components",
    "mlplatform",
    "json",
    "os",
}
DNS_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
# A direct reference: a bare name or version could be answered by PyPI's unrelated ml-platform.
REQUIREMENT_RE = re.compile(r"^ml-platform @ (git\+(https|ssh|http|file)://|https://|file://)\S+$")
STACK_RE = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
REGION_RE = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d+$")


def problems(opts: dict[str, str]) -> list[str]:
    found: list[str] = []
    for key, allowed in CHOICES.items():
        if opts[key] not in allowed:
            found.append(f"{key}: {opts[key]!r} is not one of {', '.join(allowed)}")

    slug = opts["project_slug"]
    if not SLUG_RE.match(slug):
        found.append(
            f"project_slug: {slug!r} must start with a lowercase letter and contain only "
            "lowercase letters, digits and underscores (no spaces or dashes)"
        )
    elif len(slug) > SLUG_MAX:
        found.append(f"project_slug: {slug!r} is longer than {SLUG_MAX} characters")
    elif keyword.iskeyword(slug) or slug in RESERVED_SLUGS:
        found.append(f"project_slug: {slug!r} would shadow a Python module; pick another name")

    if not opts["project_name"].strip():
        found.append("project_name: must not be empty")
    for key in ("project_name", "description", "author", "platform_requirement"):
        if "\n" in opts[key] or "\r" in opts[key]:
            found.append(f"{key}: must be a single line")

    if opts["accelerator"] != "none" and opts["framework"] == "sklearn":
        found.append(
            f"accelerator: {opts['accelerator']!r} needs framework=pytorch "
            "(scikit-learn cannot use a GPU; use accelerator=none)"
        )

    if opts["serving"] == "no":
        for key in SERVING_ONLY:
            if opts[key].strip():
                found.append(
                    f"{key}: only applies when serving=yes (got serving=no); leave it empty"
                )
    elif opts["serving"] == "yes":
        bounds = {}
        for key in SERVING_ONLY:
            value = opts[key].strip()
            if not value.isdigit() or int(value) < 1:
                found.append(f"{key}: must be a whole number >= 1, got {value!r}")
            else:
                bounds[key] = int(value)
        if len(bounds) == 2 and bounds["serving_min_replicas"] > bounds["serving_max_replicas"]:
            found.append(
                f"serving_min_replicas: must be <= serving_max_replicas "
                f"({bounds['serving_max_replicas']}), got {bounds['serving_min_replicas']}"
            )

    if not STACK_RE.match(opts["platform_stack"]):
        found.append(
            f"platform_stack: {opts['platform_stack']!r} must look like org/project/stack "
            "(for example org/ml-platform/dev)"
        )
    requirement = opts["platform_requirement"].strip()
    if any(c in requirement for c in '"\\'):
        found.append("platform_requirement: must not contain quotes or backslashes")
    elif requirement and not REQUIREMENT_RE.match(requirement):
        found.append(
            f"platform_requirement: {requirement!r} must be a direct reference, "
            "'ml-platform @ git+https://<platform repo>@<tag>' (or a file:// path): a bare "
            "name or version could install PyPI's unrelated ml-platform package"
        )
    if not DNS_LABEL_RE.match(opts["team"]):
        found.append(f"team: {opts['team']!r} must be a platform team's name (a DNS label)")
    pool = opts["gpu_pool"].strip()
    if opts["accelerator"] == "none" and pool:
        found.append(f"gpu_pool: {pool!r} needs a GPU accelerator (accelerator is none)")
    elif opts["accelerator"] != "none" and not pool:
        found.append(
            f"gpu_pool: name the platform GPU pool with {opts['accelerator']} to train on "
            "(the stack's trainingQueues output lists each team's pools; "
            "`mlplatform new-project` fills it in)"
        )
    elif pool and not DNS_LABEL_RE.match(pool):
        found.append(f"gpu_pool: {pool!r} must be a GPU pool's name (a DNS label)")
    if not REGION_RE.match(opts["aws_region"]):
        found.append(
            f"aws_region: {opts['aws_region']!r} is not an AWS region name such as us-east-1"
        )
    return found


def main() -> int:
    found = problems(OPTIONS)
    if found:
        lines = "\n".join(f"  - {p}" for p in found)
        sys.stderr.write(f"ERROR: invalid template options:\n{lines}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
