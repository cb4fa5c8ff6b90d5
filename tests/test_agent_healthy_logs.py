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


def test_a_healthy_shop_run_past_49_minutes_flags_no_log_anomaly(healthy, tmp_path):
    parts = build_parts(sim_settings(healthy, tmp_path), clock=healthy.clock, sleep=healthy.advance,
                        topology=healthy.scenario.topology, journal=MemoryJournal(healthy.clock))
    healthy.advance(55 * 60)  # simulated time, milliseconds of wall time: the two clocks are now 55 min apart
    observations = parts.pipeline.observe("shop")
    split = parts.pipeline.split(observations)

    # the whole baseline was read: every workload has lines from its first minutes, not only from its last ones
    for workload in WORKLOADS:
        first = min(line.ts for line in observations.logs if line.workload == workload)
        assert first < observations.start + 0.25 * (split - observations.start), workload

    logs = [a for a in parts.pipeline.detect(observations) if a.signal == "log"]
    assert logs == []
