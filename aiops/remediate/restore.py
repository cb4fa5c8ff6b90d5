"""The restore watch: after a temporary mitigation succeeded, take it back once the service stays healthy.

A playbook with ``restore: {healthy_checks: N, ...}`` (``degrade``, ``isolate``) changed the routing to get
through a bad spell. After its verification said ``succeeded``, the watch keeps reading the service every
``interval_seconds``; after N healthy readings in a row the plan moves ``succeeded -> restored`` (journaled first)
and the action's own undo puts the original routing back: the same undo path as a worse verification, through the
same write gate (a kill switch turned on, a mode or scope changed meanwhile ends the plan ``superseded`` instead),
not a second mechanism. Every reading is journaled as a fact of the plan. Without N healthy readings in a row
within ``max_checks`` the mitigation stays, and the journal says so. The watch only reads: it holds the plan (no
second watch of it runs) but not its target, which other plans may act on meanwhile.
"""

from __future__ import annotations

import logging
from typing import Callable, Mapping, Sequence

from aiops.domain.plans import Change, Execution
from aiops.domain.playbook import Playbook, RestoreSpec
from aiops.domain.protocols import Action
from aiops.remediate.journal import RESTORE_PENDING_FLAG
from aiops.remediate.machine import PlanExecution
from aiops.remediate.verify import Verifier

log = logging.getLogger(__name__)


def restore_signals(playbook: Playbook, before: Mapping[str, float]) -> list[str]:
    """What a check reads: the ``below`` limits' signals, else the verify signals with a pre-action level."""
    spec = playbook.restore or RestoreSpec()
    return list(spec.below) or [s for s in playbook.verify.signals if s in before]


def unhealthy(values: Mapping[str, float], signals: Sequence[str], playbook: Playbook,
              before: Mapping[str, float], baseline: Mapping[str, float] | None = None) -> list[str]:
    """Why a reading is not healthy (empty: healthy). A signal that cannot be read is not healthy.

    Without a ``below`` limit a signal is healthy, as in verification, at or under ``recovered_ratio`` x its
    pre-action level or inside its normal band (``baseline``).
    """
    spec = playbook.restore or RestoreSpec()
    problems = []
    for name in signals:
        value = values.get(name)
        if value is None or value != value:  # missing or NaN
            problems.append(f"{name} not readable")
            continue
        if name in spec.below:
            if value >= spec.below[name]:
                problems.append(f"{name} {value:.4g} >= {spec.below[name]:.4g}")
            continue
        limit = playbook.verify.recovered_ratio * before[name]
        if value > limit and not (baseline and name in baseline and value <= baseline[name]):
            problems.append(f"{name} {value:.4g} > {limit:.4g}")
    return problems


class Restorer:
    """Runs the watch through a ``Verifier`` (its probe, its sleep, its clock); ``restore`` does the restoring
    (the runner's, through the write gate: a person who took control meanwhile is not overruled)."""

    def __init__(self, verifier: Verifier, restore: Callable[[PlanExecution, Action, Change, int], Execution],
                 leading: Callable[[], bool] | None = None) -> None:
        self.verifier = verifier
        self.restore = restore
        # False once this agent lost the Lease: the new leader has taken the plan over (the journal says the watch
        # is pending) and watches it itself; a record from here would overwrite its records with a stale state.
        self.leading = leading

    def watch(self, exe: PlanExecution, action: Action, playbook: Playbook, change: Change,
              before: Mapping[str, float], baseline: Mapping[str, float] | None = None) -> Execution:
        """Read until ``healthy_checks`` healthy readings in a row, then restore; or give up after ``max_checks``."""
        spec = playbook.restore
        plan = exe.execution.plan
        if spec is None or not change.applied:
            return exe.execution
        signals = restore_signals(playbook, before)
        if not signals:
            exe.record_fact("restore watch skipped: no signal to judge health by; the mitigation stays",
                            {RESTORE_PENDING_FLAG: False})
            return exe.execution
        run = 0
        for check in range(1, spec.max_checks + 1):
            try:
                ts, values = self.verifier.sample(plan, signals, spec.interval_seconds)
                problems = unhealthy(values, signals, playbook, before, baseline)
            except Exception as exc:  # noqa: BLE001 - a probe that cannot read is an unhealthy check, not a crash
                values, problems = {}, [f"probe failed: {exc}"]
            if self.leading is not None and not self.leading():
                log.warning("restore watch of plan %s stopped: this agent no longer leads; the leader resumes it",
                            plan.id, extra={"plan": plan.id})
                return exe.execution
            run = 0 if problems else run + 1
            verdict = "healthy" if not problems else "not healthy: " + "; ".join(problems)
            exe.record_fact(f"restore check {check}: {verdict} ({run}/{spec.healthy_checks} in a row)",
                            {"restore_check": {"n": check, "values": values, "healthy": not problems, "run": run},
                             RESTORE_PENDING_FLAG: True})
            if run >= spec.healthy_checks:
                return self.restore(exe, action, change, run)
        exe.record_fact(f"restore watch ended after {spec.max_checks} checks without {spec.healthy_checks} healthy "
                        "in a row: the mitigation stays", {RESTORE_PENDING_FLAG: False})
        return exe.execution
