"""Running one plan end to end: act, verify, and undo when things got worse, every step journaled first."""

from __future__ import annotations

from typing import Any, Callable, Mapping

from aiops.domain.plans import ActionPlan, Change, Execution, Mode
from aiops.domain.playbook import Playbook
from aiops.domain.protocols import Action, Clock, ExecutionStore
from aiops.remediate.actions import ACTIONS, KubeApi
from aiops.remediate.machine import PlanExecution
from aiops.remediate.restore import Restorer
from aiops.remediate.verify import Verifier

DRY_RUN_NOTE = "dry-run"


class PlaybookRunner:
    """Drives a plan through its state machine.

    pending -> executing (apply) -> verifying -> succeeded | rolled_back (worse and ``undo_on_worse``: undo) |
    failed (unchanged, worse without undo, or an error). A dry-run plan ends in ``skipped`` with the would-be
    change and never writes to the cluster. Running a plan twice changes the cluster once: the second apply finds
    the plan's annotation and goes straight to verifying.
    """

    def __init__(self, kube: KubeApi, store: ExecutionStore, verifier: Verifier,
                 playbooks: Mapping[str, Playbook], clock: Clock,
                 actions: Mapping[str, Action] | None = None) -> None:
        self.kube = kube
        self.store = store
        self.verifier = verifier
        self.playbooks = playbooks
        self.clock = clock
        self.actions: dict[str, Action] = dict(actions) if actions is not None else \
            {kind: cls(kube, clock) for kind, cls in ACTIONS.items()}
        # Playbooks with ``restore`` are watched after success and undone once healthy (``remediate.restore``):
        # inline (True), not at all (False), or handed to a callable that runs the watch elsewhere (a thread).
        self.restore_watch: bool | Callable[[Callable[[], object]], None] = True

    def run(self, plan: ActionPlan, before: Mapping[str, float],
            baseline: Mapping[str, float] | None = None) -> Execution:
        """Run ``plan``; ``before`` holds the verify signals' levels that triggered it."""
        exe = PlanExecution(plan, self.store, self.clock)
        playbook = self.playbooks.get(plan.playbook)
        action = self.actions.get(plan.action)
        if playbook is None or action is None:
            exe.error(note=f"no playbook {plan.playbook!r} or action {plan.action!r} to run")
            return exe.execution
        if plan.mode is not Mode.ACT:
            return self._dry_run(exe, action)
        exe.start(note=f"applying {plan.playbook} to {plan.target}")
        try:
            change = action.apply(plan, dry_run=False)
        except Exception as exc:  # noqa: BLE001 - any failure of the cluster call ends the plan as failed
            exe.error(note=f"apply failed: {exc}", data={"error": repr(exc)})
            return exe.execution
        exe.execution.changes.append(change)
        note = change.description
        if change.already_done:
            # Verify (and, if need be, undo) what the earlier run did: its change is in the journal.
            note = "already done: the object carries this plan's annotation; verifying"
            change = self._original_change(plan) or change
        exe.applied(note=note, data={"change": change.as_dict()})
        if not playbook.acts:
            exe.recovered(note="notify-only playbook: nothing to verify")
            return exe.execution
        return self._verify(exe, action, playbook, change, before, baseline)

    def _dry_run(self, exe: PlanExecution, action: Action) -> Execution:
        try:
            change = action.apply(exe.execution.plan, dry_run=True)
        except Exception as exc:  # noqa: BLE001 - a dry run that cannot even read the object is a failed plan
            exe.error(note=f"dry-run failed: {exc}", data={"error": repr(exc)})
            return exe.execution
        exe.execution.changes.append(change)
        exe.skip(note=f"{DRY_RUN_NOTE}: would {change.description}", data={"change": change.as_dict()})
        return exe.execution

    def _verify(self, exe: PlanExecution, action: Action, playbook: Playbook, change: Change,
                before: Mapping[str, float], baseline: Mapping[str, float] | None) -> Execution:
        plan = exe.execution.plan
        try:
            result = self.verifier.verify(plan, playbook.verify, before, baseline)
        except Exception as exc:  # noqa: BLE001 - a probe that cannot read leaves the outcome unknown
            exe.error(note=f"verification failed: {exc}", data={"error": repr(exc)})
            return exe.execution
        exe.execution.verification = result.as_dict()
        data = {"verification": result.as_dict()}
        if result.outcome == "recovered":
            exe.recovered(note=result.note, data=data)
            if playbook.restore is not None and self.restore_watch:
                def watch() -> Execution:
                    return Restorer(self.verifier).watch(exe, action, playbook, change, before, baseline)
                if callable(self.restore_watch):
                    self.restore_watch(watch)
                else:
                    watch()
        elif result.outcome == "unchanged":
            exe.unchanged(note=result.note, data=data)
        else:
            undo = playbook.undo_on_worse and change.applied
            exe.worse(note=f"worse: {result.note}" + ("; undoing" if undo else "; no undo"), data=data, undo=undo)
            if undo:
                self._undo(exe, action, change)
        return exe.execution

    def _undo(self, exe: PlanExecution, action: Action, change: Change) -> None:
        # rolled_back is journaled before the undo runs; a crashing undo then moves the plan to failed.
        try:
            reverse = action.undo(exe.execution.plan, change, dry_run=False)
        except Exception as exc:  # noqa: BLE001
            exe.error(note=f"undo failed: {exc}", data={"error": repr(exc)})
            return
        exe.execution.changes.append(reverse)
        exe.record_fact(f"undone: {reverse.description}", {"change": reverse.as_dict()})

    def _original_change(self, plan: ActionPlan) -> Change | None:
        """The change an earlier run of this plan applied (from the journal), so it can still be undone."""
        for entry in reversed(self.store.history(plan.id)):
            recorded: dict[str, Any] | None = (entry.get("data") or {}).get("change")
            if entry.get("state") == "verifying" and recorded and recorded.get("applied"):
                return Change(plan.target, recorded.get("description", ""), before=recorded.get("before") or {},
                              after=recorded.get("after") or {}, applied=True)
        return None
