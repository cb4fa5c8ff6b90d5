"""The agent's intake, issue #13: closed by default (defect 4), and no alert lost quietly (defect 5) when an
incident is given up after failing, or a follower's backlog or the queue cannot take what it held."""

from __future__ import annotations

import logging
import threading
from types import SimpleNamespace

import pytest

from aiops.clients.kube import KubeClient
from aiops.correlate.incidents import IncidentTracker
from aiops.domain.alerts import Alert
from aiops.domain.errors import InputError
from aiops.domain.plans import Mode
from aiops.remediate.journal import MemoryJournal
from aiops.serve.agent import Agent, build_parts
from aiops.serve.leadership import LeadershipGate
from aiops.serve.metrics import AgentMetrics
from aiops.serve.retry import DeferredIncidents
from aiops.settings import Settings, WebhookSettings
from tests.support.polling import wait_until
from tests.test_serve_leadership import FakeElector


class Clock:
    def __init__(self) -> None:
        self.t = 1_800_000_000.0

    def now(self) -> float:
        return self.t


def make_agent(tmp_path, **settings) -> Agent:
    """An agent whose Kubernetes API is unreachable (nothing here needs it) and whose journal is in memory."""
    clock = Clock()
    kube = KubeClient.for_host("http://127.0.0.1:9")
    return Agent(build_parts(Settings(state_dir=tmp_path / "state", **settings), kube=kube, clock=clock,
                             journal=MemoryJournal(clock)))


def firing(workload: str = "cart", fingerprint: str = "fp-1") -> Alert:
    return Alert(fingerprint, "firing", {"alertname": "HighErrorRate", "namespace": "shop", "deployment": workload},
                 starts_at=100.0)


# --- defect 4 ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("listen", ["0.0.0.0:0", "10.1.2.3:8080", "[::]:0", "aiops.example:8080"])
def test_an_acting_agent_reachable_beyond_its_host_needs_a_token(tmp_path, listen):
    with pytest.raises(InputError, match="webhook.token_file: required in mode act"):
        make_agent(tmp_path, mode=Mode.ACT, webhook=WebhookSettings(listen=listen))


@pytest.mark.parametrize("mode, listen", [(Mode.ACT, "127.0.0.1:0"), (Mode.DRY_RUN, "0.0.0.0:0")])
def test_every_other_agent_without_a_token_starts_and_warns(tmp_path, caplog, mode, listen):
    with caplog.at_level(logging.WARNING, logger="aiops.serve.agent"):
        agent = make_agent(tmp_path, mode=mode, webhook=WebhookSettings(listen=listen))
    assert agent.parts.settings.mode is mode
    assert any("webhook.token_file is not set" in r.getMessage() for r in caplog.records)


def test_an_agent_with_a_token_does_not_warn(tmp_path, caplog):
    token = tmp_path / "token"
    token.write_text("t0ken\n")
    with caplog.at_level(logging.WARNING, logger="aiops.serve.agent"):
        make_agent(tmp_path, mode=Mode.ACT, webhook=WebhookSettings(listen="0.0.0.0:0", token_file=token))
    assert not any("token_file" in r.getMessage() for r in caplog.records)


# --- defect 5 (b): given up is forgotten ---------------------------------------------------------------------------

class FlakyPipeline:
    """Fails the first ``failures`` tries (a problem with the incident, not a dependency), then succeeds."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.tries: list[str] = []
        self.handled: list[str] = []

    def handle(self, incident):
        self.tries.append(incident.id)
        if len(self.tries) <= self.failures:
            raise ValueError("diagnosis blew up")
        self.handled.append(incident.id)
        fault = SimpleNamespace(value="unknown")
        return SimpleNamespace(diagnosis=SimpleNamespace(chosen=SimpleNamespace(fault=fault)), execution=None,
                               decision=SimpleNamespace(reason="recorded"))


def test_an_incident_given_up_is_forgotten_and_its_resent_alert_is_handled(tmp_path):
    agent = make_agent(tmp_path, webhook=WebhookSettings(listen="127.0.0.1:0"))
    pipeline = FlakyPipeline(failures=2)
    agent.parts.pipeline = pipeline
    agent.deferred = DeferredIncidents(max_attempts=2, first_delay=0.0, on_give_up=agent._given_up)
    agent.worker.start()
    try:
        [opened] = agent.receiver.receive([firing()])
        assert opened.outcome == "opened"
        assert agent.worker.drain(10) and pipeline.tries == [opened.incident.id]
        assert agent.retry_deferred(force=True) == 1  # the second try fails too: given up
        assert agent.worker.drain(10) and len(pipeline.tries) == 2
        wait_until(lambda: agent.tracker.get(opened.incident.id) is None, 5, "the given-up incident is forgotten")

        [again] = agent.receiver.receive([firing()])  # Alertmanager's next re-send of the same alert
        assert again.outcome == "opened"   # was "duplicate", and never handled again
        assert agent.worker.drain(10)
        assert pipeline.handled == [again.incident.id]
    finally:
        agent.worker.stop(5)
        agent.readiness.close()


# --- defect 5: what a follower held and could not keep is forgotten ------------------------------------------------

def test_a_held_incident_dropped_from_a_full_backlog_is_forgotten():
    tracker = IncidentTracker(Clock())
    gate = LeadershipGate(FakeElector(), tracker, lambda incident: True, AgentMetrics(), max_held=1)
    first = tracker.ingest(firing("cart", "fa")).incident
    second = tracker.ingest(firing("web", "fb")).incident
    assert gate.admit(first) is False and gate.admit(second) is False
    assert gate.held == [second.id]
    assert tracker.get(first.id) is None  # dropped from the backlog: not a duplicate on the re-send
    assert tracker.ingest(firing("cart", "fa")).outcome == "opened"


def test_a_held_incident_the_queue_refuses_on_taking_over_is_forgotten():
    tracker = IncidentTracker(Clock())
    elector = FakeElector()
    done = threading.Event()

    def refuse(incident) -> bool:
        done.set()
        return False

    gate = LeadershipGate(elector, tracker, refuse, AgentMetrics())
    held = tracker.ingest(firing()).incident
    assert gate.admit(held) is False
    elector.lead()
    assert done.wait(5)
    gate.stop()
    assert tracker.get(held.id) is None
    assert tracker.ingest(firing()).outcome == "opened"
