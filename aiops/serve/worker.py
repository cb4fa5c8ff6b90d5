"""The seam between fast intake and slow work: a queue of incident updates and the threads that handle them.

The webhook and the scheduled loop only correlate and ``submit``; ``IncidentWorker`` calls the pipeline's
``handle(incident)`` (collect -> detect -> diagnose -> plan -> execute) in the background, one update at a time per
incident, so a slow diagnosis never delays Alertmanager and two updates of one incident never race.
"""

from __future__ import annotations

import collections
import itertools
import logging
import threading
import time
from datetime import datetime, timezone
from typing import Callable, Mapping, Sequence

from aiops.correlate.incidents import DUPLICATE, OPENED, UPDATED, IncidentTracker
from aiops.domain.alerts import Alert
from aiops.domain.incident import Anomaly, Incident, IncidentUpdate
from aiops.serve.logging import log_context
from aiops.serve.metrics import AgentMetrics
from aiops.serve.priority import DEPENDENCIES, Triage, WorkTag, check_acyclic

log = logging.getLogger(__name__)

IncidentHandler = Callable[[Incident], object]


class IncidentWorker:
    """Runs ``handle`` on queued incidents in ``threads`` background threads.

    Each submitted update is handled once; updates of the same incident id run one after another, never at the
    same time. An exception in ``handle`` is logged and counted, and the worker carries on. ``submit`` refuses
    (returns False) when ``max_queue`` updates are already waiting, so a flood cannot exhaust memory.

    Order: the most urgent ``WorkTag.priority`` first (0 before 9; ``triage`` tags each update, see
    ``serve.priority``), first come first served within a priority; an update whose kind depends on another kind
    (``dependencies``) waits while such work for the same workload is queued or running.
    """

    def __init__(self, handle: IncidentHandler, max_queue: int = 1000, *, threads: int = 1,
                 metrics: AgentMetrics | None = None, triage: Callable[[Incident], WorkTag] | None = None,
                 dependencies: Mapping[str, tuple[str, ...]] = DEPENDENCIES) -> None:
        check_acyclic(dependencies)
        self._triage = triage or Triage()
        self._dependencies = dict(dependencies)
        self._seq = itertools.count()
        self._tags: dict[int, WorkTag] = {}          # queue entry id -> its tag
        self._running: dict[str, WorkTag] = {}       # incident id -> tag of the update being handled
        self._handle = handle
        self._max_queue = max_queue
        self._thread_count = max(1, threads)
        self._metrics = metrics
        self._cond = threading.Condition()
        self._pending: collections.deque[tuple[int, Incident]] = collections.deque()
        self._busy: set[str] = set()
        self._threads: list[threading.Thread] = []
        self._stopping = False
        self.handled = 0
        self.failed = 0

    def start(self) -> "IncidentWorker":
        """Start the background threads (idempotent). Returns self, for chaining."""
        with self._cond:
            if self._threads:
                return self
            self._stopping = False
            for n in range(self._thread_count):
                thread = threading.Thread(target=self._run, name=f"aiops-incident-worker-{n}", daemon=True)
                self._threads.append(thread)
                thread.start()
        return self

    def submit(self, incident: Incident, tag: WorkTag | None = None) -> bool:
        """Queue one incident update (``tag``: its order, else ``triage``'s); False (and logged) when the queue is
        full or the worker is stopping."""
        if tag is None:
            tag = self._triage(incident)
        with self._cond:
            if self._stopping or len(self._pending) >= self._max_queue:
                reason = "stopping" if self._stopping else "queue full"
                log.warning("incident update refused: %s", reason, extra={"incident": incident.id})
                if self._metrics is not None:
                    self._metrics.worker_dropped.inc()
                return False
            entry = next(self._seq)
            self._tags[entry] = tag
            self._pending.append((entry, incident))
            self._cond.notify_all()
            return True

    @property
    def pending(self) -> int:
        """Updates waiting or being handled."""
        with self._cond:
            return len(self._pending) + len(self._busy)

    def drain(self, timeout: float) -> bool:
        """Wait until every queued update has been handled; False if ``timeout`` seconds passed first."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending or self._busy:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    def stop(self, timeout: float = 10.0) -> bool:
        """Drain (up to ``timeout``), then stop the threads. True when everything queued was handled."""
        drained = self.drain(timeout)
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            threads, self._threads = self._threads, []
        deadline = time.monotonic() + max(0.0, timeout)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return drained

    def _next(self) -> Incident | None:
        """The most urgent queued update (oldest first within a priority) whose incident is not being handled now
        and whose dependencies are done; waits for one. None = stop."""
        with self._cond:
            while not self._stopping:
                best: tuple[int, int, int] | None = None  # (priority, entry, index)
                for index, (entry, incident) in enumerate(self._pending):
                    tag = self._tags[entry]
                    if incident.id in self._busy or self._waits(entry, tag):
                        continue
                    if best is None or (tag.priority, entry) < best[:2]:
                        best = (tag.priority, entry, index)
                if best is not None:
                    entry, incident = self._pending[best[2]]
                    del self._pending[best[2]]
                    self._busy.add(incident.id)
                    self._running[incident.id] = self._tags.pop(entry)
                    return incident
                self._cond.wait()
            return None

    def _waits(self, entry: int, tag: WorkTag) -> bool:
        """True while work this update depends on (same workload, a kind it waits for) is queued or running."""
        needs = self._dependencies.get(tag.kind, ())
        if not needs:
            return False
        others = [t for e, _ in self._pending if e != entry for t in (self._tags[e],)] + list(self._running.values())
        return any(t.workload == tag.workload and t.kind in needs for t in others)

    def _run(self) -> None:
        while (incident := self._next()) is not None:
            failed = False
            try:
                with log_context(incident=incident.id):
                    self._handle(incident)
            except Exception:  # noqa: BLE001 - one bad incident must not stop the agent
                failed = True
                if self._metrics is not None:
                    self._metrics.handler_errors.inc()
                log.exception("incident handler failed", extra={"incident": incident.id})
            finally:
                with self._cond:
                    self.handled += 1
                    self.failed += failed
                    self._busy.discard(incident.id)
                    self._running.pop(incident.id, None)
                    self._cond.notify_all()


class QueueingReceiver:
    """The webhook's ``AlertReceiver``: correlates alerts (and the loop's anomalies) and queues new work.

    Only opened incidents and updates that add something (an alert or an anomaly) reach the worker; duplicates are
    counted and dropped, and an alert resolving inside a still-open incident is no new work. Correlating and
    queueing are one step per alert: when the queue refuses an update, the tracker keeps nothing of it and the
    update's outcome is ``refused`` (the webhook then answers 503, and Alertmanager's re-send is taken).
    """

    def __init__(self, tracker: IncidentTracker, worker: IncidentWorker, metrics: AgentMetrics) -> None:
        self._tracker = tracker
        self._worker = worker
        self._metrics = metrics

    def receive(self, alerts: list[Alert]) -> list[IncidentUpdate]:
        """Correlate each alert, queue the incidents that changed, and return every update."""
        updates = []
        for alert in alerts:
            self._metrics.alerts_received.labels(status=alert.status).inc()
            updates.append(self._tracker.ingest(alert, admit=self._admit))
        self._count(updates)
        return updates

    def receive_anomalies(self, anomalies: Sequence[Anomaly]) -> list[IncidentUpdate]:
        """The same for detector findings from the scheduled loop (each one logged, naming its workload)."""
        self._metrics.detections.inc(len(anomalies))
        for anomaly in anomalies:
            log.info("anomaly %s", anomaly.describe(_utc(anomaly.start)), extra={
                "namespace": anomaly.target.namespace, "workload": anomaly.target.name,
                "detector": anomaly.detector, "score": round(anomaly.score, 4),
                "threshold": round(anomaly.threshold, 4), "drivers": dict(anomaly.contributors[:3])})
        updates = self._tracker.add_anomalies(anomalies, admit=self._admit)
        self._count(updates)
        return updates

    def _count(self, updates: list[IncidentUpdate]) -> None:
        self._metrics.alerts_deduplicated.inc(sum(u.outcome == DUPLICATE for u in updates))
        self._metrics.incidents_open.set(self._tracker.open_count)

    def _admit(self, update: IncidentUpdate) -> bool:
        """Queue the work ``update`` needs; False when the worker refused it (the tracker then undoes it)."""
        if update.outcome == OPENED or (update.outcome == UPDATED and "resolved_alert" not in update.extra):
            if not self._worker.submit(update.incident):
                return False  # submit logged and counted it
            log.info("incident %s %s for %s", update.incident.id, update.outcome, update.incident.target,
                     extra={"incident": update.incident.id})
        return True


def _utc(ts: float) -> str:
    """``ts`` (unix s) as an ISO 8601 UTC time to the second."""
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
