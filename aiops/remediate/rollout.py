"""Whether the rollout an action started has finished: what verification waits for before it judges the signals.

A rollback, a restart or a scale changes the Deployment at once, but its pods change over the next seconds to
minutes; until then the old pods still serve, and readings say nothing about the action.
"""

from __future__ import annotations

from typing import Protocol


class DeploymentReader(Protocol):
    """The one read verification needs (``aiops.clients.kube.KubeClient`` provides it; no write is ever made)."""

    def get_deployment(self, namespace: str, name: str) -> dict: ...


def rollout_pending(deployment: dict) -> str | None:
    """What the Deployment's rollout still waits for, or None when it is complete.

    Complete as ``kubectl rollout status`` has it, and stricter: the controller has seen the newest spec
    (``observedGeneration >= generation``), every desired replica runs the newest template and is available, and
    no pod of an older template is left.
    """
    meta, spec, status = (deployment.get(k) or {} for k in ("metadata", "spec", "status"))
    generation, observed = int(meta.get("generation") or 0), int(status.get("observedGeneration") or 0)
    if observed < generation:
        return f"the controller has not seen generation {generation} yet (observed {observed})"
    desired = int(spec.get("replicas", 1))
    updated = int(status.get("updatedReplicas") or 0)
    available = int(status.get("availableReplicas") or 0)
    total = int(status.get("replicas") or 0)
    waiting = []
    if updated < desired:
        waiting.append(f"{updated} of {desired} replicas updated")
    if available < desired:
        waiting.append(f"{available} of {desired} available")
    if total > updated:
        waiting.append(f"{total - updated} old replica(s) left")
    return "; ".join(waiting) or None
