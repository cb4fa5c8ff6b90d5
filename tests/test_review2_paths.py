"""Second hostile review of issue #13, on the merged tree: paths where two merged changes disagree. Each test failed
on the merged code before its fix.

Uses the gate tests' rig (simulator through the real client, ``tests/test_remediate_gate.py``).
"""

from __future__ import annotations

from aiops.remediate.journal import is_unfinished
from aiops.remediate.runner import PlaybookRunner
from aiops.remediate.verify import Verifier
from tests.test_remediate_gate import (BEFORE, NAME, NS, PLAYBOOKS, WORSE, Probe, Rig, make_plan,  # noqa: F401
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
