"""Rows 1-4 of the fault-injection bench: one plan (scale-up on shop/cart, through the agent's own runner, gate and
journal guard) broken at every step of its life, then left to the agent's own recovery; and the judge of the end.

Each row first runs the plan once without a fault, counting its steps (journal records, API writes, leader
checks), then once per step with the fault at that step, for a plan whose verification says ``recovered`` and one
whose verification says ``worse`` (so the undo path is crossed):

1. ``crash``: the agent dies right after each journal record, and right after each write landed; a new agent
   (new ``build_parts``, same journal file, same cluster) starts and resumes (``resume_unfinished``, its start-up
   hook), then polls (``resume_pending``) until the journal shows the plan final.
2. ``journal_full``: every journal write fails with ENOSPC from the k-th on; then the disk has room again, the
   journal guard's probe says so (what ``/readyz`` runs) and its recovery hook resumes the plan; a plan that never
   got its first record is the deferred incident, handled again.
3. ``api_hang``: the n-th write hangs past the agent's request timeout, dropped (``never_lands``) or done with the
   answer lost (``answer_lost``); then the apiserver answers again and the agent's poll goes on.
4. ``leader_flap``: the gate's leader check says "not the leader" at its n-th call only (``blip``: the same agent
   goes on), or from its n-th call on (``lost``: a second agent takes over while the first keeps polling).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from aiops.remediate.journal import UNDONE_FLAG, is_unfinished
from aiops.remediate.sqlite_journal import SqliteJournal
from bench.fault_world import ANSWER_LOST, BEFORE, NEVER_LANDS, AgentUnderTest, Crash, World

OUTCOMES = ("recovered", "worse")
# Simulated seconds between two polls of the agent (loop.approval_poll_seconds) and for a crashed agent to restart.
POLL_SECONDS = 10.0
RESTART_SECONDS = 10.0
MAX_POLLS = 12
RESUME_THREAD = "aiops-resume"  # the thread the journal guard's recovery hook starts (aiops.serve.agent)


@dataclass
class Trial:
    """One fault injected once, and what the cluster and the journal show at the end."""

    row: str
    point: str
    outcome: str = ""         # what the plan's verification said without a fault: recovered or worse
    incidents: int = 1
    changes: list[int] = field(default_factory=list)   # changes made to the cluster, per incident
    refused: int = 0          # incidents that changed nothing and say why (blocked, failed before acting, ...)
    unfinished: int = 0       # plans left non-final
    unverified: int = 0       # changes never verified, undone, or handed to a person
    double: int = 0           # a second change (or undo) for one incident
    sent: int = 0             # alerts sent (rows 5 and 6)
    lost: int = 0             # alerts sent and never handled
    seconds: list[float] = field(default_factory=list)  # simulated seconds from first to final record, per plan
    detail: dict[str, int] = field(default_factory=dict)  # what the fault did (503 answers, re-sends, ...)
    violations: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


# --- judging the end ----------------------------------------------------------------------------------------------

def judge(world: World, plan_ids: list[str], trial: Trial, workload: str = "cart") -> Trial:
    """Fill ``trial`` from the journal file and the API server's write log: every plan final, every change that
    landed verified (succeeded, or failed on a verdict), undone (rolled back with the undo recorded) or superseded,
    the journal agreeing with the cluster, and at most one change and one undo per plan."""
    journal = SqliteJournal(world.journal_path)
    try:
        changes = 0
        for pid in plan_ids:
            changes += _judge_plan(world, journal, pid, trial, workload)
        trial.changes.append(changes)
        if changes == 0:
            trial.refused += 1
    finally:
        journal.close()
    return trial


def _judge_plan(world: World, journal: SqliteJournal, pid: str, trial: Trial, workload: str) -> int:
    history = journal.history(pid)
    applies, undos = world.tap.writes_by(pid, "apply"), world.tap.writes_by(pid, "undo")
    again = world.tap.writes_by(pid, "again")
    where = f"{trial.row}/{trial.point}: plan {pid}"
    if len(applies) > 1 or len(undos) > 1 or again:
        trial.double += 1
        trial.violations.append(f"double action: {where} applied {len(applies)}x, undone {len(undos)}x, "
                                f"changed again {len(again)}x")
    if not history:
        if applies:
            trial.unverified += 1
            trial.violations.append(f"change never verified: {where} changed the cluster with no journal record")
        return 0
    last = history[-1]
    if is_unfinished(last):
        trial.unfinished += 1
        trial.violations.append(f"left non-final: {where} is {last['state']}")
    else:
        trial.seconds.append(last["ts"] - history[0]["ts"])
    if not applies:
        return 0
    verdict = next((r["data"]["verification"]["outcome"] for r in reversed(history)
                    if (r["data"].get("verification") or {}).get("outcome")), None)
    state, undone = last["state"], bool(last["data"].get(UNDONE_FLAG))
    # A plan that decided to take its change back (rolled_back, restored) must have done so, or left it to a person.
    undoing = any(r["state"] in ("rolled_back", "restored") for r in history)
    ended = (state == "superseded" or (state in ("rolled_back", "restored") and undone)
             or (not undoing and state == "succeeded" and verdict == "recovered")
             or (not undoing and state == "failed" and verdict in ("unchanged", "worse")))
    if not ended and not is_unfinished(last):
        trial.unverified += 1
        trial.violations.append(f"change never verified or undone: {where} ended {state} "
                                f"({last['note'][:120]!r}) with its change in place")
    spec = world.spec(workload)
    if state == "rolled_back" and undone and spec != applies[0].spec_before:
        trial.violations.append(f"journal and cluster disagree: {where} says undone, the cluster has {spec}")
    if state == "succeeded" and spec != applies[0].spec_after:
        trial.violations.append(f"journal and cluster disagree: {where} says succeeded, the cluster has {spec}")
    return len(applies)


# --- driving the agent --------------------------------------------------------------------------------------------

def settle(world: World, under_test: AgentUnderTest) -> None:
    """The agent's own poll (``resume_pending``, every ``POLL_SECONDS`` of sim time) until nothing is unfinished."""
    for _ in range(MAX_POLLS):
        if not under_test.journal.unfinished():
            return
        world.sim.advance(POLL_SECONDS)
        under_test.agent.resume_pending()


def run_plan(under_test: AgentUnderTest, plan) -> BaseException | None:
    """Run ``plan`` as the worker would; what it raised (a crash, an unwritable journal), if anything."""
    try:
        under_test.runner.run(plan, BEFORE)
    except (Exception, Crash) as exc:  # noqa: BLE001 - the worker logs it and carries on; the bench looks at the end
        return exc
    return None


def handled_again_if_never_started(under_test: AgentUnderTest, plan) -> None:
    """A plan with no journal record at all was never started: its incident was deferred and is handled again."""
    if not under_test.journal.history(plan.id):
        run_plan(under_test, plan)


@dataclass
class Steps:
    """What one clean run of the plan did: journal records, API writes, leader checks."""

    records: int
    writes: int
    leader_checks: int


class CountingLeader:
    """The gate's leader check (``WriteGate(leader=...)``): "not the leader" on the calls ``down`` says, else
    leading; counts its calls."""

    def __init__(self, down: Callable[[int], bool] = lambda n: False) -> None:
        self.down = down
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self) -> str | None:
        with self._lock:
            self.calls += 1
            n = self.calls
        return "not the leader (lease taken by another replica)" if self.down(n) else None


def clean_steps(folder: Path, outcome: str, seed: int) -> Steps:
    world = World(folder, seed=seed)
    try:
        under_test = world.agent(outcome)
        leader = CountingLeader()
        under_test.runner.gate._leader = leader  # noqa: SLF001 - the leader callable build_parts gave the gate
        run_plan(under_test, world.plan("inc-clean"))
        return Steps(under_test.journal.written, len(world.tap.writes), leader.calls)
    finally:
        world.close()


def crash_trial(folder: Path, outcome: str, seed: int, at: str, n: int) -> Trial:
    world = World(folder, seed=seed)
    try:
        first = world.agent(outcome)
        if at == "record":
            first.journal.crash_after = n
        else:
            first.kube.crash_after = n
        plan = world.plan("inc-crash")
        raised = run_plan(first, plan)
        trial = Trial("crash", f"{outcome}: after {at} {n}", outcome)
        if not isinstance(raised, Crash):
            trial.violations.append(f"fault not reached: {trial.point} ({raised!r})")
        world.sim.advance(RESTART_SECONDS)
        restarted = world.agent(outcome)
        restarted.agent.resume_unfinished()  # the start-up hook (Agent's on_elected without leader election)
        settle(world, restarted)
        handled_again_if_never_started(restarted, plan)
        return judge(world, [plan.id], trial)
    finally:
        world.close()


def journal_trial(folder: Path, outcome: str, seed: int, k: int) -> Trial:
    world = World(folder, seed=seed)
    try:
        under_test = world.agent(outcome)
        under_test.journal.full_from = k
        plan = world.plan("inc-journal")
        raised = run_plan(under_test, plan)
        trial = Trial("journal_full", f"{outcome}: ENOSPC from write {k}", outcome)
        if raised is None:
            trial.violations.append(f"fault not reached: {trial.point}")
        under_test.journal.full_from = None
        under_test.agent.journal_guard.check()  # what /readyz runs: the probe finds room, the hooks resume
        for thread in [t for t in threading.enumerate() if t.name == RESUME_THREAD]:
            thread.join(30)
        settle(world, under_test)
        handled_again_if_never_started(under_test, plan)
        settle(world, under_test)
        return judge(world, [plan.id], trial)
    finally:
        world.close()


def hang_trial(folder: Path, outcome: str, seed: int, mode: str, n: int) -> Trial:
    world = World(folder, seed=seed)
    try:
        under_test = world.agent(outcome)
        world.tap.hang(n, mode)
        plan = world.plan("inc-hang")
        run_plan(under_test, plan)
        trial = Trial("api_hang", f"{outcome}: write {n} {mode}", outcome)
        if world.tap.hung != 1:
            trial.violations.append(f"fault not reached: {trial.point}")
        world.tap.hang(None)
        settle(world, under_test)
        return judge(world, [plan.id], trial)
    finally:
        world.close()


def leader_trial(folder: Path, outcome: str, seed: int, how: str, n: int) -> Trial:
    world = World(folder, seed=seed)
    try:
        first = world.agent(outcome)
        leader = CountingLeader((lambda c: c == n) if how == "blip" else (lambda c: c >= n))
        first.runner.gate._leader = leader  # noqa: SLF001 - the leader callable build_parts gave the gate
        plan = world.plan("inc-leader")
        run_plan(first, plan)
        trial = Trial("leader_flap", f"{outcome}: {how} at check {n}", outcome)
        if leader.calls < n:
            trial.violations.append(f"fault not reached: {trial.point}")
        if how == "blip":
            settle(world, first)
        else:
            world.sim.advance(POLL_SECONDS)
            second = world.agent(outcome)  # won the Lease: resumes what the journal shows unfinished
            second.agent.resume_unfinished()
            first.agent.resume_pending()   # the old leader's poll still runs; its gate refuses every write
            settle(world, second)
            first.agent.resume_pending()
        return judge(world, [plan.id], trial)
    finally:
        world.close()


def plan_rows(folder: Path, seed: int, smoke: bool) -> dict[str, list[Trial]]:
    """Rows 1-4, every step of the plan for both outcomes (``smoke``: every third step, the worse outcome only:
    the rolled_back record, the audit Event after the patch, the undo patch, the undo's leader check)."""
    rows: dict[str, list[Trial]] = {"crash": [], "journal_full": [], "api_hang": [], "leader_flap": []}
    counter = iter(range(1_000_000))

    def fresh() -> Path:
        path = folder / f"t{next(counter)}"
        path.mkdir(parents=True)
        return path

    for outcome in (("worse",) if smoke else OUTCOMES):
        steps = clean_steps(fresh(), outcome, seed)
        pick = (lambda n: range(3, n + 1, 3)) if smoke else (lambda n: range(1, n + 1))
        for at, count in (("record", steps.records), ("write", steps.writes)):
            rows["crash"] += [crash_trial(fresh(), outcome, seed, at, n) for n in pick(count)]
        rows["journal_full"] += [journal_trial(fresh(), outcome, seed, k) for k in pick(steps.records)]
        for mode in (NEVER_LANDS, ANSWER_LOST):
            rows["api_hang"] += [hang_trial(fresh(), outcome, seed, mode, n) for n in pick(steps.writes)]
        for how in ("blip", "lost"):
            rows["leader_flap"] += [leader_trial(fresh(), outcome, seed, how, n)
                                    for n in pick(steps.leader_checks)]
    return rows
