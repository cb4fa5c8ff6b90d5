"""The restore watch: after a temporary mitigation succeeded, take it back once the service stays healthy.

A playbook with ``restore: {healthy_checks: N, ...}`` (``degrade``, ``isolate``) changed the routing to get
through a bad spell. After its verification said ``succeeded``, the watch keeps reading the service every
``interval_seconds``; after N healthy readings in a row the plan moves ``succeeded -> restored`` (journaled first)
and the action's own undo puts the original routing back: the same undo path as a worse verification, not a
second mechanism. Every reading is journaled as a fact of the plan. Without N healthy readings in a row within
``max_checks`` the mitigation stays, and the journal says so.
"""

from __future__ import annotations

from typing import Mapping, Sequence

from aiops.domain.plans import Change, Execution
from aiops.domain.playbook import Playbook, RestoreSpec
from aiops.domain.protocols import Action
from aiops.remediate.journal import RESTORE_PENDING_FLAG, UNDONE_FLAG
from aiops.remediate.machine import PlanExecution
from aiops.remediate.verify import Verifier


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
    """Runs the watch through a ``Verifier`` (its probe, its sleep, its clock)."""

    def __init__(self, verifier: Verifier) -> None:
        self.verifier = verifier

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
            run = 0 if problems else run + 1
            verdict = "healthy" if not problems else "not healthy: " + "; ".join(problems)
            exe.record_fact(f"restore check {check}: {verdict} ({run}/{spec.healthy_checks} in a row)",
                            {"restore_check": {"n": check, "values": values, "healthy": not problems, "run": run},
                             RESTORE_PENDING_FLAG: True})
            if run >= spec.healthy_checks:
                return self._restore(exe, action, change, run)
        exe.record_fact(f"restore watch ended after {spec.max_checks} checks without {spec.healthy_checks} healthy "
                        "in a row: the mitigation stays", {RESTORE_PENDING_FLAG: False})
        return exe.execution

    @staticmethod
    def _restore(exe: PlanExecution, action: Action, change: Change, run: int) -> Execution:
        exe.restore(note=f"{run} healthy checks in a row: restoring the original routing")
        try:
            reverse = action.undo(exe.execution.plan, change, dry_run=False)
        except Exception as exc:  # noqa: BLE001 - journaled as failed; the person reading it restores by hand
            exe.error(note=f"restore failed: {exc}", data={"error": repr(exc)})
            return exe.execution
        exe.execution.changes.append(reverse)
        exe.record_fact(f"restored: {reverse.description}", {"change": reverse.as_dict(), UNDONE_FLAG: True})
        return exe.execution
