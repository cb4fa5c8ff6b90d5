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


class AnswerLost:
    """The apiserver applies the patch, but its answer never arrives (the bounded call times out)."""

    def __init__(self, kube) -> None:
        self._kube = kube
        self.lost = 0

    def __getattr__(self, name):
        return getattr(self._kube, name)

    def patch_deployment(self, namespace, name, patch):
        self._kube.patch_deployment(namespace, name, patch)
        if self.lost == 0:
            self.lost += 1
            raise TimeoutError("read timed out (request_timeout)")
        return self._kube.get_deployment(namespace, name)


def test_a_patch_that_landed_but_whose_answer_timed_out_is_still_verified_and_undone(rig):
    """A bounded call (#13 defect 10) that times out after the apiserver applied the patch: the plan must not end
    ``failed`` (final) with the change in place; it is verified, and undone when worse."""
    plan = make_plan()
    rig.spy._kube = AnswerLost(rig.kube)
    rig.runner(Probe(WORSE)).run(plan, BEFORE)

    replicas = rig.kube.get_deployment(NS, NAME)["spec"]["replicas"]
    last = rig.journal.history(plan.id)[-1]
    assert replicas == 2, _states(rig, plan)
    assert last["state"] == "rolled_back" and not is_unfinished(last), _states(rig, plan)


class Unreachable(AnswerLost):
    """The patch landed, its answer was lost, and the apiserver stays unreachable for reads after it."""

    def get_deployment(self, namespace, name):
        if self.lost:
            raise TimeoutError("connect timed out")
        return self._kube.get_deployment(namespace, name)


def test_a_patch_whose_outcome_cannot_be_known_stays_resumable(rig):
    """When the agent cannot even read whether its patch landed, the plan stays ``executing`` (resumed later,
    verified then), never ``failed`` with a change nobody verifies."""
    plan = make_plan()
    rig.spy._kube = Unreachable(rig.kube)
    rig.runner(Probe(RECOVERED)).run(plan, BEFORE)
    assert rig.journal.history(plan.id)[-1]["state"] == "executing", _states(rig, plan)
    assert plan.id in rig.journal.unfinished()

    rig.spy._kube = rig.kube  # the apiserver is back: the poll resumes it
    rig.runner(Probe(RECOVERED)).resume_unfinished()
    assert rig.journal.history(plan.id)[-1]["state"] == "succeeded", _states(rig, plan)
    assert rig.kube.get_deployment(NS, NAME)["spec"]["replicas"] == 4


class UndoTimesOut:
    """The apiserver hangs on the undo's patch (the first patch, the plan's own, goes through)."""

    def __init__(self, kube) -> None:
        self._kube = kube
        self.patches = 0

    def __getattr__(self, name):
        return getattr(self._kube, name)

    def patch_deployment(self, namespace, name, patch):
        self.patches += 1
        if self.patches > 1:
            raise TimeoutError("read timed out (request_timeout)")
        return self._kube.patch_deployment(namespace, name, patch)


def test_an_undo_the_apiserver_did_not_answer_is_tried_again_not_given_up(rig):
    """Worse, undoing, and the apiserver times out: the harmful change (4 replicas) is still there. The plan must
    stay resumable so the poll (or the next leader) undoes it, not end ``failed``, a final state nobody resumes."""
    plan = make_plan()
    rig.spy._kube = UndoTimesOut(rig.kube)
    rig.runner(Probe(WORSE)).run(plan, BEFORE)
    assert rig.kube.get_deployment(NS, NAME)["spec"]["replicas"] == 4
    assert plan.id in rig.journal.unfinished(), _states(rig, plan)

    rig.spy._kube = rig.kube
    rig.runner(Probe(WORSE)).resume_unfinished()
    assert rig.kube.get_deployment(NS, NAME)["spec"]["replicas"] == 2, _states(rig, plan)
    assert not is_unfinished(rig.journal.history(plan.id)[-1]), _states(rig, plan)


class ProbeDown(Probe):
    """Prometheus unreachable while the plan verifies."""

    def read(self, namespace, workload, signals):
        raise ConnectionError("prometheus: connection refused")


def test_a_change_whose_verification_could_not_read_stays_to_be_verified(rig):
    """The scale landed, then Prometheus was down for the verify window: the change is unverified. The plan must
    stay resumable (verified, and undone when worse, once the signals can be read), not end ``failed`` with it."""
    plan = make_plan()
    rig.runner(ProbeDown()).run(plan, BEFORE)
    assert rig.kube.get_deployment(NS, NAME)["spec"]["replicas"] == 4
    assert plan.id in rig.journal.unfinished(), _states(rig, plan)

    rig.runner(Probe(WORSE)).resume_unfinished()
    assert rig.kube.get_deployment(NS, NAME)["spec"]["replicas"] == 2, _states(rig, plan)
    assert rig.journal.history(plan.id)[-1]["state"] == "rolled_back", _states(rig, plan)


def test_the_kill_switch_on_a_degrade_fallback_deployment_is_honoured(rig):
    """degrade-model writes to a second Deployment, the fallback (llm-small). A person who put the kill switch on
    it has said "hands off": the plan must not scale it."""
    from aiops.domain.target import Target
    from aiops.remediate.facts import KILL_SWITCH_ANNOTATION
    from tests.test_remediate_gate import ML, ML_BEFORE, ML_RECOVERED

    rig.kube.patch_deployment(ML, "llm-small", {"metadata": {"annotations": {KILL_SWITCH_ANNOTATION: "true"}}})
    rig.spy.writes.clear()
    plan = make_plan("degrade-model", Target.deployment(ML, "llm"))
    rig.runner(Probe(ML_RECOVERED)).run(plan, ML_BEFORE)

    assert rig.kube.get_deployment(ML, "llm-small")["spec"]["replicas"] == 1, _states(rig, plan)
    assert "patch_deployment" not in rig.spy.writes and "patch_service" not in rig.spy.writes, _states(rig, plan)
