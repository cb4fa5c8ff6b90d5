"""Rollout restart, like ``kubectl rollout restart``: a new ``restartedAt`` on the pod template."""

from __future__ import annotations

from typing import Any

from aiops.domain.plans import ActionPlan, Change
from aiops.remediate.actions.base import PLAN_ANNOTATION, ObjectAction, rfc3339

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"


class RestartAction(ObjectAction):
    """Replace every pod of a Deployment by changing its template annotation (the controller rolls them)."""

    kind = "restart"

    def _state(self, obj: dict) -> dict[str, Any]:
        template_notes = ((obj.get("spec") or {}).get("template") or {}).get("metadata") or {}
        return {"restartedAt": (template_notes.get("annotations") or {}).get(RESTARTED_AT)}

    def _prepare(self, plan: ActionPlan, obj: dict) -> tuple[Change, dict]:
        stamp = rfc3339(self.clock.now())
        # A merge patch: the annotation and the template change land in one write, atomically.
        patch = {"metadata": {"annotations": {PLAN_ANNOTATION: plan.id}},
                 "spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}}}
        change = Change(plan.target, f"rollout restart of {plan.target} (restartedAt={stamp})",
                        before=self._state(obj), after={"restartedAt": stamp})
        return change, patch

    def undo(self, plan: ActionPlan, change: Change, dry_run: bool) -> Change:
        """A restart cannot be taken back: says so and changes nothing."""
        return Change(plan.target, "restart has no undo: pods already replaced cannot be brought back",
                      before=change.after, after=change.after, applied=False)
