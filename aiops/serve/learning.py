"""Cold start: how much baseline each namespace has, against what the agent needs before it acts on statistics.

A namespace whose metric history before the recent window is shorter than ``loop.min_baseline_seconds`` is
*learning*: the window detector would be fitted on a handful of points and flag healthy workloads, and the
diagnosis' z-scores would rest on almost no baseline. While a namespace learns, the scheduled loop opens no
incident from its detectors (the streaming detector still learns from every sample), and an incident an alert
opens is diagnosed but not acted on: the decision is ``Blocked("learning")``. Such an incident is held and handed
to the worker again once the loop sees that the namespace has learned, if it is still open.

The history is measured in the data, not in the agent's uptime: an agent (re)started against a Prometheus that
already holds an hour of history is ready at once.
"""

from __future__ import annotations

import collections
import logging
import math
import threading
from dataclasses import dataclass
from typing import Callable

import numpy as np

from aiops.correlate.incidents import IncidentTracker
from aiops.domain.incident import Incident, IncidentStatus
from aiops.domain.observations import Observations
from aiops.domain.plans import Blocked
from aiops.serve.metrics import AgentMetrics

log = logging.getLogger(__name__)

LEARNING = "learning"  # the Blocked reason of an incident handled while its namespace learns


@dataclass(frozen=True)
class BaselineProgress:
    """The history a namespace has before the recent window (``have_seconds``) and what the agent needs."""

    namespace: str
    have_seconds: float
    need_seconds: float

    @property
    def learning(self) -> bool:
        """True while there is too little history to act on the namespace's statistics."""
        return self.have_seconds < self.need_seconds

    def describe(self) -> str:
        """``learning: 12 of 30 minutes of baseline`` (or ``learned: ...``)."""
        # Floored, so a namespace still learning never reads "30 of 30".
        return (f"{LEARNING if self.learning else 'learned'}: {_minutes(self.have_seconds, math.floor)} of "
                f"{_minutes(self.need_seconds, round)} minutes of baseline")

    def as_dict(self) -> dict[str, object]:
        return {"state": LEARNING if self.learning else "learned", "baseline_seconds": round(self.have_seconds, 1),
                "required_seconds": self.need_seconds, "detail": self.describe()}


def _minutes(seconds: float, rounding: Callable[[float], float]) -> str:
    """Seconds as minutes to a tenth: ``1800`` -> ``30``, ``90`` -> ``1.5``."""
    return f"{rounding(seconds / 6.0) / 10.0:g}"


def baseline_progress(observations: Observations, split: float, need_seconds: float) -> BaselineProgress:
    """How much of the baseline part ``[observations.start, split)`` the workload signals cover: from their
    earliest finite sample (or the window's start) to ``split``."""
    firsts = [float(np.asarray(s.timestamps)[np.isfinite(s.values)][0])
              for s in observations.signals if s.workload and np.isfinite(s.values).any()]
    have = split - max(min(firsts), observations.start) if firsts else 0.0
    return BaselineProgress(observations.namespace, max(0.0, have), need_seconds)


def blocked_while_learning(progress: BaselineProgress) -> Blocked:
    """The decision for an incident of a namespace still learning: nothing is done, and it says why."""
    return Blocked(LEARNING, f"{progress.namespace} {progress.describe()}: too little to act on (the agent handles "
                             "the incident again once the namespace has learned)")


class BaselineLearning:
    """The agent's view of every namespace's learning: one log line when learning starts and one when it ends,
    ``aiops_learning`` / ``aiops_baseline_seconds`` per namespace, the ``baseline`` entry of ``/readyz``, and the
    incidents refused while learning, handed back to ``submit`` once their namespace has learned."""

    def __init__(self, need_seconds: float, tracker: IncidentTracker, submit: Callable[[Incident], bool],
                 metrics: AgentMetrics, max_held: int = 1000) -> None:
        self.need_seconds = need_seconds
        self._tracker = tracker
        self._submit = submit
        self._metrics = metrics
        self._max_held = max_held
        self._lock = threading.Lock()
        self._progress: dict[str, BaselineProgress] = {}
        self._held: collections.OrderedDict[str, str] = collections.OrderedDict()  # incident id -> namespace
        metrics.baseline_required.set(need_seconds)

    def record(self, progress: BaselineProgress) -> BaselineProgress:
        """Take the loop's latest reading of a namespace; returns it."""
        with self._lock:
            before = self._progress.get(progress.namespace)
            self._progress[progress.namespace] = progress
        self._metrics.baseline.labels(namespace=progress.namespace).set(progress.have_seconds)
        self._metrics.learning.labels(namespace=progress.namespace).set(1 if progress.learning else 0)
        extra = {"namespace": progress.namespace, "baseline_seconds": round(progress.have_seconds, 1),
                 "required_seconds": progress.need_seconds}
        if progress.learning and (before is None or not before.learning):
            log.info("%s %s: no incident is opened from detection, and alerts are diagnosed but not acted on, "
                     "until it has learned", progress.namespace, progress.describe(), extra=extra)
        elif not progress.learning and (before is None or before.learning):
            log.info("%s %s: detecting and acting", progress.namespace, progress.describe(), extra=extra)
        if not progress.learning:
            self._release(progress.namespace)
        return progress

    def hold(self, incident: Incident, decision: object) -> bool:
        """Keep ``incident`` for later when ``decision`` refused it for learning; returns whether it was kept."""
        if not (isinstance(decision, Blocked) and decision.reason == LEARNING):
            return False
        with self._lock:
            self._held[incident.id] = incident.target.namespace
            self._held.move_to_end(incident.id)
            while len(self._held) > self._max_held:
                self._held.popitem(last=False)
        return True

    def status(self) -> dict[str, object]:
        """The ``baseline`` entry of ``/readyz``: each namespace's progress, and the incidents waiting for it."""
        with self._lock:
            namespaces = {ns: p.as_dict() for ns, p in sorted(self._progress.items())}
            held = len(self._held)
        return {"required_seconds": self.need_seconds, "namespaces": namespaces, "held_incidents": held}

    def _release(self, namespace: str) -> None:
        with self._lock:
            ids = [i for i, ns in self._held.items() if ns == namespace]
            for incident_id in ids:
                del self._held[incident_id]
        for incident_id in ids:
            incident = self._tracker.get(incident_id)
            if incident is not None and incident.status is IncidentStatus.OPEN:
                log.info("%s has learned: handling the incident held while it learned", namespace,
                         extra={"incident": incident_id})
                self._submit(incident)
