"""The agent's scheduled loop with the streaming detector: kept between cycles, fed by the real collector on the
simulator, its findings opening incidents only when strong, otherwise joining what another detector flagged."""

from __future__ import annotations

from dataclasses import replace

from aiops.domain.incident import Anomaly
from aiops.domain.target import Target
from aiops.remediate.journal import MemoryJournal
from aiops.serve.agent import Agent, build_parts
from aiops.settings import StreamingLoopSettings
from tests.test_agent_sim import sim, sim_settings  # noqa: F401 - sim is a fixture


def loop_agent(sim, tmp_path, **streaming) -> Agent:  # noqa: F811 - the fixture's value
    settings = sim_settings(sim, tmp_path)
    settings = settings.model_copy(update={"loop": settings.loop.model_copy(
        update={"streaming": StreamingLoopSettings(**streaming)})})
    return Agent(build_parts(settings, clock=sim.clock, sleep=sim.advance, topology=sim.scenario.topology,
                             journal=MemoryJournal(sim.clock)))


def streaming_anomalies(agent: Agent, workload: str) -> list[Anomaly]:
    return [a for i in agent.tracker.open_incidents() if i.target.name == workload
            for a in i.anomalies if a.detector == "streaming"]


def test_the_leak_is_seen_by_the_streaming_detector_across_cycles(sim, tmp_path):  # noqa: F811
    agent = loop_agent(sim, tmp_path, signals=("memory",), settle=200)
    try:
        fed = []
        for _ in range(6):
            agent.run_cycle()
            fed.append(len(agent.streaming))
            if streaming_anomalies(agent, "cart"):
                break
            sim.advance(300)
        found = streaming_anomalies(agent, "cart")
        assert found, "the streaming detector never flagged cart's leak"
        assert found[0].signal == "memory" and found[0].score >= 0.55
        # one stream per workload with a memory signal, kept (not rebuilt) from cycle to cycle
        assert fed[0] == len({s.workload for s in agent.parts.pipeline.observe("shop").signals if s.name == "memory"})
        assert len(set(fed)) == 1
        assert agent.metrics.registry.get_sample_value("aiops_streaming_series") == fed[0]
        assert agent.metrics.registry.get_sample_value("aiops_streaming_skipped") == 0
        others = {i.target.name for i in agent.tracker.open_incidents()} - {"cart"}
        assert not any(streaming_anomalies(agent, w) for w in others)
    finally:
        agent.readiness.close()


def test_weak_findings_join_flagged_workloads_and_strong_ones_open_incidents(sim, tmp_path):  # noqa: F811
    agent = loop_agent(sim, tmp_path, threshold=0.55, open_threshold=0.8)

    def finding(workload: str, score: float) -> Anomaly:
        return Anomaly(Target.deployment("shop", workload), "latency_p99", score, 0.55, sim.clock.now(),
                       detector="streaming")

    other = Anomaly(Target.deployment("shop", "frontend"), "cpu", 3.0, 1.0, sim.clock.now(), detector="lof")
    agent.parts.pipeline.detect_and_drift = lambda observations: ([other], {})
    agent.streaming.update = lambda signals: [finding("frontend", 0.6), finding("payments", 0.6),
                                              finding("catalog", 0.9)]
    try:
        agent.run_cycle()
        opened = {i.target.name: i for i in agent.tracker.open_incidents()}
        assert set(opened) == {"frontend", "catalog"}  # payments' weak finding had nothing to join
        assert {a.detector for a in opened["frontend"].anomalies} == {"lof", "streaming"}
        # an incident already open (here: from an alert) is something to join too
        agent.tracker.add_anomalies([replace(other, target=Target.deployment("shop", "payments"))])
        agent.parts.pipeline.detect_and_drift = lambda observations: ([], {})
        agent.run_cycle()
        payments = next(i for i in agent.tracker.open_incidents() if i.target.name == "payments")
        assert {a.detector for a in payments.anomalies} == {"lof", "streaming"}
    finally:
        agent.readiness.close()


def test_the_loop_runs_without_it_when_disabled(sim, tmp_path):  # noqa: F811
    agent = loop_agent(sim, tmp_path, enabled=False)
    try:
        assert agent.streaming is None
        agent.run_cycle()
    finally:
        agent.readiness.close()
