"""Windowed, baseline-scaled features of one workload's signals: what the detectors see.

For each time ``t`` and each signal: ``<signal>:level`` is the mean of the last ``window`` points and
``<signal>:slope`` the change of that mean over the previous ``window`` points, both divided by the baseline's robust
scale (MAD) after subtracting its median. Floors keep a flat baseline from turning every tiny move into a huge
number, and a cap keeps one wild value from swamping the distance computations downstream.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from aiops.domain import signals as sig
from aiops.domain.observations import Series

# Smallest scale worth resolving, per signal, in the signal's own unit: below this a change is noise.
SCALE_FLOORS: Mapping[str, float] = {
    sig.CPU: 0.01,                 # cores
    sig.MEMORY: 4 * 1024 * 1024,   # bytes
    sig.RESTARTS: 1.0 / 600.0,     # one restart per 10 minutes
    sig.AVAILABLE_RATIO: 0.05,
    sig.REQUEST_RATE: 0.1,         # requests per second
    sig.ERROR_RATIO: 0.01,
    sig.LATENCY_P99: 0.005,        # seconds
}
DEFAULT_FLOOR = 1e-3
RELATIVE_FLOOR = 0.02  # and never finer than 2% of the baseline level
CAP = 100.0
FEATURE_KINDS = ("level", "slope")


def feature_names(signals: Sequence[str]) -> tuple[str, ...]:
    """``("memory:level", "memory:slope", ...)`` for the given signal order."""
    return tuple(f"{s}:{kind}" for s in signals for kind in FEATURE_KINDS)


def signal_frame(series: Sequence[Series]) -> pd.DataFrame:
    """One workload's signal series as a frame: index = timestamps (union), one column per signal name."""
    columns = {s.name: pd.Series(np.asarray(s.values, dtype=np.float64), index=np.asarray(s.timestamps))
               for s in series}
    if not columns:
        return pd.DataFrame(dtype=np.float64)
    frame = pd.DataFrame({k: v[~v.index.duplicated(keep="last")] for k, v in columns.items()})
    return frame.sort_index()


@dataclass(frozen=True)
class Baseline:
    """Robust location and scale of each signal over the training window."""

    signals: tuple[str, ...]
    location: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, frame: pd.DataFrame) -> "Baseline":
        """Median and 1.4826*MAD per column, floored by ``SCALE_FLOORS`` and ``RELATIVE_FLOOR``."""
        names = tuple(str(c) for c in frame.columns if frame[c].notna().any())
        values = frame[list(names)].to_numpy(dtype=np.float64)
        location = np.nanmedian(values, axis=0) if names else np.empty(0)
        mad = 1.4826 * np.nanmedian(np.abs(values - location), axis=0) if names else np.empty(0)
        floors = np.array([SCALE_FLOORS.get(n, DEFAULT_FLOOR) for n in names])
        scale = np.maximum.reduce([mad, floors, RELATIVE_FLOOR * np.abs(location)]) if names else np.empty(0)
        return cls(names, location, scale)

    def as_dict(self) -> dict:
        return {"signals": list(self.signals), "location": self.location.tolist(), "scale": self.scale.tolist()}

    @classmethod
    def from_dict(cls, data: Mapping) -> "Baseline":
        return cls(tuple(data["signals"]), np.asarray(data["location"], dtype=np.float64),
                   np.asarray(data["scale"], dtype=np.float64))


def standardized(frame: pd.DataFrame, baseline: Baseline) -> pd.DataFrame:
    """Each baseline signal as (value - median) / scale; gaps carried forward, then filled with the baseline (0)."""
    cols = frame.reindex(columns=list(baseline.signals))
    z = (cols - baseline.location) / baseline.scale
    return z.ffill().fillna(0.0)


def build_features(frame: pd.DataFrame, baseline: Baseline, window: int = 4) -> pd.DataFrame:
    """Feature rows (index = timestamps) with columns ``feature_names(baseline.signals)``.

    Rows exist for every timestamp; the first ``window - 1`` use the points available so far.
    """
    z = standardized(frame, baseline)
    level = z.rolling(window, min_periods=1).mean()
    slope = (level - level.shift(window)).fillna(level - level.iloc[:1].to_numpy()) if len(level) else level
    out = {}
    for s in baseline.signals:
        out[f"{s}:level"] = level[s]
        out[f"{s}:slope"] = slope[s]
    features = pd.DataFrame(out, index=frame.index, columns=list(feature_names(baseline.signals)))
    return features.clip(-CAP, CAP)
