"""Rollout restart, like ``kubectl rollout restart``: a new ``restartedAt`` on the pod template."""

from __future__ import annotations

from typing import Any

from aiops.domain.plans import ActionPlan, Change
from aiops.remediate.actions.base import ObjectAction, guarded_patch, rfc3339

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"


class RestartAction(ObjectAction):
    """Replace every pod of a Deployment by changing its template annotation (the controller rolls them)."""

    kind = "restart"

    def _state(self, obj: dict) -> dict[str, Any]:
        template_notes = ((obj.get("spec") or {}).get("template") or {}).get("metadata") or {}
        return {"restartedAt": (template_notes.get("annotations") or {}).get(RESTARTED_AT)}

    def _prepare(self, plan: ActionPlan, obj: dict) -> tuple[Change, list]:
        stamp = rfc3339(self.clock.now())
        template_meta = ((obj.get("spec") or {}).get("template") or {}).get("metadata")
        notes = {**((template_meta or {}).get("annotations") or {}), RESTARTED_AT: stamp}
        op = {"op": "add", "path": "/spec/template/metadata/annotations", "value": notes} \
            if template_meta is not None else \
            {"op": "add", "path": "/spec/template/metadata", "value": {"annotations": notes}}
        # A guarded patch like every other action's: the new stamp and the plan annotation land together, and only
        # on the version read. Two runs racing (or a retry after a lost answer) cannot both restart: the loser's
        # ``test`` fails, its fresh read finds the annotation, and ``apply`` reports the restart already done.
        patch = guarded_patch(obj, [op], plan.id)
        change = Change(plan.target, f"rollout restart of {plan.target} (restartedAt={stamp})",
                        before=self._state(obj), after={"restartedAt": stamp})
        return change, patch

    def undo(self, plan: ActionPlan, change: Change, dry_run: bool) -> Change:
        """A restart cannot be taken back: says so and changes nothing."""
        return Change(plan.target, "restart has no undo: pods already replaced cannot be brought back",
                      before=change.after, after=change.after, applied=False)
