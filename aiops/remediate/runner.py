"""Running one plan end to end: act, verify, and undo when things got worse, every step journaled first and every
write through the one write gate (``remediate.gate``).

The same code resumes a plan from the journal after a restart: each stage (act, verify, undo) starts from what the
journal says was last written, and every stage is idempotent, so a crash at any point neither repeats nor loses an
action. Each stage passes the gate when it starts and each write passes it again: a refusal that may pass later
(not the leader, the target busy, the cluster unreadable) leaves the plan where it is, resumable; a person who took
control (kill switch, dry-run, scope, cooldown) ends it ``blocked`` before it acted, ``superseded`` after. A write
whose answer never came (a timeout after the request left) is not a failure: the object is read again, a change
that landed goes on to be verified (or counts as undone), and one that cannot be seen leaves the plan resumable.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Mapping, Sequence

from aiops.clients.kube import is_unavailable, outcome_unknown
from aiops.domain.errors import InputError
from aiops.domain.plans import ActionPlan, Blocked, Change, Execution, ExecutionState, Mode
from aiops.domain.playbook import Playbook
from aiops.domain.protocols import Action, Clock, ExecutionStore
from aiops.remediate.actions import ACTIONS, KubeApi, Superseded
from aiops.remediate.approvals import SHOWN_KEY
from aiops.remediate.gate import NOT_LEADER, PLAN_RUNNING, Purpose, Refusal, WriteGate, WriteRefused
from aiops.remediate.journal import APPROVED_FLAG, RESTORE_PENDING_FLAG, UNDONE_FLAG, is_start, is_unfinished
from aiops.remediate.machine import PlanExecution, TransitionObserver
from aiops.remediate.restore import Restorer
from aiops.remediate.resume import Resuming
from aiops.remediate.verify import Verifier

log = logging.getLogger(__name__)

DRY_RUN_NOTE = "dry-run"
# ``reason`` of a plan superseded because its object changed since the plan wrote it (``actions.Superseded``).
CHANGED_SINCE = "changed_since"
# How long a restore watch handed to its own thread waits for the thread that ran the plan to let go of it.
HANDOFF_SECONDS = 30.0
DEFAULT_APPROVAL_TTL_SECONDS = 3600.0
# ``data`` key of the fact journaled when a step's write may or may not have landed (a timeout): the step's name.
OUTCOME_UNKNOWN = "outcome_unknown"


class PlaybookRunner(Resuming):
    """Drives a plan through its state machine.

    pending -> executing (apply) -> verifying -> succeeded | rolled_back (worse and ``undo_on_worse``: undo) |
    failed (unchanged, worse without undo, or an error that says nothing was changed); ``blocked`` when the gate
    refused a start, ``superseded`` when it refused to go on because a person took control. A dry-run plan ends in
    ``skipped`` with the would-be change and never writes to the cluster. Running a plan twice changes the cluster once: the second apply finds
    the plan's annotation and goes straight to verifying.

    ``gate`` is the write gate every write passes; without one the runner gets an ownership-only gate (one thread
    per plan, one plan per target, no other plan changing it), which is what tests and tools need. The agent
    always passes its full gate (``aiops.serve.agent.build_parts``). The actions write through ``gate.client``.
    """

    def __init__(self, kube: KubeApi, store: ExecutionStore, verifier: Verifier,
                 playbooks: Mapping[str, Playbook], clock: Clock,
                 actions: Mapping[str, Action] | None = None,
                 observers: Sequence[TransitionObserver] = (), gate: WriteGate | None = None) -> None:
        self.gate = gate if gate is not None else WriteGate(store, clock)  # type: ignore[arg-type]
        self.kube = self.gate.client(kube)
        self.store = store
        self.verifier = verifier
        self.playbooks = playbooks
        self.clock = clock
        self.actions: dict[str, Action] = dict(actions) if actions is not None else \
            {kind: cls(self.kube, clock) for kind, cls in ACTIONS.items()}
        self.observers = list(observers)
        # Playbooks with ``restore`` are watched after success and undone once healthy (``remediate.restore``):
        # inline (True), not at all (False), or handed to a callable that runs the watch elsewhere (a thread).
        self.restore_watch: bool | Callable[[Callable[[], object]], None] = True

    @property
    def approval_ttl_seconds(self) -> float:
        """How long a plan held for approval may still be acted on (the gate's policy says)."""
        policy = self.gate.policy
        return policy.approval_ttl_seconds if policy is not None else DEFAULT_APPROVAL_TTL_SECONDS

    def _execution(self, plan: ActionPlan, initial: ExecutionState = ExecutionState.PENDING) -> PlanExecution:
        return PlanExecution(plan, self.store, self.clock, initial, self.observers)

    def run(self, plan: ActionPlan, before: Mapping[str, float],
            baseline: Mapping[str, float] | None = None, silence: Sequence[dict] = ()) -> Execution:
        """Run ``plan``; ``before`` holds the verify signals' levels that triggered it. ``silence`` (Alertmanager
        matcher lists) names the alerts to mute while it runs; it is journaled for the silencing observer.

        A plan the journal shows unfinished is continued from there (``resume``), never started a second time; a
        plan that already acted and ended is not run again (the same incident, playbook and target after its
        cooldown: acting twice on one incident changes the cluster once, and its old change is not verified anew
        against today's readings). A plan only refused or dry-run before may run."""
        history = self.store.history(plan.id)
        if history and is_unfinished(history[-1]):
            return self.resume(plan.id) or self._rebuild(plan, self.store.history(plan.id)).execution
        if any(is_start(r) for r in history):
            log.info("plan %s already ran (%s): not run again", plan.id, history[-1]["state"],
                     extra={"plan": plan.id})
            return self._rebuild(plan, history).execution
        exe = self._execution(plan)
        playbook = self.playbooks.get(plan.playbook)
        action = self.actions.get(plan.action)
        if playbook is None or action is None:
            exe.error(note=f"no playbook {plan.playbook!r} or action {plan.action!r} to run")
            return exe.execution
        if plan.mode is not Mode.ACT:
            return self._dry_run(exe, action)
        purpose = Purpose.START if playbook.acts else Purpose.NOTIFY
        with self.gate.acting(plan, purpose) as busy:
            if busy is not None and busy.reason == PLAN_RUNNING:
                # Another thread is running this very plan: its journal is the record, not a refusal here.
                log.info("plan %s not run here: %s", plan.id, busy, extra={"plan": plan.id})
                return self._rebuild(plan, self.store.history(plan.id)).execution
            refusal = busy or self.gate.check(plan, purpose)
            if refusal is not None:
                exe.block(note=f"not started: {refusal}", data={"reason": refusal.reason})
                return exe.execution
            data: dict[str, Any] = {"before": dict(before), "baseline": dict(baseline or {}),
                                    "silence": [list(m) for m in silence]}
            if not self._start(exe, action, f"applying {plan.playbook} to {plan.target}", data):
                return exe.execution
            return self._act(exe, playbook, action, before, baseline)

    def _start(self, exe: PlanExecution, action: Action, note: str, data: dict[str, Any],
               intended: Change | None = None) -> bool:
        """Journal ``executing`` with the intended change, before the patch: if the agent dies after the patch
        landed, the restarted agent still knows what to undo. (An action whose undo needs no such record, like a
        retrain whose versions the registry keeps, says so: describing it would cost a second training.)"""
        plan = exe.execution.plan
        if getattr(action, "journals_intent", True):
            if intended is None:
                try:
                    intended = action.apply(plan, dry_run=True)
                except Exception as exc:  # noqa: BLE001 - cannot even read the object: nothing was changed
                    exe.error(note=f"cannot prepare {plan.playbook} on {plan.target}: {exc}",
                              data={"error": repr(exc)})
                    return False
            data = {**data, "intended": intended.as_dict()}
        exe.start(note=note, data=data)
        return True

    def hold_for_approval(self, plan: ActionPlan, before: Mapping[str, float],
                          baseline: Mapping[str, float] | None, detail: str) -> Execution:
        """Journal ``plan`` as ``awaiting_approval`` (once: the same plan again returns its current state), with
        the change a dry run describes now: what the approver is shown, and what an approval is good for."""
        history = self.store.history(plan.id)
        if history and history[-1]["state"] != ExecutionState.BLOCKED.value:
            return self._rebuild(plan, history).execution
        exe = self._execution(plan)
        data: dict[str, Any] = {"before": dict(before), "baseline": dict(baseline or {})}
        action = self.actions.get(plan.action)
        try:
            shown = action.apply(plan, dry_run=True) if action is not None else None
        except Exception as exc:  # noqa: BLE001 - held all the same; without a shown change it cannot be acted on
            shown, detail = None, f"{detail} (the change cannot be described now: {exc})"
        if shown is not None:
            data[SHOWN_KEY] = shown.as_dict()
            detail = f"{detail}; would {shown.description}"
        exe.await_approval(note=detail, data=data)
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
        except WriteRefused as exc:
            return self._refused(exe, exc.refusal, "apply")
        except Exception as exc:  # noqa: BLE001 - a failure that says nothing changed ends the plan as failed
            landed = self._landed_anyway(exe, action, exc)
            if landed is None:
                return exe.execution
            change = landed
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

    def _landed_anyway(self, exe: PlanExecution, action: Action, exc: Exception) -> Change | None:
        """After an apply that raised: the change when it landed all the same (a timeout after the apiserver made
        it: it is verified, and undone if need be, like any other), else None, with the plan ``failed`` when the
        answer says nothing was changed, or left ``executing`` when that cannot be told yet (it is resumed: the
        object is read again, and a change already made is not repeated)."""
        plan = exe.execution.plan
        if not outcome_unknown(exc):
            exe.error(note=f"apply failed: {exc}", data={"error": repr(exc)})
            return None
        try:
            if action.is_satisfied(plan):
                return Change(plan.target, f"the answer was lost ({exc}), but the change landed", already_done=True)
        except Exception as unreadable:  # noqa: BLE001 - still unreadable: whether it landed stays unknown
            exc = unreadable
        self._owed(exe, "apply", exc)
        return None

    def _owed(self, exe: PlanExecution, step: str, exc: Exception) -> None:
        """Journal that ``step`` of the plan may or may not have landed: the plan stays where it is, unfinished,
        and the next resume reads the object and finishes it."""
        plan = exe.execution.plan
        log.warning("%s of plan %s: outcome unknown (%s); resumed later", step, plan.id, exc,
                    extra={"plan": plan.id})
        exe.record_fact(f"{step}: outcome unknown ({exc}); the plan stays {exe.state} and is resumed",
                        {OUTCOME_UNKNOWN: step, "error": repr(exc)})

    # --- refusals ---
    def _refused(self, exe: PlanExecution, refusal: Refusal, step: str) -> Execution:
        """A stage the gate refused: a transient refusal leaves the plan where it is (resumable); otherwise a
        person took control and the plan ends ``superseded``."""
        if refusal.transient:
            log.info("%s of plan %s postponed: %s", step, exe.execution.plan.id, refusal,
                     extra={"plan": exe.execution.plan.id, "reason": refusal.reason})
            exe.record_fact(f"{step} postponed: {refusal}; the plan stays {exe.state} and is resumed later",
                            {"refused": refusal.reason})
            return exe.execution
        return self._supersede(exe, refusal.reason, f"{step} not done: {refusal}")

    def _supersede(self, exe: PlanExecution, reason: str, detail: str) -> Execution:
        """End the plan ``superseded``: the cluster stays as it is now, and a person is told (this warning, and
        the Event the transition observers write)."""
        plan = exe.execution.plan
        log.warning("plan %s superseded, the cluster is left as it is: %s", plan.id, detail,
                    extra={"plan": plan.id, "incident": plan.incident_id, "reason": reason})
        exe.supersede(note=f"{detail}; left as it is for a person", data={"reason": reason})
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
            if self._lost_lead(exe, "verification"):
                return exe.execution
            if change.applied:
                # A change is in place and nobody knows whether it helped: the plan stays ``verifying`` (and its
                # target busy) and the resume poll verifies it again, undoing it when worse. Failed, it stayed.
                exe.record_fact(f"verification could not read ({exc}); the plan stays verifying and is verified "
                                "again later", {"error": repr(exc), "refused": "verify_unreadable"})
                return exe.execution
            exe.error(note=f"verification failed: {exc}", data={"error": repr(exc)})
            return exe.execution
        exe.execution.verification = result.as_dict()
        if self._lost_lead(exe, f"verification ({result.outcome})"):
            return exe.execution
        data = {"verification": result.as_dict()}
        if result.outcome == "recovered":
            # A restore still to come is part of the record, so a restarted agent finishes the watch.
            data[RESTORE_PENDING_FLAG] = playbook.restore is not None and change.applied and bool(self.restore_watch)
            exe.recovered(note=result.note, data=data)
            if playbook.restore is not None and self.restore_watch:
                self._watch(exe, action, playbook, change, before, baseline)
        elif result.outcome == "unchanged":
            exe.unchanged(note=result.note, data=data)
        else:
            undo = playbook.undo_on_worse and change.applied
            exe.worse(note=f"worse: {result.note}" + ("; undoing" if undo else "; no undo"), data=data, undo=undo)
            if undo:
                self._undo(exe, action, change)
        return exe.execution

    def _lost_lead(self, exe: PlanExecution, step: str) -> bool:
        """True (and nothing journaled) when this agent lost the Lease while ``step`` ran: the new leader has resumed
        the plan by now and owns its verdict; a record from here would overwrite the leader's (a ``rolled_back`` it
        would then undo, a ``verifying`` it would verify again)."""
        refusal = self.gate.check(exe.execution.plan, Purpose.NOTIFY)  # NOTIFY: leadership only
        if refusal is None:
            return False
        log.warning("%s of plan %s not journaled: %s; the leader resumes it", step, exe.execution.plan.id, refusal,
                    extra={"plan": exe.execution.plan.id, "reason": refusal.reason})
        return True

    # --- undo and restore: the plan's own change, taken back through the gate ---
    def _undo(self, exe: PlanExecution, action: Action, change: Change) -> None:
        # rolled_back is journaled before the undo runs; a crashing undo then moves the plan to failed.
        plan = exe.execution.plan
        with self.gate.acting(plan, Purpose.UNDO) as busy:
            refusal = busy or self.gate.check(plan, Purpose.UNDO)
            if refusal is not None:
                self._refused(exe, refusal, "undo")
                return
            self._revert(exe, action, change, "undo")

    def _restore(self, exe: PlanExecution, action: Action, change: Change, run: int) -> Execution:
        """The restore watch's last step: ``succeeded -> restored`` (journaled first), then the undo."""
        plan = exe.execution.plan
        with self.gate.acting(plan, Purpose.RESTORE) as busy:
            refusal = busy or self.gate.check(plan, Purpose.RESTORE)
            if refusal is not None and refusal.reason == NOT_LEADER:
                # Not journaled: the new leader owns the plan now (see ``_lost_lead``); its last record already
                # says the watch is pending.
                log.info("restore of plan %s left to the leader: %s", plan.id, refusal, extra={"plan": plan.id})
                return exe.execution
            if refusal is not None and refusal.transient:
                exe.record_fact(f"restore postponed: {refusal}; the watch starts again later",
                                {RESTORE_PENDING_FLAG: True, "refused": refusal.reason})
                return exe.execution
            if refusal is not None:
                return self._supersede(exe, refusal.reason, f"restore not done: {refusal}")
            exe.restore(note=f"{run} healthy checks in a row: restoring the original routing")
            return self._revert(exe, action, change, "restore")

    def _revert(self, exe: PlanExecution, action: Action, change: Change, step: str) -> Execution:
        """Undo ``change`` (the caller holds the gate for it): done, superseded when the object is no longer as
        the plan left it or a person took control, postponed when refused for now, failed when it crashed."""
        try:
            reverse = action.undo(exe.execution.plan, change, dry_run=False)
        except Superseded as exc:
            return self._supersede(exe, CHANGED_SINCE, f"{step} not done: {exc}")
        except WriteRefused as exc:
            return self._refused(exe, exc.refusal, step)
        except Exception as exc:  # noqa: BLE001 - a definite failure is journaled failed; a person undoes by hand
            # An apiserver that did not answer (down, overloaded, timed out) is no verdict on the undo: the harmful
            # change may still be there, so the undo stays owed (resumed, idempotent) instead of given up.
            if not (outcome_unknown(exc) or is_unavailable(exc)):
                exe.error(note=f"{step} failed: {exc}", data={"error": repr(exc)})
                return exe.execution
            reverse = self._reverted_anyway(exe, action, change, step, exc)
            if reverse is None:
                return exe.execution
        exe.execution.changes.append(reverse)
        done = "undone" if step == "undo" else "restored"
        exe.record_fact(f"{done}: {reverse.description}", {"change": reverse.as_dict(), UNDONE_FLAG: True})
        return exe.execution

    def _reverted_anyway(self, exe: PlanExecution, action: Action, change: Change, step: str,
                         exc: Exception) -> Change | None:
        """After an undo whose outcome is unknown: the reverse change when the object is back where the plan found
        it, else None with the undo still owed (the plan stays unfinished; a resume undoes it, or supersedes it
        when someone changed the object since)."""
        try:
            reverse = action.undo(exe.execution.plan, change, dry_run=True)
        except Superseded as gone:
            self._supersede(exe, CHANGED_SINCE, f"{step} not done: {gone}")
            return None
        except Exception as unreadable:  # noqa: BLE001 - still unreadable: whether it landed stays unknown
            reverse, exc = None, unreadable
        if reverse is not None and reverse.already_done:
            return reverse
        self._owed(exe, step, exc)
        return None

    def _watch(self, exe: PlanExecution, action: Action, playbook: Playbook, change: Change,
               before: Mapping[str, float], baseline: Mapping[str, float] | None) -> None:
        """Run the restore watch here (``restore_watch`` True) or hand it to ``restore_watch`` (a thread). The watch
        holds the plan, so no second watch of it runs, but not its target."""
        plan = exe.execution.plan

        def watch() -> Execution:
            with self.gate.holding(plan, wait=HANDOFF_SECONDS) as busy:
                if busy is not None:
                    log.info("restore watch of plan %s not started: %s", plan.id, busy, extra={"plan": plan.id})
                    return exe.execution
                leading = lambda: self.gate.check(plan, Purpose.NOTIFY) is None  # noqa: E731 - NOTIFY: leadership only
                return Restorer(self.verifier, self._restore, leading).watch(exe, action, playbook, change, before,
                                                                             baseline)
        if callable(self.restore_watch):
            self.restore_watch(watch)
        else:
            watch()

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
