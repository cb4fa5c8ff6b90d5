"""Scale a Deployment out, within the playbook's and the policy's bounds, and back again on undo."""

from __future__ import annotations

import math
from typing import Any

from aiops.domain.plans import ActionPlan, Change
from aiops.remediate.actions.base import UNDONE_ANNOTATION, ObjectAction, guarded_patch, refuse_unless_ours


def scaled_replicas(current: int, factor: float, step_min: int, max_replicas: int) -> int:
    """min(max(current * factor, current + step_min), max_replicas), never below the current count."""
    wanted = max(math.ceil(current * factor), current + step_min)
    return max(current, min(wanted, max_replicas))


class ScaleAction(ObjectAction):
    """Set ``spec.replicas``. Plan params: ``factor``, ``step_min``, ``max_replicas`` (the planner already
    lowered ``max_replicas`` to the policy's bound) and ``min_replicas`` (the floor an undo keeps)."""

    kind = "scale"

    def _state(self, obj: dict) -> dict[str, Any]:
        return {"replicas": int((obj.get("spec") or {}).get("replicas", 1))}

    def _prepare(self, plan: ActionPlan, obj: dict) -> tuple[Change, list]:
        current = self._state(obj)["replicas"]
        params = plan.params
        target = scaled_replicas(current, float(params.get("factor", 2)), int(params.get("step_min", 1)),
                                 int(params.get("max_replicas", current)))
        # One JSON patch: replicas and the plan annotation together, only if nobody changed the object meanwhile.
        patch = guarded_patch(obj, [{"op": "replace", "path": "/spec/replicas", "value": target}], plan.id)
        note = "" if target > current else " (already at the bound: no change in replicas)"
        change = Change(plan.target, f"scale {plan.target} from {current} to {target} replicas{note}",
                        before={"replicas": current}, after={"replicas": target})
        return change, patch

    def _prepare_undo(self, plan: ActionPlan, change: Change, obj: dict) -> tuple[Change, list | None]:
        current = self._state(obj)["replicas"]
        original = change.before.get("replicas")
        wanted = None if original is None else max(int(original), int(plan.params.get("min_replicas", 0)))
        reverse = Change(plan.target, f"scale {plan.target} back from {current} to {wanted} replicas",
                         before={"replicas": current}, after={"replicas": wanted})
        if wanted is None or current in (wanted, int(original)):
            return reverse, None
        written = change.after.get("replicas")
        refuse_unless_ours(plan, str(plan.target), obj, [] if current == written else
                           [f"replicas are {current}, the plan set {written}"])
        patch = guarded_patch(obj, [{"op": "replace", "path": "/spec/replicas", "value": int(wanted)}],
                              extra_annotations={UNDONE_ANNOTATION: plan.id})
        return reverse, patch
