"""Which workload owns a pod: name conventions of Deployments, StatefulSets and DaemonSets."""

from __future__ import annotations

from typing import Mapping

from aiops.domain.workloads import workload_of_pod, workload_of_replicaset

__all__ = ["attach_workload", "workload_of_pod", "workload_of_pod_object", "workload_of_replicaset"]


def workload_of_pod_object(pod: Mapping) -> str:
    """The owning workload of a core/v1 Pod object: owner references and ``pod-template-hash`` beat name guessing."""
    meta = pod.get("metadata") or {}
    name = meta.get("name") or ""
    labels = meta.get("labels") or {}
    template_hash = labels.get("pod-template-hash")
    for owner in meta.get("ownerReferences") or ():
        kind, owner_name = owner.get("kind"), owner.get("name") or ""
        if kind == "ReplicaSet":
            return workload_of_replicaset(owner_name, template_hash)
        if kind in ("StatefulSet", "DaemonSet", "Deployment"):
            return owner_name
    if template_hash and f"-{template_hash}-" in name:
        return name[: name.rindex(f"-{template_hash}-")]
    return workload_of_pod(name)


def attach_workload(labels: Mapping[str, str]) -> dict[str, str]:
    """``labels`` with a ``workload`` label: kept if present, else ``deployment``, else derived from ``pod``."""
    out = dict(labels)
    if out.get("workload"):
        return out
    if out.get("deployment"):
        out["workload"] = out["deployment"]
    elif out.get("pod"):
        out["workload"] = workload_of_pod(out["pod"])
    return out
