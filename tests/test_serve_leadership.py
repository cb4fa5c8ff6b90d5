"""Two agents under leader election, on the real kube-apiserver and on the simulator.

Only the leader handles incidents; the follower receives the same webhooks, holds them, and handles them after it
takes over (running the resume hook first). A stolen Lease makes the leader stop acting, say why on /readyz and in
/metrics, and lead again by itself. The pipeline is a recorder here: what matters is who handles what, and when.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests

from aiops.clients.kube import KubeError
from aiops.correlate.incidents import IncidentTracker
from aiops.domain.alerts import Alert
from aiops.domain.incident import Incident
from aiops.domain.plans import ActionPlan, ExecutionState, Mode, plan_id
from aiops.domain.target import Target
from aiops.remediate.actions import ACTIONS, PLAN_ANNOTATION
from aiops.sim.clock import WallClock
from aiops.serve.agent import Agent, build_parts
from aiops.remediate.gate import OUTSIDE_GATE, Purpose, WriteGate, WriteRefused
from aiops.remediate.journal import MemoryJournal
from aiops.serve.fence import NotLeaderError
from aiops.serve.leader import FOLLOWER, LEADER, STOLEN
from aiops.serve.leadership import LeadershipGate
from aiops.serve.metrics import AgentMetrics
from aiops.settings import KubernetesSettings, LeaderElectionSettings, Settings, WebhookSettings
from tests.support.polling import wait_until
from tests.support.realstack import free_port
from tests.test_agent_sim import alert_payload

# request_timeout_seconds must stay under lease_duration - renew_deadline (1.5 s here), as the settings require.
DURATION = 3
HTTP_TIMEOUT = 10.0


class RecordingPipeline:
    """Stands in for ``IncidentPipeline``: records which incidents it was asked to handle."""

    def __init__(self) -> None:
        self.handled: list[str] = []

    def handle(self, incident):
        self.handled.append(incident.id)
        fault = SimpleNamespace(value="unknown")
        return SimpleNamespace(diagnosis=SimpleNamespace(chosen=SimpleNamespace(fault=fault)), execution=None,
                               decision=SimpleNamespace(reason="recorded"))


def agent_settings(kube, tmp_path: Path, ns: str, identity: str, port: int = 0, peers: tuple = ()) -> Settings:
    """``port`` given: the agent listens there and advertises that URL in the Lease (followers forward to it when
    it is among their ``peers``)."""
    token_file = tmp_path / f"kube-token-{identity}"
    token_file.write_text(kube.token)
    return Settings(
        webhook=WebhookSettings(listen=f"127.0.0.1:{port}", peer_urls=peers),
        kubernetes=KubernetesSettings(host=kube.url, token_file=token_file, verify_ssl=False,
                                      request_timeout_seconds=1.2),
        state_dir=tmp_path / identity,
        leader_election=LeaderElectionSettings(enabled=True, namespace=ns, identity=identity,
                                               lease_duration_seconds=DURATION, renew_deadline_seconds=1.5,
                                               retry_period_seconds=0.2,
                                               advertise_url=f"http://127.0.0.1:{port}" if port else None))


def make_agent(kube, tmp_path, ns, identity, port: int = 0,
               peers: tuple = ()) -> tuple[Agent, RecordingPipeline, list[float]]:
    """An agent whose pipeline records instead of diagnosing; ``on_elected`` calls are counted."""
    elected: list[float] = []
    agent = Agent(build_parts(agent_settings(kube, tmp_path, ns, identity, port, peers)),
                  on_elected=lambda: elected.append(time.monotonic()))
    agent.runner = agent.parts.pipeline.runner  # the real runner, kept to check its client is fenced
    pipeline = RecordingPipeline()
    agent.parts.pipeline = pipeline
    return agent, pipeline, elected


def post_alert(agent: Agent, payload: dict) -> dict:
    resp = requests.post(f"{agent.server.url}/webhook/alertmanager", json=payload, timeout=HTTP_TIMEOUT)
    assert resp.status_code == 200, resp.text
    return resp.json()


def readyz(agent: Agent) -> dict:
    resp = requests.get(f"{agent.server.url}/readyz", timeout=HTTP_TIMEOUT)
    return resp.json()


def metric(agent: Agent, line_prefix: str) -> float | None:
    text = requests.get(f"{agent.server.url}/metrics", timeout=HTTP_TIMEOUT).text
    for line in text.splitlines():
        if line.startswith(line_prefix + " "):
            return float(line.split()[-1])
    return None


def crash(agent: Agent) -> None:
    """Stop everything without releasing the Lease: to the other agent this looks like a dead process."""
    agent.parts.election.stop(release=False)
    agent.server.stop()
    agent.worker.stop(timeout=1)
    agent.readiness.close()


def test_follower_holds_incidents_and_handles_them_after_taking_over(kube, ns, tmp_path):
    a, a_pipeline, a_elected = make_agent(kube, tmp_path, ns, "agent-a")
    b, b_pipeline, b_elected = make_agent(kube, tmp_path, ns, "agent-b")
    a.start()
    crashed = False
    try:
        wait_until(lambda: a.leadership.is_leader, 15, "agent-a leads")
        b.start()
        wait_until(lambda: b.leadership.status()["holder"] == "agent-a", 10, "agent-b sees agent-a lead")
        payload = alert_payload("shop", "cart", time.time() - 60)
        incident = post_alert(a, payload)["incidents"][0]
        assert post_alert(b, payload)["incidents"] == [incident]  # both received and correlated it
        assert a.worker.drain(10) and b.worker.drain(10)
        assert a_pipeline.handled == [incident] and b_pipeline.handled == []
        assert b.leadership.held == [incident]

        body = readyz(b)
        assert body["leader_election"]["state"] == FOLLOWER and body["leader_election"]["holder"] == "agent-a"
        assert body["leader_election"]["held_incidents"] == 1
        assert readyz(a)["leader_election"]["state"] == LEADER
        assert metric(a, "aiops_leader") == 1 and metric(b, "aiops_leader") == 0
        assert len(a_elected) == 1 and b_elected == []

        crash(a)
        crashed = True
        wait_until(lambda: b.leadership.is_leader, 3 * DURATION + 5, "agent-b takes over")
        wait_until(lambda: b_pipeline.handled == [incident], 10, "agent-b handles the held incident")
        assert len(b_elected) == 1  # the resume hook ran on taking over
        assert b.leadership.held == []
        assert metric(b, "aiops_leader") == 1 and metric(b, "aiops_leader_transitions_total") == 1
    finally:
        b.stop()
        if not crashed:
            a.stop()


def test_behind_one_service_a_follower_forwards_webhooks_to_the_leader(kube, ns, tmp_path):
    port_a, port_b = free_port(), free_port()
    # each is the other's verified peer (issue #13: the token goes to verified peers only)
    a, a_pipeline, _ = make_agent(kube, tmp_path, ns, "agent-a", port=port_a, peers=(f"http://127.0.0.1:{port_b}",))
    b, b_pipeline, _ = make_agent(kube, tmp_path, ns, "agent-b", port=port_b, peers=(f"http://127.0.0.1:{port_a}",))
    a.start()
    crashed = False
    try:
        wait_until(lambda: a.leadership.is_leader, 15, "agent-a leads")
        b.start()
        wait_until(lambda: b.leadership.leader_url() == a.server.url, 10, "agent-b finds agent-a's URL in the Lease")
        answer = post_alert(b, alert_payload("shop", "cart", time.time() - 60))
        assert answer["forwarded_to"] == a.server.url
        incident = answer["incidents"][0]
        assert a.worker.drain(10) and b.worker.drain(10)
        assert a_pipeline.handled == [incident]           # the leader acted on it at once ...
        assert b_pipeline.handled == [] and b.leadership.held == []   # ... and the follower holds nothing
        assert readyz(b)["leader_election"]["holder_url"] == a.server.url
        assert metric(b, 'aiops_webhook_requests_total{outcome="forwarded"}') == 1

        crash(a)  # the leader dies: the follower takes what it receives itself, then leads and handles it
        crashed = True
        later = post_alert(b, alert_payload("shop", "payments", time.time() - 60))
        assert "forwarded_to" not in later
        wait_until(lambda: b.leadership.is_leader, 3 * DURATION + 5, "agent-b takes over")
        wait_until(lambda: b_pipeline.handled == later["incidents"], 10, "agent-b handles what it took")
    finally:
        b.stop()
        if not crashed:
            a.stop()


def test_stolen_lease_stops_the_leader_says_why_and_heals(kube, ns, tmp_path):
    a, pipeline, elected = make_agent(kube, tmp_path, ns, "agent-a")
    a.start()
    try:
        wait_until(lambda: a.leadership.is_leader, 15, "agent-a leads")
        api = kube.client()

        def steal() -> bool:
            # The agent renews every retry period: a renewal between our read and write is a 409; read again.
            lease = api.get_lease(ns, "aiops-leader")
            lease["spec"]["holderIdentity"] = "thief"
            try:
                api.replace_lease(ns, "aiops-leader", lease)
            except KubeError as exc:
                if exc.conflict:
                    return False
                raise
            return True
        wait_until(steal, 10, "the thief writes the Lease")
        api.close()
        wait_until(lambda: readyz(a)["leader_election"]["state"] == FOLLOWER, 5, "agent-a steps down")
        body = readyz(a)
        assert body["ready"] is True  # a follower is still ready: it receives and holds alerts
        assert body["leader_election"]["reason"].startswith(STOLEN) and "thief" in body["leader_election"]["reason"]
        assert metric(a, "aiops_leader") == 0
        assert metric(a, 'aiops_leader_lost_total{reason="stolen"}') == 1
        # While it follows, nothing acts: the runner's writes are refused, alerts are only held.
        with pytest.raises(NotLeaderError, match="thief"):
            a.runner.kube.patch_deployment(ns, "cart", {"metadata": {"labels": {"x": "y"}}})
        assert metric(a, "aiops_writes_fenced_total") == 1
        incident = post_alert(a, alert_payload("shop", "cart", time.time() - 60))["incidents"][0]
        assert a.worker.drain(10)
        assert pipeline.handled == [] and a.leadership.held == [incident]
        # The thief never renews: agent-a takes the Lease back by itself and handles what it held.
        wait_until(lambda: a.leadership.is_leader, 3 * DURATION + 5, "agent-a leads again")
        wait_until(lambda: pipeline.handled == [incident], 10, "the held incident is handled")
        assert metric(a, "aiops_leader") == 1 and metric(a, "aiops_leader_transitions_total") == 3
        assert len(elected) == 2
    finally:
        a.stop()



def test_a_follower_runs_no_plan_and_the_leader_does(kube, ns, tmp_path):
    kube.create_app(ns, "web", replicas=1)
    agent, _, _ = make_agent(kube, tmp_path, ns, "agent-a")  # not started: it does not hold the Lease
    api = kube.client()
    target = Target.deployment(ns, "web")
    plan = ActionPlan(id=plan_id("inc-fence", "restart-workload", target), incident_id="inc-fence",
                      playbook="restart-workload", action="restart", target=target, params={}, mode=Mode.ACT,
                      reason="fence test")
    try:
        # Not started at all (nothing was changed): blocked, with the reason named.
        execution = agent.runner.run(plan, before={})
        assert execution.state is ExecutionState.BLOCKED
        assert "not the leader" in execution.history[-1][2]
        assert agent.parts.journal.history(plan.id)[-1]["data"]["reason"] == "not_leader"
        assert PLAN_ANNOTATION not in (api.get_deployment(ns, "web")["metadata"].get("annotations") or {})
        restart = ACTIONS["restart"](agent.runner.kube, WallClock())
        with agent.runner.gate.acting(plan, Purpose.START):  # a write inside a plan's context: fenced all the same
            with pytest.raises(NotLeaderError):
                restart.apply(plan, dry_run=False)
        assert agent.metrics.writes_fenced._value.get() >= 1
        assert agent.parts.election.step() is True  # now it leads: leadership no longer refuses the write
        with pytest.raises(WriteRefused) as refused:
            restart.apply(plan, dry_run=False)
        assert refused.value.refusal.reason == OUTSIDE_GATE, "but only inside a plan's acting context"
        assert PLAN_ANNOTATION not in (api.get_deployment(ns, "web")["metadata"].get("annotations") or {})
    finally:
        agent.parts.election.release()
        agent.readiness.close()
        api.close()


# --- the pieces, without a cluster ----------------------------------------------------------------------------------

class FakeKube:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def get_deployment(self, namespace, name):
        self.calls.append("get_deployment")
        return {"metadata": {"name": name}}

    def patch_deployment(self, namespace, name, patch):
        self.calls.append("patch_deployment")
        return {}

    def create_event(self, namespace, event):
        self.calls.append("create_event")
        return {}


def test_fence_lets_reads_through_and_writes_only_while_leading():
    leading = [True]
    refused = []
    kube = FakeKube()
    gate = WriteGate(MemoryJournal(), WallClock(), leader=lambda: None if leading[0] else "lease taken by b",
                     on_refused=refused.append)
    fence = gate.client(kube)
    target = Target.deployment("ns", "web")
    plan = ActionPlan(plan_id("inc", "restart-workload", target), "inc", "restart-workload", "restart", target, {},
                      Mode.ACT)
    with gate.acting(plan, Purpose.START):
        fence.patch_deployment("ns", "web", {})
        leading[0] = False
        assert fence.get_deployment("ns", "web") == {"metadata": {"name": "web"}}
        for write in (lambda: fence.patch_deployment("ns", "web", {}), lambda: fence.create_event("ns", {})):
            with pytest.raises(NotLeaderError, match="lease taken by b"):
                write()
    assert kube.calls == ["patch_deployment", "get_deployment"] and len(refused) == 2


class FakeElector:
    """The surface ``LeadershipGate`` uses, switched by hand."""

    def __init__(self) -> None:
        self.leading = False
        self.on_started_leading = self.on_stopped_leading = None

    @property
    def is_leader(self) -> bool:
        return self.leading

    def status(self):
        return SimpleNamespace(reason="", holder="other", as_dict=lambda: {"state": "x"})

    def start(self):
        return self

    def stop(self, release=True):
        pass

    def lead(self) -> None:
        self.leading = True
        self.on_started_leading()

    def lose(self, reason: str) -> None:
        self.leading = False
        self.on_stopped_leading(reason, "detail")


def incident(tracker: IncidentTracker, workload: str) -> Incident:
    update = tracker.ingest(Alert(fingerprint=workload, status="firing", starts_at=100.0, labels={
        "alertname": "HighErrorRate", "namespace": "shop", "deployment": workload}))
    return update.incident


def test_gate_holds_until_leading_then_resumes_first_and_skips_resolved():
    clock = SimpleNamespace(now=lambda: 200.0)
    tracker = IncidentTracker(clock)
    submitted, order = [], []
    elector = FakeElector()
    metrics = AgentMetrics()
    done = threading.Event()
    gate = LeadershipGate(elector, tracker, lambda inc: (submitted.append(inc.id), done.set()) and True, metrics,
                          on_elected=lambda: order.append(list(submitted)))
    cart, web = incident(tracker, "cart"), incident(tracker, "web")
    assert gate.admit(cart) is False and gate.admit(web) is False and gate.admit(cart) is False
    assert gate.held == [web.id, cart.id]  # newest update per incident, oldest first
    assert metrics.incidents_held._value.get() == 2
    tracker.resolve(web.id)
    elector.lead()
    assert done.wait(5)
    gate.stop()
    assert order == [[]]  # the resume hook ran before any held incident was handed over
    assert submitted == [cart.id] and gate.held == []
    assert metrics.leader._value.get() == 1
    elector.lose(STOLEN)
    assert metrics.leader._value.get() == 0
    assert metrics.leader_lost.labels(reason=STOLEN)._value.get() == 1
    assert metrics.leader_transitions._value.get() == 2
    assert gate.admit(cart) is False


def test_without_election_the_agent_leads_and_still_runs_the_resume_hook():
    elected = threading.Event()
    gate = LeadershipGate(None, IncidentTracker(SimpleNamespace(now=lambda: 1.0)), lambda inc: True, AgentMetrics(),
                          on_elected=elected.set)
    gate.start()
    assert elected.wait(5)
    gate.stop()
    assert gate.is_leader and gate.status() == {"enabled": False, "state": LEADER}
    assert gate.admit(SimpleNamespace(id="inc-1")) is True
