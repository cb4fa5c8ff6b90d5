"""What leadership means for the agent: who may plan and act, what a follower keeps for later, and how it shows.

With leader election off the agent always leads. With it on, a follower forwards the webhooks it receives to the
leader (``leader_url``); when it cannot, it correlates them itself and holds the incidents it would handle, newest
update per incident. On becoming leader the agent first runs the ``on_elected`` hook (resuming unfinished executions
from the journal), then hands the held incidents that are still open to the worker. ``aiops_leader`` and
``aiops_leader_transitions_total`` / ``aiops_leader_lost_total{reason}`` count it; ``/readyz`` shows the role and
why leadership was last lost.
"""

from __future__ import annotations

import collections
import logging
import threading
from typing import Callable

from aiops.correlate.incidents import IncidentTracker
from aiops.domain.incident import Incident, IncidentStatus
from aiops.serve.leader import LEADER, LeaseElector
from aiops.serve.metrics import AgentMetrics

log = logging.getLogger(__name__)


class LeadershipGate:
    """Connects an optional ``LeaseElector`` to the agent's worker, tracker, metrics and readiness."""

    def __init__(self, elector: LeaseElector | None, tracker: IncidentTracker, submit: Callable[[Incident], bool],
                 metrics: AgentMetrics, on_elected: Callable[[], None] | None = None, max_held: int = 1000) -> None:
        self.elector = elector
        self._tracker = tracker
        self._submit = submit
        self._metrics = metrics
        self._on_elected = on_elected
        self._max_held = max_held
        self._lock = threading.Lock()
        self._held: collections.OrderedDict[str, Incident] = collections.OrderedDict()
        self._threads: list[threading.Thread] = []
        if elector is not None:
            elector.on_started_leading = self._started_leading
            elector.on_stopped_leading = self._stopped_leading
        metrics.leader.set(0 if elector is not None else 1)

    @property
    def is_leader(self) -> bool:
        """True when this agent may plan and act now."""
        return self.elector is None or self.elector.is_leader

    def why_not(self) -> str:
        """Why this agent may not act (empty when it may)."""
        if self.is_leader:
            return ""
        status = self.elector.status()
        return status.reason or (f"{status.holder} leads" if status.holder else "no leader yet")

    def leader_url(self) -> str | None:
        """Where a follower forwards the webhooks it receives: the leader's advertised base URL, or None when this
        agent leads or no reachable leader is known (then it holds what it receives)."""
        if self.elector is None or self.is_leader:
            return None
        return self.elector.leader_url()

    def admit(self, incident: Incident) -> bool:
        """True when the incident may be handled now; otherwise it is held until this agent leads."""
        if self.is_leader:
            return True
        dropped: list[str] = []
        with self._lock:
            self._held[incident.id] = incident
            self._held.move_to_end(incident.id)
            while len(self._held) > self._max_held:
                dropped.append(self._held.popitem(last=False)[0])
            self._metrics.incidents_held.set(len(self._held))
            leads = self.is_leader
            if leads:  # leadership arrived meanwhile and the take-over may have missed this one
                self._held.pop(incident.id, None)
                self._metrics.incidents_held.set(len(self._held))
        for incident_id in dropped:
            self._forget(incident_id, "follower backlog full: dropped the oldest held incident")
        if leads:
            return True
        log.info("follower: holding incident until this agent leads (%s)", self.why_not(),
                 extra={"incident": incident.id})
        return False

    @property
    def held(self) -> list[str]:
        """Ids of the incidents held back, oldest first."""
        with self._lock:
            return list(self._held)

    def status(self) -> dict:
        """The ``leader_election`` entry of ``/readyz``."""
        if self.elector is None:
            return {"enabled": False, "state": LEADER}
        return {"enabled": True, **self.elector.status().as_dict(), "held_incidents": len(self.held)}

    def start(self) -> None:
        """Start competing for the Lease; without election, lead at once (and run the resume hook)."""
        if self.elector is not None:
            self.elector.start()
        else:
            self._spawn(self._take_over)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the election and release the Lease (call after the worker stopped acting)."""
        if self.elector is not None:
            self.elector.stop(release=True)
        for thread in self._threads:
            thread.join(timeout)

    # --- election callbacks (run in the election thread: keep them quick) ---------------------------------
    def _started_leading(self) -> None:
        self._metrics.leader.set(1)
        self._metrics.leader_transitions.inc()
        self._spawn(self._take_over)

    def _stopped_leading(self, reason: str, detail: str) -> None:
        self._metrics.leader.set(0)
        self._metrics.leader_transitions.inc()
        self._metrics.leader_lost.labels(reason=reason).inc()

    def _spawn(self, target: Callable[[], None]) -> None:
        self._threads = [t for t in self._threads if t.is_alive()]
        thread = threading.Thread(target=target, name="aiops-take-over", daemon=True)
        self._threads.append(thread)
        thread.start()

    def _take_over(self) -> None:
        if self._on_elected is not None:
            try:
                self._on_elected()
            except Exception:  # noqa: BLE001 - a failed resume must not keep the held incidents back
                log.exception("on_elected hook failed")
        with self._lock:
            held, self._held = list(self._held.values()), collections.OrderedDict()
            self._metrics.incidents_held.set(0)
        for incident in held:
            current = self._tracker.get(incident.id)
            if current is not None and current.status is IncidentStatus.OPEN and not self._submit(current):
                self._forget(current.id, "the work queue refused a held incident on taking over")

    def _forget(self, incident_id: str, why: str) -> None:
        """An incident that will not be handled must not stay known, or its alerts' re-sends are duplicates."""
        self._tracker.forget(incident_id)
        log.warning("%s; it is forgotten, so a re-sent alert opens it again", why, extra={"incident": incident_id})
