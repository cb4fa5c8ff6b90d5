"""Running one plan end to end: act, verify, and undo when things got worse, every step journaled first.

The same code resumes a plan from the journal after a restart: each stage (act, verify, undo) starts from what the
journal says was last written, and every stage is idempotent, so a crash at any point neither repeats nor loses an
action.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Mapping, Sequence

from aiops.domain.errors import InputError
from aiops.domain.plans import ActionPlan, Blocked, Change, Execution, ExecutionState, Mode
from aiops.domain.playbook import Playbook
from aiops.domain.protocols import Action, Clock, ExecutionStore
from aiops.remediate.actions import ACTIONS, KubeApi
from aiops.remediate.journal import APPROVED_FLAG, RESTORE_PENDING_FLAG, UNDONE_FLAG
from aiops.remediate.machine import PlanExecution, TransitionObserver
from aiops.remediate.restore import Restorer
from aiops.remediate.verify import Verifier

log = logging.getLogger(__name__)

DRY_RUN_NOTE = "dry-run"
# Returns why the agent may not act now (kill switch, dry-run, ...) or None: checked again when an approved plan
# is picked up, since the world may have changed while it waited.
ActGate = Callable[[ActionPlan], "str | None"]


class PlaybookRunner:
    """Drives a plan through its state machine.

    pending -> executing (apply) -> verifying -> succeeded | rolled_back (worse and ``undo_on_worse``: undo) |
    failed (unchanged, worse without undo, or an error). A dry-run plan ends in ``skipped`` with the would-be
    change and never writes to the cluster. Running a plan twice changes the cluster once: the second apply finds
    the plan's annotation and goes straight to verifying.
    """

    def __init__(self, kube: KubeApi, store: ExecutionStore, verifier: Verifier,
                 playbooks: Mapping[str, Playbook], clock: Clock,
                 actions: Mapping[str, Action] | None = None,
                 observers: Sequence[TransitionObserver] = (), gate: ActGate | None = None) -> None:
        self.kube = kube
        self.store = store
        self.verifier = verifier
        self.playbooks = playbooks
        self.clock = clock
        self.actions: dict[str, Action] = dict(actions) if actions is not None else \
            {kind: cls(kube, clock) for kind, cls in ACTIONS.items()}
        self.observers = list(observers)
        self.gate = gate
        # Resumes (at start-up, on an approval, on the poll) run one at a time, so one plan is never resumed twice.
        self._resume_lock = threading.Lock()
        # Playbooks with ``restore`` are watched after success and undone once healthy (``remediate.restore``):
        # inline (True), not at all (False), or handed to a callable that runs the watch elsewhere (a thread).
        self.restore_watch: bool | Callable[[Callable[[], object]], None] = True

    def _execution(self, plan: ActionPlan, initial: ExecutionState = ExecutionState.PENDING) -> PlanExecution:
        return PlanExecution(plan, self.store, self.clock, initial, self.observers)

    def run(self, plan: ActionPlan, before: Mapping[str, float],
            baseline: Mapping[str, float] | None = None, silence: Sequence[dict] = ()) -> Execution:
        """Run ``plan``; ``before`` holds the verify signals' levels that triggered it. ``silence`` (Alertmanager
        matcher lists) names the alerts to mute while it runs; it is journaled for the silencing observer."""
        exe = self._execution(plan)
        playbook = self.playbooks.get(plan.playbook)
        action = self.actions.get(plan.action)
        if playbook is None or action is None:
            exe.error(note=f"no playbook {plan.playbook!r} or action {plan.action!r} to run")
            return exe.execution
        if plan.mode is not Mode.ACT:
            return self._dry_run(exe, action)
        data: dict[str, Any] = {"before": dict(before), "baseline": dict(baseline or {}),
                                "silence": [list(m) for m in silence]}
        # The intended change is journaled with "executing", before the patch: if the agent dies after the patch
        # landed, the restarted agent still knows what to undo. (An action whose undo needs no such record, like a
        # retrain whose versions the registry keeps, says so: describing it would cost a second training.)
        if getattr(action, "journals_intent", True):
            try:
                data["intended"] = action.apply(plan, dry_run=True).as_dict()
            except Exception as exc:  # noqa: BLE001 - cannot even read the object: nothing was changed
                exe.error(note=f"cannot prepare {plan.playbook} on {plan.target}: {exc}", data={"error": repr(exc)})
                return exe.execution
        exe.start(note=f"applying {plan.playbook} to {plan.target}", data=data)
        return self._act(exe, playbook, action, before, baseline)

    def hold_for_approval(self, plan: ActionPlan, before: Mapping[str, float],
                          baseline: Mapping[str, float] | None, detail: str) -> Execution:
        """Journal ``plan`` as ``awaiting_approval`` (once: the same plan again returns its current state)."""
        history = self.store.history(plan.id)
        if history and history[-1]["state"] != ExecutionState.BLOCKED.value:
            return self._rebuild(plan, history).execution
        exe = self._execution(plan)
        exe.await_approval(note=detail, data={"before": dict(before), "baseline": dict(baseline or {})})
        return exe.execution

    def record_blocked(self, blocked: Blocked) -> None:
        """Put a refused plan in the audit trail, once: a plan that already has a history (running, or refused
        before) is left as it is, so a repeated alert cannot bury a running plan's state under a refusal."""
        plan = blocked.plan
        if plan is None or self.store.history(plan.id):
            return
        self._execution(plan).block(note=f"{blocked.reason}: {blocked.detail}", data={"reason": blocked.reason})

    def _act(self, exe: PlanExecution, playbook: Playbook, action: Action, before: Mapping[str, float],
             baseline: Mapping[str, float] | None) -> Execution:
        plan = exe.execution.plan
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

    # --- resuming from the journal ---
    def resume_unfinished(self) -> list[Execution]:
        """Pick up every plan the journal shows unfinished (after a crash, a restart, or a new leader); plans
        waiting for an approval that has not come stay waiting."""
        return self._resume_each(self.store.unfinished())

    def resume_approved(self) -> list[Execution]:
        """Act on the plans whose approval has come in; every other plan is left alone (what the agent polls)."""
        return self._resume_each([r["plan_id"] for r in self.store.latest()
                                  if r["state"] == ExecutionState.AWAITING_APPROVAL.value
                                  and r["data"].get(APPROVED_FLAG)])

    def _resume_each(self, plan_ids: list[str]) -> list[Execution]:
        done = []
        with self._resume_lock:
            for plan_id in plan_ids:
                try:
                    exe = self.resume(plan_id)
                except Exception:  # noqa: BLE001 - one bad record must not stop the others
                    log.exception("cannot resume plan", extra={"plan": plan_id})
                    continue
                if exe is not None:
                    done.append(exe)
        return done

    def resume(self, plan_id: str) -> Execution | None:
        """Continue one plan from its last journaled state; ``None`` when there is nothing to do yet."""
        history = self.store.history(plan_id)
        raw = next((r["data"]["plan"] for r in history if isinstance(r["data"].get("plan"), dict)), None)
        if raw is None:
            return None
        plan = ActionPlan.from_dict(raw)
        exe = self._rebuild(plan, history)
        playbook, action = self.playbooks.get(plan.playbook), self.actions.get(plan.action)
        state = exe.current
        if playbook is None or action is None:
            if not state.final:
                exe.error(note=f"cannot resume: playbook {plan.playbook!r} is no longer allow-listed")
            return exe.execution
        before, baseline = _levels(history)
        if state is ExecutionState.AWAITING_APPROVAL:
            approver = next((r["data"][APPROVED_FLAG] for r in reversed(history) if r["data"].get(APPROVED_FLAG)),
                            None)
            if approver is None:
                return None
            refusal = self.gate(plan) if self.gate else None
            if refusal or plan.mode is not Mode.ACT:
                exe.block(note=f"approved by {approver}, but {refusal or 'the plan was made in dry-run'}",
                          data={"reason": "gate"})
                return exe.execution
            exe.start(note=f"approved by {approver}: applying {plan.playbook} to {plan.target}",
                      data={"before": before, "baseline": baseline})
            return self._act(exe, playbook, action, before, baseline)
        if state is ExecutionState.EXECUTING:
            exe.record_fact("resumed after a restart: applying again (a change already made is not repeated)")
            return self._act(exe, playbook, action, before, baseline)
        change = self._original_change(plan)
        if state is ExecutionState.VERIFYING:
            exe.record_fact("resumed after a restart: verifying again")
            if not playbook.acts:
                exe.recovered(note="notify-only playbook: nothing to verify")
                return exe.execution
            return self._verify(exe, action, playbook, change or Change(plan.target, ""), before, baseline)
        if state in (ExecutionState.ROLLED_BACK, ExecutionState.RESTORED) and change is not None:
            self._undo(exe, action, change)
        elif state is ExecutionState.SUCCEEDED and change is not None and playbook.restore is not None:
            exe.record_fact("resumed after a restart: watching again before restoring", {RESTORE_PENDING_FLAG: True})
            Restorer(self.verifier).watch(exe, action, playbook, change, before, baseline)
        return exe.execution

    def _rebuild(self, plan: ActionPlan, history: list[dict[str, Any]]) -> PlanExecution:
        exe = self._execution(plan, ExecutionState(history[-1]["state"]) if history else ExecutionState.PENDING)
        exe.execution.history = [(r["ts"], r["state"], r["note"]) for r in history]
        return exe

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
            # An action that can judge its own result (retrain: the held-back comparison) does; others are
            # judged by polling the playbook's signals.
            own = getattr(action, "verify_change", None)
            result = own(plan, change) if own is not None else \
                self.verifier.verify(plan, playbook.verify, before, baseline)
        except Exception as exc:  # noqa: BLE001 - a probe that cannot read leaves the outcome unknown
            exe.error(note=f"verification failed: {exc}", data={"error": repr(exc)})
            return exe.execution
        exe.execution.verification = result.as_dict()
        data = {"verification": result.as_dict()}
        if result.outcome == "recovered":
            # A restore still to come is part of the record, so a restarted agent finishes the watch.
            data[RESTORE_PENDING_FLAG] = playbook.restore is not None and change.applied and bool(self.restore_watch)
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
        exe.record_fact(f"undone: {reverse.description}", {"change": reverse.as_dict(), UNDONE_FLAG: True})

    def _original_change(self, plan: ActionPlan) -> Change | None:
        """The change this plan made (from the journal), so it can still be verified and undone: the applied
        change when it was journaled, else the change intended just before the patch."""
        history = self.store.history(plan.id)
        for entry in reversed(history):
            recorded: dict[str, Any] | None = (entry.get("data") or {}).get("change")
            if entry.get("state") == "verifying" and recorded and recorded.get("applied"):
                return _change(plan, recorded)
        for entry in reversed(history):
            intended = (entry.get("data") or {}).get("intended")
            if intended and not intended.get("already_done"):
                return _change(plan, intended)
        return None


def _change(plan: ActionPlan, recorded: dict[str, Any]) -> Change:
    return Change(plan.target, recorded.get("description", ""), before=recorded.get("before") or {},
                  after=recorded.get("after") or {}, applied=True)


def _levels(history: list[dict[str, Any]]) -> tuple[dict[str, float], dict[str, float]]:
    """The pre-action and baseline levels journaled when the plan was decided."""
    for entry in history:
        data = entry.get("data") or {}
        if "before" in data:
            return dict(data["before"]), dict(data.get("baseline") or {})
    return {}, {}


def approve(store: ExecutionStore, plan_id: str, approver: str, now: float) -> dict[str, Any]:
    """Record a person's approval of a plan waiting for one; the agent acts on it when it next resumes plans.

    A plan that is unknown or not waiting is an ``InputError`` naming it (approving twice is not an error: the
    second approval is not recorded again)."""
    history = store.history(plan_id)
    if not history:
        raise InputError(plan_id, "no such plan in the journal (see `aiops history`)")
    last = history[-1]
    if last["state"] != ExecutionState.AWAITING_APPROVAL.value:
        raise InputError(plan_id, f"plan is {last['state']}, not awaiting_approval")
    if last["data"].get(APPROVED_FLAG):
        return last
    data = {"ts": now, APPROVED_FLAG: approver, "playbook": last["data"].get("playbook"),
            "target": last["data"].get("target"), "mode": last["data"].get("mode")}
    store.record(plan_id, last["state"], f"approved by {approver}", data)
    return store.history(plan_id)[-1]
