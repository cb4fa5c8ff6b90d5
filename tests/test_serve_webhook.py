"""The webhook app on a real AgentServer (port 0): fixtures accepted, every bad input refused, server stays up."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
import requests

from aiops.correlate.incidents import IncidentTracker
from aiops.serve.metrics import AgentMetrics
from aiops.serve.readiness import Readiness
from aiops.serve.server import AgentServer
from aiops.serve.webhook import WEBHOOK_PATH, build_app
from aiops.serve.worker import IncidentWorker, QueueingReceiver
from tests.support.polling import wait_until

FIXTURES = Path(__file__).parent / "fixtures" / "alertmanager"
TOKEN = "s3cret-token"
MAX_BODY = 16_384


class WallClock:
    def now(self) -> float:
        return time.time()


class Agent:
    """A whole intake path: tracker -> receiver -> worker, behind a served webhook app."""

    def __init__(self, token: str | None = TOKEN, checks=None, leader_url=None, identity: str = "",
                 max_queue: int = 1000, max_body: int = MAX_BODY, host: str = "127.0.0.1", **app_options) -> None:
        self.handled: list[str] = []
        self._lock = threading.Lock()
        self.gate = threading.Event()  # cleared: the handler waits (the queue fills up)
        self.gate.set()
        self.metrics = AgentMetrics()
        self.tracker = IncidentTracker(WallClock())
        self.worker = IncidentWorker(self._handle, max_queue=max_queue, metrics=self.metrics).start()
        self.receiver = QueueingReceiver(self.tracker, self.worker, self.metrics)
        self.readiness = Readiness(checks or {"prometheus": lambda: None}, timeout_seconds=0.5, cache_seconds=0)
        app = build_app(self.receiver, self.metrics, self.readiness, token, max_body, leader_url=leader_url,
                        identity=identity, forward_timeout=2.0, **app_options)
        self.server = AgentServer(app, host, 0).start()
        self.url = self.server.url

    def _handle(self, incident) -> None:
        self.gate.wait(10)
        with self._lock:
            self.handled.append(incident.id)

    def post(self, body: bytes | str, token: str | None = TOKEN, content_type: str = "application/json"):
        headers = {"Content-Type": content_type}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return requests.post(self.url + WEBHOOK_PATH, data=body, headers=headers, timeout=5)

    def healthy(self) -> bool:
        response = requests.get(self.url + "/healthz", timeout=5)
        return response.status_code == 200 and response.text == "ok"

    def close(self) -> None:
        self.server.stop()
        self.worker.stop(5)
        self.readiness.close()


@pytest.fixture
def agent():
    a = Agent()
    yield a
    a.close()


def fixture_body(name: str) -> bytes:
    return (FIXTURES / f"alertmanager_{name}.json").read_bytes()


ALL_PAYLOADS = sorted(p.stem.removeprefix("alertmanager_") for p in FIXTURES.glob("alertmanager_*.json")
                      if not p.stem.endswith("http_headers"))


@pytest.mark.parametrize("name", ALL_PAYLOADS)
def test_every_fixture_is_accepted(agent, name):
    response = agent.post(fixture_body(name))
    assert response.status_code == 200, response.text
    summary = response.json()
    assert summary["received"] == len(json.loads(fixture_body(name))["alerts"])
    assert sum(summary["outcomes"].values()) == summary["received"]


def test_grouped_then_mixed_payload_summary(agent):
    opened = agent.post(fixture_body("grouped_by_namespace_firing")).json()
    assert opened["outcomes"] == {"opened": 1, "updated": 2}
    assert len(opened["incidents"]) == 1
    mixed = agent.post(fixture_body("grouped_mixed_firing_and_resolved")).json()
    assert mixed["outcomes"] == {"updated": 2, "duplicate": 1}
    assert mixed["incidents"] == opened["incidents"]


def test_same_payload_twice_is_handled_once(agent):
    body = fixture_body("HighErrorRate_firing")
    first = agent.post(body).json()
    second = agent.post(body).json()
    assert first["outcomes"] == {"opened": 1}
    assert second["outcomes"] == {"duplicate": 1}
    assert agent.worker.drain(5)
    assert agent.handled == first["incidents"]
    metrics = requests.get(agent.url + "/metrics", timeout=5).text
    assert "aiops_alerts_deduplicated_total 1.0" in metrics


def test_headers_fixture_content_type_is_what_alertmanager_sends(agent):
    headers = json.loads(fixture_body("firing_http_headers"))
    response = agent.post(fixture_body("HighLatency_firing"), content_type=headers["Content-Type"])
    assert response.status_code == 200


@pytest.mark.parametrize("token, detail", [(None, "missing"), ("wrong", "wrong"), ("", "missing")])
def test_bad_or_missing_token_is_401(agent, token, detail):
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    response = requests.post(agent.url + WEBHOOK_PATH, data=fixture_body("HighLatency_firing"), headers=headers,
                             timeout=5)
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    assert detail in response.json()["detail"]
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert agent.tracker.open_incidents() == []
    assert agent.healthy()


def test_no_token_configured_accepts_without_auth():
    a = Agent(token=None)
    try:
        assert a.post(fixture_body("HighLatency_firing"), token=None).status_code == 200
    finally:
        a.close()


def test_body_too_big_is_413(agent):
    response = agent.post(b'{"alerts": [' + b" " * MAX_BODY + b"]}")
    assert response.status_code == 413
    assert str(MAX_BODY) in response.json()["detail"]
    assert agent.healthy()


def test_chunked_body_too_big_is_413(agent):
    def chunks():
        yield b'{"alerts": ['
        for _ in range(8):
            yield b" " * 4096
        yield b"]}"

    response = requests.post(agent.url + WEBHOOK_PATH, data=chunks(), timeout=5,
                             headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 413
    assert agent.healthy()


def test_malformed_json_is_400_with_position(agent):
    response = agent.post('{"alerts": [\n  {"status": "firing",]\n}')
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "malformed JSON"
    assert body["line"] == 2 and "line 2 column" in body["detail"]
    assert agent.healthy()


def test_non_utf8_body_is_400(agent):
    response = agent.post(b'{"alerts": "\xff\xfe"}')
    assert response.status_code == 400
    assert agent.healthy()


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", ""])
def test_wrong_content_type_is_415(agent, content_type):
    response = agent.post(fixture_body("HighLatency_firing"), content_type=content_type)
    assert response.status_code == 415
    assert "application/json" in response.json()["detail"]
    assert agent.healthy()


@pytest.mark.parametrize("payload, where", [
    ({"version": "4", "status": "firing", "alerts": {"not": "a list"}}, "alerts"),
    ({"version": "4", "status": "firing", "alerts": [{"status": "firing"}]}, "alerts[0].labels"),
    ([1, 2, 3], "(body)"),
])
def test_wrong_shape_is_422_naming_the_field(agent, payload, where):
    response = agent.post(json.dumps(payload))
    assert response.status_code == 422
    body = response.json()
    assert body["where"] == where
    assert body["reason"]
    assert agent.healthy()


def test_receiver_crash_is_500_and_server_survives():
    a = Agent()
    try:
        def boom(alerts):
            raise RuntimeError("receiver bug")

        a.receiver.receive = boom
        response = a.post(fixture_body("HighLatency_firing"))
        assert response.status_code == 500
        assert a.healthy()
    finally:
        a.close()


def test_metrics_count_requests_by_outcome(agent):
    agent.post(fixture_body("grouped_by_namespace_firing"))
    agent.post("{", token="nope")
    agent.post("{")
    text = requests.get(agent.url + "/metrics", timeout=5).text
    assert 'aiops_webhook_requests_total{outcome="accepted"} 1.0' in text
    assert 'aiops_webhook_requests_total{outcome="unauthorized"} 1.0' in text
    assert 'aiops_webhook_requests_total{outcome="bad_json"} 1.0' in text
    assert 'aiops_alerts_received_total{status="firing"} 3.0' in text
    assert "aiops_incidents_open 1.0" in text


def test_readyz_names_the_failing_dependency():
    a = Agent(checks={"prometheus": lambda: "unreachable: connection refused", "kubernetes": lambda: None})
    try:
        response = requests.get(a.url + "/readyz", timeout=5)
        assert response.status_code == 503
        assert response.json() == {"ready": False, "checks": {"prometheus": "unreachable: connection refused",
                                                              "kubernetes": "ok"}}
        assert a.healthy()
    finally:
        a.close()


def test_readyz_ok_when_all_checks_pass(agent):
    response = requests.get(agent.url + "/readyz", timeout=5)
    assert response.status_code == 200
    assert response.json() == {"ready": True, "checks": {"prometheus": "ok"}}


# --- issue #13: nothing lost quietly, bad input named ---------------------------------------------------------------

def payload_for(workloads: list[str], namespace: str = "shop") -> bytes:
    """One Alertmanager body with a firing alert per workload (distinct fingerprints)."""
    alerts = [{"status": "firing", "labels": {"alertname": "HighErrorRate", "namespace": namespace,
                                               "deployment": w},
               "startsAt": "2026-11-27T18:10:27Z", "endsAt": "0001-01-01T00:00:00Z", "fingerprint": f"fp-{w}"}
              for w in workloads]
    return json.dumps({"version": "4", "status": "firing", "alerts": alerts}).encode()


def test_alerts_the_full_queue_refuses_are_answered_503_and_taken_when_resent():
    """1005 alerts into a queue of 1000 used to answer 200, drop 5, and call their re-sends duplicates."""
    a = Agent(max_queue=1000, max_body=1 << 20)
    try:
        a.gate.clear()  # the worker is busy: nothing leaves the queue
        assert a.post(payload_for(["first"])).status_code == 200
        wait_until(lambda: a.worker.pending == 1 and a.tracker.open_count == 1, 5, "the worker holds 'first'")
        workloads = [f"w{n}" for n in range(1005)]
        body = payload_for(workloads)
        response = a.post(body)
        assert response.status_code == 503, response.text
        answer = response.json()
        assert answer["outcomes"] == {"opened": 1000, "refused": 5}
        assert [r["fingerprint"] for r in answer["refused"]] == [f"fp-w{n}" for n in range(1000, 1005)]
        assert len(answer["incidents"]) == 1000
        # nothing of the refused alerts is remembered
        assert a.tracker.open_count == 1001
        text = requests.get(a.url + "/metrics", timeout=5).text
        assert 'aiops_webhook_requests_total{outcome="refused"} 1.0' in text

        a.gate.set()
        assert a.worker.drain(30)
        again = a.post(body)  # Alertmanager retries the whole group after the 503
        assert again.status_code == 200, again.text
        assert again.json()["outcomes"] == {"duplicate": 1000, "opened": 5}
        assert a.worker.drain(30)
        assert len(set(a.handled)) == len(a.handled) == 1006  # every alert's incident handled, once
    finally:
        a.gate.set()
        a.close()


def test_a_refused_update_leaves_the_incident_as_it_was():
    a = Agent(max_queue=1)
    try:
        a.gate.clear()
        first = a.post(payload_for(["cart"])).json()["incidents"]
        wait_until(lambda: a.worker.pending == 1, 5, "the worker holds the first update")
        assert a.post(payload_for(["other"])).status_code == 200  # fills the queue (one waiting)
        second_alert = json.loads(payload_for(["cart"]))
        second_alert["alerts"][0]["labels"]["alertname"] = "HighLatency"
        second_alert["alerts"][0]["fingerprint"] = "fp-cart-latency"
        refused = a.post(json.dumps(second_alert))
        assert refused.status_code == 503
        assert refused.json()["outcomes"] == {"refused": 1}
        assert [x.name for x in a.tracker.get(first[0]).alerts] == ["HighErrorRate"]
        a.gate.set()
        assert a.worker.drain(10)
        taken = a.post(json.dumps(second_alert))
        assert taken.status_code == 200 and taken.json()["outcomes"] == {"updated": 1}
    finally:
        a.gate.set()
        a.close()


def test_deeply_nested_json_is_400_and_the_server_survives(agent):
    response = agent.post(b'{"alerts": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    assert response.status_code in (400, 413)  # the default body limit may say it first
    big = Agent(max_body=1 << 20)
    try:
        response = big.post(b"[" * 200_000 + b"]" * 200_000)
        assert response.status_code == 400, response.text
        assert response.json()["error"] == "malformed JSON" and "nested too deeply" in response.json()["detail"]
        assert big.healthy()
        assert big.post(fixture_body("HighLatency_firing")).status_code == 200
    finally:
        big.close()


@pytest.mark.parametrize("labels, named", [
    ({"namespace": "Shop", "deployment": "cart"}, "namespace"),
    ({"namespace": "shop/../kube-system", "deployment": "cart"}, "namespace"),
    ({"namespace": "shop", "deployment": "cart,frontend"}, "deployment"),
    ({"namespace": "shop", "deployment": "../../secrets"}, "deployment"),
    ({"namespace": "shop", "workload": "cart", "deployment": "x=y"}, "deployment"),
    ({"namespace": "shop", "app": "My App"}, "app"),
    ({"namespace": "shop", "pod": "cart-7d9f8b6c5d-x2k4p/exec"}, "pod"),
    ({"namespace": "s" * 64, "deployment": "cart"}, "namespace"),
])
def test_label_values_that_are_not_kubernetes_names_are_skipped_with_the_label_named(agent, labels, named):
    alert = {"status": "firing", "labels": {"alertname": "HighErrorRate", **labels}}
    good = {"status": "firing", "labels": {"alertname": "HighErrorRate", "namespace": "shop", "deployment": "ok"}}
    response = agent.post(json.dumps({"version": "4", "status": "firing", "alerts": [alert, good]}))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["outcomes"] == {"ignored": 1, "opened": 1}
    (reason,) = body["ignored"]
    assert f"label {named}=" in reason and "not a valid" in reason
    assert [i.target.name for i in agent.tracker.open_incidents()] == ["ok"]
