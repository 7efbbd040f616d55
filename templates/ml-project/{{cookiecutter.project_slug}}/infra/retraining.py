"""Continuous training (issue #20): retrain on drift, on live accuracy, or when the model is old.

``<project>-retrain``, an hourly CronJob (at :47, half an hour after the drift job of
``quality.py`` writes its result), runs ``python -m <package>.retrain --submit`` from the serving
image. It reads the drift job's latest result and the champion's card (``retrain.decide``) and,
when retraining is due, creates the training Job rendered here with the platform's TrainingJob
builders (``runs.job_manifest``, the run ``make submit`` starts: the team's Kueue queue, the
trainer's Pod Identity role, the quality gates in ``train``), kept in the ``<project>-retrain-run``
ConfigMap. The new version is a candidate; ``promote.yml`` takes it to the canary.

Why a CronJob and not an Alertmanager webhook: the decision reads the same result the alerts are
computed from, so the two agree; nothing listens on the network; no route per project in the
platform's Alertmanager config; and a check that runs while the alert pipeline is down still sees
the drift. An alert needs ``for: 30m`` anyway, so an hourly check loses little.

Its identity: the ``<project>-retrainer`` service account, read-only on the project's prefix (it
reads the result and the card), and a Role that may create and list Jobs in this namespace, and
nothing else. It mounts a token for the API server (the trainer and server do not).
"""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
from quality import KUEUE_QUEUE_LABEL, RESTRICTED_CONTAINER

RETRAIN_CHECK_SCHEDULE = "47 * * * *"  # hourly, after the drift job (:17) has written its result
JOB_FILE = "job.json"
MOUNT = "/etc/retrain"


def names(project: str) -> dict[str, str]:
    return {
        "cron": f"{project}-retrain",
        "run": f"{project}-retrain-run",
        "account": f"{project}-retrainer",
    }


def run_template(job: dict[str, Any]) -> dict[str, Any]:
    """The Job the trigger starts (``runs.job_manifest``'s), named for the trigger."""
    if job["kind"] != "Job":
        raise ValueError("retraining starts single-node Jobs; set nodes: 1")
    return job


def rbac(project: str, namespace: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A Role to create and list Jobs in the project's namespace, bound to the retrainer only."""
    n = names(project)
    labels = {"app.kubernetes.io/name": project, "app.kubernetes.io/component": "retrain"}
    role = {
        "metadata": {"name": n["account"], "namespace": namespace, "labels": labels},
        "rules": [{"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create", "list"]}],
    }
    binding = {
        "metadata": {"name": n["account"], "namespace": namespace, "labels": labels},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": n["account"]},
        "subjects": [{"kind": "ServiceAccount", "name": n["account"], "namespace": namespace}],
    }
    return role, binding


def retrain_cronjob(
    *,
    project: str,
    package: str,
    namespace: str,
    image: str,
    queue: str,
    bucket: Any,
    model_version: str,
    max_age_days: float | None = None,
) -> dict[str, Any]:
    n = names(project)
    labels = {"app.kubernetes.io/name": project, "app.kubernetes.io/component": "retrain"}
    env = [
        {"name": "MODEL_BUCKET", "value": bucket},
        {"name": "MODEL_PREFIX", "value": f"projects/{project}/"},
        {"name": "MODEL_DIR", "value": "/tmp/models"},  # noqa: S108 - an emptyDir
        # The champion: its age and its card's floor are what the decision compares with.
        {"name": "MODEL_VERSION", "value": model_version},
    ]
    if max_age_days is not None:  # unset: retrain.py's own default
        env.append({"name": "RETRAIN_MAX_AGE_DAYS", "value": str(max_age_days)})
    container = {
        "name": "retrain",
        "image": image,
        "command": ["python", "-m", f"{package}.retrain", "--submit", f"{MOUNT}/{JOB_FILE}"],
        "env": env,
        "resources": {
            "requests": {"cpu": "100m", "memory": "512Mi"},
            "limits": {"cpu": "1", "memory": "1Gi"},
        },
        "securityContext": RESTRICTED_CONTAINER,
        "volumeMounts": [
            {"name": "scratch", "mountPath": "/tmp"},  # noqa: S108
            {"name": "run", "mountPath": MOUNT, "readOnly": True},
        ],
    }
    return {
        "metadata": {"name": n["cron"], "namespace": namespace, "labels": labels},
        "spec": {
            "schedule": RETRAIN_CHECK_SCHEDULE,
            "timeZone": "Etc/UTC",
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": 1800,
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {
                "metadata": {"labels": {**labels, KUEUE_QUEUE_LABEL: queue}},
                "spec": {
                    "backoffLimit": 1,
                    "activeDeadlineSeconds": 900,
                    "ttlSecondsAfterFinished": 86400,
                    "suspend": True,  # Kueue unsuspends the Job when the queue admits it
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {
                            "serviceAccountName": n["account"],
                            # The one pod of the project that talks to the API server.
                            "automountServiceAccountToken": True,
                            "restartPolicy": "Never",
                            "securityContext": {
                                "runAsNonRoot": True,
                                "seccompProfile": {"type": "RuntimeDefault"},
                            },
                            "containers": [container],
                            "volumes": [
                                {"name": "scratch", "emptyDir": {"sizeLimit": "2Gi"}},
                                {"name": "run", "configMap": {"name": n["run"]}},
                            ],
                        },
                    },
                },
            },
        },
    }


def deploy(
    *,
    project: str,
    package: str,
    namespace: str,
    image: str,
    queue: str,
    bucket: Any,
    model_version: str,
    run_job: pulumi.Output[dict[str, Any]],
    max_age_days: float | None,
    provider: k8s.Provider,
    depends_on: list[pulumi.Resource],
) -> k8s.batch.v1.CronJob:
    """Declare the run template, the retrainer's Role and the CronJob (called by program.py)."""
    n = names(project)
    opts = pulumi.ResourceOptions(provider=provider, depends_on=depends_on)
    labels = {"app.kubernetes.io/name": project, "app.kubernetes.io/component": "retrain"}
    run = k8s.core.v1.ConfigMap(
        n["run"],
        metadata={"name": n["run"], "namespace": namespace, "labels": labels},
        data={JOB_FILE: run_job.apply(lambda j: json.dumps(run_template(j), sort_keys=True))},
        opts=opts,
    )
    role_doc, binding_doc = rbac(project, namespace)
    role = k8s.rbac.v1.Role(
        f"{n['account']}-role", metadata=role_doc["metadata"], rules=role_doc["rules"], opts=opts
    )
    binding = k8s.rbac.v1.RoleBinding(
        f"{n['account']}-binding",
        metadata=binding_doc["metadata"],
        role_ref=binding_doc["roleRef"],
        subjects=binding_doc["subjects"],
        opts=pulumi.ResourceOptions(provider=provider, depends_on=[*depends_on, role]),
    )
    job = retrain_cronjob(
        project=project,
        package=package,
        namespace=namespace,
        image=image,
        queue=queue,
        bucket=bucket,
        model_version=model_version,
        max_age_days=max_age_days,
    )
    return k8s.batch.v1.CronJob(
        n["cron"],
        metadata=job["metadata"],
        spec=job["spec"],
        opts=pulumi.ResourceOptions(
            provider=provider, depends_on=[*depends_on, run, role, binding]
        ),
    )
