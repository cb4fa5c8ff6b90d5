"""bench/webhook.py's bookkeeping: a correct agent passes every check, and a wrong one is caught (no timing here)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bench.webhook import SCRIPT, bench, build_scripts
from aiops.correlate.incidents import IncidentTracker
from aiops.serve.metrics import AgentMetrics
from aiops.serve.readiness import Readiness
from aiops.serve.server import AgentServer
from aiops.serve.webhook import build_app
from aiops.serve.worker import IncidentWorker, QueueingReceiver

FIXTURES = Path(__file__).parent / "fixtures" / "alertmanager"
TOKEN = "bench-token"


class WallClock:
    def now(self) -> float:
        return time.time()


@pytest.fixture
def intake():
    """The agent's real intake (webhook app, correlation, queue) with a worker that does nothing."""
    servers = []

    def start(namespaces: tuple[str, ...]) -> str:
        metrics = AgentMetrics()
        worker = IncidentWorker(lambda incident: None, max_queue=10_000).start()
        receiver = QueueingReceiver(IncidentTracker(WallClock(), namespaces=namespaces), worker, metrics)
        server = AgentServer(build_app(receiver, metrics, Readiness({}), TOKEN, 1 << 20)).start()
        servers.append((server, worker))
        return server.url

    yield start
    for server, worker in servers:
        server.stop()
        worker.stop(5)


def test_payloads_are_relabelled_per_workload_with_distinct_fingerprints():
    scripts = build_scripts(FIXTURES, "bench", ["a", "b"])
    assert len(scripts) == 2 and all(len(steps) == len(SCRIPT) for steps in scripts)
    assert sum(count for _, _, _, count in scripts[0]) == 9
    assert b'"deployment": "a"' in scripts[0][0][1] and b'"deployment": "b"' in scripts[1][0][1]
    assert scripts[0][0][1] != scripts[1][0][1]


def test_a_correct_agent_passes_every_check(intake):
    url = intake(("bench",))
    result = bench(url, TOKEN, "bench", FIXTURES, workloads=12, concurrency=4, warmup=2)
    assert result["problems"] == [] and result["ok"]
    assert result["alerts"] == 12 * 9 and result["requests"] == 12 * 5
    assert result["outcomes"] == result["expected_outcomes"] == {"duplicate": 36, "opened": 12, "resolved": 12,
                                                                  "updated": 48}
    assert result["agent_counters"]['aiops_alerts_received_total{status="firing"}'] == 60


def test_alerts_the_agent_does_not_correlate_are_reported(intake):
    url = intake(("elsewhere",))  # the bench namespace is outside the allow-list: every alert is ignored
    result = bench(url, TOKEN, "bench", FIXTURES, workloads=3, concurrency=2, warmup=0)
    assert not result["ok"]
    assert any("outcomes {'ignored'" in p for p in result["problems"])
    assert any("deduplicated" in p for p in result["problems"])
