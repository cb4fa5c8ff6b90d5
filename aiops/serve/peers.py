"""Which other replicas of this agent a follower may forward webhooks to, and whose forwarded requests it believes.

A follower forwards what it receives, bearer token included, to the URL the leader advertises in the Lease
annotation. Whoever can write that annotation must not be able to collect the token, so the URL is used only when
it names a verified peer: a pod address (IP and port) among the endpoints of the agent's own Service
(``webhook.peer_service``, read from the Kubernetes API), or a base URL configured explicitly
(``webhook.peer_urls``). Otherwise the follower takes the alerts itself.

The same list decides whether an ``X-Aiops-Forwarded-By`` header is believed (the request is then never forwarded
again): only from a peer's address, so a client cannot set it to pin alerts on a follower.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from typing import Callable, Iterable

from aiops.clients.kube import KubeClient
from aiops.domain.addresses import normal_host as _normal_host, url_key
from aiops.settings import Settings

log = logging.getLogger(__name__)

# How long a read of the Service's endpoints is used before it is read again; a lookup that misses re-reads at
# most every MIN_REFRESH_SECONDS (a new leader's pod may have appeared since).
REFRESH_SECONDS = 10.0
MIN_REFRESH_SECONDS = 1.0
ENDPOINTS_PATH = "/api/v1/namespaces/{namespace}/endpoints/{name}"

# (ip, port) pairs of the agent's own pods, read from the API.
EndpointSource = Callable[[], "set[tuple[str, int]]"]


def service_endpoints(kube: KubeClient, namespace: str, service: str) -> EndpointSource:
    """Reads the addresses (ready or not: the Service publishes not-ready ones too) and TCP ports of
    ``namespace/service``'s Endpoints. Needs ``get`` on that one Endpoints object."""
    def read() -> set[tuple[str, int]]:
        body = kube.request("GET", ENDPOINTS_PATH, {"namespace": namespace, "name": service})
        pairs = set()
        for subset in body.get("subsets") or []:
            addresses = (subset.get("addresses") or []) + (subset.get("notReadyAddresses") or [])
            ports = [p["port"] for p in subset.get("ports") or [] if p.get("protocol", "TCP") == "TCP" and p.get("port")]
            pairs |= {(_normal_host(a["ip"]), int(port)) for a in addresses if a.get("ip") for port in ports}
        return pairs
    return read


class PeerDirectory:
    """The verified peers: ``urls`` given explicitly, plus the pods ``endpoints`` reads (cached). Thread-safe.

    A failed read of the endpoints counts as no peers (fail closed: the follower takes the alerts itself)."""

    def __init__(self, urls: Iterable[str] = (), endpoints: EndpointSource | None = None, *,
                 refresh_seconds: float = REFRESH_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        urls = list(urls)
        bad = [u for u in urls if url_key(u) is None]
        if bad:
            raise ValueError(f"not a peer base URL (http(s)://host[:port]): {bad[0]!r}")
        self._static = {url_key(u) for u in urls}
        self._static_hosts = {host for _, host, _ in self._static}
        self._endpoints = endpoints
        self._refresh = refresh_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._known: frozenset[tuple[str, int]] = frozenset()
        self._read_at = float("-inf")

    @property
    def configured(self) -> bool:
        """False when nothing can be verified (no URLs, no Service): a follower then never forwards."""
        return bool(self._static) or self._endpoints is not None

    def verified_url(self, url: str) -> str | None:
        """``url`` when it is a verified peer's base URL, else None."""
        key = url_key(url)
        if key is None:
            return None
        if key in self._static:
            return url
        _, host, port = key
        if self._endpoints is None or not _is_ip(host):
            return None
        if (host, port) in self._current(0.0) or (host, port) in self._current(MIN_REFRESH_SECONDS):
            return url
        return None

    def is_peer_address(self, address: str) -> bool:
        """True when ``address`` (a request's remote IP) is a verified peer's."""
        if not address:
            return False
        host = _normal_host(address)
        if host in self._static_hosts:
            return True
        if self._endpoints is None:
            return False
        return any(h == host for h, _ in self._current(0.0)) or \
            any(h == host for h, _ in self._current(MIN_REFRESH_SECONDS))

    def _current(self, max_age_on_miss: float) -> frozenset[tuple[str, int]]:
        """The cached endpoints; read again when older than the refresh period (or than ``max_age_on_miss`` when
        the caller missed). One read at a time: others use what is cached meanwhile."""
        age = self._clock() - self._read_at
        stale = age >= self._refresh or (max_age_on_miss > 0 and age >= max_age_on_miss)
        if stale and self._endpoints is not None and self._lock.acquire(blocking=False):
            try:
                try:
                    known = frozenset(self._endpoints())
                except Exception as exc:  # noqa: BLE001 - the API down or refusing: no peer is verified
                    log.warning("cannot read the agent's own Service endpoints (%s: %s): no peer is verified, "
                                "webhooks are not forwarded", type(exc).__name__, exc)
                    known = frozenset()
                self._known, self._read_at = known, self._clock()
            finally:
                self._lock.release()
        return self._known


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def peer_directory(settings: Settings, kube: KubeClient) -> PeerDirectory:
    """The peers ``webhook.peer_service`` (in ``leader_election.namespace``) and ``webhook.peer_urls`` name."""
    webhook = settings.webhook
    endpoints = service_endpoints(kube, settings.leader_election.namespace, webhook.peer_service) \
        if webhook.peer_service else None
    peers = PeerDirectory(webhook.peer_urls, endpoints)
    if settings.leader_election.enabled and not peers.configured:
        log.warning("leader election is on but neither webhook.peer_service nor webhook.peer_urls is set: a follower "
                    "will not forward webhooks to the leader (it holds them until it leads)")
    return peers
