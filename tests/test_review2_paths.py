"""Second hostile review of issue #13, on the merged tree: paths where two merged changes disagree. Each test failed
on the merged code before its fix.

Uses the gate tests' rig (simulator through the real client, ``tests/test_remediate_gate.py``).
"""

from __future__ import annotations

from aiops.remediate.gate import WriteGate
from aiops.remediate.journal import is_unfinished
from aiops.remediate.runner import PlaybookRunner
from aiops.domain.target import Target
from aiops.remediate.verify import Verifier
from tests.test_remediate_gate import (BEFORE, ML, ML_BEFORE, ML_CALM, ML_RECOVERED, NAME, NS, PLAYBOOKS,  # noqa: F401
                                       RECOVERED, WORSE, Probe, Rig, make_plan,
                                       rig)


def _states(rig: Rig, plan) -> list[tuple[str, str]]:
    return [(r["state"], r["note"]) for r in rig.journal.history(plan.id)]


class DeploymentsDown:
    """Verification's Deployment reads while the apiserver does not answer them (hung, overloaded)."""

    def get_deployment(self, namespace, name):
        raise TimeoutError("read timed out (request_timeout)")


def _runner(rig: Rig, probe: Probe, deployments) -> PlaybookRunner:
    """The rig's runner, with verification waiting for the rollout on ``deployments`` (as the agent's does)."""
    runner = rig.runner(probe)
    runner.verifier = Verifier(probe, rig.sleep, rig.clock, deployments=deployments)
    return runner


# --- verification that could not read the rollout -------------------------------------------------------------

def test_a_change_whose_rollout_could_not_be_read_stays_to_be_verified(rig):
    """The scale landed, then the apiserver stopped answering verification's reads for the rollout timeout. The
    verifier called it "unchanged" (the rollout did not complete) and the plan ended ``failed`` (final) with the
    change in place: never verified, never undone. Like an unreadable probe, it must stay to be verified."""
    plan = make_plan()
    _runner(rig, Probe(WORSE), DeploymentsDown()).run(plan, BEFORE)
    assert rig.kube.get_deployment(NS, NAME)["spec"]["replicas"] == 4
    assert plan.id in rig.journal.unfinished(), _states(rig, plan)

    _runner(rig, Probe(WORSE), rig.kube).resume_unfinished()  # the apiserver answers again
    last = rig.journal.history(plan.id)[-1]
    assert rig.kube.get_deployment(NS, NAME)["spec"]["replicas"] == 2, _states(rig, plan)
    assert last["state"] == "rolled_back" and not is_unfinished(last), _states(rig, plan)


# --- a leader that lost its Lease during the verify window -------------------------------------------------------

def _agent(rig: Rig, probe: Probe, leads) -> PlaybookRunner:
    """One agent process: its own gate (its own claims) on the shared journal and cluster, leading while ``leads()``."""
    gate = WriteGate(rig.journal, rig.clock, rig.policy, cluster=rig.kube,
                     leader=lambda: None if leads() else "not the leader (lease taken by the other agent)")
    return PlaybookRunner(rig.spy, rig.journal, Verifier(probe, rig.sleep, rig.clock), PLAYBOOKS, rig.clock, gate=gate)


def test_a_leader_that_lost_its_lease_while_verifying_does_not_decide_for_the_new_one(rig):
    """Agent A scales and verifies; during its verify window it loses the Lease and B takes over: B resumes the plan,
    verifies it recovered, and ends it ``succeeded``. A's window then ends on worse readings: A journaled
    ``rolled_back`` over B's verdict (its undo refused, not the leader), and B's next poll took back the change B
    had found to help. A verdict reached by an agent no longer leading must not be journaled; the leader owns it."""
    plan = make_plan()
    a_leads = [True]
    b = _agent(rig, Probe(RECOVERED), lambda: not a_leads[0])

    def lease_lost(n: int) -> None:
        if n == 0:
            a_leads[0] = False
            b.resume_unfinished()  # B's take-over, while A still verifies
            assert rig.journal.history(plan.id)[-1]["state"] == "succeeded", _states(rig, plan)

    _agent(rig, Probe(WORSE, hook=lease_lost), lambda: a_leads[0]).run(plan, BEFORE)
    b.resume_unfinished()  # B's poll

    assert rig.kube.get_deployment(NS, NAME)["spec"]["replicas"] == 4, _states(rig, plan)
    assert rig.journal.history(plan.id)[-1]["state"] == "succeeded", _states(rig, plan)


def test_a_restore_watch_that_lost_the_lease_stops_writing_to_the_plan(rig):
    """Agent A's restore watch of a degrade loses the Lease; B takes over, watches, restores and finishes the plan.
    A's watch went on journaling checks (and a postponed restore) in the state it had in memory, ``succeeded`` with
    the restore pending: the record of truth said the plan was unfinished after B restored it, and B restored it a
    second time. An agent no longer leading must stop writing to the plan."""
    plan = make_plan("degrade-model", Target.deployment(ML, "llm"))
    a_leads = [True]
    b = _agent(rig, Probe(ML_CALM), lambda: not a_leads[0])

    def lease_lost(n: int) -> None:
        if n == 5:  # the watch's second check
            a_leads[0] = False
            b.resume_unfinished()  # B's take-over: watches and restores
            assert rig.journal.history(plan.id)[-1]["state"] == "restored", _states(rig, plan)

    _agent(rig, Probe(*([ML_RECOVERED] * 4 + [ML_CALM]), hook=lease_lost), lambda: a_leads[0]).run(plan, ML_BEFORE)

    last = rig.journal.history(plan.id)[-1]
    assert last["state"] == "restored" and plan.id not in rig.journal.unfinished(), _states(rig, plan)
    assert sum(r["state"] == "restored" and bool(r["data"].get("trigger")) for r in rig.journal.history(plan.id)) == 1
