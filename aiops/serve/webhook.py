"""The agent's HTTP face: the Alertmanager webhook receiver, health and readiness probes, and ``/metrics``.

Every bad request gets a JSON answer naming what was wrong and the server keeps serving; the receiver only
correlates and queues, so the webhook answers fast and the heavy diagnose/act work runs elsewhere.

Behind one Service, Alertmanager reaches any replica. A follower forwards a valid request, unchanged, to the leader
the Lease names, but only when that URL is a verified peer (``serve.peers``: a pod of the agent's own Service, or
a URL configured explicitly), so a forged Lease annotation cannot collect the bearer token. It answers with the
leader's answer; when no verified leader is known or it cannot be reached, it takes the alerts itself (and holds
what it cannot act on yet). One hop only: a request a verified peer forwarded is never forwarded again, while the
same header from anyone else is ignored (it must not pin alerts on a follower).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections import Counter
from typing import Any, Callable, Protocol

import aiohttp
from aiohttp import web

from aiops.collect.alertmanager import parse_webhook
from aiops.correlate.incidents import IGNORED, REFUSED
from aiops.domain.alerts import Alert
from aiops.domain.errors import InputError
from aiops.domain.incident import IncidentUpdate
from aiops.serve.metrics import AgentMetrics
from aiops.serve.peers import PeerDirectory
from aiops.serve.readiness import Readiness

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/webhook/alertmanager"
# Set on a request one replica forwards to the leader (its identity as the value): such a request is never
# forwarded again, so two replicas that each think the other leads cannot bounce it between them.
FORWARDED_HEADER = "X-Aiops-Forwarded-By"
REFUSED_DETAIL = "some alerts were not taken (the work queue is full); send them again"
PayloadParser = Callable[[Any], "list[Alert]"]
LeaderUrl = Callable[[], "str | None"]


class AlertReceiver(Protocol):
    """Takes parsed alerts and returns what happened to each. Must return fast: queue the heavy work."""

    def receive(self, alerts: list[Alert]) -> list[IncidentUpdate]: ...


def build_app(receiver: AlertReceiver, metrics: AgentMetrics, readiness: Readiness, token: str | None,
              max_body_bytes: int, *, parse: PayloadParser = parse_webhook, leader_url: LeaderUrl | None = None,
              identity: str = "", forward_timeout: float = 5.0, peers: PeerDirectory | None = None) -> web.Application:
    """The aiohttp application. ``token`` turns on bearer auth for the webhook; ``parse`` turns the JSON body
    into alerts and raises ``InputError`` on a wrong shape. ``leader_url`` returns the leader's base URL while
    this agent follows (None while it leads): requests are then forwarded there, as ``identity``, when ``peers``
    verifies it (without ``peers`` nothing is verified, so nothing is forwarded)."""
    # client_max_size makes aiohttp itself refuse bigger bodies, which also covers chunked uploads.
    app = web.Application(client_max_size=max_body_bytes)
    forwarder = _LeaderForwarder(leader_url, identity, forward_timeout, metrics, peers or PeerDirectory()) \
        if leader_url else None
    handler = _WebhookHandler(receiver, metrics, token, max_body_bytes, parse, forwarder)
    if forwarder is not None:
        app.on_cleanup.append(forwarder.close)
    app.router.add_post(WEBHOOK_PATH, handler.handle)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz_handler(readiness))
    app.router.add_get("/metrics", _metrics_handler(metrics))
    return app


class _Rejected(Exception):
    """A request the webhook refuses: carries the HTTP status, the metrics outcome label and the JSON body."""

    def __init__(self, status: int, outcome: str, body: dict[str, Any], headers: dict[str, str] | None = None):
        super().__init__(body.get("error", outcome))
        self.status = status
        self.outcome = outcome
        self.body = body
        self.headers = headers or {}


class _LeaderForwarder:
    """Sends a follower's webhook requests on to the leader and returns the leader's answer (None when it cannot:
    no leader known, a request that was already forwarded once, the leader unreachable or refusing)."""

    def __init__(self, leader_url: LeaderUrl, identity: str, timeout: float, metrics: AgentMetrics,
                 peers: PeerDirectory) -> None:
        self._leader_url = leader_url
        self._identity = identity or "follower"
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._metrics = metrics
        self._peers = peers
        self._session: aiohttp.ClientSession | None = None
        self._refused_url = ""  # the last unverified leader URL warned about (warn once per URL, not per request)

    async def forward(self, request: web.Request, body: bytes) -> web.Response | None:
        # The peer checks may read the API (cached): off the event loop, so one slow read never stalls intake.
        if request.headers.get(FORWARDED_HEADER):
            if await asyncio.to_thread(self._peers.is_peer_address, request.remote or ""):
                return None  # a peer forwarded it (authorized by the token, checked before): never again
            log.info("ignoring %s from %s: not a verified peer", FORWARDED_HEADER, request.remote)
        base = await asyncio.to_thread(self._verified_leader)
        if not base:
            return None
        target = base.rstrip("/") + WEBHOOK_PATH
        headers = {"Content-Type": request.headers.get("Content-Type", "application/json"),
                   FORWARDED_HEADER: self._identity}
        if "Authorization" in request.headers:
            headers["Authorization"] = request.headers["Authorization"]
        try:
            if self._session is None:
                self._session = aiohttp.ClientSession(timeout=self._timeout)
            async with self._session.post(target, data=body, headers=headers) as response:
                answer = await response.read()
                status = response.status
                # 503: the leader took some alerts and refused the rest; Alertmanager's retry sorts them out.
                if status not in (200, 503):
                    raise ValueError(f"HTTP {status}: {answer[:200].decode('utf-8', 'replace')}")
                answer = json.loads(answer)
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
            self._metrics.webhook_forward_failures.inc()
            log.warning("could not forward the webhook to the leader at %s (%s); taking the alerts here", target,
                        exc or type(exc).__name__)
            return None
        body_out = answer if isinstance(answer, dict) else {"leader_answer": answer}
        return web.json_response({**body_out, "forwarded_to": base}, status=status)

    def _verified_leader(self) -> str | None:
        """The leader's URL from the Lease when it is a verified peer; None otherwise (the alerts stay here)."""
        url = self._leader_url()
        if not url:
            return None
        verified = self._peers.verified_url(url)
        if verified is None and url != self._refused_url:
            self._refused_url = url
            log.warning("the leader's URL %r is not a verified peer (webhook.peer_service / webhook.peer_urls): "
                        "not forwarding the bearer token there; taking the alerts here", url[:200])
        return verified

    async def close(self, app: web.Application | None = None) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class _WebhookHandler:
    def __init__(self, receiver: AlertReceiver, metrics: AgentMetrics, token: str | None, max_body_bytes: int,
                 parse: PayloadParser, forwarder: _LeaderForwarder | None = None) -> None:
        self._receiver = receiver
        self._metrics = metrics
        self._token = token.encode() if token else None
        self._max_body = max_body_bytes
        self._parse = parse
        self._forwarder = forwarder

    async def handle(self, request: web.Request) -> web.Response:
        try:
            self._authorize(request)
            self._check_content_type(request)
            body = await self._read_body(request)
            alerts = self._parse_alerts(_decode(body))
            # checked here first, so a bad request gets its precise answer from the replica it reached
            forwarded = await self._forwarder.forward(request, body) if self._forwarder else None
            if forwarded is not None:
                self._metrics.webhook_requests.labels(outcome="forwarded").inc()
                return forwarded
            updates = self._receive(alerts)
        except _Rejected as rejected:
            self._metrics.webhook_requests.labels(outcome=rejected.outcome).inc()
            log.info("webhook request rejected: %s", rejected.body.get("detail", rejected.outcome),
                     extra={"status": rejected.status})
            return web.json_response(rejected.body, status=rejected.status, headers=rejected.headers)
        summary = _summary(alerts, updates)
        if "refused" in summary:
            # Alertmanager retries a 5xx: the re-send finds the taken alerts duplicates and the refused ones new.
            self._metrics.webhook_requests.labels(outcome="refused").inc()
            log.warning("webhook: %d of %d alerts refused (the work queue is full); answering 503",
                        len(summary["refused"]), len(alerts))
            return web.json_response({"error": "overloaded", "detail": REFUSED_DETAIL, **summary}, status=503,
                                     headers={"Retry-After": "10"})
        self._metrics.webhook_requests.labels(outcome="accepted").inc()
        return web.json_response(summary)

    def _authorize(self, request: web.Request) -> None:
        if self._token is None:
            return
        scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not presented:
            raise _Rejected(401, "unauthorized", {"error": "unauthorized", "detail": "missing bearer token"},
                            {"WWW-Authenticate": "Bearer"})
        if not hmac.compare_digest(presented.strip().encode(), self._token):
            raise _Rejected(401, "unauthorized", {"error": "unauthorized", "detail": "wrong bearer token"},
                            {"WWW-Authenticate": "Bearer"})

    @staticmethod
    def _check_content_type(request: web.Request) -> None:
        kind = request.content_type.lower()
        if kind != "application/json" and not kind.endswith("+json"):
            raise _Rejected(415, "unsupported_media_type", {
                "error": "unsupported media type",
                "detail": f"Content-Type must be application/json, got {request.headers.get('Content-Type', '')!r}"})

    async def _read_body(self, request: web.Request) -> bytes:
        too_big = _Rejected(413, "too_large", {
            "error": "payload too large", "detail": f"body exceeds {self._max_body} bytes"})
        if request.content_length is not None and request.content_length > self._max_body:
            raise too_big
        try:
            return await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise too_big from None

    def _parse_alerts(self, payload: Any) -> list[Alert]:
        try:
            return list(self._parse(payload))
        except InputError as exc:
            raise _Rejected(422, "invalid", {"error": "invalid payload", "where": exc.where,
                                             "reason": exc.reason, "detail": str(exc)}) from None

    def _receive(self, alerts: list[Alert]) -> list[IncidentUpdate]:
        try:
            return self._receiver.receive(alerts)
        except Exception:  # noqa: BLE001 - a receiver bug must not take the webhook down
            log.exception("alert receiver failed")
            raise _Rejected(500, "error", {"error": "internal error", "detail": "the alert receiver failed"}) \
                from None


def _decode(body: bytes) -> Any:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Rejected(400, "bad_json", {"error": "malformed JSON",
                                          "detail": f"body is not UTF-8 (byte {exc.start})"}) from None
    try:
        return json.loads(text)
    except RecursionError:
        raise _Rejected(400, "bad_json", {"error": "malformed JSON",
                                          "detail": "nested too deeply (an Alertmanager body is 4 levels deep)"}) \
            from None
    except json.JSONDecodeError as exc:
        raise _Rejected(400, "bad_json", {
            "error": "malformed JSON", "detail": f"{exc.msg} at line {exc.lineno} column {exc.colno}",
            "line": exc.lineno, "column": exc.colno, "position": exc.pos}) from None


def _summary(alerts: list[Alert], updates: list[IncidentUpdate]) -> dict[str, Any]:
    outcomes = Counter(u.outcome for u in updates)
    incidents = list(dict.fromkeys(u.incident.id for u in updates if u.incident.id and u.outcome != REFUSED))
    ignored = [u.extra.get("reason", "") for u in updates if u.outcome == IGNORED]
    body: dict[str, Any] = {"received": len(alerts), "outcomes": dict(outcomes), "incidents": incidents}
    if ignored:
        body["ignored"] = ignored
    refused = [{"index": i, "alert": a.name, "fingerprint": a.fingerprint}
               for i, (a, u) in enumerate(zip(alerts, updates)) if u.outcome == REFUSED]
    if refused:
        body["refused"] = refused
    return body


async def _healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def _readyz_handler(readiness: Readiness):
    async def readyz(request: web.Request) -> web.Response:
        ready, checks = await readiness.check()
        return web.json_response({"ready": ready, "checks": checks, **readiness.info()}, status=200 if ready else 503)
    return readyz


def _metrics_handler(metrics: AgentMetrics):
    async def metrics_endpoint(request: web.Request) -> web.Response:
        body, content_type = metrics.render()
        # Set the header whole: the exposition format's version parameter matters to scrapers.
        return web.Response(body=body, headers={"Content-Type": content_type})
    return metrics_endpoint
