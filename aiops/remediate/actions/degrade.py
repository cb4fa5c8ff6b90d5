"""Degrade an overloaded model server gracefully: part of its traffic to a fallback model, or more replicas.

``strategy: fallback``: the fallback Deployment (a smaller or quantised model) is scaled so that it holds about
``fraction`` of the pods behind the primary's Service, and the Service's selector becomes ``selector``, a label set
both Deployments' pods carry. A Service spreads connections over its endpoints, so the fallback then answers about
``fraction`` of the requests. Undo puts the original selector back first (no traffic reaches the fallback any
more), then the fallback's replica count, each only while it is still as the plan left it. Both writes carry the
plan id, so a retried apply changes nothing twice, and the fallback's original size is written with it, so the
journaled ``before`` is the state before the plan even when a retry re-reads an already scaled fallback.

``strategy: scale``: the same as the ``scale`` action (bounded by ``max_replicas``).
"""

from __future__ import annotations

import math
from typing import Any

from aiops.domain.plans import ActionPlan, Change
from aiops.remediate.actions import names
from aiops.remediate.actions.base import (PLAN_ANNOTATION, UNDONE_ANNOTATION, ActionError, ObjectAction, annotations,
                                          guarded_patch, refuse_unless_ours)
from aiops.remediate.actions.scale import ScaleAction

# On the fallback Deployment, written with the plan id: its replica count before the plan scaled it.
FALLBACK_BEFORE = "aiops.io/fallback-replicas-before"


def fallback_replicas(primary: int, fraction: float, current: int, bound: int) -> int:
    """Fallback pods giving about ``fraction`` of ``primary + fallback`` pods, within ``[current, bound]``."""
    wanted = math.ceil(primary * fraction / (1.0 - fraction) - 1e-9) if primary > 0 else 1
    return max(current, min(max(wanted, 1), bound))


class DegradeAction(ObjectAction):
    """Plan params: see ``remediate.playbooks.DegradeParams``."""

    kind = "degrade"
    api_version = "v1"

    def __init__(self, kube, clock) -> None:
        super().__init__(kube, clock)
        self._scale = ScaleAction(kube, clock)

    # --- strategy scale: the scale action as it is ---
    def is_satisfied(self, plan: ActionPlan) -> bool:
        return self._scale.is_satisfied(plan) if _strategy(plan) == "scale" else super().is_satisfied(plan)

    def apply(self, plan: ActionPlan, dry_run: bool) -> Change:
        return self._scale.apply(plan, dry_run) if _strategy(plan) == "scale" else super().apply(plan, dry_run)

    def undo(self, plan: ActionPlan, change: Change, dry_run: bool) -> Change:
        if _strategy(plan) == "scale":
            return self._scale.undo(plan, change, dry_run)
        return super().undo(plan, change, dry_run)

    # --- strategy fallback: the Service is the object carrying the plan id ---
    def _service_name(self, plan: ActionPlan) -> str:
        service = plan.params.get("service")
        return names.service_name("service", service) if service else plan.target.name

    def _read(self, plan: ActionPlan) -> dict:
        return self.kube.get_service(plan.target.namespace, self._service_name(plan))

    def _write(self, plan: ActionPlan, patch: Any) -> dict:
        # Each part is a guarded patch built from the version that was checked; a part that fails its ``test``
        # raises, and the retry starts again from fresh reads of both objects (a part already written is then
        # found in place and not written again).
        ns = plan.target.namespace
        result: dict = {}
        if patch.get("fallback_first"):
            self.kube.patch_deployment(ns, patch["fallback"], patch["fallback_first"])
        if patch.get("service"):
            result = self.kube.patch_service(ns, self._service_name(plan), patch["service"])
        if patch.get("fallback_after"):
            self.kube.patch_deployment(ns, patch["fallback"], patch["fallback_after"])
        return result

    def _state(self, obj: dict) -> dict[str, Any]:
        return {"service": obj["metadata"]["name"], "selector": dict((obj.get("spec") or {}).get("selector") or {})}

    def _prepare(self, plan: ActionPlan, obj: dict) -> tuple[Change, dict]:
        params, ns = plan.params, plan.target.namespace
        if not params.get("fallback") or not params.get("selector"):
            raise ActionError("degrade with strategy fallback needs params.fallback and params.selector")
        fallback = names.object_name("fallback", params["fallback"])
        selector = names.selector("selector", params["selector"])
        primary = _replicas(self.kube.get_deployment(ns, plan.target.name), 1)
        small = self.kube.get_deployment(ns, fallback)
        current = _replicas(small)
        original = _replicas_before(plan, small)
        fraction = float(params.get("fraction", 0.3))
        replicas = fallback_replicas(primary, fraction, original, int(params.get("max_fallback_replicas", 4)))
        before = {**self._state(obj), "fallback": fallback, "fallback_replicas": original}
        after = {"service": before["service"], "selector": selector, "fallback": fallback,
                 "fallback_replicas": replicas}
        share = replicas / (primary + replicas)
        sizing = f"{fallback} {original} -> {replicas} replicas" if replicas != original else \
            f"{fallback} keeps {original} replica{'s' if original != 1 else ''}"
        change = Change(plan.target, f"service {before['service']}: send ~{share:.0%} of requests to fallback "
                                     f"{fallback} (selector {_labels(selector)}; {sizing}, {plan.target.name} keeps "
                                     f"{primary})", before=before, after=after)
        # The fallback is sized first, so the Service never selects it at its old size. Its original replica count
        # is written with it: a retry (or a resumed run) after this first write still knows the state before.
        done = annotations(small).get(PLAN_ANNOTATION) == plan.id and current == replicas
        patch = {"fallback": fallback,
                 "fallback_first": None if done else guarded_patch(
                     small, [{"op": "replace", "path": "/spec/replicas", "value": replicas}], plan.id,
                     {FALLBACK_BEFORE: str(original)}),
                 "service": guarded_patch(obj, [{"op": "replace", "path": "/spec/selector", "value": selector}],
                                          plan.id)}
        return change, patch

    def _prepare_undo(self, plan: ActionPlan, change: Change, obj: dict) -> tuple[Change, dict | None]:
        now = self._state(obj)
        original = dict(change.before.get("selector") or {})
        fallback = change.before.get("fallback") or plan.params.get("fallback")
        wanted = change.before.get("fallback_replicas")
        small = self.kube.get_deployment(plan.target.namespace, fallback) if fallback else None
        current = _replicas(small) if small is not None else None
        sizing = f"; fallback {fallback} back to {wanted} replicas" if wanted != current else ""
        reverse = Change(plan.target, f"service {now['service']}: selector back to {_labels(original)}{sizing}",
                         before={**now, "fallback_replicas": current},
                         after={"service": now["service"], "selector": original, "fallback_replicas": wanted})
        selector_back = not original or now["selector"] == original
        replicas_back = wanted is None or small is None or current == wanted
        if selector_back and replicas_back:
            return reverse, None
        # Both objects are checked before either is written: a person who took over one of them decides for both
        # (reverting only the fallback's size under their routing would overrule them too).
        if not selector_back:
            written = change.after.get("selector")
            refuse_unless_ours(plan, f"service {now['service']}", obj, [] if now["selector"] == written else [
                f"the selector is {_labels(now['selector'])}, the plan set {_labels(written or {})}"])
        if not replicas_back:
            written = change.after.get("fallback_replicas")
            refuse_unless_ours(plan, f"fallback {fallback}", small, [] if current == written else [
                f"replicas are {current}, the plan set {written}"])
        patch: dict[str, Any] = {
            "fallback": fallback,
            "service": None if selector_back else guarded_patch(
                obj, [{"op": "replace", "path": "/spec/selector", "value": original}],
                extra_annotations={UNDONE_ANNOTATION: plan.id}),
            # Routing first, then the size: the fallback never serves its full share with too few pods.
            "fallback_after": None if replicas_back else guarded_patch(
                small, [{"op": "replace", "path": "/spec/replicas", "value": int(wanted)}],
                extra_annotations={UNDONE_ANNOTATION: plan.id})}
        return reverse, patch


def _replicas(deployment: dict, default: int = 0) -> int:
    return int((deployment.get("spec") or {}).get("replicas", default))


def _replicas_before(plan: ActionPlan, fallback: dict) -> int:
    """The fallback's replica count before this plan touched it: as recorded by the plan's own first write when
    the fallback carries the plan id (a conflict retry, or a run resumed after that write), else the live count."""
    notes = annotations(fallback)
    if notes.get(PLAN_ANNOTATION) == plan.id and notes.get(FALLBACK_BEFORE, "").isdigit():
        return int(notes[FALLBACK_BEFORE])
    return _replicas(fallback)


def _strategy(plan: ActionPlan) -> str:
    return str(plan.params.get("strategy") or "fallback")


def _labels(selector: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(selector.items())) or "(none)"
