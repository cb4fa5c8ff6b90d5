"""Hostile review of issue #13's change: paths around the write gate found by trying to make the agent act when it
must not, act on a stale approval, or leave a change unverified. Each test failed on the code before its fix.

Uses the gate tests' rig (simulator through the real client, ``tests/test_remediate_gate.py``).
"""

from __future__ import annotations

from aiops.clients.kube import KubeError
from aiops.remediate.journal import is_unfinished
from aiops.remediate.runner import approve
from tests.test_remediate_gate import BEFORE, NAME, NS, RECOVERED, WORSE, Probe, Rig, make_plan, rig  # noqa: F401


def _states(rig: Rig, plan) -> list[tuple[str, str]]:
    return [(r["state"], r["note"]) for r in rig.journal.history(plan.id)]


# --- approvals: one approval is good for the one request it answered ------------------------------------------

def test_an_approval_of_an_earlier_request_does_not_approve_the_plan_held_again(rig):
    """alice approved; the kill switch then ended the request ``blocked``. The same incident held the same plan
    again (same plan id): the old approval, given before a person stopped the agent, must not start it."""
    plan = make_plan()
    runner = rig.runner(Probe(RECOVERED))
    runner.hold_for_approval(plan, BEFORE, None, "needs a person")
    approve(rig.journal, plan.id, "alice", rig.clock.now())
    rig.set_policy(kill_switch=True)
    runner.resume_approved()
    assert rig.journal.history(plan.id)[-1]["state"] == "blocked"
    rig.set_policy(kill_switch=False)
    rig.sleep(60)

    runner.hold_for_approval(plan, BEFORE, None, "needs a person")  # the incident came back: held again
    rig.spy.writes.clear()
    rig.runner(Probe(RECOVERED)).resume_approved()

    assert rig.spy.writes == [], _states(rig, plan)
    assert rig.journal.history(plan.id)[-1]["state"] == "awaiting_approval", _states(rig, plan)


def test_a_request_held_again_gets_its_own_approval_time(rig):
    """The request held again long after the first one expired is not born expired: it waits for a person."""
    plan = make_plan()
    runner = rig.runner(Probe(RECOVERED))
    runner.hold_for_approval(plan, BEFORE, None, "needs a person")
    rig.sleep(runner.approval_ttl_seconds + 60)
    runner.resume_approved()
    assert rig.journal.history(plan.id)[-1]["data"]["reason"] == "approval_expired"

    runner.hold_for_approval(plan, BEFORE, None, "needs a person")
    runner.resume_approved()
    assert rig.journal.history(plan.id)[-1]["state"] == "awaiting_approval", _states(rig, plan)
    approve(rig.journal, plan.id, "bob", rig.clock.now())
    runner.resume_approved()
    assert rig.journal.history(plan.id)[-1]["state"] == "succeeded", _states(rig, plan)


# --- a change that landed is always verified (and undone when worse) ------------------------------------------

class EventsFail:
    """The client with audit Events refused by the apiserver (a quota, an admission webhook, a timeout)."""

    def __init__(self, kube) -> None:
        self._kube = kube

    def __getattr__(self, name):
        return getattr(self._kube, name)

    def create_event(self, namespace, event):
        raise KubeError(500, "InternalError", "events are failing")


def test_a_failed_audit_event_after_the_patch_does_not_leave_the_change_unverified(rig):
    """The scale landed, then the audit Event failed: the plan must still be verified and, worse, undone; not end
    ``failed`` with 4 replicas and nobody to take them back."""
    plan = make_plan()
    rig.spy._kube = EventsFail(rig.kube)
    rig.runner(Probe(WORSE)).run(plan, BEFORE)

    replicas = rig.kube.get_deployment(NS, NAME)["spec"]["replicas"]
    last = rig.journal.history(plan.id)[-1]
    assert replicas == 2, _states(rig, plan)
    assert last["state"] == "rolled_back" and not is_unfinished(last), _states(rig, plan)
