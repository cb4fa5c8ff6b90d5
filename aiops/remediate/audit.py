"""Kubernetes Events for every transition of an acting plan, on the object it acts on.

What ``kubectl describe deployment`` shows next to the rollout: "plan p-... executing", "verifying", "rolled_back",
each with the note the journal has. Dry-run plans write nothing to the cluster, Events included.
"""

from __future__ import annotations

from aiops.domain.plans import Mode
from aiops.domain.protocols import Clock
from aiops.remediate.actions.base import KubeApi, write_event
from aiops.remediate.machine import PlanExecution
from aiops.remediate.planner import LABEL_SCOPE, OUT_OF_SCOPE

PLAN_REASON = "AiopsPlan"
# A plan refused for being out of scope leaves no trace on the object: the agent never writes there.
SILENT_REASONS = frozenset({OUT_OF_SCOPE, LABEL_SCOPE})


class TransitionEvents:
    """A transition observer writing one Event per (plan, state); repeating a state writes no second Event."""

    def __init__(self, kube: KubeApi, clock: Clock) -> None:
        self.kube = kube
        self.clock = clock

    def __call__(self, exe: PlanExecution, state: str, note: str, data: dict) -> None:
        plan = exe.execution.plan
        if plan.mode is not Mode.ACT or data.get("reason") in SILENT_REASONS or plan.target.kind != "Deployment":
            return  # (a detector model is no cluster object: its audit trail is the journal)
        write_event(self.kube, self.clock, plan, f"state-{state}".replace("_", "-"),
                    f"plan {plan.id} ({plan.playbook}) {state}: {note}", PLAN_REASON)
