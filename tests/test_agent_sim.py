"""The agent end to end on the in-process simulator: probes with dependencies down, dry-run by default,
idempotent acting on redelivered alerts, the scope allow-list, and the scheduled collect/detect loop.

The agent runs on the simulator's clock (``sleep=sim.advance``), so simulated minutes pass in milliseconds; the
incident worker runs in its own thread, so every assertion on its work comes after ``agent.worker.drain``.
"""

from __future__ import annotations

import json
import socket
from datetime import datetime, timezone
from pathlib import Path

import pytest
import requests

from aiops.clients.kube import KubeClient
from aiops.domain.incident import Anomaly, IncidentStatus
from aiops.domain.plans import ActionPlan, Blocked, Execution, ExecutionState, Mode, plan_id
from aiops.domain.target import Target
from aiops.remediate.journal import MemoryJournal
from aiops.serve.agent import Agent, build_parts
from aiops.serve.pipeline import ends_incident
from aiops.serve.scheduler import LoopScheduler
from aiops.settings import KubernetesSettings, LoopSettings, PrometheusSettings, Settings, WebhookSettings
from aiops.sim.runtime import SimRuntime
from tests.support.polling import wait_until

FIXTURE = Path(__file__).parent / "fixtures" / "alertmanager" / "alertmanager_HighErrorRate_firing.json"
TOKEN = "e2e-token"
PLAN_ANNOTATION = "aiops.io/plan-id"
DRAIN_SECONDS = 20.0
HTTP_TIMEOUT = 10.0


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def alert_payload(namespace: str, deployment: str, starts_at: float) -> dict:
    """The recorded Alertmanager webhook, relabelled to ``namespace``/``deployment`` and started at ``starts_at``."""
    payload = json.loads(FIXTURE.read_text())
    started = datetime.fromtimestamp(starts_at, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    relabel = {"namespace": namespace, "deployment": deployment}
    for alert in payload["alerts"]:
        alert["labels"].update(relabel)
        alert["startsAt"] = started
        alert["annotations"]["summary"] = f"High error rate on {namespace}/{deployment}"
    for key in ("groupLabels", "commonLabels"):
        payload[key].update(relabel)
    payload["commonAnnotations"]["summary"] = f"High error rate on {namespace}/{deployment}"
    payload["groupKey"] = f'{{}}:{{alertname="HighErrorRate", deployment="{deployment}", namespace="{namespace}"}}'
    return payload


@pytest.fixture
def sim():
    """The memory-leak scenario: 70 min of healthy history, then the leak, 5 simulated minutes in."""
    runtime = SimRuntime("memory_leak", seed=0).start()
    runtime.prefill(4200)
    runtime.inject()
    runtime.advance(300)
    yield runtime
    runtime.stop()


@pytest.fixture
def kube(sim):
    client = KubeClient.for_host(sim.kube_url)
    yield client
    client.close()


def sim_settings(sim: SimRuntime, tmp_path: Path, mode: Mode = Mode.DRY_RUN) -> Settings:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    kwargs = {} if mode is Mode.DRY_RUN else {"mode": mode}  # dry-run must be what the defaults give
    return Settings(
        **kwargs,
        webhook=WebhookSettings(listen="127.0.0.1:0", token_file=token_file),
        prometheus=PrometheusSettings(url=sim.prom_url),
        kubernetes=KubernetesSettings(host=sim.kube_url, namespaces=(sim.namespace,)),
        loop=LoopSettings(interval_seconds=3600, baseline_seconds=3600, recent_seconds=600, step_seconds=sim.step),
        state_dir=tmp_path / "state",
    )


def start_agent(sim: SimRuntime, settings: Settings) -> Agent:
    """The agent on the sim's clock, started with its scheduled loop not running right away: the tests drive
    the loop themselves (``run_cycle``) so it cannot race the webhook for the same workload."""
    parts = build_parts(settings, clock=sim.clock, sleep=sim.advance, topology=sim.scenario.topology,
                        journal=MemoryJournal(sim.clock))
    agent = Agent(parts)
    agent.scheduler = LoopScheduler(agent.run_cycle, settings.loop.interval_seconds, agent.metrics,
                                    run_immediately=False)
    return agent.start()


def post_alert(agent: Agent, payload: dict) -> requests.Response:
    return requests.post(f"{agent.server.url}/webhook/alertmanager", json=payload, timeout=HTTP_TIMEOUT,
                         headers={"Authorization": f"Bearer {TOKEN}"})


def deployment_marks(kube: KubeClient, namespace: str) -> dict[str, tuple[str, int]]:
    """``{name: (resourceVersion, generation)}`` of every Deployment in ``namespace``."""
    return {d["metadata"]["name"]: (d["metadata"]["resourceVersion"], d["metadata"]["generation"])
            for d in kube.list_deployments(namespace)}


# --- probes with the dependencies down ---------------------------------------------------------------------------

def test_agent_answers_probes_while_prometheus_and_kubernetes_are_down():
    settings = Settings(
        webhook=WebhookSettings(listen="127.0.0.1:0"),
        prometheus=PrometheusSettings(url=f"http://127.0.0.1:{closed_port()}", timeout_seconds=1),
        kubernetes=KubernetesSettings(host=f"http://127.0.0.1:{closed_port()}", namespaces=("shop",)),
    )
    agent = Agent(build_parts(settings)).start()
    try:
        assert agent.server.port not in (None, 0)
        base = agent.server.url
        health = requests.get(f"{base}/healthz", timeout=HTTP_TIMEOUT)
        assert health.status_code == 200

        ready = requests.get(f"{base}/readyz", timeout=HTTP_TIMEOUT)
        assert ready.status_code == 503
        body = ready.json()
        assert body["ready"] is False
        checks = body["checks"]
        assert {"prometheus", "kubernetes"} <= set(checks)
        assert checks.get("journal", "ok") == "ok"
        for name in ("prometheus", "kubernetes"):
            assert checks[name] != "ok" and checks[name].strip(), f"{name} should give a reason: {checks}"

        metrics = requests.get(f"{base}/metrics", timeout=HTTP_TIMEOUT)
        assert metrics.status_code == 200
        assert "aiops_" in metrics.text
    finally:
        agent.stop()


# --- the webhook on the simulator ---------------------------------------------------------------------------------

def test_dry_run_is_the_default_and_changes_nothing(sim, kube, tmp_path):
    settings = sim_settings(sim, tmp_path)
    assert settings.mode is Mode.DRY_RUN
    agent = start_agent(sim, settings)
    try:
        before = deployment_marks(kube, "shop")
        answer = post_alert(agent, alert_payload("shop", "cart", sim.clock.now() - 120))
        assert answer.status_code == 200, answer.text
        assert answer.json()["outcomes"] == {"opened": 1}

        assert agent.worker.drain(DRAIN_SECONDS), "the worker did not finish the incident in time"
        assert len(agent.results) == 1
        result = agent.results[0]
        assert (result.incident.target.namespace, result.incident.target.name) == ("shop", "cart")
        assert result.diagnosis.chosen.fault.value == "memory_leak"
        assert result.plan is not None and result.plan.mode is Mode.DRY_RUN
        assert result.execution is not None
        assert result.execution.state is ExecutionState.SKIPPED
        notes = " ".join(note for _, _, note in result.execution.history)
        assert "dry-run" in notes
        assert deployment_marks(kube, "shop") == before
        assert PLAN_ANNOTATION not in kube.get_deployment("shop", "cart")["metadata"].get("annotations", {})
    finally:
        agent.stop()


def test_redelivered_alert_acts_once_and_rehandling_reuses_the_plan(sim, kube, tmp_path):
    agent = start_agent(sim, sim_settings(sim, tmp_path, Mode.ACT))
    try:
        generation_before = kube.get_deployment("shop", "cart")["metadata"]["generation"]
        payload = alert_payload("shop", "cart", sim.clock.now() - 120)

        first = post_alert(agent, payload)
        assert first.status_code == 200 and first.json()["outcomes"] == {"opened": 1}
        assert agent.worker.drain(DRAIN_SECONDS)
        second = post_alert(agent, payload)
        assert second.status_code == 200
        assert second.json()["outcomes"] == {"duplicate": 1}
        assert second.json()["incidents"] == first.json()["incidents"]
        assert agent.worker.drain(DRAIN_SECONDS)

        assert len(agent.results) == 1, "the duplicate delivery must not be handled again"
        result = agent.results[0]
        assert result.plan is not None and result.plan.playbook == "restart-workload"
        assert result.execution is not None and result.execution.state is ExecutionState.SUCCEEDED
        cart = kube.get_deployment("shop", "cart")
        assert cart["metadata"]["annotations"][PLAN_ANNOTATION] == result.plan.id
        assert cart["metadata"]["generation"] == generation_before + 1

        # The plan recovered the service: its incident is resolved, and what the detector's window still holds of
        # the fixed leak is no new incident.
        incident = agent.tracker.get(result.incident.id)
        assert incident is not None and incident.status is IncidentStatus.RESOLVED
        assert agent.tracker.open_incidents() == []
        agent.run_cycle()
        assert agent.worker.drain(DRAIN_SECONDS)
        assert agent.tracker.open_incidents() == [] and len(agent.results) == 1

        # Handling the same incident again: same plan id, and the cooldown refuses before touching the cluster.
        again = agent.parts.pipeline.handle(incident)
        assert isinstance(again.decision, Blocked)
        assert again.decision.reason == "cooldown"
        assert again.plan is not None and again.plan.id == result.plan.id
        assert again.execution is None
        assert kube.get_deployment("shop", "cart")["metadata"]["resourceVersion"] == \
            cart["metadata"]["resourceVersion"]
    finally:
        agent.stop()


def _execution(incident_id: str, playbook: str, action: str, state: ExecutionState) -> Execution:
    target = Target.deployment("shop", "cart")
    return Execution(ActionPlan(plan_id(incident_id, playbook, target), incident_id, playbook, action, target, {},
                                Mode.ACT), state)


def test_a_mitigation_ends_its_incident_once_its_restore_watch_took_it_back(sim, tmp_path):
    agent = start_agent(sim, sim_settings(sim, tmp_path, Mode.ACT))
    try:
        [update] = agent.tracker.add_anomalies([Anomaly(Target.deployment("shop", "cart"), "memory", 3.0, 1.0,
                                                        sim.clock.now() - 60)])
        incident = update.incident
        playbooks = agent.parts.pipeline.playbooks
        # Recovered, but the mitigation is still in place (its watch running, or given up): the incident stays open.
        assert not ends_incident(_execution(incident.id, "isolate-pod", "isolate", ExecutionState.SUCCEEDED),
                                 playbooks)
        # An escalation recovers nothing; a restart that worked ends it.
        assert not ends_incident(_execution(incident.id, "escalate", "escalate", ExecutionState.SUCCEEDED), playbooks)
        assert ends_incident(_execution(incident.id, "restart-workload", "restart", ExecutionState.SUCCEEDED),
                             playbooks)
        # The agent's restore watch runs on its own thread; when it restores, the incident is resolved.
        restored = _execution(incident.id, "isolate-pod", "isolate", ExecutionState.RESTORED)
        agent.parts.pipeline.runner.restore_watch(lambda: restored)
        wait_until(lambda: agent.tracker.get(incident.id).status is IncidentStatus.RESOLVED, 10,
                   "the incident resolved after the restore")
        assert agent.tracker.open_incidents() == []
    finally:
        agent.stop()


def test_alert_outside_the_allowed_namespaces_is_ignored(sim, kube, tmp_path):
    agent = start_agent(sim, sim_settings(sim, tmp_path, Mode.ACT))
    try:
        before = deployment_marks(kube, "shop")
        answer = post_alert(agent, alert_payload("payments-prod", "cart", sim.clock.now() - 120))
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["outcomes"] == {"ignored": 1}
        assert body["incidents"] == []
        assert "payments-prod" in body["ignored"][0] and "allow-list" in body["ignored"][0]

        assert agent.worker.drain(DRAIN_SECONDS)
        assert agent.results == []
        assert agent.tracker.open_incidents() == []
        assert deployment_marks(kube, "shop") == before
    finally:
        agent.stop()


# --- the scheduled loop -------------------------------------------------------------------------------------------

def test_scheduled_cycle_opens_an_incident_for_the_leaking_workload(sim, kube, tmp_path):
    agent = start_agent(sim, sim_settings(sim, tmp_path))
    try:
        assert agent.tracker.open_incidents() == []
        agent.run_cycle()
        opened = agent.tracker.open_incidents()
        assert [(i.target.namespace, i.target.name) for i in opened] == [("shop", "cart")]
        assert opened[0].anomalies and not opened[0].alerts
        assert any(a.signal == "memory" for a in opened[0].anomalies)

        assert agent.worker.drain(DRAIN_SECONDS)
        assert [r.incident.id for r in agent.results] == [opened[0].id]
        assert agent.results[0].diagnosis.chosen.fault.value == "memory_leak"
    finally:
        agent.stop()
