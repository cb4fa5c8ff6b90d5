"""Isolate one pod: off its Service's endpoints, still running for inspection, its capacity replaced.

The pod loses ``label`` (a key of the Service's selector and of the Deployment's): the Service's endpoints drop
it, the ReplicaSet releases it and starts a replacement, and the pod itself keeps running, marked
``aiops.io/isolated=true``, for a person to look at (memory dumps, logs). The label's old value is kept in the
``aiops.io/isolated-label`` annotation, written in the same guarded patch as the plan id. Undo puts the label back
(the ReplicaSet adopts the pod again and removes one surplus pod) and drops the marker, but only while the pod is
still as the plan left it (a pod relabelled by a person stays as they left it).
"""

from __future__ import annotations

from typing import Any

from aiops.domain.plans import ActionPlan, Change
from aiops.domain.workloads import workload_of_pod, workload_of_replicaset
from aiops.remediate.actions import names
from aiops.remediate.actions.base import UNDONE_ANNOTATION, ActionError, ObjectAction, guarded_patch, refuse_unless_ours

ISOLATED_LABEL = "aiops.io/isolated"
ISOLATED_FROM = "aiops.io/isolated-label"


def pointer(key: str) -> str:
    """``key`` escaped as one JSON-pointer segment (RFC 6901: ``~`` -> ``~0``, ``/`` -> ``~1``)."""
    return key.replace("~", "~0").replace("/", "~1")


class IsolateAction(ObjectAction):
    """Plan params: ``pod`` (which pod; the diagnosis names it), ``label`` (default ``app``), ``service``."""

    kind = "isolate"
    api_version = "v1"

    def _pod(self, plan: ActionPlan) -> str:
        pod = plan.params.get("pod")
        if not pod:
            raise ActionError(f"isolate on {plan.target} needs params.pod (the diagnosis names the pod that moved)")
        # The pod's name comes from a diagnosis, i.e. from what logs and metrics said: check it is a name.
        return names.object_name("pod", pod)

    def _read(self, plan: ActionPlan) -> dict:
        return self.kube.get_pod(plan.target.namespace, self._pod(plan))

    def _write(self, plan: ActionPlan, patch: dict | list) -> dict:
        return self.kube.patch_pod(plan.target.namespace, self._pod(plan), patch)

    def _state(self, obj: dict) -> dict[str, Any]:
        return {"pod": obj["metadata"]["name"], "labels": dict(obj["metadata"].get("labels") or {})}

    def _prepare(self, plan: ActionPlan, obj: dict) -> tuple[Change, list]:
        label = names.label_key("label", plan.params.get("label") or "app")
        before = self._state(obj)
        if label not in before["labels"]:
            raise ActionError(f"pod {before['pod']} has no label {label!r}: nothing to take it off its Service by")
        if not _owned_by(obj, plan.target.name):
            raise ActionError(f"pod {before['pod']} does not belong to {plan.target}")
        service_param = plan.params.get("service")
        service = self.kube.get_service(plan.target.namespace, names.service_name("service", service_param)
                                        if service_param else plan.target.name)
        selector = (service.get("spec") or {}).get("selector") or {}
        if label not in selector:
            raise ActionError(f"service {service['metadata']['name']} does not select on {label!r}: removing it "
                              "would not take the pod off the endpoints")
        value = before["labels"][label]
        ops = [{"op": "remove", "path": f"/metadata/labels/{pointer(label)}"},
               {"op": "add", "path": f"/metadata/labels/{pointer(ISOLATED_LABEL)}", "value": "true"}]
        patch = guarded_patch(obj, ops, plan.id, {ISOLATED_FROM: f"{label}={value}"})
        after = {k: v for k, v in before["labels"].items() if k != label}
        after[ISOLATED_LABEL] = "true"
        change = Change(plan.target, f"pod {before['pod']}: off service {service['metadata']['name']} (label "
                                     f"{label}={value} removed, kept running for inspection; the ReplicaSet "
                                     "replaces it)", before={**before, "label": label},
                        after={"pod": before["pod"], "labels": after, "label": label})
        return change, patch

    def _prepare_undo(self, plan: ActionPlan, change: Change, obj: dict) -> tuple[Change, list | None]:
        now = self._state(obj)
        label = change.before.get("label") or plan.params.get("label") or "app"
        value = (change.before.get("labels") or {}).get(label)
        reverse = Change(plan.target, f"pod {now['pod']}: back on its service ({label}={value})",
                         before=now, after={"pod": now["pod"], "labels": {**now["labels"], label: value}})
        ops = []
        if value is not None and now["labels"].get(label) != value:
            ops.append({"op": "add", "path": f"/metadata/labels/{pointer(label)}", "value": value})
        if ISOLATED_LABEL in now["labels"]:
            ops.append({"op": "remove", "path": f"/metadata/labels/{pointer(ISOLATED_LABEL)}"})
        if not ops:
            return reverse, None
        differences = []
        if label in now["labels"]:
            differences.append(f"pod label {label} is {now['labels'][label]!r}, the plan removed it")
        if now["labels"].get(ISOLATED_LABEL) != "true":
            differences.append(f"pod label {ISOLATED_LABEL} is {now['labels'].get(ISOLATED_LABEL)!r}, the plan set "
                               "'true'")
        refuse_unless_ours(plan, f"pod {now['pod']}", obj, differences)
        return reverse, guarded_patch(obj, ops, extra_annotations={UNDONE_ANNOTATION: plan.id})

    def undo(self, plan: ActionPlan, change: Change, dry_run: bool) -> Change:
        """Put the pod back; a pod deleted meanwhile (404) leaves nothing to undo."""
        try:
            return super().undo(plan, change, dry_run)
        except Exception as exc:
            if getattr(exc, "status", None) == 404:
                return Change(plan.target, f"pod {plan.params.get('pod')} is gone: nothing to put back",
                              already_done=True)
            raise


def _owned_by(pod: dict, workload: str) -> bool:
    """True when the pod's ReplicaSet (or, without owner, its name) says it is ``workload``'s."""
    meta = pod.get("metadata") or {}
    for ref in meta.get("ownerReferences") or ():
        if ref.get("kind") == "ReplicaSet":
            return workload_of_replicaset(ref.get("name", ""), (meta.get("labels") or {}).get("pod-template-hash")) \
                == workload
    return workload_of_pod(meta.get("name", "")) == workload
