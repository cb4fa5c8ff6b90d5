"""A follower's webhook forwards to the leader, on real servers: the leader takes the alerts, the follower none;
when it cannot forward (no leader, leader down, leader refusing, already forwarded once) it takes them itself.
It forwards (with the bearer token) only to a verified peer (issue #13 defect 13), and believes the forwarded
header only from one."""

from __future__ import annotations

import json

import pytest
import requests

from aiops.serve.peers import PeerDirectory
from aiops.serve.webhook import FORWARDED_HEADER, WEBHOOK_PATH
from tests.support.polling import wait_until
from tests.support.realstack import free_port
from tests.test_serve_webhook import TOKEN, Agent, fixture_body


def counter(agent: Agent, line: str) -> float:
    for row in requests.get(agent.url + "/metrics", timeout=5).text.splitlines():
        if row.startswith(line + " "):
            return float(row.split()[-1])
    return 0.0


@pytest.fixture
def leader():
    a = Agent()
    yield a
    a.close()


def follower_of(url_of_leader, peers: PeerDirectory | None = None) -> Agent:
    """A follower whose verified peers are the URL ``url_of_leader`` returns now (unless ``peers`` is given)."""
    if peers is None:
        url = url_of_leader()
        peers = PeerDirectory([url] if url else [])
    return Agent(leader_url=url_of_leader, identity="agent-b", peers=peers)


def test_the_follower_forwards_to_the_leader_and_answers_with_its_answer(leader):
    follower = follower_of(lambda: leader.url)
    try:
        response = follower.post(fixture_body("HighErrorRate_firing"))
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["forwarded_to"] == leader.url
        assert body["received"] == 1 and len(body["incidents"]) == 1
        assert leader.tracker.get(body["incidents"][0]) is not None   # the leader correlated it ...
        assert follower.tracker.get(body["incidents"][0]) is None     # ... the follower did not
        wait_until(lambda: leader.handled == body["incidents"], 5, "the leader handles the incident")
        assert follower.handled == []
        assert counter(follower, 'aiops_webhook_requests_total{outcome="forwarded"}') == 1
        assert counter(leader, 'aiops_webhook_requests_total{outcome="accepted"}') == 1
    finally:
        follower.close()


def test_bad_input_is_answered_by_the_replica_it_reached_and_never_forwarded(leader):
    follower = follower_of(lambda: leader.url)
    try:
        assert follower.post(b'{"alerts": 5}').status_code == 422
        assert follower.post(fixture_body("HighErrorRate_firing"), token="wrong").status_code == 401
        assert counter(follower, 'aiops_webhook_requests_total{outcome="invalid"}') == 1
        assert counter(follower, 'aiops_webhook_requests_total{outcome="unauthorized"}') == 1
        leader_lines = requests.get(leader.url + "/metrics", timeout=5).text
        assert "aiops_webhook_requests_total{" not in leader_lines  # the leader saw no request at all
    finally:
        follower.close()


def test_a_forwarded_request_is_never_forwarded_again(leader):
    follower = follower_of(lambda: leader.url)
    try:
        response = requests.post(follower.url + WEBHOOK_PATH, data=fixture_body("HighErrorRate_firing"), timeout=5,
                                 headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}",
                                          FORWARDED_HEADER: "agent-c"})
        assert response.status_code == 200 and "forwarded_to" not in response.json()
        incident = response.json()["incidents"][0]
        assert follower.tracker.get(incident) is not None and leader.tracker.get(incident) is None
    finally:
        follower.close()


@pytest.mark.parametrize("case", ["no leader known", "leader down", "leader refuses"])
def test_the_follower_takes_the_alerts_itself_when_it_cannot_forward(case):
    refusing = Agent(token="another-token") if case == "leader refuses" else None
    target = {"no leader known": None, "leader down": f"http://127.0.0.1:{free_port()}",
              "leader refuses": refusing.url if refusing else None}[case]
    follower = follower_of(lambda: target)
    try:
        response = follower.post(fixture_body("HighErrorRate_firing"))
        assert response.status_code == 200 and "forwarded_to" not in response.json()
        incident = response.json()["incidents"][0]
        assert follower.tracker.get(incident) is not None
        wait_until(lambda: follower.handled == [incident], 5, "the follower's own worker gets the incident")
        failures = counter(follower, "aiops_webhook_forward_failures_total")
        assert failures == (0 if case == "no leader known" else 1)
        if refusing is not None:
            assert refusing.handled == [] and refusing.tracker.get(incident) is None
    finally:
        follower.close()
        if refusing is not None:
            refusing.close()


def test_the_leader_answer_is_passed_through_whole(leader):
    follower = follower_of(lambda: leader.url + "/")  # a trailing slash in the advertised URL is fine
    try:
        direct = json.loads(leader.post(fixture_body("grouped_by_namespace_firing")).text)
        via = follower.post(fixture_body("grouped_by_namespace_firing")).json()
        assert via.pop("forwarded_to") == leader.url + "/"
        assert via["incidents"] == direct["incidents"] and via["received"] == direct["received"]
    finally:
        follower.close()


# --- issue #13 defect 13: the token goes to verified peers only ---------------------------------------------------

@pytest.mark.parametrize("peers", [
    PeerDirectory(),                                                  # nothing configured
    PeerDirectory(["http://10.0.0.9:8080"]),                          # a peer, but not the URL the Lease names
    PeerDirectory(endpoints=lambda: {("10.0.0.9", 8080)}),            # the Service's pods: not that one either
])
def test_a_lease_url_that_is_not_a_verified_peer_never_gets_the_request_or_the_token(peers):
    rogue = Agent(token=None)  # accepts anything, and records what it got
    follower = follower_of(lambda: rogue.url, peers=peers)
    try:
        response = follower.post(fixture_body("HighErrorRate_firing"))
        assert response.status_code == 200 and "forwarded_to" not in response.json()
        incident = response.json()["incidents"][0]
        assert follower.tracker.get(incident) is not None       # taken here ...
        assert rogue.tracker.open_incidents() == []             # ... never sent to the Lease's URL
        assert "aiops_webhook_requests_total{" not in requests.get(rogue.url + "/metrics", timeout=5).text
    finally:
        follower.close()
        rogue.close()


def test_a_pod_among_the_services_endpoints_is_a_verified_leader(leader):
    port = leader.server.port
    follower = follower_of(lambda: leader.url, peers=PeerDirectory(endpoints=lambda: {("127.0.0.1", port)}))
    try:
        response = follower.post(fixture_body("HighErrorRate_firing"))
        assert response.status_code == 200 and response.json()["forwarded_to"] == leader.url
    finally:
        follower.close()


def test_a_forwarded_header_from_a_client_that_is_no_peer_is_ignored():
    """The leader listens on 127.0.0.2; the test client connects from 127.0.0.1, which is no peer's address."""
    leader = Agent(host="127.0.0.2")
    follower = follower_of(lambda: leader.url)
    try:
        response = requests.post(follower.url + WEBHOOK_PATH, data=fixture_body("HighErrorRate_firing"), timeout=5,
                                 headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}",
                                          FORWARDED_HEADER: "forged"})
        assert response.status_code == 200
        assert response.json()["forwarded_to"] == leader.url   # forwarded as usual: the header pinned nothing
        incident = response.json()["incidents"][0]
        assert leader.tracker.get(incident) is not None and follower.tracker.get(incident) is None
    finally:
        follower.close()
        leader.close()


def test_the_leaders_503_is_passed_on_so_alertmanager_retries():
    leader = Agent(max_queue=0)  # refuses every update
    follower = follower_of(lambda: leader.url)
    try:
        response = follower.post(fixture_body("HighErrorRate_firing"))
        assert response.status_code == 503
        assert response.json()["outcomes"] == {"refused": 1} and response.json()["forwarded_to"] == leader.url
        assert follower.tracker.open_incidents() == []  # not taken here either
    finally:
        follower.close()
        leader.close()
