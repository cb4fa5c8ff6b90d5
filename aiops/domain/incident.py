"""Anomalies and the incidents they are grouped into."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from aiops.domain.alerts import Alert
from aiops.domain.target import Target

# How detectors are named to a person (others by their own ``Anomaly.detector`` name).
_DETECTOR_NAMES = {"lof": "LOF"}


@dataclass(frozen=True, slots=True)
class Anomaly:
    """A detector's finding: ``target`` left its baseline on ``signal`` from ``start`` (unix s).

    ``score`` follows PyOD (higher = more abnormal) and is comparable to ``threshold``. ``contributors`` lists
    (signal, weight) pairs, heaviest first, saying which signals made the point abnormal; ``signal`` is the first.
    """

    target: Target
    signal: str
    score: float
    threshold: float
    start: float
    contributors: tuple[tuple[str, float], ...] = ()
    detector: str = ""
    # What a person should read, when the detector can say it better than signal and score
    # (e.g. "a never-seen error template appeared in cart at 10:02").
    summary: str = ""

    @property
    def severity(self) -> float:
        """How far past the threshold, as a ratio (>= 1 means anomalous)."""
        return self.score / self.threshold if self.threshold > 0 else float("inf")

    def describe(self, since: str) -> str:
        """One line for a person, naming the workload, the score against the threshold and what drove it:
        ``shop/cart: LOF score 21.66 over threshold 1.21 since <since>; driven by latency_p99 31%, error_ratio 29%``
        (the detector's own summary follows, when it has one)."""
        detector = _DETECTOR_NAMES.get(self.detector, self.detector or "anomaly")
        drivers = ", ".join(f"{signal} {weight:.0%}" for signal, weight in self.contributors[:3]) or self.signal
        line = (f"{self.target.namespace}/{self.target.name}: {detector} score {self.score:.2f} over threshold "
                f"{self.threshold:.2f} since {since}; driven by {drivers}")
        return f"{line}; {self.summary}" if self.summary else line


class IncidentStatus(str, enum.Enum):
    OPEN = "open"
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class Incident:
    """Alerts and anomalies about one owning workload, handled as one unit.

    ``id`` is stable for the incident's life: a repeated delivery of the same alert maps to the same id, which is
    what makes the plan id (and so every action) idempotent.
    """

    id: str
    target: Target
    opened: float
    alerts: tuple[Alert, ...] = ()
    anomalies: tuple[Anomaly, ...] = ()
    status: IncidentStatus = IncidentStatus.OPEN

    def as_dict(self) -> dict:
        return {
            "id": self.id,
            "target": self.target.as_dict(),
            "opened": self.opened,
            "status": self.status.value,
            "alerts": [a.name for a in self.alerts],
            "anomalies": len(self.anomalies),
        }


@dataclass(frozen=True, slots=True)
class IncidentUpdate:
    """What the correlator did with one alert: opened, updated, deduplicated or resolved an incident."""

    incident: Incident
    outcome: str  # "opened" | "updated" | "duplicate" | "resolved" | "ignored"
    extra: dict = field(default_factory=dict)
