"""What the collectors produce: metric series, log lines, Kubernetes events and the call graph, and which sources
of evidence were not collected (unknown, not empty)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np


@dataclass(frozen=True, eq=False, slots=True)
class Series:
    """One Prometheus range-vector result: a metric name, its labels, and samples.

    ``labels`` excludes ``__name__`` (that is ``name``). ``timestamps`` are unix seconds (float64, ascending) and
    ``values`` float64 of the same length. Series collected for a workload carry ``namespace`` and ``workload``.
    """

    name: str
    labels: Mapping[str, str]
    timestamps: np.ndarray
    values: np.ndarray

    def __post_init__(self) -> None:
        if len(self.timestamps) != len(self.values):
            raise ValueError(f"series {self.name}: {len(self.timestamps)} timestamps but {len(self.values)} values")

    @property
    def namespace(self) -> str:
        return self.labels.get("namespace", "")

    @property
    def workload(self) -> str:
        return self.labels.get("workload", "")

    def to_prometheus(self) -> dict:
        """The ``/api/v1/query_range`` ``data.result`` item for this series (the case-folder format)."""
        return {
            "metric": {"__name__": self.name, **dict(self.labels)},
            "values": [[float(t), _format_value(v)] for t, v in zip(self.timestamps, self.values)],
        }


def _format_value(v: float) -> str:
    # Prometheus writes values as strings; repr() keeps full precision and 'NaN'/'+Inf' match its spelling closely.
    if np.isnan(v):
        return "NaN"
    if np.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(float(v))


@dataclass(frozen=True, slots=True)
class LogLine:
    """One container log line, attributed to its workload."""

    ts: float
    namespace: str
    pod: str
    container: str
    workload: str
    line: str


@dataclass(frozen=True, slots=True)
class KubeEvent:
    """The parts of a core/v1 Event the analyzers read."""

    ts: float
    namespace: str
    involved_kind: str
    involved_name: str
    reason: str
    message: str
    type: str = "Normal"
    count: int = 1
    workload: str = ""


@dataclass(frozen=True, slots=True)
class Topology:
    """The call graph when known: ``calls`` holds (caller, callee) workload names."""

    calls: tuple[tuple[str, str], ...] = ()

    def callees(self, workload: str) -> set[str]:
        return {callee for caller, callee in self.calls if caller == workload}

    def callers(self, workload: str) -> set[str]:
        return {caller for caller, callee in self.calls if callee == workload}

    @property
    def known(self) -> bool:
        return bool(self.calls)


# The sources of evidence a collector reads. Rollouts are read from the events (the deployment controller's
# ``ScalingReplicaSet``), so a rollout is unknown exactly when the events are.
METRICS, LOGS, EVENTS = "metrics", "logs", "events"
SOURCES = (METRICS, LOGS, EVENTS)
SOURCE_TITLES = {METRICS: "Prometheus metrics", LOGS: "pod logs", EVENTS: "Kubernetes events and rollouts"}


@dataclass(frozen=True, slots=True)
class SourceGap:
    """A source of evidence that was not collected (``source`` is one of ``SOURCES``) and why: not configured, or
    the read failed. What it would have shown is unknown: no analyzer may read its absence as "none happened"."""

    source: str
    reason: str

    def as_dict(self) -> dict:
        return {"source": self.source, "reason": self.reason}


def describe_gaps(gaps: tuple[SourceGap, ...]) -> str:
    """``Kubernetes events and rollouts, pod logs (no --config with Kubernetes access)``: titles grouped by reason."""
    by_reason: dict[str, list[str]] = {}
    for gap in gaps:
        by_reason.setdefault(gap.reason, []).append(SOURCE_TITLES.get(gap.source, gap.source))
    return "; ".join(f"{', '.join(titles)} ({reason})" for reason, titles in by_reason.items())


@dataclass(frozen=True, slots=True)
class Observations:
    """Everything collected about one namespace over one window: the input of detection and diagnosis.

    ``series`` are the raw Prometheus series (what a case folder stores); ``signals`` the derived workload signals.
    ``not_collected`` names the sources that were not read (their fields are empty because nobody looked); every
    other source was read, so an empty ``events`` there means no event happened.
    """

    namespace: str
    start: float
    end: float
    series: tuple[Series, ...] = ()
    # Derived workload signals (see ``aiops.domain.signals``), on a regular step grid: what detectors read.
    signals: tuple[Series, ...] = ()
    logs: tuple[LogLine, ...] = ()
    events: tuple[KubeEvent, ...] = ()
    topology: Topology = field(default_factory=Topology)
    not_collected: tuple[SourceGap, ...] = ()

    def collected(self, source: str) -> bool:
        """True when ``source`` was read (even if it had nothing to say)."""
        return all(gap.source != source for gap in self.not_collected)

    @property
    def sources(self) -> tuple[str, ...]:
        """The sources that were read."""
        return tuple(source for source in SOURCES if self.collected(source))

    @property
    def workloads(self) -> list[str]:
        """Every workload any series, log line or event names, sorted."""
        names = {s.workload for s in self.series} | {s.workload for s in self.signals} | {l.workload for l in self.logs} | {e.workload for e in self.events}
        names.discard("")
        return sorted(names)
