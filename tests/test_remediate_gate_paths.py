"""Issue #13's side paths, each as it was reproduced, on the agent's own wiring (``build_parts``) and the simulator:
resume under the kill switch, leadership lost mid-plan, two plans on one workload, approvals that outlived their
world, the approval gate's checks, an approved plan's intended change, a journal failing after the patch, a
leadership flap, and the restore watch. Each test failed on the code before the write gate."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from aiops.clients.kube import KubeClient
from aiops.domain.plans import ActionPlan, Mode, plan_id
from aiops.domain.target import Target
from aiops.remediate.facts import KILL_SWITCH_ANNOTATION
from aiops.remediate.journal import MemoryJournal
from aiops.remediate.machine import PlanExecution
from aiops.remediate.runner import PlaybookRunner, approve
from aiops.remediate.verify import Verifier
from aiops.serve.agent import build_parts
from aiops.settings import KubernetesSettings, LeaderElectionSettings, PolicySettings, Settings, WebhookSettings
from aiops.sim.clock import SimClock
from aiops.sim.cluster import SimCluster
from aiops.sim.kubeapi import KubeApiServer
from tests.support.polling import wait_until
from tests.test_remediate_gate import (BEFORE, ML, ML_BEFORE, ML_CALM, ML_RECOVERED, NAME, NS, PLAYBOOKS, T0, TARGET,
                                       Crash, Probe)

ROOT = Path(__file__).resolve().parent.parent
GOOD = {"latency_p99": 0.1, "error_ratio": 0.001, "restarts": 0.0}
BAD = {"latency_p99": 9.0, "error_ratio": 0.9, "restarts": 5.0}
BAD_IMAGE = "registry.local/cart:1.1-bad"


class Sim:
    """The simulated cluster behind the agent's real client, on simulated time."""

    def __init__(self) -> None:
        self.clock = SimClock(T0)
        self.cluster = SimCluster(self.clock)
        self.cluster.add_deployment(NS, NAME, replicas=2)
        self.cluster.add_deployment(ML, "llm", replicas=2, pod_labels={"model-group": "llm"})
        self.cluster.add_deployment(ML, "llm-small", replicas=1, pod_labels={"model-group": "llm"})
        self.server = KubeApiServer(self.cluster).start()
        self.kube = KubeClient.for_host(self.server.url)

    def sleep(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.cluster.tick()

    def close(self) -> None:
        self.kube.close()
        self.server.stop()

    def runner(self, tmp_path, probe: Probe, journal=None, mode: Mode = Mode.ACT, namespaces=(NS, ML),
               **settings) -> PlaybookRunner:
        """The runner ``build_parts`` wires for an agent with these settings, verifying with ``probe``."""
        # Loopback intake (an act-mode agent refuses an open webhook) and a request bound inside the tests' Lease
        # gap (1 s): what the settings now require; the client the runner gets is ``self.kube`` all the same.
        config = Settings(mode=mode, webhook=WebhookSettings(listen="127.0.0.1:0"),
                          kubernetes=KubernetesSettings(host=self.server.url, namespaces=namespaces,
                                                        request_timeout_seconds=0.5),
                          state_dir=tmp_path / "state", **settings)
        parts = build_parts(config, kube=self.kube, clock=self.clock, sleep=self.sleep,
                            journal=journal if journal is not None else MemoryJournal(self.clock))
        runner = parts.pipeline.runner
        runner.verifier = Verifier(probe, self.sleep, self.clock)
        runner.parts = parts  # type: ignore[attr-defined]  (kept for the election)
        return runner

    def replicas(self, namespace: str = NS, name: str = NAME) -> int:
        return int(self.kube.get_deployment(namespace, name)["spec"]["replicas"])

    def image(self) -> str:
        return self.kube.get_deployment(NS, NAME)["spec"]["template"]["spec"]["containers"][0]["image"]

    def deploy(self, image: str) -> None:
        dep = self.kube.get_deployment(NS, NAME)
        containers = dep["spec"]["template"]["spec"]["containers"]
        containers[0]["image"] = image
        self.kube.patch_deployment(NS, NAME, {"spec": {"template": {"spec": {"containers": containers}}}})
        for _ in range(6):
            self.sleep(5)

    def kill_switch(self, namespace: str = NS) -> None:
        self.kube._call(self.kube._core.patch_namespace, namespace,
                        {"metadata": {"annotations": {KILL_SWITCH_ANNOTATION: "true"}}})


@pytest.fixture
def sim():
    sim = Sim()
    yield sim
    sim.close()


def plan_for(playbook: str = "scale-up", incident: str = "inc-1", target: Target = TARGET) -> ActionPlan:
    book = PLAYBOOKS[playbook]
    return ActionPlan(plan_id(incident, playbook, target), incident, playbook, book.action, target,
                      dict(book.params), Mode.ACT, "paths test")


def states(journal, plan) -> list[str]:
    return [r["state"] for r in journal.history(plan.id)]


def notes(journal, plan) -> list[str]:
    return [r["note"] for r in journal.history(plan.id)]


def journal_executing(runner: PlaybookRunner, plan: ActionPlan) -> None:
    """What an agent killed right after journaling ``executing`` leaves (the patch not made)."""
    intended = runner.actions[plan.action].apply(plan, dry_run=True)
    PlanExecution(plan, runner.store, runner.clock).start(
        note="applying", data={"before": BEFORE, "baseline": {}, "intended": intended.as_dict()})


# --- 1. resume skipped the guards -------------------------------------------------------------------------------

def test_resume_of_an_executing_plan_under_the_namespace_kill_switch_does_not_scale(sim, tmp_path):
    runner = sim.runner(tmp_path, Probe(GOOD))
    plan = plan_for()
    journal_executing(runner, plan)
    sim.kill_switch()

    runner.resume_unfinished()

    assert sim.replicas() == 2, "the kill switch holds on the resume path too (it used to scale 2 -> 4)"
    last = runner.store.history(plan.id)[-1]
    assert last["state"] == "superseded" and last["data"]["reason"] == "kill_switch"
    assert "nothing had been changed" in last["note"] and runner.store.unfinished() == []


def test_a_resumed_undo_under_the_kill_switch_leaves_the_change_to_the_person(sim, tmp_path):
    runner = sim.runner(tmp_path, Probe(BAD))
    plan = plan_for()

    def die(*args, **kwargs):
        raise Crash()
    runner.actions["scale"].undo = die
    with pytest.raises(Crash):  # acted (2 -> 4), found it worse, journaled rolled_back, died before the undo
        runner.run(plan, BEFORE)
    assert sim.replicas() == 4 and states(runner.store, plan)[-1] == "rolled_back"
    sim.kill_switch()

    restarted = sim.runner(tmp_path, Probe(BAD), journal=runner.store)
    restarted.resume_unfinished()

    assert sim.replicas() == 4, "a person pulled the kill switch: the agent does not undo over them"
    assert states(runner.store, plan)[-1] == "superseded" and runner.store.unfinished() == []


# --- 3. leadership lost while verifying -------------------------------------------------------------------------

def test_an_undo_refused_for_leadership_stays_resumable_and_the_next_leader_undoes_it(sim, tmp_path):
    election = LeaderElectionSettings(enabled=True, namespace=NS, identity="agent-a", lease_duration_seconds=8,
                                      renew_deadline_seconds=3, retry_period_seconds=1)
    journal = MemoryJournal(sim.clock)
    plan = plan_for()
    holder = {}

    def lose_the_lease(n: int) -> None:
        if n == 0:
            holder["a"].parts.election.release()  # the Lease is gone while the plan verifies

    runner = sim.runner(tmp_path, Probe(BAD, hook=lose_the_lease), journal=journal, leader_election=election)
    holder["a"] = runner
    assert runner.parts.election.step() is True

    runner.run(plan, BEFORE)

    assert sim.replicas() == 4, "the undo was refused: this agent no longer leads"
    # Not failed, and no verdict journaled by an agent that no longer leads: the next leader verifies and undoes.
    assert states(journal, plan)[-1] == "verifying" and journal.unfinished() == [plan.id], \
        "not failed: the next leader must be able to undo it"
    other = election.model_copy(update={"identity": "agent-b"})
    nxt = sim.runner(tmp_path / "b", Probe(BAD), journal=journal, leader_election=other)
    assert nxt.parts.election.step() is True
    nxt.resume_unfinished()
    assert sim.replicas() == 2 and journal.history(plan.id)[-1]["data"].get("undone")
    assert journal.unfinished() == []


# --- 6. two plans on one workload; approvals expire and act only on what was shown ------------------------------

def test_two_approved_rollbacks_of_one_deployment_roll_back_once(sim, tmp_path):
    sim.deploy(BAD_IMAGE)
    runner = sim.runner(tmp_path, Probe(GOOD))
    first, second = plan_for("rollback-deploy", "inc-1"), plan_for("rollback-deploy", "inc-2")
    for plan in (first, second):
        runner.hold_for_approval(plan, BEFORE, None, "needs a person")
        approve(runner.store, plan.id, "alice", sim.clock.now())

    runner.resume_approved()

    assert sim.image() == "registry.local/cart:1.0", "rolled back once (it used to roll forward to the bad image)"
    assert states(runner.store, first)[-1] == "succeeded"
    last = runner.store.history(second.id)[-1]
    assert last["state"] == "blocked" and last["data"]["reason"] == "cooldown"


def test_an_approval_for_another_revision_than_shown_is_stale(sim, tmp_path):
    sim.deploy(BAD_IMAGE)
    runner = sim.runner(tmp_path, Probe(GOOD))
    plan = plan_for("rollback-deploy")
    runner.hold_for_approval(plan, BEFORE, None, "needs a person")
    assert "would roll back" in notes(runner.store, plan)[0]
    sim.deploy("registry.local/cart:1.2-hotfix")  # a person shipped a fix while the request waited
    approve(runner.store, plan.id, "alice", sim.clock.now())

    runner.resume_approved()

    assert sim.image() == "registry.local/cart:1.2-hotfix"
    last = runner.store.history(plan.id)[-1]
    assert last["state"] == "blocked" and last["data"]["reason"] == "stale_approval"
    assert "1.2-hotfix" in last["note"]


def test_approval_requests_expire(sim, tmp_path):
    runner = sim.runner(tmp_path, Probe(GOOD), policy=PolicySettings(approval_ttl_seconds=1800))
    approved, waiting = plan_for("scale-up", "inc-1"), plan_for("restart-workload", "inc-2")
    runner.hold_for_approval(approved, BEFORE, None, "needs a person")
    runner.hold_for_approval(waiting, BEFORE, None, "needs a person")
    sim.clock.advance(3600)
    approve(runner.store, approved.id, "alice", sim.clock.now())

    runner.resume_approved()

    assert sim.replicas() == 2
    for plan in (approved, waiting):
        last = runner.store.history(plan.id)[-1]
        assert last["state"] == "blocked" and last["data"]["reason"] == "approval_expired"
    assert runner.store.unfinished() == []


def test_the_worker_and_an_approval_never_act_on_one_target_together(sim, tmp_path):
    inside, release = threading.Event(), threading.Event()

    def hold_the_worker(n: int) -> None:
        if threading.current_thread().name == "worker" and n == 0:
            inside.set()
            release.wait(10)

    runner = sim.runner(tmp_path, Probe(GOOD, hook=hold_the_worker))
    waiting = plan_for("restart-workload", "inc-2")
    runner.hold_for_approval(waiting, BEFORE, None, "needs a person")
    approve(runner.store, waiting.id, "alice", sim.clock.now())
    generation = sim.kube.get_deployment(NS, NAME)["metadata"]["generation"]
    worker = threading.Thread(target=runner.run, args=(plan_for("scale-up", "inc-1"), BEFORE), name="worker")
    worker.start()
    try:
        assert inside.wait(10), "the worker's plan is verifying"
        assert runner.resume_approved() == []
        assert states(runner.store, waiting)[-1] == "awaiting_approval", "waits while the target is busy"
        assert sim.kube.get_deployment(NS, NAME)["spec"]["replicas"] == 4
        assert sim.kube.get_deployment(NS, NAME)["metadata"]["generation"] == generation + 1
    finally:
        release.set()
        worker.join(30)
    runner.resume_approved()
    assert "executing" in states(runner.store, waiting), "the target is free again: the approved restart runs"
    assert sim.kube.get_deployment(NS, NAME)["metadata"]["generation"] == generation + 2


# --- 7. the approval gate's checks: the agent's current mode and scope ------------------------------------------

@pytest.mark.parametrize("setting, reason", [({"mode": Mode.DRY_RUN}, "dry_run"),
                                             ({"namespaces": ("elsewhere",)}, "out_of_scope")])
def test_an_approved_plan_passes_the_agents_current_mode_and_scope(sim, tmp_path, setting, reason):
    journal = MemoryJournal(sim.clock)
    plan = plan_for()
    sim.runner(tmp_path, Probe(GOOD), journal=journal).hold_for_approval(plan, BEFORE, None, "needs a person")
    approve(journal, plan.id, "alice", sim.clock.now())
    restarted = sim.runner(tmp_path, Probe(GOOD), journal=journal, **setting)  # the agent restarted reconfigured

    restarted.resume_approved()

    assert sim.replicas() == 2
    last = journal.history(plan.id)[-1]
    assert last["state"] == "blocked" and last["data"]["reason"] == reason


# --- 8. an approved plan journals its intended change before the patch ------------------------------------------

def test_an_approved_plan_that_crashes_after_its_patch_is_still_undone(sim, tmp_path):
    journal = MemoryJournal(sim.clock)
    plan = plan_for()
    runner = sim.runner(tmp_path, Probe(GOOD), journal=journal)
    runner.hold_for_approval(plan, BEFORE, None, "needs a person")
    approve(journal, plan.id, "alice", sim.clock.now())
    scale = runner.actions["scale"]
    real_apply = scale.apply

    def apply_then_die(plan, dry_run):
        change = real_apply(plan, dry_run)
        if not dry_run:
            raise Crash()
        return change
    scale.apply = apply_then_die
    with pytest.raises(Crash):
        runner.resume_approved()
    assert sim.replicas() == 4
    started = next(r for r in journal.history(plan.id) if r["state"] == "executing")
    assert started["data"]["intended"]["after"] == {"replicas": 4}

    sim.runner(tmp_path, Probe(BAD), journal=journal).resume_unfinished()

    assert sim.replicas() == 2, "worse: undone from the intended change the approval path journaled"
    assert journal.history(plan.id)[-1]["data"].get("undone")


# --- 11a. a leadership flap: the take-over resume beside the worker's own run ----------------------------------

def test_the_take_over_resume_never_runs_a_plan_the_worker_is_running(sim, tmp_path):
    inside, release = threading.Event(), threading.Event()

    def hold_the_worker(n: int) -> None:
        if threading.current_thread().name == "worker":
            inside.set()
            release.wait(10)

    journal = MemoryJournal(sim.clock)
    runner = PlaybookRunner(sim.kube, journal, Verifier(Probe(GOOD, hook=hold_the_worker), sim.sleep, sim.clock),
                            PLAYBOOKS, sim.clock)
    plan = plan_for()
    worker = threading.Thread(target=runner.run, args=(plan, BEFORE), name="worker")
    worker.start()
    try:
        assert inside.wait(10)
        assert runner.resume_unfinished() == [], "the plan is the worker's: the resume leaves it"
    finally:
        release.set()
        worker.join(30)
    assert states(journal, plan) == ["executing", "verifying", "succeeded"]
    assert not any("resumed" in n for n in notes(journal, plan))
    assert sim.replicas() == 4


# --- 14a. the restore watch: off the resume path, and through the gate -------------------------------------------

def degrade_plan() -> ActionPlan:
    return plan_for("degrade-model", target=Target.deployment(ML, "llm"))


def test_a_resumed_restore_watch_runs_off_the_resume_path(sim, tmp_path):
    journal = MemoryJournal(sim.clock)
    first = sim.runner(tmp_path, Probe(*([ML_RECOVERED] * 4)), journal=journal)
    first.restore_watch = [].append  # the agent died before its watch ran
    plan = degrade_plan()
    assert first.run(plan, ML_BEFORE).state.value == "succeeded"

    restarted = sim.runner(tmp_path, Probe(ML_CALM), journal=journal)
    watches = []
    restarted.restore_watch = watches.append
    probe = restarted.verifier._probe  # noqa: SLF001 - the probe the watch reads
    restarted.resume_unfinished()

    assert len(watches) == 1 and probe.calls == 0, "the resume returned without watching (the take-over goes on)"
    watches[0]()
    assert states(journal, plan)[-2:] == ["restored", "restored"] and journal.unfinished() == []


def test_the_restore_is_not_done_once_the_kill_switch_is_on(sim, tmp_path):
    plan = degrade_plan()
    probe = Probe(*([ML_RECOVERED] * 4 + [ML_CALM]), hook=lambda n: n == 4 and sim.kill_switch(ML))
    runner = sim.runner(tmp_path, probe)

    runner.run(plan, ML_BEFORE)

    assert sim.kube.get_service(ML, "llm")["spec"]["selector"] == {"model-group": "llm"}, "the mitigation stays"
    last = runner.store.history(plan.id)[-1]
    assert last["state"] == "superseded" and last["data"]["reason"] == "kill_switch"


# --- 9. a journal write failing after the patch -----------------------------------------------------------------

class FlakyJournal(MemoryJournal):
    """Refuses to record ``fail_state`` while ``failing`` (like a full disk), and says so when probed."""

    def __init__(self, clock, fail_state: str) -> None:
        super().__init__(clock)
        self.fail_state = fail_state
        self.failing = True

    def record(self, plan_id, state, note, data):
        if self.failing and state == self.fail_state:
            raise OSError(28, "No space left on device")
        super().record(plan_id, state, note, data)

    def probe_writable(self) -> None:
        if self.failing:
            raise OSError(28, "No space left on device")


def test_a_plan_whose_journal_failed_after_the_patch_is_verified_once_the_journal_is_back(sim, tmp_path):
    from aiops.serve.agent import Agent

    journal = FlakyJournal(sim.clock, "verifying")
    runner = sim.runner(tmp_path, Probe(BAD), journal=journal)
    agent = Agent(runner.parts)  # wires the journal guard and its recovery hooks around the runner
    plan = plan_for()
    with pytest.raises(Exception, match="journal"):
        runner.run(plan, BEFORE)
    assert sim.replicas() == 4 and states(journal, plan) == ["executing"]

    journal.failing = False
    assert agent.journal_guard.check() is None  # what /readyz does: the probe finds the journal writable

    wait_until(lambda: journal.unfinished() == [], 10, "the plan left executing to be verified")
    assert states(journal, plan)[-1] == "rolled_back" and sim.replicas() == 2, "verified, worse, undone"
    assert journal.in_flight() == [], "no concurrency slot held"
    agent.readiness.close()


# --- the same plan after its cooldown ----------------------------------------------------------------------------

def test_a_plan_that_acted_and_ended_is_not_run_again_after_its_cooldown(sim, tmp_path):
    runner = sim.runner(tmp_path, Probe(BAD))
    plan = plan_for()
    assert runner.run(plan, BEFORE).state.value == "rolled_back" and sim.replicas() == 2
    ended = runner.store.history(plan.id)
    for _ in range(20):
        sim.sleep(60)  # past the 900 s cooldown: the same incident's plan comes up again

    again = runner.run(plan, BEFORE)

    assert again.state.value == "rolled_back" and sim.replicas() == 2, "acted once for the incident"
    assert runner.store.history(plan.id) == ended, "not started, verified or journaled again"
