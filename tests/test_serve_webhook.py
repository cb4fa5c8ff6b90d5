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

FIXTURES = Path("/work/shared/fixtures/alertmanager")
TOKEN = "s3cret-token"
MAX_BODY = 16_384


class WallClock:
    def now(self) -> float:
        return time.time()


class Agent:
    """A whole intake path: tracker -> receiver -> worker, behind a served webhook app."""

    def __init__(self, token: str | None = TOKEN, checks=None, leader_url=None, identity: str = "") -> None:
        self.handled: list[str] = []
        self._lock = threading.Lock()
        self.metrics = AgentMetrics()
        self.tracker = IncidentTracker(WallClock())
        self.worker = IncidentWorker(self._handle, metrics=self.metrics).start()
        self.receiver = QueueingReceiver(self.tracker, self.worker, self.metrics)
        self.readiness = Readiness(checks or {"prometheus": lambda: None}, timeout_seconds=0.5, cache_seconds=0)
        app = build_app(self.receiver, self.metrics, self.readiness, token, MAX_BODY, leader_url=leader_url,
                        identity=identity, forward_timeout=2.0)
        self.server = AgentServer(app, "127.0.0.1", 0).start()
        self.url = self.server.url

    def _handle(self, incident) -> None:
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
