"""One namespace's observations from every configured source: metrics, logs and events, plus the call graph.

A source that is not configured, or (when asked to tolerate it) whose read failed, is recorded in
``Observations.not_collected`` with the reason: its evidence is unknown, not empty.
"""

from __future__ import annotations

from typing import Callable, TypeVar

from aiops.clients.kube import KubeError, is_unavailable
from aiops.collect.kube import KubeCollector
from aiops.collect.prometheus import PrometheusCollector
from aiops.domain.observations import EVENTS, LOGS, METRICS, Observations, SourceGap, Topology

T = TypeVar("T")


class ObservationCollector:
    """Implements the ``Collector`` protocol by combining a metrics and a Kubernetes collector (either may be None).

    ``without_kube`` says why logs and events are missing when ``kube`` is None. With ``kube_failures_as_gaps`` a
    Kubernetes read that fails (refused, unreachable) leaves that source not collected, with the error as the
    reason, instead of raising: for a one-off diagnosis, metrics alone are still worth reading.
    """

    def __init__(self, metrics: PrometheusCollector | None, kube: KubeCollector | None,
                 topology: Topology | None = None, *, without_kube: str = "no Kubernetes access configured",
                 kube_failures_as_gaps: bool = False) -> None:
        self.metrics = metrics
        self.kube = kube
        self.topology = topology or Topology()
        self.without_kube = without_kube
        self.kube_failures_as_gaps = kube_failures_as_gaps

    def collect(self, namespace: str, start: float, end: float) -> Observations:
        """Everything known about ``namespace`` over ``[start, end]``, and what could not be read."""
        series, signals, logs, events = (), (), (), ()
        gaps: list[SourceGap] = []
        if self.metrics is not None:
            metrics = self.metrics.collect(namespace, start, end)
            series, signals = metrics.series, metrics.signals
        else:
            gaps.append(SourceGap(METRICS, "no Prometheus configured"))
        if self.kube is not None:
            logs = tuple(self._read(LOGS, lambda: self.kube.logs(namespace, start, end), gaps))
            events = tuple(self._read(EVENTS, lambda: self.kube.events(namespace, start, end), gaps))
        else:
            gaps += [SourceGap(LOGS, self.without_kube), SourceGap(EVENTS, self.without_kube)]
        return Observations(namespace=namespace, start=start, end=end, series=series, signals=signals,
                            logs=logs, events=events, topology=self.topology, not_collected=tuple(gaps))

    def _read(self, source: str, read: Callable[[], list[T]], gaps: list[SourceGap]) -> list[T]:
        try:
            return read()
        except Exception as exc:  # noqa: BLE001 - filtered just below: only a failed Kubernetes call is a gap
            if not self.kube_failures_as_gaps or not (isinstance(exc, KubeError) or is_unavailable(exc)):
                raise
            gaps.append(SourceGap(source, f"reading them failed: {exc}"))
            return []
