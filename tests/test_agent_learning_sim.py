"""Cold start on the simulator (issue #16, item 3): an agent pointed at a cluster with no history learns first. It says
so (one log line when learning starts and one when it ends, ``/readyz``, ``aiops_learning``), opens no incident from
its detectors and acts on no alert meanwhile, handles the alert it held once it has learned, and then finds a real
fault. A simulator started with an hour of history (``aiops sim --history 60m``) makes it ready at once.

The agent runs on the simulator's clock and the tests drive its loop (``run_cycle``) a simulated minute apart.
"""

from __future__ import annotations

import logging

import pytest
import requests

from aiops.domain.plans import Blocked
from aiops.serve.learning import LEARNING
from aiops.sim.runtime import SimRuntime
from tests.support.polling import wait_until
from tests.test_agent_sim import (DRAIN_SECONDS, HTTP_TIMEOUT, alert_payload, deployment_marks, kube,  # noqa: F401
                                  post_alert, sim_settings, start_agent)

CYCLE_SECONDS = 60.0
REQUIRED_MINUTES = 30  # the default: half of the 60 min baseline window sim_settings uses
# The loop reads the 10 min before now as "recent": 30 min of baseline take 40 min of history.
CYCLES_TO_LEARN = REQUIRED_MINUTES + 10
CYCLES_TO_FIND_THE_LEAK = 15


@pytest.fixture
def sim():
    """What plain ``aiops sim`` starts with: the shop and one round of samples, no history."""
    runtime = SimRuntime("memory_leak", seed=0).start()
    runtime.prefill(runtime.step)
    yield runtime
    runtime.stop()


@pytest.fixture
def sim_with_history():
    """What ``aiops sim --history 60m`` starts with."""
    runtime = SimRuntime("memory_leak", seed=0).start()
    runtime.prefill(3600)
    yield runtime
    runtime.stop()


def readyz_baseline(agent) -> dict:
    answer = requests.get(f"{agent.server.url}/readyz", timeout=HTTP_TIMEOUT)
    assert answer.status_code == 200, answer.text  # learning is shown, never a reason to be unready
    return answer.json()["baseline"]


def metrics_text(agent) -> str:
    return requests.get(f"{agent.server.url}/metrics", timeout=HTTP_TIMEOUT).text


def learning_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "aiops.serve.learning" and "minutes" in r.getMessage()]


def cycle(agent, sim) -> None:
    sim.advance(CYCLE_SECONDS)
    agent.run_cycle()


def test_a_cold_started_agent_learns_before_it_acts_then_finds_the_fault(sim, kube, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="aiops")
    agent = start_agent(sim, sim_settings(sim, tmp_path))
    try:
        before = deployment_marks(kube, "shop")
        agent.run_cycle()
        shop = readyz_baseline(agent)["namespaces"]["shop"]
        assert shop["state"] == "learning" and shop["detail"] == "learning: 0 of 30 minutes of baseline"
        assert readyz_baseline(agent)["required_seconds"] == REQUIRED_MINUTES * 60
        text = metrics_text(agent)
        assert 'aiops_learning{namespace="shop"} 1.0' in text and "aiops_baseline_required_seconds 1800.0" in text

        # An alert while learning: diagnosed, not acted on, held.
        answer = post_alert(agent, alert_payload("shop", "payments", sim.clock.now() - 60))
        assert answer.status_code == 200 and answer.json()["outcomes"] == {"opened": 1}
        assert agent.worker.drain(DRAIN_SECONDS)
        [refused] = agent.results
        assert isinstance(refused.decision, Blocked) and refused.decision.reason == LEARNING
        assert refused.decision.detail.startswith("shop learning: 0 of 30 minutes of baseline: too little to act on")
        assert refused.execution is None and not refused.incident.anomalies
        assert readyz_baseline(agent)["held_incidents"] == 1

        for _ in range(CYCLES_TO_LEARN - 1):
            cycle(agent, sim)
            assert agent.metrics.detections._value.get() == 0
            assert [i.target.name for i in agent.tracker.open_incidents()] == ["payments"]  # the alert's only
        assert readyz_baseline(agent)["namespaces"]["shop"]["detail"] == "learning: 29 of 30 minutes of baseline"
        assert deployment_marks(kube, "shop") == before
        assert learning_lines(caplog) == [
            "shop learning: 0 of 30 minutes of baseline: no incident is opened from detection, and alerts are "
            "diagnosed but not acted on, until it has learned"]

        cycle(agent, sim)
        assert learning_lines(caplog)[1:] == ["shop learned: 30 of 30 minutes of baseline: detecting and acting"]
        assert readyz_baseline(agent)["namespaces"]["shop"]["state"] == "learned"
        assert 'aiops_learning{namespace="shop"} 0.0' in metrics_text(agent)
        # The held alert is handled now, with the statistics it lacked.
        assert agent.worker.drain(DRAIN_SECONDS)
        handled = wait_until(lambda: [r for r in agent.results[1:] if r.incident.id == refused.incident.id],
                             DRAIN_SECONDS, "the held alert to be handled again")
        assert not (isinstance(handled[0].decision, Blocked) and handled[0].decision.reason == LEARNING)
        assert readyz_baseline(agent)["held_incidents"] == 0

        for _ in range(3):  # learned, on a healthy shop: still nothing is flagged
            cycle(agent, sim)
        assert agent.metrics.detections._value.get() == 0

        sim.inject()
        for _ in range(CYCLES_TO_FIND_THE_LEAK):
            cycle(agent, sim)
            if any(i.target.name == "cart" for i in agent.tracker.open_incidents()):
                break
        leak = next(i for i in agent.tracker.open_incidents() if i.target.name == "cart")
        assert leak.anomalies and not leak.alerts
        assert agent.worker.drain(DRAIN_SECONDS)
        diagnosed = [r for r in agent.results if r.incident.id == leak.id]
        assert diagnosed and diagnosed[0].diagnosis.chosen.fault.value == "memory_leak"
        assert diagnosed[0].diagnosis.chosen.target.name == "cart"
    finally:
        agent.stop()


def test_an_agent_on_a_sim_with_an_hour_of_history_is_ready_at_once(sim_with_history, tmp_path, caplog):
    sim = sim_with_history
    caplog.set_level(logging.INFO, logger="aiops")
    agent = start_agent(sim, sim_settings(sim, tmp_path))
    try:
        agent.run_cycle()
        shop = readyz_baseline(agent)["namespaces"]["shop"]
        assert shop["state"] == "learned" and shop["baseline_seconds"] >= REQUIRED_MINUTES * 60
        assert 'aiops_learning{namespace="shop"} 0.0' in metrics_text(agent)
        assert len(learning_lines(caplog)) == 1 and learning_lines(caplog)[0].startswith("shop learned: ")
        for _ in range(3):
            cycle(agent, sim)
        assert agent.metrics.detections._value.get() == 0 and agent.tracker.open_incidents() == []
        assert len(learning_lines(caplog)) == 1  # not every cycle
    finally:
        agent.stop()
