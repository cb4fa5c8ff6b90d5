"""Picking a plan up from the journal: after a crash, a restart, a new leader, a journal writable again, an approval.

``Resuming`` is the part of ``PlaybookRunner`` (``remediate.runner``) that starts from what the journal says was
last written: each stage (act, verify, undo, restore, an approved start) runs again through the same write gate and
the same stage code as a fresh run, so a crash at any point neither repeats nor loses an action, and no resumed
path skips a check. A plan is claimed before its history is read (``WriteGate.holding``): one plan id never runs in
two threads at once (a take-over resume beside the worker's own run of the plan finds it busy and leaves it).
"""

from __future__ import annotations

import logging
from typing import Any

from aiops.domain.plans import ActionPlan, Change, Execution, ExecutionState, Mode
from aiops.domain.playbook import Playbook
from aiops.domain.protocols import Action
from aiops.remediate.approvals import (APPROVAL_EXPIRED, STALE_APPROVAL, approver_of, expired, shown_change,
                                       why_stale)
from aiops.remediate.gate import DRY_RUN, Purpose, Refusal
from aiops.remediate.journal import RESTORE_PENDING_FLAG
from aiops.remediate.machine import PlanExecution

log = logging.getLogger(__name__)


class Resuming:
    """The resume paths of ``PlaybookRunner`` (an approved plan included), which provides the stages they continue with
    (``_start``, ``_act``, ``_verify``, ``_revert``, ``_watch``, ``_supersede``) and ``gate``, ``store``, ``clock``,
    ``playbooks``, ``actions``."""

    # --- resuming from the journal ---
    def resume_unfinished(self) -> list[Execution]:
        """Pick up every plan the journal shows unfinished (after a crash, a restart, a new leader, a journal
        that is writable again); plans waiting for an approval that has not come stay waiting (until expired)."""
        return self._resume_each(self.store.unfinished())

    def resume_approved(self) -> list[Execution]:
        """Act on the plans whose approval has come in, and end the requests that expired; every other plan is left
        alone (what the agent polls)."""
        return self._resume_each([r["plan_id"] for r in self.store.latest()
                                  if r["state"] == ExecutionState.AWAITING_APPROVAL.value])

    def _resume_each(self, plan_ids: list[str]) -> list[Execution]:
        done = []
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
        """Continue one plan from its last journaled state; ``None`` when there is nothing to do yet (waiting for an
        approval, refused for now, or running in another thread: one plan never runs in two threads at once)."""
        raw = self.store.plan_of(plan_id)  # type: ignore[attr-defined]
        if raw is None:
            return None
        plan = ActionPlan.from_dict(raw)
        with self.gate.holding(plan) as busy:
            if busy is not None:
                log.info("not resuming plan %s now: %s", plan_id, busy, extra={"plan": plan_id})
                return None
            # Read once the plan is ours: whatever ran it before has journaled all it did.
            return self._resume(plan, self.store.history(plan_id))

    def _resume(self, plan: ActionPlan, history: list[dict[str, Any]]) -> Execution | None:
        exe = self._rebuild(plan, history)
        playbook, action = self.playbooks.get(plan.playbook), self.actions.get(plan.action)
        state = exe.current
        if playbook is None or action is None:
            if not state.final:
                exe.error(note=f"cannot resume: playbook {plan.playbook!r} is no longer allow-listed")
            return exe.execution
        before, baseline = _levels(history)
        if state is ExecutionState.AWAITING_APPROVAL:
            return self._resume_approval(exe, playbook, action, history, before, baseline)
        acts = playbook.acts
        if state is ExecutionState.EXECUTING:
            purpose = Purpose.REAPPLY if acts else Purpose.NOTIFY
            with self.gate.acting(plan, purpose) as busy:
                refusal = busy or self.gate.check(plan, purpose)
                if refusal is not None:
                    return self._resume_refused(exe, action, refusal, "apply again")
                exe.record_fact("resumed after a restart: applying again (a change already made is not repeated)")
                return self._act(exe, playbook, action, before, baseline)
        change = self._original_change(plan)
        if state is ExecutionState.VERIFYING:
            # Verifying only reads; the undo that may follow passes the gate itself.
            with self.gate.acting(plan, Purpose.UNDO if acts else Purpose.NOTIFY) as busy:
                if busy is not None:
                    return None
                exe.record_fact("resumed after a restart: verifying again")
                if not acts:
                    exe.recovered(note="notify-only playbook: nothing to verify")
                    return exe.execution
                return self._verify(exe, action, playbook, change or Change(plan.target, ""), before, baseline)
        if state in (ExecutionState.ROLLED_BACK, ExecutionState.RESTORED) and change is None:
            exe.error(note="cannot undo: the journal holds no record of the change to take back")
        elif state in (ExecutionState.ROLLED_BACK, ExecutionState.RESTORED) and change is not None:
            step = "undo" if state is ExecutionState.ROLLED_BACK else "restore"
            purpose = Purpose.UNDO if state is ExecutionState.ROLLED_BACK else Purpose.RESTORE
            with self.gate.acting(plan, purpose) as busy:
                refusal = busy or self.gate.check(plan, purpose)
                if refusal is not None:
                    return self._resume_refused(exe, action, refusal, step)
                self._revert(exe, action, change, step)
        elif state is ExecutionState.SUCCEEDED and change is not None and playbook.restore is not None:
            exe.record_fact("resumed after a restart: watching again before restoring", {RESTORE_PENDING_FLAG: True})
            self._watch(exe, action, playbook, change, before, baseline)
        return exe.execution

    def _resume_refused(self, exe: PlanExecution, action: Action, refusal: Refusal, step: str) -> Execution | None:
        """A resumed stage refused before it wrote anything: left for later without a journal record when the
        refusal is transient (the next resume tries again), superseded when a person took control."""
        if refusal.transient:
            log.info("plan %s: %s postponed: %s", exe.execution.plan.id, step, refusal,
                     extra={"plan": exe.execution.plan.id, "reason": refusal.reason})
            return None
        landed = ""
        if exe.current is ExecutionState.EXECUTING:
            try:
                landed = " (its change had landed and stays)" if action.is_satisfied(exe.execution.plan) \
                    else " (nothing had been changed)"
            except Exception:  # noqa: BLE001 - only words for the note
                landed = " (whether its change had landed is unknown)"
        return self._supersede(exe, refusal.reason, f"{step} not done{landed}: {refusal}")

    def _resume_approval(self, exe: PlanExecution, playbook: Playbook, action: Action, history: list[dict[str, Any]],
                         before: dict[str, float], baseline: dict[str, float]) -> Execution | None:
        """An approved plan starts acting once it passes the gate again (as an ``approved`` start: the planner's
        guards too), is not expired, and would still make the change that was shown for approval. How the request
        ended is logged, like an automatic execution's outcome (the journal alone is not what a person follows)."""
        done = self._start_approved(exe, playbook, action, history, before, baseline)
        if done is not None:
            plan = done.plan
            level = logging.WARNING if done.state is ExecutionState.BLOCKED else logging.INFO
            log.log(level, "plan %s, held for approval, is now %s: %s", plan.id, done.state.value,
                    done.history[-1][2] if done.history else "", extra=_ids(plan))
        return done

    def _start_approved(self, exe: PlanExecution, playbook: Playbook, action: Action,
                        history: list[dict[str, Any]], before: dict[str, float],
                        baseline: dict[str, float]) -> Execution | None:
        """``_resume_approval`` without the outcome line: None while there is nothing to do yet."""
        plan = exe.execution.plan
        approver = approver_of(history)
        ttl = self.approval_ttl_seconds
        if expired(history, self.clock.now(), ttl):
            who = f"approved by {approver}, but the" if approver else "the"
            exe.block(note=f"{who} approval request expired ({ttl:.0f}s after it was held)",
                      data={"reason": APPROVAL_EXPIRED})
            return exe.execution
        if approver is None:
            return None
        if plan.mode is not Mode.ACT:
            exe.block(note=f"approved by {approver}, but the plan was made in dry-run", data={"reason": DRY_RUN})
            return exe.execution
        purpose = Purpose.APPROVED if playbook.acts else Purpose.NOTIFY
        with self.gate.acting(plan, purpose) as busy:
            refusal = busy or self.gate.check(plan, purpose)
            if refusal is not None and refusal.transient:
                log.info("approved plan %s waits: %s", plan.id, refusal, extra={"plan": plan.id})
                return None
            if refusal is not None:
                exe.block(note=f"approved by {approver}, but {refusal}", data={"reason": refusal.reason})
                return exe.execution
            try:
                now = action.apply(plan, dry_run=True)
            except Exception as exc:  # noqa: BLE001 - cannot tell what it would do now: wait for a readable cluster
                log.info("approved plan %s waits: cannot describe its change now: %s", plan.id, exc,
                         extra={"plan": plan.id})
                return None
            stale = why_stale(shown_change(history), now)
            if stale is not None:
                exe.block(note=f"approved by {approver}, but the change is no longer the one approved: {stale}",
                          data={"reason": STALE_APPROVAL})
                return exe.execution
            log.info("plan %s approved by %s: executing %s on %s", plan.id, approver, plan.playbook, plan.target,
                     extra={**_ids(plan), "approver": approver})
            if not self._start(exe, action, f"approved by {approver}: applying {plan.playbook} to {plan.target}",
                               {"before": before, "baseline": baseline}, intended=now):
                return exe.execution
            return self._act(exe, playbook, action, before, baseline)


def _levels(history: list[dict[str, Any]]) -> tuple[dict[str, float], dict[str, float]]:
    """The pre-action and baseline levels journaled when the plan was decided."""
    for entry in history:
        data = entry.get("data") or {}
        if "before" in data:
            return dict(data["before"]), dict(data.get("baseline") or {})
    return {}, {}


def _ids(plan: ActionPlan) -> dict[str, str]:
    """The ids a log line about ``plan`` carries (``extra``)."""
    return {"plan": plan.id, "incident": plan.incident_id}
