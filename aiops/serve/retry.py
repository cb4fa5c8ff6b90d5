"""Incidents whose handling failed for a reason outside them (Prometheus or the apiserver down, the journal
unwritable), kept so the agent tries them again by itself instead of waiting for Alertmanager to repeat; and the
breaker that stops trying new ones while such a dependency is known to be down.

Each failure pushes the next try back (10 s, 20 s, 40 s ... at most 5 min); after ``max_attempts`` failures the
incident is given up (logged, and ``on_give_up`` called: the agent then forgets the incident, so Alertmanager's
next re-send of its alerts is new work instead of a duplicate nobody handles), so a bug that fails every time
cannot loop forever. A forced retry (a dependency came back) ignores the back-off.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable

from aiops.clients.kube import is_unavailable
from aiops.clients.prometheus import PrometheusError
from aiops.serve.journal_guard import JournalUnwritable

log = logging.getLogger(__name__)

FIRST_DELAY_SECONDS = 10.0
MAX_DELAY_SECONDS = 300.0
MAX_ATTEMPTS = 12
_CLAIMED = float("inf")  # next_try of an incident handed back to the worker and not finished yet


@dataclass
class _Entry:
    reason: str
    attempts: int
    next_try: float


class DeferredIncidents:
    """A thread-safe set of incident ids waiting for another try, with exponential back-off."""

    def __init__(self, max_attempts: int = MAX_ATTEMPTS, first_delay: float = FIRST_DELAY_SECONDS,
                 max_delay: float = MAX_DELAY_SECONDS, clock: Callable[[], float] = time.monotonic,
                 on_give_up: Callable[[str, str], None] | None = None) -> None:
        self._on_give_up = on_give_up
        self._max_attempts = max_attempts
        self._first_delay = first_delay
        self._max_delay = max_delay
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}

    def defer(self, incident_id: str, reason: str) -> bool:
        """Remember a failed try; False (forgotten, and ``on_give_up(id, reason)`` called) when the incident has
        failed ``max_attempts`` times."""
        with self._lock:
            entry = self._entries.get(incident_id)
            attempts = (entry.attempts if entry else 0) + 1
            given_up = attempts >= self._max_attempts
            if given_up:
                self._entries.pop(incident_id, None)
            else:
                delay = min(self._max_delay, self._first_delay * 2 ** (attempts - 1))
                self._entries[incident_id] = _Entry(reason, attempts, self._clock() + delay)
        if not given_up:
            return True
        log.error("giving up on incident after %d failed tries: %s", attempts, reason, extra={"incident": incident_id})
        if self._on_give_up is not None:  # outside the lock: it may take other locks (the tracker's)
            self._on_give_up(incident_id, reason)
        return False

    def done(self, incident_id: str) -> None:
        """The incident was handled (or closed): stop retrying it."""
        with self._lock:
            self._entries.pop(incident_id, None)

    def claim_due(self, force: bool = False) -> list[str]:
        """Ids whose back-off has passed (every waiting id when ``force``), oldest deadline first. Claimed ids are
        not returned again until ``defer`` (it failed again) or ``done``, so one incident is never queued twice."""
        now = self._clock()
        with self._lock:
            ready = sorted((e.next_try, i) for i, e in self._entries.items()
                           if e.next_try != _CLAIMED and (force or e.next_try <= now))
            for _, incident_id in ready:
                self._entries[incident_id].next_try = _CLAIMED
        return [i for _, i in ready]

    def reasons(self) -> dict[str, str]:
        """``{incident id: why its last try failed}``."""
        with self._lock:
            return {i: e.reason for i, e in self._entries.items()}

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


class DependencyBreaker:
    """Stops the worker from trying incidents for ``hold_seconds`` after one failed because a dependency is down,
    so an alert storm during an outage costs a queue entry per incident instead of a failed pass and a traceback.

    After the hold one incident is tried again (a failure holds again); ``reset`` (a success, readiness or the
    journal coming back) ends the hold at once.
    """

    def __init__(self, hold_seconds: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._hold = hold_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._until = 0.0
        self._reason: str | None = None

    def holding(self) -> str | None:
        """Why incidents are held back now, or None when the next one may be tried."""
        with self._lock:
            return self._reason if self._reason is not None and self._clock() < self._until else None

    def trip(self, reason: str) -> None:
        """A dependency failed: hold incidents back for ``hold_seconds``."""
        with self._lock:
            self._reason = reason
            self._until = self._clock() + self._hold

    def reset(self) -> bool:
        """End any hold; True when there was one (tripped and not reset since)."""
        with self._lock:
            was = self._reason is not None
            self._reason = None
            self._until = 0.0
            return was


def is_dependency_failure(exc: BaseException) -> bool:
    """True for failures of what the agent depends on (Prometheus, the API server, the journal, the network),
    as opposed to a problem with one incident."""
    if isinstance(exc, (JournalUnwritable, PrometheusError, OSError, TimeoutError)) or is_unavailable(exc):
        return True
    # requests' errors (Prometheus, the LLM endpoint) are RequestException, mostly OSError; the rest by module.
    return type(exc).__module__.split(".")[0] == "requests"
