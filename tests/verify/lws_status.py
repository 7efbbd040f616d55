"""LeaderWorkerSet status as the LWS 0.10.0 controller writes it.

From kubernetes-sigs/lws at tag v0.10.0, pkg/controllers/leaderworkerset_controller.go:
``updateStatus`` sets ``replicas`` (the leader StatefulSet's replicas), ``observedGeneration`` and
``hpaPodSelector``; ``updateConditions`` sets ``readyReplicas``/``updatedReplicas`` and exactly one
of three states, with ``makeCondition``'s reasons and messages; ``setCondition`` turns a
true ``Available`` false when ``Progressing`` or ``UpdateInProgress`` becomes true (and back).
"""

from __future__ import annotations

from typing import Any

TRANSITION = "2026-11-30T09:12:44Z"

_CONDITIONS = {
    "Available": ("AllGroupsReady", "All replicas are ready"),
    "Progressing": ("GroupsProgressing", "Replicas are progressing"),
    "UpdateInProgress": ("GroupsUpdating", "Rolling Upgrade is in progress"),
}
_TRUE = {
    "available": ("Available",),
    "progressing": ("Progressing",),
    "updating": ("UpdateInProgress", "Progressing"),
}


def condition(kind: str, status: bool, generation: int) -> dict[str, Any]:
    reason, message = _CONDITIONS[kind]
    return {
        "type": kind,
        "status": "True" if status else "False",
        "observedGeneration": generation,
        "lastTransitionTime": TRANSITION,
        "reason": reason,
        "message": message,
    }


def lws_status(
    name: str,
    state: str,
    *,
    ready: int,
    replicas: int,
    generation: int = 1,
    was_available: bool = True,
) -> dict[str, Any]:
    """``state``: available, progressing or updating (a rolling update). ``was_available``:
    the set was Available once, so that condition is now False (the controller never removes a
    condition; it flips the exclusive one)."""
    true = _TRUE[state]
    conditions = [condition(kind, True, generation) for kind in true]
    if state != "available" and was_available:
        conditions.insert(0, condition("Available", False, generation))
    status = {
        "conditions": conditions,
        "readyReplicas": ready,
        "updatedReplicas": ready if state != "updating" else max(ready - 1, 0),
        "replicas": replicas,
        "hpaPodSelector": (
            f"leaderworkerset.sigs.k8s.io/name={name},leaderworkerset.sigs.k8s.io/worker-index=0"
        ),
        "observedGeneration": generation,
    }
    # The counts are `omitempty` int32s: a zero is not written at all.
    return {k: v for k, v in status.items() if v != 0}
