"""Group alerts and detector anomalies into one incident per owning workload.

The tracker is the only place that decides whether a delivery is new work: an alert seen again while it still fires
is a duplicate, a different alert on the same workload updates the open incident, and a resolved alert shrinks it
until it closes. Everything downstream (diagnosis, plans, actions) keys on the incident id this module hands out.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from aiops.correlate.owner import owner_of
from aiops.domain.alerts import Alert
from aiops.domain.incident import Anomaly, Incident, IncidentStatus, IncidentUpdate
from aiops.domain.protocols import Clock
from aiops.domain.target import Target

OPENED = "opened"
UPDATED = "updated"
DUPLICATE = "duplicate"
RESOLVED = "resolved"
IGNORED = "ignored"
OUTCOMES: tuple[str, ...] = (OPENED, UPDATED, DUPLICATE, RESOLVED, IGNORED)
# Intake sweeps expired incidents at most this often (clock seconds); ``expire()`` always sweeps.
SWEEP_INTERVAL_SECONDS = 1.0


def incident_id(namespace: str, workload: str, opened: float) -> str:
    """A stable id: the same workload and first-seen time give the same id, even after an agent restart."""
    raw = f"{namespace}/{workload}/{opened:.3f}"
    return "inc-" + hashlib.sha256(raw.encode()).hexdigest()[:16]


@dataclass(slots=True)
class _Record:
    """The mutable state behind one incident; ``snapshot`` turns it into the frozen domain ``Incident``."""

    id: str
    target: Target
    opened: float
    last_activity: float
    alerts: dict[str, Alert] = field(default_factory=dict)
    anomalies: dict[tuple[str, str], Anomaly] = field(default_factory=dict)
    resolved_fingerprints: set[str] = field(default_factory=set)
    status: IncidentStatus = IncidentStatus.OPEN
    resolved_at: float | None = None

    def snapshot(self) -> Incident:
        return Incident(id=self.id, target=self.target, opened=self.opened, alerts=tuple(self.alerts.values()),
                        anomalies=tuple(self.anomalies.values()), status=self.status)


class IncidentTracker:
    """Correlates alerts and anomalies into incidents, one open incident per workload. Thread-safe.

    ``namespaces`` is the scope allow-list (empty = every namespace). Anomaly-only incidents resolve after
    ``quiet_seconds`` without a new finding; resolved incidents are remembered for ``resolved_ttl_seconds`` (to
    recognise late redeliveries of their resolved alerts) and then forgotten, which bounds memory.
    """

    def __init__(self, clock: Clock, namespaces: Iterable[str] = (), *, quiet_seconds: float = 900.0,
                 resolved_ttl_seconds: float = 3600.0) -> None:
        self._clock = clock
        self._namespaces = frozenset(namespaces)
        self._quiet_seconds = quiet_seconds
        self._resolved_ttl = resolved_ttl_seconds
        self._lock = threading.Lock()
        self._open: dict[tuple[str, str], _Record] = {}
        self._resolved: dict[tuple[str, str], _Record] = {}
        self._last_sweep: float | None = None

    # -- alerts -------------------------------------------------------------------------------------------------

    def ingest(self, alert: Alert) -> IncidentUpdate:
        """Fold one Alertmanager alert into the incidents and say what happened to it."""
        owner = owner_of(alert.labels)
        if not owner.found:
            return _ignored(alert, owner.namespace, owner.workload, self._clock.now(), owner.reason)
        with self._lock:
            now = self._clock.now()
            self._sweep_if_due(now)
            if not self._in_scope(owner.namespace):
                return _ignored(alert, owner.namespace, owner.workload, now,
                                f"namespace {owner.namespace!r} is outside the scope allow-list")
            key = (owner.namespace, owner.workload)
            if alert.status == "firing":
                return self._firing(key, alert, now)
            if alert.status == "resolved":
                return self._resolved_alert(key, alert, now)
            return _ignored(alert, owner.namespace, owner.workload, now, f"unknown alert status {alert.status!r}")

    def _firing(self, key: tuple[str, str], alert: Alert, now: float) -> IncidentUpdate:
        record = self._open.get(key)
        if record is None:
            record = self._open_record(key, alert.starts_at or now, now)
            record.alerts[alert.fingerprint] = alert
            return IncidentUpdate(record.snapshot(), OPENED, {"alert": alert.name})
        record.last_activity = now
        known = alert.fingerprint in record.alerts
        # Keep the newest copy (annotations carry the latest values) even when nothing new has to happen.
        record.alerts[alert.fingerprint] = alert
        record.resolved_fingerprints.discard(alert.fingerprint)
        return IncidentUpdate(record.snapshot(), DUPLICATE if known else UPDATED, {"alert": alert.name})

    def _resolved_alert(self, key: tuple[str, str], alert: Alert, now: float) -> IncidentUpdate:
        record = self._open.get(key)
        if record is not None and alert.fingerprint in record.alerts:
            del record.alerts[alert.fingerprint]
            record.resolved_fingerprints.add(alert.fingerprint)
            record.last_activity = now
            if record.alerts:
                return IncidentUpdate(record.snapshot(), UPDATED, {"resolved_alert": alert.name})
            self._close(key, record, now)
            return IncidentUpdate(record.snapshot(), RESOLVED, {"resolved_alert": alert.name})
        # Alertmanager repeats resolved notifications; one we already applied is a duplicate, not an error.
        for candidate in (record, self._resolved.get(key)):
            if candidate is not None and alert.fingerprint in candidate.resolved_fingerprints:
                return IncidentUpdate(candidate.snapshot(), DUPLICATE, {"resolved_alert": alert.name})
        reason = "alert is not part of the open incident" if record else "no open incident for this workload"
        return _ignored(alert, key[0], key[1], now, reason)

    # -- anomalies ----------------------------------------------------------------------------------------------

    def add_anomalies(self, anomalies: Sequence[Anomaly]) -> list[IncidentUpdate]:
        """Fold detector findings in: one update per workload touched (opened, updated, or duplicate)."""
        by_workload: dict[tuple[str, str], list[Anomaly]] = {}
        for anomaly in anomalies:
            by_workload.setdefault((anomaly.target.namespace, anomaly.target.name), []).append(anomaly)
        updates = []
        with self._lock:
            now = self._clock.now()
            self._sweep_if_due(now)
            for key, found in by_workload.items():
                if self._in_scope(key[0]):
                    updates.append(self._add_workload_anomalies(key, found, now))
        return updates

    def _add_workload_anomalies(self, key: tuple[str, str], found: list[Anomaly], now: float) -> IncidentUpdate:
        record = self._open.get(key)
        opened = record is None
        if record is None:
            record = self._open_record(key, min(a.start for a in found) or now, now)
        record.last_activity = now
        new_signals = []
        for anomaly in found:
            anomaly_key = (anomaly.signal, anomaly.detector)
            if anomaly_key not in record.anomalies:
                new_signals.append(anomaly.signal)
            record.anomalies[anomaly_key] = anomaly
        outcome = OPENED if opened else (UPDATED if new_signals else DUPLICATE)
        return IncidentUpdate(record.snapshot(), outcome, {"signals": new_signals})

    # -- queries and housekeeping -------------------------------------------------------------------------------

    def open_incidents(self) -> list[Incident]:
        """Every open incident, oldest first."""
        with self._lock:
            self._sweep(self._clock.now())
            return [r.snapshot() for r in sorted(self._open.values(), key=lambda r: (r.opened, r.id))]

    def get(self, incident_id: str) -> Incident | None:
        """The incident with this id, open or recently resolved; ``None`` when unknown or forgotten."""
        with self._lock:
            for record in (*self._open.values(), *self._resolved.values()):
                if record.id == incident_id:
                    return record.snapshot()
        return None

    def resolve(self, incident_id: str, reason: str = "") -> IncidentUpdate | None:
        """Close an open incident by hand (e.g. after a verified remediation); ``None`` when it is not open."""
        with self._lock:
            for key, record in self._open.items():
                if record.id == incident_id:
                    self._close(key, record, self._clock.now())
                    return IncidentUpdate(record.snapshot(), RESOLVED, {"reason": reason} if reason else {})
        return None

    def expire(self) -> list[IncidentUpdate]:
        """Resolve anomaly-only incidents that went quiet and forget old resolved ones; report the resolutions."""
        with self._lock:
            return self._sweep(self._clock.now())

    @property
    def open_count(self) -> int:
        """How many incidents are open right now."""
        with self._lock:
            return len(self._open)

    def _in_scope(self, namespace: str) -> bool:
        return not self._namespaces or namespace in self._namespaces

    def _open_record(self, key: tuple[str, str], opened: float, now: float) -> _Record:
        record = _Record(id=incident_id(key[0], key[1], opened), target=Target.deployment(*key), opened=opened,
                         last_activity=now)
        self._open[key] = record
        return record

    def _close(self, key: tuple[str, str], record: _Record, now: float) -> None:
        record.status = IncidentStatus.RESOLVED
        record.resolved_at = now
        del self._open[key]
        self._resolved[key] = record

    def _sweep_if_due(self, now: float) -> None:
        # A sweep walks every incident, open and remembered: once per alert made intake quadratic (measured with
        # bench/webhook.py: 19 of 28 s for 18k alerts), and the deadlines it checks are minutes long anyway.
        if self._last_sweep is None or now - self._last_sweep >= SWEEP_INTERVAL_SECONDS or now < self._last_sweep:
            self._sweep(now)

    def _sweep(self, now: float) -> list[IncidentUpdate]:
        self._last_sweep = now
        closed = []
        for key, record in list(self._open.items()):
            if not record.alerts and now - record.last_activity >= self._quiet_seconds:
                self._close(key, record, now)
                closed.append(IncidentUpdate(record.snapshot(), RESOLVED, {"reason": "quiet"}))
        for key, record in list(self._resolved.items()):
            if record.resolved_at is not None and now - record.resolved_at >= self._resolved_ttl:
                del self._resolved[key]
        return closed


def _ignored(alert: Alert, namespace: str, workload: str, now: float, reason: str) -> IncidentUpdate:
    # IncidentUpdate always carries an incident; an ignored alert gets a placeholder with an empty id so that
    # callers can read the same fields without a None check.
    placeholder = Incident(id="", target=Target.deployment(namespace, workload), opened=now, alerts=(alert,),
                           status=IncidentStatus.RESOLVED)
    return IncidentUpdate(placeholder, IGNORED, {"reason": reason, "alert": alert.name})
