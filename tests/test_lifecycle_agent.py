"""The lifecycle wired into the agent: ``aiops train`` from the simulator's Prometheus API, then the agent's drift
check sees the model, and once the workloads move, runs retrain-detector through its own planner and journal."""

from __future__ import annotations

from pathlib import Path

import pytest

from aiops.detect.store import ModelStore
from aiops.domain.plans import Mode
from aiops.remediate.journal import MemoryJournal
from aiops.serve.agent import Agent, build_parts
from aiops.serve.train_config import parse_train_config
from aiops.serve.training import Trainer
from aiops.settings import (KubernetesSettings, LifecycleSettings, LoopSettings, PrometheusSettings, Settings,
                            WebhookSettings)
from aiops.sim.runtime import SimRuntime


@pytest.fixture
def sim():
    runtime = SimRuntime("memory_leak", seed=1).start()
    runtime.prefill(4200)
    yield runtime
    runtime.stop()


def test_trained_model_is_checked_for_drift_and_retrained_by_the_agent(sim, tmp_path: Path):
    models = tmp_path / "models"
    config = parse_train_config({"name": sim.namespace, "models_dir": str(models), "step_seconds": sim.step,
                                 "source": {"prometheus": {"url": sim.prom_url, "namespace": sim.namespace,
                                                           "since": 3600, "end": sim.clock.now()}},
                                 "tuning": {"window": [4], "n_neighbors": [10, 20], "contamination": [0.01]}})
    report = Trainer(config).run()
    assert report.record.version == 1 and report.promoted and len(report.workloads) >= 3

    settings = Settings(mode=Mode.ACT, webhook=WebhookSettings(listen="127.0.0.1:0"),
                        prometheus=PrometheusSettings(url=sim.prom_url),
                        kubernetes=KubernetesSettings(host=sim.kube_url, namespaces=(sim.namespace,)),
                        loop=LoopSettings(step_seconds=sim.step), models_dir=models, state_dir=tmp_path / "state",
                        lifecycle=LifecycleSettings(drift_window_seconds=1800))
    journal = MemoryJournal(sim.clock)
    agent = Agent(build_parts(settings, clock=sim.clock, sleep=sim.advance, journal=journal))
    try:
        [calm] = agent.run_drift_check()
        assert calm.model == sim.namespace and calm.version == 1 and not calm.drifted
        sim.inject()
        sim.advance(1800)
        [moved] = agent.run_drift_check()
        assert moved.drifted and moved.score >= 0.3
        gauge = agent.metrics.model_drift.labels(model=sim.namespace)._value.get()
        assert gauge == pytest.approx(moved.score)
        assert agent.metrics.diagnoses.labels(fault="detector_drift")._value.get() == 1
        assert agent.metrics.plans.labels(state=moved.result.execution.state.value)._value.get() == 1
        plan = moved.result.plan
        assert plan.playbook == "retrain-detector" and agent.results[-1] is moved.result
        states = [r["state"] for r in journal.history(plan.id)]
        assert states[:2] == ["executing", "verifying"] and states[-1] in ("succeeded", "failed", "rolled_back")
        tagged = ModelStore(models).find(sim.namespace, "plan_id", plan.id)
        assert tagged is not None and tagged.version == 2
    finally:
        agent.stop()
