"""Shift traffic to the healthy pods by narrowing the Service's selector.

The Service gains ``<label>=<value>`` in ``spec.selector`` (default label ``pod-template-hash``, value the healthy
ReplicaSet's hash), so its endpoints keep only the matching pods; undo puts the selector back as it was, but only
while it is still the one the plan wrote.
"""

from __future__ import annotations

from typing import Any

from aiops.domain.plans import ActionPlan, Change
from aiops.remediate.actions import names
from aiops.remediate.actions.base import (UNDONE_ANNOTATION, ActionError, ObjectAction, guarded_patch,
                                          refuse_unless_ours)
from aiops.remediate.actions.rollback import HASH_LABEL, owned_replicasets, revision


class ShiftTrafficAction(ObjectAction):
    """Plan params: ``label`` (default ``pod-template-hash``), ``value`` (the healthy hash or zone; for the hash,
    chosen when null as the oldest ReplicaSet that still has pods), ``service`` (default: the Deployment's name)."""

    kind = "shift_traffic"
    api_version = "v1"

    def _service_name(self, plan: ActionPlan) -> str:
        service = plan.params.get("service")
        return names.service_name("service", service) if service else plan.target.name

    def _read(self, plan: ActionPlan) -> dict:
        return self.kube.get_service(plan.target.namespace, self._service_name(plan))

    def _write(self, plan: ActionPlan, patch: dict | list) -> dict:
        return self.kube.patch_service(plan.target.namespace, self._service_name(plan), patch)

    def _state(self, obj: dict) -> dict[str, Any]:
        return {"service": obj["metadata"]["name"], "selector": dict((obj.get("spec") or {}).get("selector") or {})}

    def _prepare(self, plan: ActionPlan, obj: dict) -> tuple[Change, list]:
        label = names.label_key("label", plan.params.get("label") or HASH_LABEL)
        value = names.label_value("value", plan.params.get("value") or self._healthy_hash(plan, label))
        before = self._state(obj)
        selector = {**before["selector"], label: value}
        patch = guarded_patch(obj, [{"op": "add", "path": "/spec/selector", "value": selector}], plan.id)
        change = Change(plan.target, f"service {before['service']}: send traffic only to pods with "
                                     f"{label}={value}", before=before,
                        after={"service": before["service"], "selector": selector, "label": label})
        return change, patch

    def _prepare_undo(self, plan: ActionPlan, change: Change, obj: dict) -> tuple[Change, list | None]:
        now = self._state(obj)
        label = change.after.get("label") or plan.params.get("label") or HASH_LABEL
        # The whole selector as it was: the undo only runs while the selector is the one the plan wrote (the
        # original plus ``label``), so this drops ``label`` or puts back the value it had before.
        original = change.before.get("selector")
        selector = dict(original or {})
        reverse = Change(plan.target, f"service {now['service']}: selector back without {label}"
                         if label not in selector else f"service {now['service']}: selector back to "
                         f"{label}={selector[label]}", before=now,
                         after={"service": now["service"], "selector": selector})
        if original is None or selector == now["selector"]:
            return reverse, None
        written = change.after.get("selector")
        refuse_unless_ours(plan, f"service {now['service']}", obj, [] if now["selector"] == written else [
            f"the selector is {_labels(now['selector'])}, the plan set {_labels(written or {})}"])
        patch = guarded_patch(obj, [{"op": "replace", "path": "/spec/selector", "value": selector}],
                              extra_annotations={UNDONE_ANNOTATION: plan.id})
        return reverse, patch

    def _healthy_hash(self, plan: ActionPlan, label: str) -> str:
        if label != HASH_LABEL:
            raise ActionError(f"shift_traffic on label {label!r} needs params.value (e.g. the healthy zone)")
        deployment = self.kube.get_deployment(plan.target.namespace, plan.target.name)
        live = [rs for rs in owned_replicasets(self.kube, deployment)
                if int((rs.get("spec") or {}).get("replicas") or 0) > 0]
        if len(live) < 2:
            raise ActionError(f"{plan.target} runs {len(live)} ReplicaSet(s) with pods: no healthy one to shift to "
                              "(give params.value to choose)")
        # The oldest live revision is the one that served before the suspect rollout began.
        oldest = min(live, key=revision)
        return (oldest["metadata"].get("labels") or {}).get(HASH_LABEL) or \
            oldest["spec"]["selector"]["matchLabels"][HASH_LABEL]


def _labels(selector: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(selector.items())) or "(none)"
