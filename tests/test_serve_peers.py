"""Verified peers (issue #13 defect 13): the only places a follower sends its bearer token, read from the agent's own
Service endpoints (cached, fail closed) or configured explicitly."""

from __future__ import annotations

import uuid

import pytest

from aiops.clients.kube import KubeError
from aiops.domain.errors import InputError
from aiops.serve.peers import ENDPOINTS_PATH, PeerDirectory, service_endpoints
from aiops.domain.addresses import url_key
from aiops.settings import parse_settings


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


class Endpoints:
    """An endpoint source that counts its reads and can fail."""

    def __init__(self, pairs) -> None:
        self.pairs = set(pairs)
        self.reads = 0
        self.error: Exception | None = None

    def __call__(self):
        self.reads += 1
        if self.error is not None:
            raise self.error
        return set(self.pairs)


@pytest.mark.parametrize("url, key", [
    ("http://10.0.0.5:8080", ("http", "10.0.0.5", 8080)),
    ("http://10.0.0.5:8080/", ("http", "10.0.0.5", 8080)),
    ("https://Agent.Example", ("https", "agent.example", 443)),
    ("http://[0:0::1]:81", ("http", "::1", 81)),
    ("http://user:pw@10.0.0.5:8080", None),       # user info: a way to smuggle another host past a prefix check
    ("http://10.0.0.5:8080/evil", None),
    ("http://10.0.0.5:8080?x=1", None),
    ("ftp://10.0.0.5", None),
    ("http://10.0.0.5:99999", None),
    ("10.0.0.5:8080", None),
])
def test_only_plain_base_urls_are_peer_urls(url, key):
    assert url_key(url) == key


def test_explicit_peers_are_verified_by_scheme_host_and_port():
    peers = PeerDirectory(["http://10.0.0.5:8080"])
    assert peers.verified_url("http://10.0.0.5:8080/") == "http://10.0.0.5:8080/"
    assert peers.verified_url("http://10.0.0.5:8081") is None
    assert peers.verified_url("https://10.0.0.5:8080") is None
    assert peers.verified_url("http://evil.example:8080") is None
    assert peers.is_peer_address("10.0.0.5") and not peers.is_peer_address("10.0.0.6")
    assert not PeerDirectory().configured and not PeerDirectory().is_peer_address("10.0.0.5")


def test_service_endpoints_are_cached_refreshed_and_read_again_on_a_miss_at_most_every_second():
    clock, source = Clock(), Endpoints({("10.1.0.7", 8080)})
    peers = PeerDirectory(endpoints=source, refresh_seconds=10, clock=clock)
    assert peers.verified_url("http://10.1.0.7:8080") and source.reads == 1
    assert peers.verified_url("http://10.1.0.7:8080") and source.reads == 1   # cached
    assert peers.verified_url("http://10.1.0.7:9090") is None                # wrong port
    assert peers.verified_url("http://agent.example:8080") is None           # a name, not a pod address
    assert source.reads == 1                                                  # misses within 1 s: no re-read
    source.pairs.add(("10.1.0.8", 8080))                                      # a new pod, e.g. the new leader
    clock.t += 1
    assert peers.verified_url("http://10.1.0.8:8080") and source.reads == 2  # the miss re-read
    assert peers.is_peer_address("10.1.0.8")
    source.pairs = {("10.1.0.8", 8080)}
    clock.t += 10
    assert not peers.is_peer_address("10.1.0.7")                             # gone after the refresh


def test_a_failed_read_verifies_nobody(caplog):
    clock, source = Clock(), Endpoints({("10.1.0.7", 8080)})
    peers = PeerDirectory(endpoints=source, clock=clock)
    assert peers.verified_url("http://10.1.0.7:8080")
    source.error = KubeError(403, "Forbidden", "endpoints is forbidden")
    clock.t += 11
    assert peers.verified_url("http://10.1.0.7:8080") is None
    assert not peers.is_peer_address("10.1.0.7")
    assert "no peer is verified" in caplog.text


class FakeKube:
    def __init__(self, body: dict) -> None:
        self.body = body
        self.calls: list[tuple] = []

    def request(self, method, path, path_params, body=None):
        self.calls.append((method, path, path_params))
        return self.body


def test_service_endpoints_reads_ready_and_not_ready_pods_and_their_tcp_ports():
    kube = FakeKube({"subsets": [
        {"addresses": [{"ip": "10.1.0.7"}], "notReadyAddresses": [{"ip": "10.1.0.8"}],
         "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]},
        {"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 8080}]},
    ]})
    read = service_endpoints(kube, "aiops-system", "aiops")
    assert read() == {("10.1.0.7", 8080), ("10.1.0.8", 8080), ("fd00::1", 8080)}
    assert kube.calls == [("GET", ENDPOINTS_PATH, {"namespace": "aiops-system", "name": "aiops"})]
    assert service_endpoints(FakeKube({}), "ns", "svc")() == set()  # a Service with no pods yet


@pytest.mark.parametrize("section, reason", [
    ({"peer_urls": ["http://user@10.0.0.5:8080"]}, "webhook.peer_urls"),
    ({"peer_urls": ["http://10.0.0.5:8080/x"]}, "webhook.peer_urls"),
    ({"peer_service": "Aiops"}, "webhook.peer_service"),
    ({"alert_idle_seconds": 0}, "webhook.alert_idle_seconds"),
])
def test_bad_peer_settings_name_the_key(section, reason):
    with pytest.raises(InputError, match=reason):
        parse_settings({"webhook": section})


def test_the_real_apiservers_endpoints_verify_the_agents_pods_and_nothing_else(kube_real):
    """On kube-apiserver v1.20: what the agent's Service's Endpoints list (ready or not) is what a follower trusts."""
    namespace = f"t-{uuid.uuid4().hex[:10]}"
    kube_real.create_namespace(namespace)
    client = kube_real.client()
    try:
        client.request("POST", "/api/v1/namespaces/{namespace}/services", {"namespace": namespace}, {
            "metadata": {"name": "aiops"}, "spec": {"ports": [{"port": 8080, "protocol": "TCP"}]}})
        client.request("POST", "/api/v1/namespaces/{namespace}/endpoints", {"namespace": namespace}, {
            "metadata": {"name": "aiops"}, "subsets": [{
                "addresses": [{"ip": "10.9.0.7"}], "notReadyAddresses": [{"ip": "10.9.0.8"}],
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}]})
        peers = PeerDirectory(endpoints=service_endpoints(client, namespace, "aiops"))
        assert peers.verified_url("http://10.9.0.7:8080") and peers.verified_url("http://10.9.0.8:8080/")
        assert peers.verified_url("http://10.9.0.9:8080") is None and peers.verified_url("http://10.9.0.7:80") is None
        assert peers.is_peer_address("10.9.0.8") and not peers.is_peer_address("10.9.0.1")
        absent = PeerDirectory(endpoints=service_endpoints(client, namespace, "no-such-service"))
        assert absent.verified_url("http://10.9.0.7:8080") is None  # 404: fail closed
    finally:
        client.close()
        kube_real.delete_namespace(namespace)
