"""One plan's life as a ``transitions`` state machine, journaled before each side effect.

``PlanExecution`` is the model: every trigger takes ``note`` (words for people) and ``data`` (JSON for the
journal). The ``before`` callback of every transition writes the journal record and appends to
``Execution.history`` *before* the state changes, and the caller performs the side effect only after the trigger
returned: if the journal cannot be written, nothing happens to the cluster, and if the side effect crashes, the
journal already says what was being attempted.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Sequence

from transitions import EventData, Machine

from aiops.domain.plans import ActionPlan, Execution, ExecutionState
from aiops.domain.protocols import Clock, ExecutionStore
from aiops.remediate.journal import ACTS_FLAG

log = logging.getLogger(__name__)

STATES = [s.value for s in ExecutionState]

# Called after every transition with (execution, new state, note, data): audit Events, Alertmanager silences.
# An observer that fails is logged and ignored: the journal, not the observers, is the record of truth.
TransitionObserver = Callable[["PlanExecution", str, str, dict], None]

# trigger, source(s), dest. ``worse`` goes to rolled_back only when the caller says it will undo.
TRANSITIONS: list[dict[str, Any]] = [
    {"trigger": "start", "source": ["pending", "awaiting_approval"], "dest": "executing"},
    {"trigger": "await_approval", "source": "pending", "dest": "awaiting_approval"},
    {"trigger": "block", "source": ["pending", "awaiting_approval"], "dest": "blocked"},
    {"trigger": "skip", "source": ["pending", "awaiting_approval"], "dest": "skipped"},
    {"trigger": "applied", "source": "executing", "dest": "verifying"},
    {"trigger": "recovered", "source": "verifying", "dest": "succeeded"},
    {"trigger": "worse", "source": "verifying", "dest": "rolled_back", "conditions": "_will_undo"},
    {"trigger": "worse", "source": "verifying", "dest": "failed"},
    {"trigger": "unchanged", "source": "verifying", "dest": "failed"},
    # An undo that crashes after rolled_back was journaled ends the plan as failed.
    {"trigger": "error", "source": ["pending", "executing", "verifying", "rolled_back"], "dest": "failed"},
]
# The undo path after success (``remediate.restore``): a mitigation that held is taken back once the service stayed
# healthy; journaled before the undo runs, and an undo that crashes ends the plan as failed.
TRANSITIONS += [
    {"trigger": "restore", "source": "succeeded", "dest": "restored"},
    {"trigger": "error", "source": "restored", "dest": "failed"},
]
# An undo or restore that would overrule a person (the object changed since the plan wrote it, or a person took
# control through the kill switch, the mode or the scope) is not done: the plan ends ``superseded``. So does a plan
# resumed in ``executing`` after a person took control: it is not applied again.
TRANSITIONS += [
    {"trigger": "supersede", "source": ["executing", "verifying", "rolled_back", "succeeded", "restored"],
     "dest": "superseded"},
]


class PlanExecution:
    """The model a per-plan ``Machine`` drives; ``execution`` is the domain record it keeps up to date."""

    def __init__(self, plan: ActionPlan, store: ExecutionStore, clock: Clock,
                 initial: ExecutionState = ExecutionState.PENDING,
                 observers: Sequence[TransitionObserver] = ()) -> None:
        self.execution = Execution(plan=plan, state=initial)
        self._store = store
        self._clock = clock
        self._observers = tuple(observers)
        self.machine = Machine(model=self, states=STATES, transitions=TRANSITIONS, initial=initial.value,
                               send_event=True, auto_transitions=False, before_state_change="_journal",
                               after_state_change="_sync")

    @property
    def store(self) -> ExecutionStore:
        """The journal this execution writes to."""
        return self._store

    @property
    def current(self) -> ExecutionState:
        """The current state as the domain enum."""
        return ExecutionState(self.state)

    def _will_undo(self, event: EventData) -> bool:
        return bool(event.kwargs.get("undo", False))

    def _journal(self, event: EventData) -> None:
        dest = event.transition.dest
        note = str(event.kwargs.get("note", ""))
        ts = self._clock.now()
        plan = self.execution.plan
        # ``acts``: whether this plan changes the cluster, which is what the change budgets count (ACTS_FLAG).
        data = {"ts": ts, "from": event.transition.source, "trigger": event.event.name,
                "playbook": plan.playbook, "target": plan.target.as_dict(), "mode": plan.mode.value,
                ACTS_FLAG: plan.acts, **dict(event.kwargs.get("data") or {})}
        if dest == ExecutionState.PENDING.value or not self.execution.history:
            data.setdefault("plan", plan.as_dict())
        self._store.record(plan.id, dest, note, data)
        self.execution.history.append((ts, dest, note))

    def _sync(self, event: EventData) -> None:
        self.execution.state = ExecutionState(self.state)
        note = str(event.kwargs.get("note", ""))
        data = dict(event.kwargs.get("data") or {})
        for observer in self._observers:
            try:
                observer(self, self.state, note, data)
            except Exception:  # noqa: BLE001 - see TransitionObserver
                log.exception("transition observer failed", extra={"plan": self.execution.plan.id})

    def record_fact(self, note: str, data: dict[str, Any] | None = None) -> None:
        """Journal a fact inside the current state (e.g. the undo's result) without a transition."""
        plan = self.execution.plan
        ts = self._clock.now()
        self._store.record(plan.id, self.state, note, {"ts": ts, "playbook": plan.playbook,
                                                       "target": plan.target.as_dict(), "mode": plan.mode.value,
                                                       ACTS_FLAG: plan.acts, **(data or {})})
        self.execution.history.append((ts, self.state, note))
