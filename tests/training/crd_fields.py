"""Structural checks of the custom resources against the fields their published CRDs define.

No installed package ships the Kueue v1beta2 or Kubeflow ``kubeflow.org/v1`` CRD schemas, so these
JSON Schemas restate, from the published API types, what the API server would check: required
fields, enums, list sizes and, for the objects we write, that no unknown field slips in (the API
server prunes unknown fields silently, so a typo would be lost without an error). The CEL rules of
the CRDs that matter for these objects are checked in ``cel_rules``.
"""

from __future__ import annotations

from typing import Any

import jsonschema

DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
QUANTITY = r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
EFFECTS = ["NoSchedule", "PreferNoSchedule", "NoExecute"]


def _closed(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
    }
    if required:
        out["required"] = required
    return out


def _top(kind: str, api_version: str, body: dict[str, Any], required: list[str]) -> dict:
    meta = {"type": "object", "required": ["name"]}
    return _closed(
        {
            "apiVersion": {"const": api_version},
            "kind": {"const": kind},
            "metadata": meta,
            **body,
        },
        ["apiVersion", "kind", "metadata", *required],
    )


_quantity = {"anyOf": [{"type": "integer", "minimum": 0}, {"type": "string", "pattern": QUANTITY}]}
_taint = _closed(
    {
        "key": {"type": "string"},
        "value": {"type": "string"},
        "effect": {"enum": EFFECTS},
        "timeAdded": {"type": "string"},
    },
    ["key", "effect"],
)
_toleration = _closed(
    {
        "key": {"type": "string"},
        "operator": {"enum": ["Equal", "Exists"]},
        "value": {"type": "string"},
        "effect": {"enum": EFFECTS},
        "tolerationSeconds": {"type": "integer"},
    }
)
_selector = _closed(
    {
        "matchLabels": {"type": "object", "additionalProperties": {"type": "string"}},
        "matchExpressions": {
            "type": "array",
            "items": _closed(
                {
                    "key": {"type": "string"},
                    "operator": {"enum": ["In", "NotIn", "Exists", "DoesNotExist"]},
                    "values": {"type": "array", "items": {"type": "string"}},
                },
                ["key", "operator"],
            ),
        },
    }
)
_fair_sharing = _closed({"weight": _quantity})
_stop_policy = {"enum": ["None", "Hold", "HoldAndDrain"]}

RESOURCE_FLAVOR = _top(
    "ResourceFlavor",
    "kueue.x-k8s.io/v1beta2",
    {
        "spec": _closed(
            {
                "nodeLabels": {
                    "type": "object",
                    "maxProperties": 8,
                    "additionalProperties": {"type": "string"},
                },
                "nodeTaints": {"type": "array", "maxItems": 8, "items": _taint},
                "tolerations": {"type": "array", "maxItems": 8, "items": _toleration},
                "topologyName": {"type": "string", "pattern": DNS_SUBDOMAIN},
            }
        )
    },
    [],
)

CLUSTER_QUEUE = _top(
    "ClusterQueue",
    "kueue.x-k8s.io/v1beta2",
    {
        "spec": _closed(
            {
                "resourceGroups": {
                    "type": "array",
                    "maxItems": 16,
                    "items": _closed(
                        {
                            "coveredResources": {
                                "type": "array",
                                "minItems": 1,
                                "maxItems": 64,
                                "items": {"type": "string"},
                            },
                            "flavors": {
                                "type": "array",
                                "minItems": 1,
                                "maxItems": 64,
                                "items": _closed(
                                    {
                                        "name": {"type": "string", "pattern": DNS_SUBDOMAIN},
                                        "resources": {
                                            "type": "array",
                                            "minItems": 1,
                                            "maxItems": 64,
                                            "items": _closed(
                                                {
                                                    "name": {"type": "string"},
                                                    "nominalQuota": _quantity,
                                                    "borrowingLimit": _quantity,
                                                    "lendingLimit": _quantity,
                                                },
                                                ["name", "nominalQuota"],
                                            ),
                                        },
                                    },
                                    ["name", "resources"],
                                ),
                            },
                        },
                        ["coveredResources", "flavors"],
                    ),
                },
                "cohortName": {"type": "string", "maxLength": 253, "pattern": DNS_SUBDOMAIN},
                "queueingStrategy": {"enum": ["StrictFIFO", "BestEffortFIFO"]},
                "namespaceSelector": _selector,
                "flavorFungibility": _closed(
                    {
                        "whenCanBorrow": {"enum": ["MayStopSearch", "TryNextFlavor"]},
                        "whenCanPreempt": {"enum": ["MayStopSearch", "TryNextFlavor"]},
                        "preference": {
                            "enum": ["BorrowingOverPreemption", "PreemptionOverBorrowing"]
                        },
                    }
                ),
                "preemption": _closed(
                    {
                        "reclaimWithinCohort": {"enum": ["Never", "LowerPriority", "Any"]},
                        "withinClusterQueue": {
                            "enum": ["Never", "LowerPriority", "LowerOrNewerEqualPriority"]
                        },
                        "borrowWithinCohort": _closed(
                            {
                                "policy": {"enum": ["Never", "LowerPriority"]},
                                "maxPriorityThreshold": {"type": "integer"},
                            }
                        ),
                    }
                ),
                "admissionChecksStrategy": {"type": "object"},
                "stopPolicy": _stop_policy,
                "fairSharing": _fair_sharing,
                "admissionScope": {"type": "object"},
            }
        )
    },
    [],
)

LOCAL_QUEUE = _top(
    "LocalQueue",
    "kueue.x-k8s.io/v1beta2",
    {
        "spec": _closed(
            {
                "clusterQueue": {"type": "string", "maxLength": 253, "pattern": DNS_SUBDOMAIN},
                "stopPolicy": _stop_policy,
                "fairSharing": _fair_sharing,
            },
            # optional in the type, but a LocalQueue without one admits nothing
            ["clusterQueue"],
        )
    },
    ["spec"],
)

WORKLOAD_PRIORITY_CLASS = _top(
    "WorkloadPriorityClass",
    "kueue.x-k8s.io/v1beta2",
    {"value": {"type": "integer"}, "description": {"type": "string"}},
    ["value"],
)

_replica = _closed(
    {
        "replicas": {"type": "integer", "minimum": 0},
        "restartPolicy": {"enum": ["Always", "OnFailure", "Never", "ExitCode"]},
        "template": _closed({"metadata": {"type": "object"}, "spec": {"type": "object"}}),
    },
    ["template"],
)

PYTORCH_JOB = _top(
    "PyTorchJob",
    "kubeflow.org/v1",
    {
        "spec": _closed(
            {
                "runPolicy": _closed(
                    {
                        "cleanPodPolicy": {"enum": ["All", "Running", "None"]},
                        "ttlSecondsAfterFinished": {"type": "integer", "minimum": 0},
                        "activeDeadlineSeconds": {"type": "integer", "minimum": 1},
                        "backoffLimit": {"type": "integer", "minimum": 0},
                        "schedulingPolicy": {"type": "object"},
                        "suspend": {"type": "boolean"},
                        "managedBy": {"type": "string"},
                    }
                ),
                "elasticPolicy": {"type": "object"},
                "nprocPerNode": {"type": "string"},
                "pytorchReplicaSpecs": _closed(
                    {"Master": _replica, "Worker": _replica}, ["Master"]
                ),
            },
            ["pytorchReplicaSpecs"],
        )
    },
    ["spec"],
)

SCHEMAS = {
    ("kueue.x-k8s.io/v1beta2", "ResourceFlavor"): RESOURCE_FLAVOR,
    ("kueue.x-k8s.io/v1beta2", "ClusterQueue"): CLUSTER_QUEUE,
    ("kueue.x-k8s.io/v1beta2", "LocalQueue"): LOCAL_QUEUE,
    ("kueue.x-k8s.io/v1beta2", "WorkloadPriorityClass"): WORKLOAD_PRIORITY_CLASS,
    ("kubeflow.org/v1", "PyTorchJob"): PYTORCH_JOB,
}


def cel_rules(manifest: dict[str, Any]) -> list[str]:
    """The CRDs' x-kubernetes-validations that apply to the objects the platform writes."""
    problems: list[str] = []
    if manifest["kind"] == "ClusterQueue":
        spec = manifest.get("spec", {})
        for g, group in enumerate(spec.get("resourceGroups", [])):
            for f, flavor in enumerate(group["flavors"]):
                names = [r["name"] for r in flavor["resources"]]
                if names != group["coveredResources"]:
                    problems.append(
                        f"resourceGroups[{g}].flavors[{f}]: resources {names} must list "
                        f"coveredResources {group['coveredResources']} in order"
                    )
                has_borrowing = any("borrowingLimit" in r for r in flavor["resources"])
                if has_borrowing and not spec.get("cohortName"):
                    problems.append("borrowingLimit must be nil when cohort is empty")
    return problems


def crd_problems(manifest: dict[str, Any]) -> list[str]:
    """Every way ``manifest`` breaks its CRD; raises KeyError for a kind we have no schema for."""
    schema = SCHEMAS[(manifest["apiVersion"], manifest["kind"])]
    validator = jsonschema.Draft202012Validator(schema)
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(manifest)
    ]
    return errors + cel_rules(manifest)
