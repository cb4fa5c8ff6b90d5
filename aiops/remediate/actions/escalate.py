"""Escalate: tell a person, change nothing."""

from __future__ import annotations

from typing import Callable

from aiops.domain.plans import ActionPlan, Change
from aiops.domain.protocols import Clock
from aiops.remediate.actions.base import KubeApi, event_name, write_event

ESCALATION_REASON = "AiopsEscalation"


class EscalateAction:
    """Writes one ``AiopsEscalation`` Event on the target (the audit trail and the page) and calls ``notify``.

    The Event's deterministic name makes it idempotent: a second ``apply`` finds it and reports already done.
    """

    kind = "escalate"

    def __init__(self, kube: KubeApi, clock: Clock, notify: Callable[[ActionPlan], None] | None = None) -> None:
        self.kube = kube
        self.clock = clock
        self.notify = notify

    def is_satisfied(self, plan: ActionPlan) -> bool:
        """True when the escalation Event for this plan already exists."""
        name = event_name(plan, "escalate")
        return any(e["metadata"]["name"] == name for e in self.kube.list_events(plan.target.namespace))

    def apply(self, plan: ActionPlan, dry_run: bool) -> Change:
        """Notify once; in dry-run only say who would be told."""
        description = f"escalate {plan.target} to a person: {plan.reason or 'no playbook fits'}"
        if dry_run:
            return Change(plan.target, description)
        if self.is_satisfied(plan):
            return Change(plan.target, f"escalation for plan {plan.id} already sent", already_done=True)
        created = write_event(self.kube, self.clock, plan, "escalate", description, ESCALATION_REASON,
                              api_version="apps/v1")
        if created and self.notify is not None:
            self.notify(plan)
        return Change(plan.target, description, applied=created, already_done=not created)

    def undo(self, plan: ActionPlan, change: Change, dry_run: bool) -> Change:
        """Nothing was changed, so there is nothing to undo."""
        return Change(plan.target, "escalate changed nothing: nothing to undo")
