"""What verification waits for, read from the real kube-apiserver v1.20 and its controllers (and the simulator):
``rollout_pending`` follows the deployment controller's status until the new pods serve, and a rollout that never
completes leaves the verdict open (#13 item 16)."""

from __future__ import annotations

import time

from aiops.domain.playbook import VerifySpec
from aiops.remediate.rollout import rollout_pending
from aiops.remediate.verify import Verifier
from aiops.sim.clock import WallClock
from tests.support.realstack import wait_until
from tests.test_kube_contract import APP, DEADLINE, IMAGE_2, STUCK_IMAGE, api, app, live_pods, make_plan, \
    rolled_out, set_image  # noqa: F401 - fixtures


class FlatProbe:
    def read(self, namespace, workload, signals):
        return {s: 0.01 for s in signals}


def test_rollout_pending_until_the_controller_has_every_new_pod_available(api, ns, app):
    assert rollout_pending(api.get_deployment(ns, APP)) is None
    set_image(api, ns, IMAGE_2)

    assert rollout_pending(api.get_deployment(ns, APP)) is not None, "right after the patch nothing has rolled yet"
    done = wait_until(lambda: rollout_pending(api.get_deployment(ns, APP)) is None, DEADLINE, "rollout complete")
    assert done
    # Complete by rollout_pending means every desired pod runs the new image and is Ready.
    pods = [p for p in live_pods(api, ns) if p["spec"]["containers"][0]["image"] == IMAGE_2]
    assert len(pods) == 2
    assert wait_until(lambda: rolled_out(api, ns), DEADLINE, "the old pods gone too")


def test_a_stuck_rollout_stays_pending_and_verification_leaves_the_verdict_open(api, ns, app):
    set_image(api, ns, STUCK_IMAGE)
    generation = api.get_deployment(ns, APP)["metadata"]["generation"]

    def controller_caught_up() -> bool:
        status = api.get_deployment(ns, APP).get("status") or {}
        return status.get("observedGeneration", 0) >= generation and status.get("updatedReplicas", 0) >= 1

    wait_until(controller_caught_up, DEADLINE, "the controller created the new (never Ready) pod")
    pending = rollout_pending(api.get_deployment(ns, APP))
    assert pending is not None and "old replica(s) left" in pending

    clock = WallClock()
    spec = VerifySpec(signals=("error_ratio",), interval_seconds=0.2, window_seconds=1.0, settle_seconds=0,
                      rollout_timeout_seconds=1.0)
    started = time.monotonic()
    result = Verifier(FlatProbe(), time.sleep, clock, deployments=api).verify(
        make_plan(app, "rollback"), spec, {"error_ratio": 0.3})
    assert result.outcome == "unchanged" and "did not complete within 1s" in result.note, result.note
    assert result.judged_from is None and time.monotonic() - started < DEADLINE, "bounded by the rollout timeout"
