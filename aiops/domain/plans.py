"""Plans, their executions, and what they changed."""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass, field
from typing import Any

from aiops.domain.playbook import NOTIFY_ONLY_ACTIONS
from aiops.domain.target import Target


class Mode(str, enum.Enum):
    """``dry-run`` (the default) decides and records but changes nothing; ``act`` changes the cluster."""

    DRY_RUN = "dry-run"
    ACT = "act"


class ExecutionState(str, enum.Enum):
    PENDING = "pending"
    AWAITING_APPROVAL = "awaiting_approval"
    EXECUTING = "executing"
    VERIFYING = "verifying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"
    BLOCKED = "blocked"
    SKIPPED = "skipped"
    # A temporary mitigation (degrade, isolate) undone again after the service stayed healthy: the original routing.
    RESTORED = "restored"
    # The undo (or restore) was not done because the object is no longer as the plan left it (a person or another
    # controller changed it since), or because a person took control (kill switch, dry-run, out of scope): the
    # agent never overrules them. A person is told; the change, if any, stays as they left it.
    SUPERSEDED = "superseded"

    @property
    def final(self) -> bool:
        return self not in (ExecutionState.PENDING, ExecutionState.AWAITING_APPROVAL,
                            ExecutionState.EXECUTING, ExecutionState.VERIFYING)


def plan_id(incident_id: str, playbook: str, target: Target) -> str:
    """The idempotency key: the same incident, playbook and target always give the same id."""
    raw = f"{incident_id}|{playbook}|{target.kind}|{target.namespace}|{target.name}"
    return "p-" + hashlib.sha256(raw.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class ActionPlan:
    """What to do, to what, and how to check it. ``id`` is the idempotency key (see ``plan_id``)."""

    id: str
    incident_id: str
    playbook: str
    action: str
    target: Target
    params: dict[str, Any]
    mode: Mode
    reason: str = ""

    @property
    def acts(self) -> bool:
        """False for a notify-only plan (``escalate``): the rule of ``Playbook.acts``, on the plan's action."""
        return self.action not in NOTIFY_ONLY_ACTIONS

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "incident": self.incident_id, "playbook": self.playbook, "action": self.action,
                "target": self.target.as_dict(), "params": self.params, "mode": self.mode.value,
                "reason": self.reason}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ActionPlan":
        """The inverse of ``as_dict``: how a restarted agent gets a journaled plan back."""
        return cls(id=str(data["id"]), incident_id=str(data["incident"]), playbook=str(data["playbook"]),
                   action=str(data["action"]), target=Target.from_dict(data["target"]),
                   params=dict(data.get("params") or {}), mode=Mode(data["mode"]),
                   reason=str(data.get("reason", "")))


@dataclass(frozen=True, slots=True)
class Blocked:
    """The planner's refusal. ``reason`` is machine-readable (``out_of_scope``, ``cooldown``, ...)."""

    reason: str
    detail: str = ""
    plan: ActionPlan | None = None


@dataclass(frozen=True, slots=True)
class Change:
    """What an action did (or, in dry-run, would do) to one object: enough to show it and to undo it."""

    target: Target
    description: str
    before: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)
    applied: bool = False
    already_done: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"target": self.target.as_dict(), "description": self.description, "before": self.before,
                "after": self.after, "applied": self.applied, "already_done": self.already_done}


@dataclass(slots=True)
class Execution:
    """A plan's run: its current state and every transition so far (``history`` of (ts, state, note))."""

    plan: ActionPlan
    state: ExecutionState = ExecutionState.PENDING
    history: list[tuple[float, str, str]] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    verification: dict[str, Any] = field(default_factory=dict)

    @property
    def plan_id(self) -> str:
        return self.plan.id

    @property
    def recovered(self) -> bool:
        """True when the plan changed something and the service was verified recovered: ``succeeded``, or
        ``restored`` (recovered, then the temporary mitigation taken back). A notify-only plan (``escalate``)
        recovers nothing: it ends ``succeeded`` once a person was told, and the fault is still there."""
        return self.plan.acts and self.state in (ExecutionState.SUCCEEDED, ExecutionState.RESTORED)

    def as_dict(self) -> dict[str, Any]:
        return {"plan": self.plan.as_dict(), "state": self.state.value,
                "history": [{"ts": ts, "state": s, "note": n} for ts, s, n in self.history],
                "changes": [c.as_dict() for c in self.changes], "verification": self.verification}
