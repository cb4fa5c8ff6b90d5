"""One namespace's observations from every configured source: metrics, logs and events, plus the call graph."""

from __future__ import annotations

from aiops.collect.kube import KubeCollector
from aiops.collect.prometheus import PrometheusCollector
from aiops.domain.observations import Observations, Topology


class ObservationCollector:
    """Implements the ``Collector`` protocol by combining a metrics and a Kubernetes collector (either may be None)."""

    def __init__(self, metrics: PrometheusCollector | None, kube: KubeCollector | None,
                 topology: Topology | None = None) -> None:
        self.metrics = metrics
        self.kube = kube
        self.topology = topology or Topology()

    def collect(self, namespace: str, start: float, end: float) -> Observations:
        """Everything known about ``namespace`` over ``[start, end]``."""
        series, signals, logs, events = (), (), (), ()
        if self.metrics is not None:
            metrics = self.metrics.collect(namespace, start, end)
            series, signals = metrics.series, metrics.signals
        if self.kube is not None:
            logs = tuple(self.kube.logs(namespace, start, end))
            events = tuple(self.kube.events(namespace, start, end))
        return Observations(namespace=namespace, start=start, end=end, series=series, signals=signals,
                            logs=logs, events=events, topology=self.topology)
