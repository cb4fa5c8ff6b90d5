"""A write whose answer never came (issue #13, found by the fault-injection bench, bench/faults.py row 3): the
apiserver hangs on one write past the agent's request timeout, either dropping it or making it and losing the
answer. The plan must not end ``failed`` with its change in place and never verified: a change that landed is
verified (and undone if need be), one that did not is still owed (the plan stays resumable), and the next resume
finishes it without doing anything twice. Same for the undo.

On the agent's own wiring (``build_parts``) and the simulator behind the real client, with the simulated API server
hanging for real (``bench.fault_world.tap_server``): the client's own timeout fires.
"""

from __future__ import annotations

import pytest

from aiops.clients.kube import KubeClient
from aiops.remediate.journal import UNDONE_FLAG
from aiops.remediate.runner import OUTCOME_UNKNOWN
from bench.fault_world import ANSWER_LOST, NEVER_LANDS, REQUEST_TIMEOUT, tap_server
from tests.test_remediate_gate import BEFORE
from tests.test_remediate_gate_paths import BAD, GOOD, Probe, Sim, plan_for, states


@pytest.fixture
def sim():
    sim = Sim()
    sim.tap = tap_server(sim.server)  # every write request of the API server passes the tap
    sim.kube.close()
    sim.kube = KubeClient.for_host(sim.server.url, request_timeout=REQUEST_TIMEOUT)
    yield sim
    sim.close()


def applies(sim, plan) -> int:
    return len(sim.tap.writes_by(plan.id, "apply"))


# The apply patch is the first patch; the action's audit Event after it is the second create (the first is the
# ``executing`` transition's Event).
LANDED_BUT_NO_ANSWER = [("patch", 1, ANSWER_LOST), ("create", 2, NEVER_LANDS)]


@pytest.mark.parametrize("verb, nth, mode", LANDED_BUT_NO_ANSWER, ids=["patch-answer-lost", "audit-event-hung"])
def test_a_change_that_landed_without_an_answer_is_verified_not_failed(sim, tmp_path, verb, nth, mode):
    runner = sim.runner(tmp_path, Probe(GOOD))
    plan = plan_for()
    sim.tap.hang(nth, mode, only=verb)

    runner.run(plan, BEFORE)

    assert sim.tap.hung == 1 and sim.replicas() == 4
    assert states(runner.store, plan)[-1] == "succeeded", "it used to end failed, its change never verified"
    assert runner.store.unfinished() == [] and applies(sim, plan) == 1


def test_a_change_that_landed_without_an_answer_and_made_things_worse_is_undone(sim, tmp_path):
    runner = sim.runner(tmp_path, Probe(BAD))
    plan = plan_for()
    sim.tap.hang(1, ANSWER_LOST, only="patch")

    runner.run(plan, BEFORE)

    last = runner.store.history(plan.id)[-1]
    assert last["state"] == "rolled_back" and last["data"].get(UNDONE_FLAG), "it used to stay at 4, failed"
    assert sim.replicas() == 2


def test_a_change_that_never_landed_stays_owed_and_the_next_resume_makes_it_once(sim, tmp_path):
    runner = sim.runner(tmp_path, Probe(GOOD))
    plan = plan_for()
    sim.tap.hang(1, NEVER_LANDS, only="patch")

    runner.run(plan, BEFORE)

    assert sim.replicas() == 2 and states(runner.store, plan)[-1] == "executing"
    assert runner.store.unfinished() == [plan.id], "a timeout is no answer: the write may still land"
    sim.tap.hang(1, NEVER_LANDS, only="patch")  # the apiserver still hangs at the first resume
    runner.resume_unfinished()
    assert sim.replicas() == 2 and runner.store.unfinished() == [plan.id]
    assert [r["data"][OUTCOME_UNKNOWN] for r in runner.store.history(plan.id) if r["data"].get(OUTCOME_UNKNOWN)] \
        == ["apply", "apply"], "each try says why the plan is still executing"

    runner.resume_unfinished()  # the apiserver answers again

    assert states(runner.store, plan)[-1] == "succeeded" and sim.replicas() == 4
    assert applies(sim, plan) == 1 and runner.store.unfinished() == []


def test_an_undo_that_landed_without_an_answer_is_recorded_as_done(sim, tmp_path):
    runner = sim.runner(tmp_path, Probe(BAD))
    plan = plan_for()
    sim.tap.hang(2, ANSWER_LOST, only="patch")  # the second patch is the undo

    runner.run(plan, BEFORE)

    last = runner.store.history(plan.id)[-1]
    assert last["state"] == "rolled_back" and last["data"].get(UNDONE_FLAG), "it used to end failed"
    assert sim.replicas() == 2 and runner.store.unfinished() == []


def test_an_undo_that_never_landed_stays_owed_and_the_next_resume_undoes_it(sim, tmp_path):
    runner = sim.runner(tmp_path, Probe(BAD))
    plan = plan_for()
    sim.tap.hang(2, NEVER_LANDS, only="patch")

    runner.run(plan, BEFORE)

    assert sim.replicas() == 4, "the undo did not land"
    assert states(runner.store, plan)[-1] == "rolled_back" and runner.store.unfinished() == [plan.id], \
        "still owed (it used to end failed with the harmful change in place)"

    runner.resume_unfinished()

    assert sim.replicas() == 2 and runner.store.history(plan.id)[-1]["data"].get(UNDONE_FLAG)
    assert len(sim.tap.writes_by(plan.id, "undo")) == 1 and runner.store.unfinished() == []
