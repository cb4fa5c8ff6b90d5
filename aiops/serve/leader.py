"""Leader election on a ``coordination.k8s.io/v1`` Lease, the way client-go's ``leaderelection`` does it.

Every candidate reads the Lease each ``retry_period``. A Lease held by someone else counts as expired only when this
candidate has seen the same record unchanged for ``leaseDurationSeconds`` of its *own* clock, so clock skew between
machines never shortens a lease. Writes carry the resourceVersion that was read, so of two candidates racing for a
free Lease exactly one wins (the other gets 409 Conflict). The leader renews every ``retry_period``; it steps down
at once when it finds another holder in the Lease (a stolen lease), and when no renewal succeeded for
``renew_deadline`` (then ``is_leader`` turns False by itself, even if the renewing thread is stuck). A clean
``stop`` releases the Lease so a follower takes over without waiting. Unlike the official Python client's election,
leadership can be lost and regained without restarting the process.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass
from typing import Callable, Protocol

from aiops.clients.kube import KubeError, micro_time

log = logging.getLogger(__name__)

LEADER = "leader"
FOLLOWER = "follower"
# Why leadership ended (the ``reason`` label of ``aiops_leader_lost_total``).
STOLEN = "stolen"
RENEW_FAILED = "renew_failed"
RELEASED = "released"
# The leader's base URL, for followers to forward webhooks to: an annotation on the Lease, written with every renewal.
LEADER_URL_ANNOTATION = "aiops.io/leader-url"


class LeaseApi(Protocol):
    """The Lease calls the elector needs (``KubeClient`` has them); errors are ``KubeError``. ``timeout`` bounds
    one request in seconds, so a hanging API cannot stall the election."""

    def get_lease(self, namespace: str, name: str, timeout: float | None = None) -> dict: ...

    def create_lease(self, namespace: str, lease: dict, timeout: float | None = None) -> dict: ...

    def replace_lease(self, namespace: str, name: str, lease: dict, timeout: float | None = None) -> dict: ...


@dataclass(frozen=True)
class LeaseRecord:
    """The parts of a Lease the election reads. Two reads are the same record when every field is equal."""

    holder: str
    duration_seconds: int
    acquire_time: str | None
    renew_time: str | None
    transitions: int
    resource_version: str
    holder_url: str = ""

    @classmethod
    def from_lease(cls, lease: dict) -> "LeaseRecord":
        spec = lease.get("spec") or {}
        meta = lease.get("metadata") or {}
        return cls(holder=spec.get("holderIdentity") or "", duration_seconds=int(spec.get("leaseDurationSeconds") or 0),
                   acquire_time=spec.get("acquireTime"), renew_time=spec.get("renewTime"),
                   transitions=int(spec.get("leaseTransitions") or 0),
                   resource_version=meta.get("resourceVersion", ""),
                   holder_url=(meta.get("annotations") or {}).get(LEADER_URL_ANNOTATION, ""))


@dataclass(frozen=True)
class ElectionStatus:
    """What ``/readyz`` shows: this agent's role, who leads, why leadership was last lost (if it was), and the
    error of the last Lease request when it failed (empty once one succeeds)."""

    state: str
    identity: str
    holder: str
    lease: str
    reason: str
    transitions: int
    error: str = ""
    holder_url: str = ""

    def as_dict(self) -> dict:
        return {"state": self.state, "identity": self.identity, "holder": self.holder, "lease": self.lease,
                "reason": self.reason, "transitions": self.transitions, "error": self.error,
                "holder_url": self.holder_url}


def _expired(record: LeaseRecord, seen_at: float, now: float) -> bool:
    """True once ``record`` was seen unchanged for its whole lease duration on this agent's own clock: its holder
    stopped renewing."""
    return now >= seen_at + max(record.duration_seconds, 1)


class LeaseElector:
    """Competes for the Lease ``namespace/name`` as ``identity``.

    ``on_started_leading()`` and ``on_stopped_leading(reason, detail)`` (settable attributes) run in the election
    thread right after the change; they must return quickly (start a thread for slow work), or renewals are
    delayed. ``clock`` is a monotonic clock (seconds) for all timing, ``wall`` the Unix time written into the Lease;
    both are injectable so unit tests drive ``step()`` by hand. ``advertise_url`` (this agent's base URL) is
    written into the Lease while this agent holds it, so followers know where to forward webhooks.
    """

    def __init__(self, api: LeaseApi, namespace: str, name: str, identity: str, *, lease_duration: int = 15,
                 renew_deadline: float = 10.0, retry_period: float = 2.0,
                 on_started_leading: Callable[[], None] | None = None,
                 on_stopped_leading: Callable[[str, str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time,
                 advertise_url: str | None = None) -> None:
        if not identity:
            raise ValueError("identity must not be empty")
        if not lease_duration > renew_deadline > retry_period > 0:
            raise ValueError("need lease_duration > renew_deadline > retry_period > 0, got "
                             f"{lease_duration}, {renew_deadline}, {retry_period}")
        self._api = api
        self.namespace, self.name, self.identity = namespace, name, identity
        self.lease_duration = int(lease_duration)
        self.renew_deadline = float(renew_deadline)
        self.retry_period = float(retry_period)
        self.on_started_leading = on_started_leading
        self.on_stopped_leading = on_stopped_leading
        self._clock, self._wall = clock, wall
        self.advertise_url = advertise_url or ""
        self._lock = threading.Lock()
        self._leading = False
        self._renewed_at = float("-inf")
        self._observed: LeaseRecord | None = None
        self._observed_at = float("-inf")
        self._reason = ""
        self._error = ""
        self._transitions = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.leader_event = threading.Event()  # set while this agent leads

    # --- state ---------------------------------------------------------------------------------------------
    @property
    def is_leader(self) -> bool:
        """True while this agent holds the Lease and renewed it less than ``renew_deadline`` ago."""
        with self._lock:
            return self._leading and self._clock() < self._renewed_at + self.renew_deadline

    def status(self) -> ElectionStatus:
        """The current role, the observed holder and the reason leadership was last lost."""
        leading = self.is_leader
        with self._lock:
            holder = self._observed.holder if self._observed else ""
            holder_url = self._observed.holder_url if self._observed and holder else ""
            return ElectionStatus(LEADER if leading else FOLLOWER, self.identity, holder,
                                  f"{self.namespace}/{self.name}", self._reason, self._transitions, self._error,
                                  holder_url)

    def leader_url(self) -> str | None:
        """The base URL the current leader advertises, while another agent holds an unexpired Lease; else None
        (this agent leads, nobody leads, the leader advertises nothing, or its Lease went unrenewed too long)."""
        now = self._clock()
        with self._lock:
            record, seen_at = self._observed, self._observed_at
        if record is None or not record.holder or record.holder == self.identity or not record.holder_url:
            return None
        return None if _expired(record, seen_at, now) else record.holder_url

    # --- running -------------------------------------------------------------------------------------------
    def start(self) -> "LeaseElector":
        """Run the election in a daemon thread until ``stop``. Returns self."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="aiops-leader-election", daemon=True)
            self._thread.start()
        return self

    def stop(self, release: bool = True, timeout: float = 5.0) -> None:
        """End the election thread; with ``release``, hand the Lease back if this agent holds it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if release:
            self.release()

    def _run(self) -> None:
        while not self._stop.is_set():
            leading = self.step()
            # Candidates jitter their polls (like client-go's JitterUntil) so they do not race in lock-step.
            wait = self.retry_period if leading else self.retry_period * (1 + 0.2 * random.random())
            self._stop.wait(wait)

    def step(self) -> bool:
        """One attempt to acquire or renew; updates the role and fires the callbacks. Returns ``is_leader``."""
        now = self._clock()  # taken before the request: the renewal counts from when it was sent
        try:
            renewed = self._try_acquire_or_renew(now)
            error = ""
        except KubeError as exc:
            renewed, error = False, str(exc)
        except Exception as exc:  # noqa: BLE001 - the API unreachable, a timeout: retried next period
            renewed, error = False, f"{type(exc).__name__}: {exc}"
        with self._lock:
            self._error = error
        if error:
            log.warning("leader election: cannot reach lease %s/%s: %s", self.namespace, self.name, error)
        if renewed:
            self._renewed(now)
        else:
            self._not_renewed(now, error)
        return self.is_leader

    def release(self) -> bool:
        """Give the Lease up if this agent holds it (holder emptied, duration 1 s). True when released."""
        with self._lock:
            observed = self._observed
        self._lose(RELEASED, "released on shutdown")  # a no-op unless leading
        if observed is None or observed.holder != self.identity:
            return False
        stamp = micro_time(self._wall())
        lease = self._lease_body(observed.resource_version, "", 1, stamp, stamp, observed.transitions)
        try:
            self._api.replace_lease(self.namespace, self.name, lease, timeout=self.renew_deadline)
        except Exception as exc:  # noqa: BLE001 - the lease then simply expires
            log.warning("leader election: could not release lease %s/%s: %s", self.namespace, self.name, exc)
            return False
        log.info("leader election: released lease %s/%s", self.namespace, self.name)
        return True

    # --- internals -----------------------------------------------------------------------------------------
    def _try_acquire_or_renew(self, now: float) -> bool:
        stamp = micro_time(self._wall())
        try:
            current = self._api.get_lease(self.namespace, self.name, timeout=self.renew_deadline)
        except KubeError as exc:
            if not exc.not_found:
                raise
            lease = self._lease_body(None, self.identity, self.lease_duration, stamp, stamp, 0)
            try:
                created = self._api.create_lease(self.namespace, lease, timeout=self.renew_deadline)
            except KubeError as exc2:
                if exc2.conflict:  # another candidate created it first
                    return False
                raise
            self._observe(LeaseRecord.from_lease(created), now)
            return True
        record = LeaseRecord.from_lease(current)
        self._observe(record, now)
        mine = record.holder == self.identity
        if record.holder and not mine and not _expired(record, self._observed_at, now):
            return False  # held by someone else and not expired
        acquire = record.acquire_time if mine and record.acquire_time else stamp
        transitions = record.transitions if mine else record.transitions + 1
        lease = self._lease_body(record.resource_version, self.identity, self.lease_duration, acquire, stamp,
                                 transitions)
        try:
            updated = self._api.replace_lease(self.namespace, self.name, lease, timeout=self.renew_deadline)
        except KubeError as exc:
            if exc.conflict:  # someone wrote the Lease since we read it; read again next period
                return False
            raise
        self._observe(LeaseRecord.from_lease(updated), now)
        return True

    def _lease_body(self, resource_version: str | None, holder: str, duration: int, acquire: str, renew: str,
                    transitions: int) -> dict:
        meta: dict = {"name": self.name, "namespace": self.namespace}
        if resource_version:
            meta["resourceVersion"] = resource_version
        if holder == self.identity and self.advertise_url:
            meta["annotations"] = {LEADER_URL_ANNOTATION: self.advertise_url}
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta,
                "spec": {"holderIdentity": holder, "leaseDurationSeconds": duration, "acquireTime": acquire,
                         "renewTime": renew, "leaseTransitions": transitions}}

    def _observe(self, record: LeaseRecord, now: float) -> None:
        with self._lock:
            if record != self._observed:
                self._observed, self._observed_at = record, now

    def _renewed(self, now: float) -> None:
        with self._lock:
            self._renewed_at = now
            started = not self._leading
            self._leading = True
            if started:
                self._transitions += 1
                self._reason = ""
        if started:
            log.info("leader election: %s now leads (lease %s/%s)", self.identity, self.namespace, self.name)
            self.leader_event.set()
            if self.on_started_leading is not None:
                self.on_started_leading()

    def _not_renewed(self, now: float, error: str) -> None:
        with self._lock:
            leading, holder = self._leading, self._observed.holder if self._observed else ""
            overdue = now >= self._renewed_at + self.renew_deadline
        if not leading:
            return
        if holder and holder != self.identity:
            self._lose(STOLEN, f"lease {self.namespace}/{self.name} taken by {holder}")
        elif overdue:
            self._lose(RENEW_FAILED, f"lease not renewed for {self.renew_deadline:g}s"
                                     + (f": {error}" if error else ""))

    def _lose(self, reason: str, detail: str) -> None:
        with self._lock:
            if not self._leading:
                return
            self._leading = False
            self._transitions += 1
            self._reason = f"{reason}: {detail}"
        self.leader_event.clear()
        log.warning("leader election: %s stopped leading (%s: %s)", self.identity, reason, detail)
        if self.on_stopped_leading is not None:
            self.on_stopped_leading(reason, detail)
