"""The simulator's time-series store: recorded samples per series, with Prometheus' staleness and retention."""

from __future__ import annotations

import bisect
import math
import threading
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping

LOOKBACK_SECONDS = 300.0  # Prometheus' default lookback delta
STALE = float("nan")      # a staleness marker: the series vanished (as Prometheus writes when a target drops it)

SeriesKey = tuple[str, tuple[tuple[str, str], ...]]


def series_key(name: str, labels: Mapping[str, str]) -> SeriesKey:
    """The identity of a series: metric name plus sorted labels."""
    return name, tuple(sorted(labels.items()))


@dataclass(slots=True)
class _Series:
    timestamps: list[float] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    stale: list[bool] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Sample:
    """One value of one series at one time."""

    name: str
    labels: Mapping[str, str]
    value: float


class SampleStore:
    """Samples recorded in rounds (one per scrape), kept for ``retention_seconds`` after the newest round."""

    def __init__(self, retention_seconds: float = 6 * 3600.0) -> None:
        self.retention_seconds = retention_seconds
        self._series: dict[SeriesKey, _Series] = {}
        self._live: set[SeriesKey] = set()
        self._last_round: float | None = None
        self._lock = threading.Lock()

    def record(self, ts: float, samples: Iterable[Sample]) -> None:
        """Store one scrape at ``ts``; series present last round but missing now get a staleness marker."""
        with self._lock:
            if self._last_round is not None and ts <= self._last_round:
                raise ValueError(f"samples must move forward in time: {ts} <= {self._last_round}")
            seen: set[SeriesKey] = set()
            for s in samples:
                key = series_key(s.name, s.labels)
                seen.add(key)
                self._append(key, ts, float(s.value), False)
            for key in self._live - seen:
                self._append(key, ts, STALE, True)
            self._live = seen
            self._last_round = ts
            self._trim(ts - self.retention_seconds)

    def current(self) -> list[tuple[str, dict, float]]:
        """The latest round: (name, labels, value) per live series (what ``/metrics`` exposes)."""
        with self._lock:
            return [(key[0], dict(key[1]), self._series[key].values[-1]) for key in sorted(self._live)]

    @property
    def last_round(self) -> float | None:
        """The time of the newest round, or None before the first."""
        return self._last_round

    def select(self, matches: Callable[[str, dict], bool]) -> list[tuple[str, dict]]:
        """The (name, labels) of every stored series for which ``matches(name, labels)`` holds."""
        with self._lock:
            return [(key[0], dict(key[1])) for key in sorted(self._series) if matches(key[0], dict(key[1]))]

    def value_at(self, name: str, labels: Mapping[str, str], t: float,
                 lookback: float = LOOKBACK_SECONDS) -> float | None:
        """The newest sample in ``(t - lookback, t]``, or None (also when that sample is a staleness marker)."""
        with self._lock:
            s = self._series.get(series_key(name, labels))
            if s is None:
                return None
            i = bisect.bisect_right(s.timestamps, t) - 1
            if i < 0 or s.timestamps[i] <= t - lookback or s.stale[i]:
                return None
            return s.values[i]

    def _append(self, key: SeriesKey, ts: float, value: float, stale: bool) -> None:
        s = self._series.setdefault(key, _Series())
        s.timestamps.append(ts)
        s.values.append(value)
        s.stale.append(stale)

    def _trim(self, oldest: float) -> None:
        for key in list(self._series):
            s = self._series[key]
            if s.timestamps and s.timestamps[0] < oldest:
                cut = bisect.bisect_left(s.timestamps, oldest)
                del s.timestamps[:cut], s.values[:cut], s.stale[:cut]
            if not s.timestamps or (key not in self._live and all(s.stale)):
                del self._series[key]


def format_value(v: float) -> str:
    """A sample value the way Prometheus writes it in JSON and text exposition."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if v.is_integer() and abs(v) < 1e15:
        return str(int(v))
    return repr(v)
