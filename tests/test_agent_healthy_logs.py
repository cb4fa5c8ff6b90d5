"""A healthy shop's logs raise nothing in the agent (#18 "a healthy cluster pages nobody").

The agent reads pod logs with ``sinceSeconds`` counted on its own clock. Wired with the wall clock while the loop ran on
the simulator's, the read fell further behind the window's start as simulated time outran wall time: by t = 49 min
the hour-long baseline held only its last few minutes of lines, so every workload's access-log template looked "5x
more frequent" than in the baseline. Each test failed on the code before its fix.
"""

from __future__ import annotations

import pytest

from aiops.remediate.journal import MemoryJournal
from aiops.serve.agent import build_parts
from aiops.sim.runtime import SimRuntime
from tests.test_agent_sim import sim_settings

WORKLOADS = ("cart", "catalog", "frontend", "payments", "redis")


@pytest.fixture
def healthy():
    """The five-workload shop with an hour of healthy history and no fault injected."""
    runtime = SimRuntime("memory_leak", seed=0).start()
    runtime.prefill(3600)
    yield runtime
    runtime.stop()


def agent_parts(sim: SimRuntime, tmp_path, baseline_seconds: float = 3600.0):
    """The agent's parts on the simulator's clock, as ``aiops serve`` wires them."""
    settings = sim_settings(sim, tmp_path)
    settings = settings.model_copy(update={"loop": settings.loop.model_copy(
        update={"baseline_seconds": baseline_seconds})})
    return build_parts(settings, clock=sim.clock, sleep=sim.advance, topology=sim.scenario.topology,
                       journal=MemoryJournal(sim.clock))


def assert_baseline_read_from_its_start(observations, split: float) -> None:
    """Every workload has lines from the baseline's first quarter, not only from its last minutes (a quarter, not
    the first line: the collector's 500-line tail per pod ends ~8 min after a 70 min window's start here)."""
    for workload in WORKLOADS:
        first = min(line.ts for line in observations.logs if line.workload == workload)
        assert first < observations.start + 0.25 * (split - observations.start), workload


def test_a_healthy_shop_run_past_49_minutes_flags_no_log_anomaly(healthy, tmp_path):
    parts = agent_parts(healthy, tmp_path)
    healthy.advance(55 * 60)  # simulated time, milliseconds of wall time: the two clocks are now 55 min apart
    observations = parts.pipeline.observe("shop")
    split = parts.pipeline.split(observations)
    assert_baseline_read_from_its_start(observations, split)

    logs = [a for a in parts.pipeline.detect(observations) if a.signal == "log"]
    assert logs == []


def test_a_window_that_ended_earlier_is_read_back_to_its_start_on_the_loops_clock(healthy, tmp_path):
    # A 30 min baseline ending 15 min ago: the whole window is within the pods' last 500 log lines (~62 min here).
    parts = agent_parts(healthy, tmp_path, baseline_seconds=1800)
    healthy.advance(55 * 60)
    observations = parts.pipeline.observe("shop", now=healthy.clock.now() - 15 * 60)
    assert_baseline_read_from_its_start(observations, parts.pipeline.split(observations))
