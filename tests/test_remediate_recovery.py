"""Crash recovery, against the real kube-apiserver and the simulator: an executor process is killed at each point
between "decided" and "verified"; a fresh runner on the same SQLite journal resumes, and the cluster is changed
exactly once (2 -> 4 replicas, never 8) with the plan ending where it should."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest

from aiops.domain.plans import ActionPlan, ExecutionState, Mode, plan_id
from aiops.domain.target import Target
from aiops.remediate.actions import PLAN_ANNOTATION
from aiops.remediate.facts import KILL_SWITCH_ANNOTATION
from aiops.remediate.gate import WriteGate
from aiops.remediate.kube_journal import KubeJournal
from aiops.remediate.planner import PlanPolicy
from aiops.sim.clock import WallClock
from aiops.remediate.sqlite_journal import SqliteJournal
from tests.support.crashrun import CRASHED, PLAYBOOK, Probe, runner_for
from tests.test_kube_contract import APP, api, app  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent


def make_plan(target: Target) -> ActionPlan:
    incident = f"inc-{uuid.uuid4().hex[:8]}"
    return ActionPlan(plan_id(incident, PLAYBOOK.name, target), incident, PLAYBOOK.name, "scale", target,
                      dict(PLAYBOOK.params), Mode.ACT, "crash test")


def run_and_crash(kube, journal: Path | str, plan: ActionPlan, point: str, outcome: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tests.support.crashrun", kube.url, getattr(kube, "token", "") or "", str(journal),
         json.dumps(plan.as_dict()), point, outcome], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == CRASHED, f"the executor did not crash at {point}: {proc.stdout}{proc.stderr}"


def replicas(api, target) -> int:
    return int(api.get_deployment(target.namespace, target.name)["spec"]["replicas"])


# (where the executor dies, how the service then behaves, final state, replicas after resuming, journal states)
CRASHES = [
    ("after_decided", "recovered", "succeeded", 4, ["executing", "executing", "verifying", "succeeded"]),
    ("after_patch", "recovered", "succeeded", 4, ["executing", "executing", "verifying", "succeeded"]),
    ("during_verify", "recovered", "succeeded", 4, ["executing", "verifying", "verifying", "succeeded"]),
    ("during_verify", "worse", "rolled_back", 2, ["executing", "verifying", "verifying", "rolled_back",
                                                 "rolled_back"]),
    ("after_rolled_back", "worse", "rolled_back", 2, ["executing", "verifying", "rolled_back", "rolled_back"]),
]


def assert_resumed_once(api, app, journal, plan, outcome, final, replicas_after, states) -> None:
    """A fresh runner resumes the plan from ``journal`` and changes the cluster exactly once; a second resume finds
    nothing to do."""
    assert journal.unfinished() == [plan.id]
    resumed = runner_for(api, journal, Probe(outcome, crash_on_read=False)).resume_unfinished()
    assert [e.state.value for e in resumed] == [final]
    assert replicas(api, app) == replicas_after, "changed exactly once (and undone when it made things worse)"
    assert [r["state"] for r in journal.history(plan.id)] == states
    assert journal.unfinished() == []
    assert runner_for(api, journal, Probe(outcome, crash_on_read=False)).resume_unfinished() == []


@pytest.mark.parametrize("point, outcome, final, replicas_after, states", CRASHES)
def test_a_killed_executor_resumes_without_repeating_or_losing_the_action(
        kube, api, app, tmp_path, point, outcome, final, replicas_after, states):
    journal_path = tmp_path / "journal.sqlite3"
    plan = make_plan(app)
    run_and_crash(kube, journal_path, plan, point, outcome)
    if point in ("after_patch", "during_verify", "after_rolled_back"):
        assert replicas(api, app) == 4, "the patch landed before the crash"
    else:
        assert replicas(api, app) == 2, "nothing was patched before the crash"

    assert_resumed_once(api, app, SqliteJournal(journal_path), plan, outcome, final, replicas_after, states)
    deployment = api.get_deployment(app.namespace, app.name)
    assert deployment["metadata"]["annotations"][PLAN_ANNOTATION] == plan.id


def test_two_agents_running_the_same_plan_at_once_change_the_cluster_once(api, app, tmp_path):
    plan = make_plan(app)
    results = []

    def agent(n: int) -> None:
        journal = SqliteJournal(tmp_path / f"journal-{n}.sqlite3")
        results.append(runner_for(api, journal, Probe("recovered", crash_on_read=False)).run(plan, {"latency_p99": 1.0}))

    threads = [threading.Thread(target=agent, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert replicas(api, app) == 4
    assert sorted(e.state.value for e in results) == ["succeeded", "succeeded"]
    assert sum(c.applied for e in results for c in e.changes) == 1, "one agent patched, the other found it done"


@pytest.mark.parametrize("point, outcome, final, replicas_after, states",
                         [c for c in CRASHES if c[0] != "after_rolled_back"])
def test_a_killed_executor_is_resumed_from_the_journal_in_the_kubernetes_api(
        kube, api, app, point, outcome, final, replicas_after, states):
    """The executor journals to ConfigMaps and dies; a fresh runner, sharing only the apiserver with it (as a new
    leader does), resumes the plan and changes the cluster exactly once."""
    plan = make_plan(app)
    run_and_crash(kube, f"kube:{app.namespace}", plan, point, outcome)
    assert_resumed_once(api, app, KubeJournal(api, app.namespace), plan, outcome, final, replicas_after, states)


# --- the write gate on the resume path (issue #13) --------------------------------------------------------------

def agent_gate(api, journal, namespace: str, leader=None) -> WriteGate:
    """The gate an agent acting in ``namespace`` writes through (``aiops.serve.agent.write_gate``)."""
    return WriteGate(journal, WallClock(), PlanPolicy(mode=Mode.ACT, namespaces=(namespace,)), cluster=api,
                     leader=leader)


def test_a_killed_executor_is_not_resumed_over_the_namespace_kill_switch(kube, api, app, tmp_path):
    journal_path = tmp_path / "journal.sqlite3"
    plan = make_plan(app)
    run_and_crash(kube, journal_path, plan, "after_decided", "recovered")
    api._call(api._core.patch_namespace, app.namespace, {"metadata": {"annotations": {KILL_SWITCH_ANNOTATION: "true"}}})
    journal = SqliteJournal(journal_path)

    runner_for(api, journal, Probe("recovered", crash_on_read=False),
               agent_gate(api, journal, app.namespace)).resume_unfinished()

    assert replicas(api, app) == 2, "not applied over the kill switch"
    last = journal.history(plan.id)[-1]
    assert last["state"] == "superseded" and last["data"]["reason"] == "kill_switch"
    assert journal.unfinished() == []


def test_an_undo_refused_for_leadership_is_done_by_the_next_leader(api, app, tmp_path):
    journal = SqliteJournal(tmp_path / "journal.sqlite3")
    plan = make_plan(app)
    leading = [True]

    class LosesTheLease(Probe):
        def read(self, namespace, workload, signals):
            leading[0] = False  # the Lease is lost while the plan verifies
            return super().read(namespace, workload, signals)

    gate = agent_gate(api, journal, app.namespace, leader=lambda: None if leading[0] else "not the leader (lost)")
    runner_for(api, journal, LosesTheLease("worse", crash_on_read=False), gate).run(plan, {"latency_p99": 1.0})
    assert replicas(api, app) == 4 and journal.unfinished() == [plan.id]
    # The verdict of an agent no longer leading is not journaled: the next leader verifies again and owns it.
    assert journal.history(plan.id)[-1]["state"] == "verifying"

    runner_for(api, journal, Probe("worse", crash_on_read=False),
               agent_gate(api, journal, app.namespace)).resume_unfinished()
    assert replicas(api, app) == 2 and journal.unfinished() == []
