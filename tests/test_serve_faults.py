"""Faults around a running agent (simulated cluster, act mode): Prometheus down, the apiserver down or slow, 409
conflicts, and a journal on a full disk. In each the agent changes nothing it should not, says why on ``/readyz``
and in ``/metrics``, and recovers by itself once the fault is gone (the failed incident is tried again).

Not here: a Lease stolen mid-action. Leader election is another part of the work (its own module and tests); once
it exists, the same shape applies: steal the Lease between ``executing`` and ``verifying`` and assert no second
writer acts.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import requests

from aiops.clients.kube import KubeClient
from aiops.clients.prometheus import PrometheusClient
from aiops.domain.plans import ExecutionState, Mode
from aiops.remediate.journal import JsonlJournal, MemoryJournal
from aiops.serve.agent import Agent, build_parts
from aiops.serve.scheduler import LoopScheduler
from aiops.sim.runtime import SimRuntime
from tests.support.faults import FaultyKube, FaultyPrometheus, FullDiskJournal
from tests.support.polling import wait_until
from tests.test_agent_sim import (DRAIN_SECONDS, HTTP_TIMEOUT, alert_payload, kube, post_alert, sim,  # noqa: F401
                                  sim_settings)

RECOVERY_SECONDS = 30.0  # readiness results are cached for 5 s; the retry then runs one diagnosis


@pytest.fixture
def faulty_kube(kube):
    faulty = FaultyKube(kube)
    yield faulty
    faulty.close()


def start(sim: SimRuntime, tmp_path: Path, *, kube=None, prometheus=None, journal=None) -> Agent:
    settings = sim_settings(sim, tmp_path, Mode.ACT)
    parts = build_parts(settings, kube=kube, prometheus=prometheus, clock=sim.clock, sleep=sim.advance,
                        topology=sim.scenario.topology, journal=journal or MemoryJournal(sim.clock))
    agent = Agent(parts)
    agent.scheduler = LoopScheduler(agent.run_cycle, settings.loop.interval_seconds, agent.metrics,
                                    run_immediately=False)
    return agent.start()


def readyz(agent: Agent) -> requests.Response:
    return requests.get(f"{agent.server.url}/readyz", timeout=HTTP_TIMEOUT)


def metric(agent: Agent, name: str, **labels: str) -> float | None:
    return agent.metrics.registry.get_sample_value(name, labels)


def generation(kube: KubeClient) -> int:
    return kube.get_deployment("shop", "cart")["metadata"]["generation"]


def alert_and_drain(agent: Agent, sim: SimRuntime) -> None:
    answer = post_alert(agent, alert_payload("shop", "cart", sim.clock.now() - 120))
    # Intake never depends on the faulty parts: the webhook accepts and queues.
    assert answer.status_code == 200 and answer.json()["outcomes"] == {"opened": 1}, answer.text
    assert agent.worker.drain(DRAIN_SECONDS)


def assert_degraded(agent: Agent, dependency: str, words: tuple[str, ...]) -> None:
    """Nothing was done, the incident waits for a retry, and /readyz and /metrics name ``dependency``."""
    assert agent.results == []
    assert agent.worker.failed == 1 and metric(agent, "aiops_handler_errors_total") == 1
    assert len(agent.deferred) == 1 and metric(agent, "aiops_incidents_deferred") == 1
    answer = readyz(agent)
    assert answer.status_code == 503
    reason = answer.json()["checks"][dependency]
    assert any(w in reason for w in words), reason
    assert metric(agent, "aiops_ready") == 0
    assert metric(agent, "aiops_dependency_up", dependency=dependency) == 0


def assert_recovers_and_acts_once(agent: Agent, kube: KubeClient, generation_before: int, dependency: str) -> None:
    wait_until(lambda: readyz(agent).status_code == 200, RECOVERY_SECONDS, "/readyz to be ready again")
    wait_until(lambda: agent.results, RECOVERY_SECONDS, "the deferred incident to be handled again")
    assert agent.worker.drain(DRAIN_SECONDS)
    assert [r.execution.state for r in agent.results] == [ExecutionState.SUCCEEDED]
    assert generation(kube) == generation_before + 1
    assert len(agent.deferred) == 0 and metric(agent, "aiops_incidents_deferred") == 0
    assert metric(agent, "aiops_dependency_up", dependency=dependency) == 1
    assert metric(agent, "aiops_ready") == 1


# --- the journal --------------------------------------------------------------------------------------------------

def test_full_disk_journal_acts_never_reports_and_recovers(sim, kube, tmp_path):
    journal = FullDiskJournal(sim.clock)
    agent = start(sim, tmp_path, journal=journal)
    try:
        before = generation(kube)
        journal.full = True
        alert_and_drain(agent, sim)
        assert journal.records() == []
        assert generation(kube) == before, "nothing may change while the journal cannot record it"
        assert_degraded(agent, "journal", ("No space left on device", "ENOSPC"))
        assert "no action is taken" in readyz(agent).json()["checks"]["journal"]
        assert metric(agent, "aiops_journal_writable") == 0
        assert metric(agent, "aiops_journal_write_failures_total") >= 1

        journal.full = False
        assert_recovers_and_acts_once(agent, kube, before, "journal")
        assert metric(agent, "aiops_journal_writable") == 1
        states = [r["state"] for r in journal.records()]
        assert states[0] == "executing" and states[-1] == "succeeded"
    finally:
        agent.stop()


def test_jsonl_journal_whose_directory_vanished_recovers_when_it_is_back(sim, kube, tmp_path):
    state = tmp_path / "journal-dir"
    journal = JsonlJournal(state / "journal.jsonl", sim.clock)
    agent = start(sim, tmp_path, journal=journal)
    try:
        before = generation(kube)
        shutil.rmtree(state)  # an unmounted volume, a cleaned-up directory: real writes now fail
        alert_and_drain(agent, sim)
        assert generation(kube) == before
        assert_degraded(agent, "journal", ("FileNotFoundError",))

        state.mkdir()
        assert_recovers_and_acts_once(agent, kube, before, "journal")
        assert [r["state"] for r in JsonlJournal(state / "journal.jsonl").records()][-1] == "succeeded"
    finally:
        agent.stop()


# --- Prometheus ---------------------------------------------------------------------------------------------------

def test_prometheus_down_does_nothing_says_so_and_recovers(sim, kube, tmp_path):
    prometheus = FaultyPrometheus(PrometheusClient(sim.prom_url))
    agent = start(sim, tmp_path, prometheus=prometheus)
    try:
        before = generation(kube)
        prometheus.down = True
        alert_and_drain(agent, sim)
        assert generation(kube) == before
        assert_degraded(agent, "prometheus", ("unreachable",))
        assert "PrometheusError" in agent.deferred.reasons()[next(iter(agent.deferred.reasons()))]
        with pytest.raises(Exception, match="query_range"):
            agent.run_cycle()  # the scheduled loop fails too (the scheduler logs and counts it)

        prometheus.down = False
        assert_recovers_and_acts_once(agent, kube, before, "prometheus")
    finally:
        agent.stop()


def test_scheduled_loop_failure_is_counted_by_outcome(sim, tmp_path):
    prometheus = FaultyPrometheus(PrometheusClient(sim.prom_url))
    prometheus.down = True
    agent = start(sim, tmp_path, prometheus=prometheus)
    try:
        agent.scheduler.shutdown()  # the idle hourly one start() launched
        agent.scheduler = LoopScheduler(agent.run_cycle, 0.05, agent.metrics)
        agent.scheduler.start()
        wait_until(lambda: metric(agent, "aiops_loop_runs_total", outcome="error"), 20, "a failed loop run")
        prometheus.down = False
        wait_until(lambda: metric(agent, "aiops_loop_runs_total", outcome="ok"), 30, "a good loop run")
    finally:
        agent.stop()


# --- the apiserver ------------------------------------------------------------------------------------------------

def test_apiserver_down_does_nothing_says_so_and_recovers(sim, kube, faulty_kube, tmp_path):
    agent = start(sim, tmp_path, kube=faulty_kube)
    try:
        before = generation(kube)
        faulty_kube.down = True
        alert_and_drain(agent, sim)
        assert generation(kube) == before
        assert "patch_deployment" not in faulty_kube.calls
        assert_degraded(agent, "kubernetes", ("unreachable",))

        faulty_kube.down = False
        assert_recovers_and_acts_once(agent, kube, before, "kubernetes")
    finally:
        agent.stop()


def test_slow_apiserver_fails_readiness_but_intake_and_acting_go_on(sim, kube, faulty_kube, tmp_path):
    agent = start(sim, tmp_path, kube=faulty_kube)
    try:
        before = generation(kube)
        faulty_kube.version_delay_seconds = 3.0  # longer than the 2 s readiness timeout
        faulty_kube.delay_seconds = 0.02
        answer = readyz(agent)
        assert answer.status_code == 503
        assert answer.json()["checks"]["kubernetes"].startswith("timeout")
        assert metric(agent, "aiops_dependency_up", dependency="kubernetes") == 0
        alert_and_drain(agent, sim)
        assert [r.execution.state for r in agent.results] == [ExecutionState.SUCCEEDED]
        assert generation(kube) == before + 1

        faulty_kube.version_delay_seconds = 0.0
        wait_until(lambda: readyz(agent).status_code == 200, RECOVERY_SECONDS, "/readyz to be ready again")
    finally:
        agent.stop()


def test_one_conflict_is_retried_and_the_change_lands_once(sim, kube, faulty_kube, tmp_path):
    agent = start(sim, tmp_path, kube=faulty_kube)
    try:
        before = generation(kube)
        faulty_kube.conflicts = 1
        alert_and_drain(agent, sim)
        assert faulty_kube.conflicts_sent == 1
        assert [r.execution.state for r in agent.results] == [ExecutionState.SUCCEEDED]
        assert generation(kube) == before + 1
    finally:
        agent.stop()


def test_conflicts_that_never_end_fail_the_plan_and_change_nothing(sim, kube, faulty_kube, tmp_path):
    agent = start(sim, tmp_path, kube=faulty_kube)
    try:
        before = generation(kube)
        faulty_kube.conflicts = -1
        alert_and_drain(agent, sim)
        assert faulty_kube.conflicts_sent >= 2  # retried from a fresh read, then gave up
        [result] = agent.results
        assert result.execution.state is ExecutionState.FAILED
        assert "409" in result.execution.history[-1][2]
        assert generation(kube) == before
        assert metric(agent, "aiops_plans_total", state="failed") == 1
        assert readyz(agent).status_code == 200  # a lost race is not an outage
        assert len(agent.deferred) == 0  # a failed plan is an outcome, not an error to retry
    finally:
        agent.stop()


def test_during_an_outage_new_incidents_are_held_back_without_trying(sim, kube, tmp_path):
    prometheus = FaultyPrometheus(PrometheusClient(sim.prom_url))
    agent = start(sim, tmp_path, prometheus=prometheus)
    try:
        before = generation(kube)
        prometheus.down = True
        alert_and_drain(agent, sim)  # cart: tried, failed, trips the breaker
        answer = post_alert(agent, alert_payload("shop", "catalog", sim.clock.now() - 120))
        assert answer.json()["outcomes"] == {"opened": 1}
        assert agent.worker.drain(DRAIN_SECONDS)
        assert agent.worker.failed == 1, "the second incident must be held back, not tried and failed"
        assert len(agent.deferred) == 2 and metric(agent, "aiops_incidents_deferred") == 2
        assert "PrometheusError" in agent.deferred.reasons()[answer.json()["incidents"][0]]

        prometheus.down = False
        wait_until(lambda: readyz(agent).status_code == 200, RECOVERY_SECONDS, "/readyz to be ready again")
        wait_until(lambda: len(agent.results) == 2, RECOVERY_SECONDS, "both held incidents to be handled")
        assert agent.worker.drain(DRAIN_SECONDS)
        handled = {r.incident.target.name: r for r in agent.results}
        assert set(handled) == {"cart", "catalog"}
        assert handled["cart"].execution.state is ExecutionState.SUCCEEDED
        assert generation(kube) == before + 1
        assert len(agent.deferred) == 0
    finally:
        agent.stop()
