"""Group alerts and detector anomalies into one incident per owning workload.

The tracker is the only place that decides whether a delivery is new work: an alert seen again while it still fires
is a duplicate, a different alert on the same workload updates the open incident, and a resolved alert shrinks it
until it closes. Everything downstream (diagnosis, plans, actions) keys on the incident id this module hands out.

Because a duplicate is never handled, the tracker must not remember what was not taken: ``ingest`` and
``add_anomalies`` take an ``admit`` callback (the work queue) and undo their change when it refuses the update;
``forget`` drops an incident that was given up; and a firing alert not delivered again for ``alert_idle_seconds``
(its ``resolved`` was lost) leaves its incident, so a later delivery is new work again.

An incident closed by ``resolve`` (a plan recovered the service) keeps what it was made of: while it is remembered,
its alerts and any finding that began before it was closed are duplicates of it, since they tell of the trouble
that was fixed (the detector's window still holds it for a while); only what starts afterwards is new work. An
alert of it that is delivered resolved and then fires again, or that has no start, is new work too.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

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
# The update would have been new work, but the work queue refused it: the tracker kept nothing of it.
REFUSED = "refused"
OUTCOMES: tuple[str, ...] = (OPENED, UPDATED, DUPLICATE, RESOLVED, IGNORED, REFUSED)
# Resolved fingerprints an open incident remembers (to call late re-sends duplicates); the oldest are dropped.
MAX_RESOLVED_FINGERPRINTS = 1000
# Decides whether an update may stand: True when its work was queued (or it needs none).
Admit = Callable[[IncidentUpdate], bool]
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
    # An ordered set (values unused): the oldest entries go first when it is full.
    resolved_fingerprints: dict[str, None] = field(default_factory=dict)
    # When each firing alert was last delivered (clock seconds), for ``alert_idle_seconds``.
    seen: dict[str, float] = field(default_factory=dict)
    status: IncidentStatus = IncidentStatus.OPEN
    resolved_at: float | None = None
    # Closed by ``resolve`` (a remediation), not by its alerts or by quiet: see the module docstring.
    remediated: bool = False

    def before_remediation(self, started: float) -> bool:
        """True when this incident was closed by a remediation after ``started``: evidence of the fixed trouble.
        An unknown start (0: no ``startsAt``) is not: nothing says it began before the fix."""
        return self.remediated and self.resolved_at is not None and 0 < started < self.resolved_at

    def snapshot(self) -> Incident:
        return Incident(id=self.id, target=self.target, opened=self.opened, alerts=tuple(self.alerts.values()),
                        anomalies=tuple(self.anomalies.values()), status=self.status)


class IncidentTracker:
    """Correlates alerts and anomalies into incidents, one open incident per workload. Thread-safe.

    ``namespaces`` is the scope allow-list (empty = every namespace). Anomaly-only incidents resolve after
    ``quiet_seconds`` without a new finding; a firing alert not delivered again for ``alert_idle_seconds`` leaves
    its incident (which closes when nothing is left); resolved incidents are remembered for
    ``resolved_ttl_seconds`` (to recognise late redeliveries of their resolved alerts) and then forgotten, which
    bounds memory.
    """

    def __init__(self, clock: Clock, namespaces: Iterable[str] = (), *, quiet_seconds: float = 900.0,
                 resolved_ttl_seconds: float = 3600.0, alert_idle_seconds: float = 18_000.0) -> None:
        self._clock = clock
        self._namespaces = frozenset(namespaces)
        self._quiet_seconds = quiet_seconds
        self._resolved_ttl = resolved_ttl_seconds
        self._alert_idle = alert_idle_seconds
        self._lock = threading.Lock()
        self._open: dict[tuple[str, str], _Record] = {}
        self._resolved: dict[tuple[str, str], _Record] = {}
        self._last_sweep: float | None = None

    # -- alerts -------------------------------------------------------------------------------------------------

    def ingest(self, alert: Alert, admit: Admit | None = None) -> IncidentUpdate:
        """Fold one Alertmanager alert into the incidents and say what happened to it.

        ``admit`` (called under the tracker's lock, so no other delivery sees the change first) queues the work
        the update needs; when it returns False the change is undone, as if the alert had never arrived, and the
        outcome is ``refused``: the re-send is new work again instead of a duplicate."""
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
                undo = self._undo_firing(key, alert)
                update = self._firing(key, alert, now)
                if admit is not None and not admit(update):
                    undo()
                    return IncidentUpdate(update.incident, REFUSED, {"alert": alert.name,
                                                                     "refused": update.outcome})
                return update
            if alert.status == "resolved":
                return self._resolved_alert(key, alert, now)
            return _ignored(alert, owner.namespace, owner.workload, now, f"unknown alert status {alert.status!r}")

    def _undo_firing(self, key: tuple[str, str], alert: Alert) -> Callable[[], None]:
        """What puts back the state ``_firing`` is about to change for this alert (O(1): only what it touches)."""
        record = self._open.get(key)
        if record is None:
            return lambda: self._open.pop(key, None)
        fp = alert.fingerprint
        before = (record.alerts.get(fp), record.seen.get(fp), fp in record.resolved_fingerprints,
                  record.last_activity)

        def undo() -> None:
            old_alert, old_seen, was_resolved, last_activity = before
            _put(record.alerts, fp, old_alert)
            _put(record.seen, fp, old_seen)
            if was_resolved:
                record.resolved_fingerprints[fp] = None
            record.last_activity = last_activity
        return undo

    def _firing(self, key: tuple[str, str], alert: Alert, now: float) -> IncidentUpdate:
        record = self._open.get(key)
        fixed = self._resolved.get(key)
        if record is None and fixed is not None and alert.fingerprint in fixed.alerts \
                and fixed.before_remediation(alert.starts_at or 0.0):
            return IncidentUpdate(fixed.snapshot(), DUPLICATE, {"alert": alert.name, "remediated": True})
        if record is None:
            record = self._open_record(key, alert.starts_at or now, now)
            record.alerts[alert.fingerprint] = alert
            record.seen[alert.fingerprint] = now
            return IncidentUpdate(record.snapshot(), OPENED, {"alert": alert.name})
        record.last_activity = now
        known = alert.fingerprint in record.alerts
        # Keep the newest copy (annotations carry the latest values) even when nothing new has to happen.
        record.alerts[alert.fingerprint] = alert
        record.seen[alert.fingerprint] = now
        record.resolved_fingerprints.pop(alert.fingerprint, None)
        return IncidentUpdate(record.snapshot(), DUPLICATE if known else UPDATED, {"alert": alert.name})

    def _resolved_alert(self, key: tuple[str, str], alert: Alert, now: float) -> IncidentUpdate:
        record = self._open.get(key)
        if record is not None and alert.fingerprint in record.alerts:
            del record.alerts[alert.fingerprint]
            record.seen.pop(alert.fingerprint, None)
            _remember_resolved(record, alert.fingerprint)
            record.last_activity = now
            if record.alerts:
                return IncidentUpdate(record.snapshot(), UPDATED, {"resolved_alert": alert.name})
            self._close(key, record, now)
            return IncidentUpdate(record.snapshot(), RESOLVED, {"resolved_alert": alert.name})
        fixed = self._resolved.get(key)
        if record is None and fixed is not None and alert.fingerprint in fixed.alerts:
            # The fixed trouble's alert stopped firing: a later firing of it is the trouble back, whatever its
            # startsAt says (Alertmanager's clock need not be the agent's).
            del fixed.alerts[alert.fingerprint]
            _remember_resolved(fixed, alert.fingerprint)
            return IncidentUpdate(fixed.snapshot(), DUPLICATE, {"resolved_alert": alert.name})
        # Alertmanager repeats resolved notifications; one we already applied is a duplicate, not an error.
        for candidate in (record, fixed):
            if candidate is not None and alert.fingerprint in candidate.resolved_fingerprints:
                return IncidentUpdate(candidate.snapshot(), DUPLICATE, {"resolved_alert": alert.name})
        reason = "alert is not part of the open incident" if record else "no open incident for this workload"
        return _ignored(alert, key[0], key[1], now, reason)

    # -- anomalies ----------------------------------------------------------------------------------------------

    def add_anomalies(self, anomalies: Sequence[Anomaly], admit: Admit | None = None) -> list[IncidentUpdate]:
        """Fold detector findings in: one update per workload touched (opened, updated, or duplicate; ``refused``
        and undone when ``admit`` refuses it, so the next cycle's same finding is new work again)."""
        by_workload: dict[tuple[str, str], list[Anomaly]] = {}
        for anomaly in anomalies:
            by_workload.setdefault((anomaly.target.namespace, anomaly.target.name), []).append(anomaly)
        updates = []
        with self._lock:
            now = self._clock.now()
            self._sweep_if_due(now)
            for key, found in by_workload.items():
                if not self._in_scope(key[0]):
                    continue
                undo = self._undo_anomalies(key, found)
                update = self._add_workload_anomalies(key, found, now)
                if admit is not None and not admit(update):
                    undo()
                    update = IncidentUpdate(update.incident, REFUSED, {**update.extra, "refused": update.outcome})
                updates.append(update)
        return updates

    def _undo_anomalies(self, key: tuple[str, str], found: list[Anomaly]) -> Callable[[], None]:
        record = self._open.get(key)
        if record is None:
            return lambda: self._open.pop(key, None)
        keys = {(a.signal, a.detector) for a in found}
        before = ({k: record.anomalies.get(k) for k in keys}, record.last_activity)

        def undo() -> None:
            old, last_activity = before
            for k, anomaly in old.items():
                _put(record.anomalies, k, anomaly)
            record.last_activity = last_activity
        return undo

    def _add_workload_anomalies(self, key: tuple[str, str], found: list[Anomaly], now: float) -> IncidentUpdate:
        record = self._open.get(key)
        fixed = self._resolved.get(key)
        if record is None and fixed is not None:
            found = [a for a in found if not fixed.before_remediation(a.start)]
            if not found:
                return IncidentUpdate(fixed.snapshot(), DUPLICATE, {"signals": [], "remediated": True})
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
        """Close an open incident because a plan recovered the service; ``None`` when it is not open. Its alerts
        and the findings that began before now stay duplicates of it while it is remembered."""
        with self._lock:
            for key, record in self._open.items():
                if record.id == incident_id:
                    self._close(key, record, self._clock.now())
                    record.remediated = True
                    return IncidentUpdate(record.snapshot(), RESOLVED, {"reason": reason} if reason else {})
        return None

    def forget(self, incident_id: str) -> bool:
        """Drop an incident entirely (it was given up, or its held update was dropped): nothing of it is
        remembered, so the next delivery of any of its alerts opens it again as new work. False when unknown."""
        with self._lock:
            for table in (self._open, self._resolved):
                for key, record in list(table.items()):
                    if record.id == incident_id:
                        del table[key]
                        return True
        return False

    def expire(self) -> list[IncidentUpdate]:
        """Drop alerts idle for ``alert_idle_seconds``, resolve incidents left with nothing (alerts gone, anomalies
        quiet) and forget old resolved ones; report the resolutions."""
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
            # Not endsAt: Alertmanager re-sends a firing alert only every repeat_interval, so the endsAt we hold
            # is stale long before the alert stops firing; the last delivery is what we know.
            idle = [fp for fp, seen in record.seen.items() if now - seen >= self._alert_idle]
            for fp in idle:
                del record.alerts[fp], record.seen[fp]
                _remember_resolved(record, fp)
            if idle and not record.alerts and not record.anomalies:
                self._close(key, record, now)
                closed.append(IncidentUpdate(record.snapshot(), RESOLVED, {"reason": "alerts idle"}))
            elif not record.alerts and now - record.last_activity >= self._quiet_seconds:
                self._close(key, record, now)
                closed.append(IncidentUpdate(record.snapshot(), RESOLVED, {"reason": "quiet"}))
        for key, record in list(self._resolved.items()):
            if record.resolved_at is not None and now - record.resolved_at >= self._resolved_ttl:
                del self._resolved[key]
        return closed


def _put(table: dict, key, value) -> None:
    """Set ``table[key]`` to ``value``, or remove the key when ``value`` is None (undo of an insert)."""
    if value is None:
        table.pop(key, None)
    else:
        table[key] = value


def _remember_resolved(record: _Record, fingerprint: str) -> None:
    record.resolved_fingerprints[fingerprint] = None
    while len(record.resolved_fingerprints) > MAX_RESOLVED_FINGERPRINTS:
        del record.resolved_fingerprints[next(iter(record.resolved_fingerprints))]


def _ignored(alert: Alert, namespace: str, workload: str, now: float, reason: str) -> IncidentUpdate:
    # IncidentUpdate always carries an incident; an ignored alert gets a placeholder with an empty id so that
    # callers can read the same fields without a None check.
    placeholder = Incident(id="", target=Target.deployment(namespace, workload), opened=now, alerts=(alert,),
                           status=IncidentStatus.RESOLVED)
    return IncidentUpdate(placeholder, IGNORED, {"reason": reason, "alert": alert.name})
