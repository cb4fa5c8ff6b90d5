"""What the cluster says about a target right now, read just before planning so the planner itself stays pure.

Only targets already in the scope allow-list are read (the caller checks the namespace first). A read that fails
means the guards cannot be evaluated, and the pipeline then does nothing (``facts_unavailable``).
"""

from __future__ import annotations

from typing import Protocol

from aiops.domain.target import Target
from aiops.remediate.planner import TargetFacts

KILL_SWITCH_ANNOTATION = "aiops.io/kill-switch"
_TRUE = {"true", "1", "yes", "on"}


class FactsApi(Protocol):
    """The reads ``ClusterFacts`` needs (``aiops.clients.kube.KubeClient`` and the simulator provide them)."""

    def get_deployment(self, namespace: str, name: str) -> dict: ...

    def list_deployments(self, namespace: str, selector: str | None = None) -> list[dict]: ...

    def get_namespace(self, name: str) -> dict: ...

    def list_pdbs(self, namespace: str) -> list[dict]: ...


def _meta(obj: dict) -> dict:
    return obj.get("metadata") or {}


def kill_switch_on(obj: dict) -> bool:
    """True when ``obj`` carries ``aiops.io/kill-switch: "true"``."""
    value = (_meta(obj).get("annotations") or {}).get(KILL_SWITCH_ANNOTATION, "")
    return str(value).strip().lower() in _TRUE


def rolling_out(deployment: dict) -> bool:
    """True while a Deployment's rollout has not finished: a spec the controller has not seen yet, pods not yet
    on the newest template, or old pods still around."""
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    desired = int(spec.get("replicas", 1))
    if int(_meta(deployment).get("generation") or 0) > int(status.get("observedGeneration") or 0):
        return True
    return int(status.get("updatedReplicas") or 0) < desired or int(status.get("replicas") or 0) > desired


def blocking_pdb(deployment: dict, pdbs: list[dict]) -> str | None:
    """The name of a PodDisruptionBudget covering the Deployment's pods that allows no disruption now.

    A budget whose status the disruption controller has not written yet counts as allowing none: when unsure,
    do not take pods down."""
    pod_labels = ((((deployment.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels")
                  or {})
    for pdb in pdbs:
        selector = (pdb.get("spec") or {}).get("selector") or {}
        match = selector.get("matchLabels") or {}
        if not match and not selector.get("matchExpressions"):
            continue  # an empty selector selects nothing in policy/v1beta1
        if any(pod_labels.get(k) != v for k, v in match.items()):
            continue
        if int((pdb.get("status") or {}).get("disruptionsAllowed") or 0) <= 0:
            return _meta(pdb).get("name", "?")
    return None


class ClusterFacts:
    """Reads ``TargetFacts`` for a Deployment target."""

    def __init__(self, kube: FactsApi) -> None:
        self.kube = kube

    def read(self, target: Target) -> TargetFacts:
        """Everything the guards need about ``target`` (raises when the API cannot answer)."""
        deployment = self.kube.get_deployment(target.namespace, target.name)
        namespace = self.kube.get_namespace(target.namespace)
        switch = None
        if kill_switch_on(namespace):
            switch = f"annotation {KILL_SWITCH_ANNOTATION} on namespace {target.namespace}"
        elif kill_switch_on(deployment):
            switch = f"annotation {KILL_SWITCH_ANNOTATION} on {target}"
        return TargetFacts(
            labels=dict(_meta(deployment).get("labels") or {}),
            replicas=int((deployment.get("spec") or {}).get("replicas", 1)),
            paused=bool((deployment.get("spec") or {}).get("paused")),
            rolling_out=rolling_out(deployment),
            pdb_blocking=blocking_pdb(deployment, self.kube.list_pdbs(target.namespace)),
            namespace_workloads=max(1, len(self.kube.list_deployments(target.namespace))),
            kill_switch=switch)
