"""Verification of a real rollback on the simulator (#13 item 16): its rollout pacing, its metrics through the
Prometheus API and the agent's parts as ``build_parts`` wires them, in simulated time.

A right rollback whose old pods serve noisy errors while they are replaced ends ``succeeded`` and is never undone;
a rollback to an image that really is worse is still undone; a recovered service ends verification early.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

from aiops.clients.kube import KubeClient
from aiops.clients.prometheus import PrometheusClient
from aiops.domain.plans import ActionPlan, ExecutionState, Mode, plan_id
from aiops.domain.target import Target
from aiops.remediate.journal import MemoryJournal
from aiops.serve.agent import Parts, build_parts
from aiops.settings import KubernetesSettings, LoopSettings, Settings
from aiops.sim.faults import BadDeploy
from aiops.sim.runtime import SimRuntime
from tests.support.draining import drain_noisily

NS, NAME = "shop", "cart"
TARGET = Target.deployment(NS, NAME)
GOOD_IMAGE, BAD_IMAGE = "registry.local/cart:1.0", "registry.local/cart:1.1"
# Long enough after the fault for the bad image to serve everywhere and the error rate to have settled.
FAULT_AGE = 180.0


@contextlib.contextmanager
def bad_deploy(rollout_seconds: float = 10.0) -> Iterator[tuple[SimRuntime, KubeClient, Parts]]:
    """The shop with an hour of history, its cart rolled onto a bad image ``FAULT_AGE`` seconds ago, and the
    agent's parts wired to it in act mode."""
    with SimRuntime("bad_deploy", seed=0, rollout_seconds=rollout_seconds) as sim:
        sim.prefill(4200)
        kube = KubeClient.for_host(sim.kube_url)
        settings = Settings(mode=Mode.ACT, kubernetes=KubernetesSettings(host=sim.kube_url, namespaces=(NS,)),
                            loop=LoopSettings(baseline_seconds=3600, recent_seconds=600, step_seconds=sim.step))
        parts = build_parts(settings, kube=kube, prometheus=PrometheusClient(sim.prom_url), clock=sim.clock,
                            sleep=sim.advance, topology=sim.scenario.topology, journal=MemoryJournal(sim.clock))
        try:
            sim.inject()
            sim.advance(FAULT_AGE)
            yield sim, kube, parts
        finally:
            kube.close()


def roll_back(parts: Parts):
    """Decide and run rollback-deploy on cart the way the pipeline does (levels from a fresh observation)."""
    plan = ActionPlan(plan_id("inc-verify", "rollback-deploy", TARGET), "inc-verify", "rollback-deploy", "rollback",
                      TARGET, {}, Mode.ACT)
    execution, before = parts.pipeline.execute(plan, parts.pipeline.observe(NS))
    return plan, execution, before


def image(kube: KubeClient) -> str:
    return kube.get_deployment(NS, NAME)["spec"]["template"]["spec"]["containers"][0]["image"]


def times(parts: Parts, plan: ActionPlan) -> dict[str, float]:
    """The first journal time of each state of ``plan``."""
    out: dict[str, float] = {}
    for record in parts.journal.history(plan.id):
        out.setdefault(record["state"], record["ts"])
    return out


def test_a_right_rollback_whose_old_pods_serve_noisy_errors_is_not_undone():
    with bad_deploy(rollout_seconds=45) as (sim, kube, parts):
        drain_noisily(sim)
        plan, execution, before = roll_back(parts)

        assert execution.state is ExecutionState.SUCCEEDED, execution.history
        assert not any(note.startswith("undone") for _, _, note in execution.history)
        assert image(kube) == GOOD_IMAGE
        readings = execution.verification["readings"]
        # The fixture did make the first readings look worse than before the action: the old verifier undid the
        # rollback on the first of them.
        early = [r["values"]["error_ratio"] for r in readings if not r["judged"]]
        assert max(early) > 1.2 * before["error_ratio"], (early, before)
        assert all(r["values"]["error_ratio"] <= 0.5 * before["error_ratio"] for r in readings if r["judged"])


def test_a_rollback_to_an_image_that_really_is_worse_is_still_undone():
    with bad_deploy() as (sim, kube, parts):
        # Meanwhile the previous image broke harder (say, the data it reads was migrated for the new one).
        sim.scenario.faults.append(BadDeploy(NAME, sim.clock.now(), GOOD_IMAGE, ratio=0.7))
        plan, execution, before = roll_back(parts)

        assert execution.state is ExecutionState.ROLLED_BACK, execution.history
        assert execution.verification["outcome"] == "worse" and "error_ratio" in execution.verification["note"]
        assert any(note.startswith("undone") for _, _, note in execution.history)
        assert image(kube) == BAD_IMAGE, "the undo rolled forward to the image that was serving before"


def test_a_recovered_service_ends_verification_well_before_the_window():
    with bad_deploy() as (sim, kube, parts):
        plan, execution, before = roll_back(parts)
        spec = parts.pipeline.playbooks["rollback-deploy"].verify

        assert execution.state is ExecutionState.SUCCEEDED, execution.history
        seen = times(parts, plan)
        took = seen["succeeded"] - seen["verifying"]
        # Simulated clock: the 10 s rollout is seen done at the first reading (15 s), 60 s settle, then two
        # recovered readings 15 s apart. The old verifier always took the whole 120 s window.
        assert took == 15 + spec.settle_seconds + (spec.recovered_samples - 1) * spec.interval_seconds == 90
        assert took < spec.window_seconds
        assert execution.verification["judged_from"] == seen["verifying"] + 15 + spec.settle_seconds
