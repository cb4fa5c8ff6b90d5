"""Current signal levels of one workload, read through a collector: what verification polls."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from aiops.domain.observations import Observations
from aiops.domain.protocols import Clock, Collector


def latest_levels(observations: Observations, workload: str, signals: Sequence[str],
                  points: int = 2) -> dict[str, float]:
    """The mean of the last ``points`` finite values of each of ``workload``'s ``signals`` (absent ones omitted).

    A short mean rather than the last sample: one noisy scrape should not decide whether an action worked.
    """
    wanted = set(signals)
    levels: dict[str, float] = {}
    for series in observations.signals:
        if series.workload != workload or series.name not in wanted:
            continue
        values = series.values[np.isfinite(series.values)]
        if len(values):
            levels[series.name] = float(np.mean(values[-points:]))
    return levels


def peak_levels(observations: Observations, workload: str, signals: Sequence[str], start: float,
                end: float) -> dict[str, float]:
    """The highest finite value of each of ``workload``'s ``signals`` in ``[start, end]`` (absent ones omitted)."""
    wanted = set(signals)
    levels: dict[str, float] = {}
    for series in observations.signals:
        if series.workload != workload or series.name not in wanted:
            continue
        mask = (series.timestamps >= start) & (series.timestamps <= end) & np.isfinite(series.values)
        if mask.any():
            levels[series.name] = max(levels.get(series.name, -np.inf), float(np.max(series.values[mask])))
    return levels


def baseline_levels(observations: Observations, workload: str, signals: Sequence[str], until: float,
                    quantile: float = 0.95) -> dict[str, float]:
    """The upper edge of each signal's normal band (``quantile`` of the values before ``until``)."""
    wanted = set(signals)
    levels: dict[str, float] = {}
    for series in observations.signals:
        if series.workload != workload or series.name not in wanted:
            continue
        mask = (series.timestamps < until) & np.isfinite(series.values)
        if mask.sum() >= 4:
            levels[series.name] = float(np.quantile(series.values[mask], quantile))
    return levels


class CollectorProbe:
    """Implements ``SignalProbe`` by collecting the last ``lookback_seconds`` of metrics (and ``PeakProbe``)."""

    def __init__(self, collector: Collector, clock: Clock, lookback_seconds: float = 300.0) -> None:
        self._collector = collector
        self._clock = clock
        self._lookback = lookback_seconds

    def read(self, namespace: str, workload: str, signals: Sequence[str]) -> dict[str, float]:
        now = self._clock.now()
        observations = self._collector.collect(namespace, now - self._lookback, now)
        return latest_levels(observations, workload, signals)

    def peak(self, namespace: str, workload: str, signals: Sequence[str], start: float,
             end: float) -> dict[str, float]:
        """How high each signal went in ``[start, end]`` (what verification judges worse against)."""
        return peak_levels(self._collector.collect(namespace, start, end), workload, signals, start, end)
