"""One gate for every cluster write: the same checks, on every path, at the moment of the write.

Whatever path reaches the cluster (a fresh plan, an approved plan, a resume after a crash, an undo after a worse
verification, a restore after a healthy watch, a second playbook, a retrain), it passes ``WriteGate``:

* ``acting(plan, purpose)`` claims the plan for this thread (one plan id never runs in two threads at once) and its
  target for the plan (one plan per target at a time in this process: the worker, approval, resume and restore
  threads share one gate), and marks the thread as acting for that plan;
* ``check(plan, purpose)`` is the policy, read fresh: leadership; the kill switch in the config and as the
  ``aiops.io/kill-switch`` annotation on the namespace or the Deployment; the agent's *current* mode (the settings,
  not the mode the plan was made in); scope (namespace allow-list, ``policy.label_selector``); the cooldown, for a
  start of acting (a plan's own earlier start does not count against itself; undo and restore of its own change
  are no new start); and that the journal shows no other plan still changing the target;
* ``client(kube)`` wraps the Kubernetes client the actions write through: every patch/create/replace/delete runs
  ``check`` again for the plan the thread is acting for, and a write outside any ``acting`` context is refused.

A refusal is a value (``Refusal``) saying why and whether it is ``transient``: not the leader, the target busy with
another plan, the cluster unreadable -> try again later (the plan stays resumable); otherwise a person has taken
control (kill switch, dry-run, out of scope, cooldown) and the runner ends the plan (``blocked`` before it acted,
``superseded`` after). The client raises it as ``WriteRefused`` (``NotLeaderError`` for leadership).
"""

from __future__ import annotations

import enum
import logging
import threading
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterator, Protocol

from aiops.domain.errors import AiopsError
from aiops.domain.plans import ActionPlan, Mode
from aiops.domain.protocols import Clock
from aiops.domain.target import Target
from aiops.remediate.facts import KILL_SWITCH_ANNOTATION, ClusterFacts, kill_switch_on
from aiops.remediate.planner import (COOLDOWN, FACTS_UNAVAILABLE, KILL_SWITCH, LABEL_SCOPE, OUT_OF_SCOPE,
                                     ActionHistory, PlanPolicy, check_guards)

log = logging.getLogger(__name__)

# Machine-readable ``Refusal.reason`` values besides the planner's (kill_switch, out_of_scope, cooldown, ...).
NOT_LEADER = "not_leader"
TARGET_BUSY = "target_busy"
PLAN_RUNNING = "plan_running"
DRY_RUN = "dry_run"
TARGET_GONE = "target_gone"
OUTSIDE_GATE = "outside_gate"
# Refusals that say "not now" rather than "no": an incident whose plan was refused for one of them is tried again.
TRANSIENT_REASONS = frozenset({NOT_LEADER, TARGET_BUSY, PLAN_RUNNING, FACTS_UNAVAILABLE})


class Purpose(str, enum.Enum):
    """Why a plan is about to write: decides which checks apply."""

    START = "start"          # a fresh plan starts acting (the planner's guards ran just before)
    APPROVED = "approved"    # an approved plan starts acting: the planner's guards run again too
    REAPPLY = "reapply"      # a plan journaled ``executing`` is resumed: its own start does not count against it
    UNDO = "undo"            # the plan's own change is undone after a worse verification
    RESTORE = "restore"      # a mitigation that held is taken back after the service stayed healthy
    NOTIFY = "notify"        # a notify-only playbook (escalate) tells a person: only leadership applies

    @property
    def starts(self) -> bool:
        """True for the purposes that (re)start acting: what a cooldown applies to."""
        return self in (Purpose.START, Purpose.APPROVED, Purpose.REAPPLY)


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why the gate refused; ``transient`` refusals may pass later (the plan stays resumable)."""

    reason: str
    detail: str
    transient: bool

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}"


class WriteRefused(AiopsError):
    """A cluster write the gate refused (``refusal`` says why)."""

    def __init__(self, refusal: Refusal) -> None:
        self.refusal = refusal
        super().__init__(str(refusal))


class NotLeaderError(WriteRefused):
    """A cluster write refused because this agent does not hold the leader Lease."""


class GateJournal(ActionHistory, Protocol):
    """The journal reads the gate needs (``aiops.remediate.journal.JournalReads`` provides them)."""

    def changing(self, target: Target) -> list[dict[str, Any]]: ...

    def started_at(self, plan_id: str) -> float | None: ...


# Returns why this agent may not write now (not the leader), or None when it may.
LeaderCheck = Callable[[], "str | None"]


@dataclass
class _Claim:
    thread: int
    depth: int
    target: str | None


class WriteGate:
    """The checks every write passes. ``policy`` None is ownership only (claims, target busy, leadership): what a
    bare ``PlaybookRunner`` gets; the agent always passes its policy and a client to read the cluster with."""

    def __init__(self, journal: GateJournal, clock: Clock, policy: PlanPolicy | None = None,
                 cluster: Any = None, leader: LeaderCheck | None = None,
                 on_refused: Callable[[Refusal], None] | None = None) -> None:
        self.journal = journal
        self.clock = clock
        self.policy = policy
        self.cluster = cluster
        self._leader = leader
        self._on_refused = on_refused
        self._cond = threading.Condition()
        self._plans: dict[str, _Claim] = {}
        self._targets: dict[str, str] = {}
        self._local = threading.local()

    # --- ownership in this process ---
    @contextmanager
    def holding(self, plan: ActionPlan, wait: float = 0.0) -> Iterator[Refusal | None]:
        """Claim ``plan`` for this thread (not its target): yields None when claimed, else why not. ``wait``
        seconds are given to another thread to let go (a worker handing a restore watch to its own thread)."""
        refusal = self._claim(plan, None, wait)
        if refusal is not None:
            yield refusal
            return
        try:
            yield None
        finally:
            self._release(plan)

    @contextmanager
    def acting(self, plan: ActionPlan, purpose: Purpose) -> Iterator[Refusal | None]:
        """Claim ``plan`` and its target for this thread and mark the thread as acting for it with ``purpose``
        (nested uses by the same thread are fine); yields None when claimed, else why not (transient)."""
        target = None if purpose is Purpose.NOTIFY else _key(plan.target)
        refusal = self._claim(plan, target, 0.0)
        if refusal is not None:
            yield refusal
            return
        stack = self._stack()
        stack.append((plan, purpose))
        try:
            yield None
        finally:
            stack.pop()
            self._release(plan)

    def current(self) -> tuple[ActionPlan, Purpose] | None:
        """The plan this thread is acting for, and why (None outside any ``acting`` context)."""
        stack = self._stack()
        return stack[-1] if stack else None

    def _stack(self) -> list[tuple[ActionPlan, Purpose]]:
        if not hasattr(self._local, "stack"):
            self._local.stack = []
        return self._local.stack

    def _claim(self, plan: ActionPlan, target: str | None, wait: float) -> Refusal | None:
        me = threading.get_ident()
        with self._cond:
            refusal = self._busy_here(plan, target, me)
            if refusal is not None and wait > 0:
                self._cond.wait_for(lambda: self._busy_here(plan, target, me) is None, wait)
                refusal = self._busy_here(plan, target, me)
            if refusal is not None:
                return refusal
            claim = self._plans.setdefault(plan.id, _Claim(me, 0, None))
            claim.depth += 1
            if target is not None and claim.target is None:
                claim.target = target
                self._targets[target] = plan.id
            return None

    def _busy_here(self, plan: ActionPlan, target: str | None, me: int) -> Refusal | None:
        claim = self._plans.get(plan.id)
        if claim is not None and claim.thread != me:
            return Refusal(PLAN_RUNNING, f"plan {plan.id} is already running in another thread", True)
        holder = self._targets.get(target) if target is not None else None
        if holder is not None and holder != plan.id:
            return Refusal(TARGET_BUSY, f"plan {holder} is acting on {plan.target}", True)
        return None

    def _release(self, plan: ActionPlan) -> None:
        with self._cond:
            claim = self._plans[plan.id]
            claim.depth -= 1
            if claim.depth == 0:
                del self._plans[plan.id]
                if claim.target is not None and self._targets.get(claim.target) == plan.id:
                    del self._targets[claim.target]
                self._cond.notify_all()

    # --- the checks ---
    def check(self, plan: ActionPlan, purpose: Purpose) -> Refusal | None:
        """Everything a write of ``plan`` for ``purpose`` must pass now; None when it may write."""
        refusal = self._leadership()
        if refusal is not None or purpose is Purpose.NOTIFY:
            return refusal
        return self._policy(plan, purpose) or self._other_plans(plan)

    def _leadership(self) -> Refusal | None:
        why = self._leader() if self._leader is not None else None
        if why is None:
            return None
        return Refusal(NOT_LEADER, why or "this agent does not hold the leader Lease", True)

    def _policy(self, plan: ActionPlan, purpose: Purpose) -> Refusal | None:
        policy = self.policy
        if policy is None:
            return None
        target = plan.target
        if policy.kill_switch:
            return Refusal(KILL_SWITCH, "the kill switch is on in the agent's config (policy.kill_switch)", False)
        if policy.mode is not Mode.ACT:
            return Refusal(DRY_RUN, f"the agent now runs in {policy.mode.value} mode", False)
        if not policy.in_scope(target.namespace):
            return Refusal(OUT_OF_SCOPE, f"namespace {target.namespace!r} is not in the allow-list "
                                         f"{list(policy.namespaces)}", False)
        refusal = self._cluster(plan, policy) if self.cluster is not None else None
        if refusal is not None:
            return refusal
        if purpose.starts:
            refusal = self._cooldown(plan, policy)
            if refusal is not None:
                return refusal
        if purpose is Purpose.APPROVED and self.cluster is not None:
            return self._planner_guards(plan, policy)
        return None

    def _cluster(self, plan: ActionPlan, policy: PlanPolicy) -> Refusal | None:
        """The kill-switch annotations and the scope labels, read now."""
        target = plan.target
        try:
            namespace = self.cluster.get_namespace(target.namespace)
            deployment = self.cluster.get_deployment(target.namespace, target.name) \
                if target.kind == "Deployment" else None
        except Exception as exc:  # noqa: BLE001 - unreadable: the checks cannot be judged
            if getattr(exc, "not_found", False) or getattr(exc, "status", None) == 404:
                return Refusal(TARGET_GONE, f"{target} or its namespace no longer exists: {exc}", False)
            return Refusal(FACTS_UNAVAILABLE, f"cannot read {target} to check the guards: {exc}", True)
        if kill_switch_on(namespace):
            return Refusal(KILL_SWITCH, f"annotation {KILL_SWITCH_ANNOTATION} on namespace {target.namespace}",
                           False)
        if deployment is None:
            return None
        if kill_switch_on(deployment):
            return Refusal(KILL_SWITCH, f"annotation {KILL_SWITCH_ANNOTATION} on {target}", False)
        labels = (deployment.get("metadata") or {}).get("labels") or {}
        missing = [f"{k}={v}" for k, v in policy.label_selector if labels.get(k) != v]
        if missing:
            return Refusal(LABEL_SCOPE, f"{target} lacks the scope labels {', '.join(missing)}", False)
        return None

    def _cooldown(self, plan: ActionPlan, policy: PlanPolicy) -> Refusal | None:
        now = self.clock.now()
        want = plan.target.as_dict()
        others = [r["ts"] for r in self.journal.acted_since(now - policy.cooldown_seconds)
                  if r["plan_id"] != plan.id and r["data"].get("playbook") == plan.playbook
                  and r["data"].get("target") == want]
        if not others:
            return None
        return Refusal(COOLDOWN, f"{plan.playbook} acted on {plan.target} {now - max(others):.0f}s ago in another "
                                 f"plan (cooldown {policy.cooldown_seconds:.0f}s)", False)

    def _planner_guards(self, plan: ActionPlan, policy: PlanPolicy) -> Refusal | None:
        """For an approved plan: everything the planner checked when it held the plan, again."""
        try:
            facts = ClusterFacts(self.cluster).read(plan.target) if plan.target.kind == "Deployment" else None
        except Exception as exc:  # noqa: BLE001
            return Refusal(FACTS_UNAVAILABLE, f"cannot read {plan.target} to check the guards: {exc}", True)
        blocked = check_guards(plan, policy, self.journal, self.clock.now(), facts)
        return Refusal(blocked.reason, blocked.detail, False) if blocked is not None else None

    def _other_plans(self, plan: ActionPlan) -> Refusal | None:
        """Another plan the journal shows still changing the target. Of two such plans the one that started
        first goes on (so two half-done plans left by a crash cannot wait for each other forever)."""
        try:
            busy = [r for r in self.journal.changing(plan.target) if r["plan_id"] != plan.id]
            if not busy:
                return None
            mine = self.journal.started_at(plan.id)
            for record in busy:
                theirs = self.journal.started_at(record["plan_id"])
                if mine is None or theirs is None or (theirs, record["plan_id"]) < (mine, plan.id):
                    return Refusal(TARGET_BUSY, f"plan {record['plan_id']} is {record['state']} on {plan.target}",
                                   True)
        except Exception as exc:  # noqa: BLE001 - a journal that cannot be read cannot say the target is free
            return Refusal(TARGET_BUSY, f"cannot read the journal to see who acts on {plan.target}: {exc}", True)
        return None

    # --- the write path ---
    def admit_write(self, call: str, args: tuple = ()) -> None:
        """Raise ``WriteRefused`` unless the client call ``call`` (with positional ``args``) may write now (see
        ``GatedKube``)."""
        acting = self.current()
        refusal: Refusal | None
        if acting is None:
            refusal = self._leadership() or Refusal(OUTSIDE_GATE, f"{call} outside any plan's acting context", False)
        else:
            plan, purpose = acting
            # An audit Event records what the plan does; it changes nothing a person controls.
            refusal = self.check(plan, Purpose.NOTIFY if call == "create_event" else purpose)
            if refusal is None and call == "patch_deployment" and len(args) >= 2:
                refusal = self._second_deployment(plan, str(args[0]), str(args[1]))
        if refusal is None:
            return
        log.warning("refused %s: %s", call, refusal,
                    extra={"plan": acting[0].id if acting else None, "reason": refusal.reason})
        if self._on_refused is not None:
            self._on_refused(refusal)
        raise (NotLeaderError if refusal.reason == NOT_LEADER else WriteRefused)(refusal)

    def _second_deployment(self, plan: ActionPlan, namespace: str, name: str) -> Refusal | None:
        """A write to a Deployment that is not the plan's target (degrade's fallback): it is in scope and under a
        person's kill switch just like the target, so the same checks hold for it."""
        target = plan.target
        if self.policy is None or (target.kind == "Deployment"
                                   and (namespace, name) == (target.namespace, target.name)):
            return None
        other = replace(plan, target=Target.deployment(namespace, name))
        return self._policy(other, Purpose.UNDO) if self.cluster is not None else None

    def client(self, kube: Any) -> "GatedKube":
        """``kube`` with every write passing this gate (a client already gated by it is returned as it is)."""
        if isinstance(kube, GatedKube) and kube.gate is self:
            return kube
        return GatedKube(self, kube)


_WRITE_PREFIXES = ("patch_", "create_", "replace_", "delete_")


def _key(target: Target) -> str:
    return f"{target.kind}/{target.namespace}/{target.name}"


class GatedKube:
    """A Kubernetes client whose writes pass ``gate`` (``WriteGate.admit_write``) first; reads go straight
    through. A raw ``request`` counts as a write unless it is a GET."""

    def __init__(self, gate: WriteGate, kube: Any) -> None:
        self.gate = gate
        self._kube = kube

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._kube, name)
        if not callable(attr) or not (name.startswith(_WRITE_PREFIXES) or name == "request"):
            return attr

        def gated(*args: Any, **kwargs: Any) -> Any:
            method = str(args[0] if args else kwargs.get("method", "")).upper() if name == "request" else ""
            if method != "GET":
                self.gate.admit_write(name, args)
            return attr(*args, **kwargs)
        return gated
