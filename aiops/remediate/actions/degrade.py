"""Degrade an overloaded model server gracefully: part of its traffic to a fallback model, or more replicas.

``strategy: fallback``: the fallback Deployment (a smaller or quantised model) is scaled so that it holds about
``fraction`` of the pods behind the primary's Service, and the Service's selector becomes ``selector``, a label set
both Deployments' pods carry. A Service spreads connections over its endpoints, so the fallback then answers about
``fraction`` of the requests. Undo puts the original selector back first (no traffic reaches the fallback any
more), then the fallback's replica count. Both writes carry the plan id, so a retried apply changes nothing twice.

``strategy: scale``: the same as the ``scale`` action (bounded by ``max_replicas``).
"""

from __future__ import annotations

import math
from typing import Any

from aiops.domain.plans import ActionPlan, Change
from aiops.remediate.actions.base import (PLAN_ANNOTATION, UNDONE_ANNOTATION, ActionError, ObjectAction, annotations,
                                          guarded_patch)
from aiops.remediate.actions.scale import ScaleAction


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
        return plan.params.get("service") or plan.target.name

    def _read(self, plan: ActionPlan) -> dict:
        return self.kube.get_service(plan.target.namespace, self._service_name(plan))

    def _write(self, plan: ActionPlan, patch: Any) -> dict:
        ns = plan.target.namespace
        if patch.get("fallback_first"):
            self._set_fallback(plan, *patch["fallback_first"])
        result = self.kube.patch_service(ns, self._service_name(plan), patch["service"])
        if patch.get("fallback_after"):
            self._set_fallback(plan, *patch["fallback_after"])
        return result

    def _set_fallback(self, plan: ActionPlan, replicas: int, note: str) -> None:
        """Scale the fallback to ``replicas`` unless it already carries ``note``'s plan id (a retried write)."""
        ns, name = plan.target.namespace, plan.params["fallback"]
        dep = self.kube.get_deployment(ns, name)
        key = PLAN_ANNOTATION if note == "apply" else UNDONE_ANNOTATION
        if annotations(dep).get(key) == plan.id and int(dep["spec"].get("replicas", 0)) == replicas:
            return
        ops = [{"op": "replace", "path": "/spec/replicas", "value": int(replicas)}]
        extra = {UNDONE_ANNOTATION: plan.id} if note == "undo" else None
        self.kube.patch_deployment(ns, name, guarded_patch(dep, ops, plan.id if note == "apply" else None, extra))

    def _state(self, obj: dict) -> dict[str, Any]:
        return {"service": obj["metadata"]["name"], "selector": dict((obj.get("spec") or {}).get("selector") or {})}

    def _prepare(self, plan: ActionPlan, obj: dict) -> tuple[Change, dict]:
        params, ns = plan.params, plan.target.namespace
        fallback = params.get("fallback")
        selector = {str(k): str(v) for k, v in (params.get("selector") or {}).items()}
        if not fallback or not selector:
            raise ActionError("degrade with strategy fallback needs params.fallback and params.selector")
        primary = int(self.kube.get_deployment(ns, plan.target.name)["spec"].get("replicas", 1))
        current = int(self.kube.get_deployment(ns, fallback)["spec"].get("replicas", 0))
        fraction = float(params.get("fraction", 0.3))
        replicas = fallback_replicas(primary, fraction, current, int(params.get("max_fallback_replicas", 4)))
        before = {**self._state(obj), "fallback": fallback, "fallback_replicas": current}
        after = {"service": before["service"], "selector": selector, "fallback": fallback,
                 "fallback_replicas": replicas}
        share = replicas / (primary + replicas)
        sizing = f"{fallback} {current} -> {replicas} replicas" if replicas != current else \
            f"{fallback} keeps {current} replica{'s' if current != 1 else ''}"
        change = Change(plan.target, f"service {before['service']}: send ~{share:.0%} of requests to fallback "
                                     f"{fallback} (selector {_labels(selector)}; {sizing}, {plan.target.name} keeps "
                                     f"{primary})", before=before, after=after)
        patch = {"fallback_first": (replicas, "apply"),
                 "service": guarded_patch(obj, [{"op": "replace", "path": "/spec/selector", "value": selector}],
                                          plan.id)}
        return change, patch

    def _prepare_undo(self, plan: ActionPlan, change: Change, obj: dict) -> tuple[Change, dict | None]:
        now = self._state(obj)
        original = dict(change.before.get("selector") or {})
        fallback = change.before.get("fallback") or plan.params.get("fallback")
        replicas = change.before.get("fallback_replicas")
        current = int(self.kube.get_deployment(plan.target.namespace, fallback)["spec"].get("replicas", 0)) \
            if fallback else None
        sizing = f"; fallback {fallback} back to {replicas} replicas" if replicas != current else ""
        reverse = Change(plan.target, f"service {now['service']}: selector back to {_labels(original)}{sizing}",
                         before={**now, "fallback_replicas": current},
                         after={"service": now["service"], "selector": original, "fallback_replicas": replicas})
        selector_ok = not original or now["selector"] == original
        replicas_ok = replicas is None or current == replicas
        if selector_ok and replicas_ok:
            return reverse, None
        patch: dict[str, Any] = {"service": guarded_patch(obj, [] if selector_ok else [
            {"op": "replace", "path": "/spec/selector", "value": original}],
            extra_annotations={UNDONE_ANNOTATION: plan.id})}
        if not replicas_ok:
            patch["fallback_after"] = (int(replicas), "undo")
        return reverse, patch


def _strategy(plan: ActionPlan) -> str:
    return str(plan.params.get("strategy") or "fallback")


def _labels(selector: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(selector.items())) or "(none)"
