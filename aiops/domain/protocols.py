"""The seams between stages: small protocols each stage implements, so later work adds parts, not rewrites."""

from __future__ import annotations

from typing import Any, Protocol, Sequence

from aiops.domain.diagnosis import Hypothesis
from aiops.domain.incident import Incident
from aiops.domain.observations import Observations
from aiops.domain.plans import ActionPlan, Change
from aiops.domain.playbook import Playbook


class Clock(Protocol):
    """Where "now" comes from: the wall clock in the agent, simulated time in the demo."""

    def now(self) -> float: ...


class Collector(Protocol):
    """Pulls observations of one namespace over ``[start, end]``."""

    def collect(self, namespace: str, start: float, end: float) -> Observations: ...


class Analyzer(Protocol):
    """Turns an incident and what was observed into ranked hypotheses, choosing only among ``playbooks``."""

    name: str

    def analyze(self, incident: Incident, observations: Observations,
                playbooks: Sequence[Playbook]) -> list[Hypothesis]: ...


class Action(Protocol):
    """One kind of change to the cluster. Idempotent: ``apply`` twice with the same plan changes the object once."""

    kind: str

    def is_satisfied(self, plan: ActionPlan) -> bool: ...

    def apply(self, plan: ActionPlan, dry_run: bool) -> Change: ...

    def undo(self, plan: ActionPlan, change: Change, dry_run: bool) -> Change: ...


class SignalProbe(Protocol):
    """Reads the current level of a workload's signals, for verification."""

    def read(self, namespace: str, workload: str, signals: Sequence[str]) -> dict[str, float]: ...


class ExecutionStore(Protocol):
    """Durable record of executions and their transitions (the journal)."""

    def record(self, plan_id: str, state: str, note: str, data: dict[str, Any]) -> None: ...

    def history(self, plan_id: str) -> list[dict[str, Any]]: ...

    def latest(self) -> list[dict[str, Any]]: ...

    def unfinished(self) -> list[str]: ...
