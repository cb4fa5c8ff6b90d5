"""Absolute signal tests for rules: a level above or below a number, and a rise within a time span.

Baseline z-scores say "unusual for this workload"; policies such as "p99 inference latency over 200 ms and GPU
utilisation over 85 %" or "memory up more than 30 % within ten minutes" are absolute, and need no baseline at all.
The level is the median of the last ``LEVEL_POINTS`` points, so one noisy scrape decides nothing.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from aiops.domain.observations import Series

LEVEL_POINTS = 3
RELATIVE_OPTIONS = ("trend", "above_baseline_z", "below_baseline_z", "ratio_to_baseline")
ABSOLUTE_OPTIONS = ("above", "below", "increase")


def _finite(series: Series, since: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    ts = np.asarray(series.timestamps, dtype=float)
    vals = np.asarray(series.values, dtype=float)
    keep = np.isfinite(vals) & (ts >= since if since is not None else True)
    return ts[keep], vals[keep]


def level(series: Series, end: float | None = None, points: int = LEVEL_POINTS) -> float | None:
    """The median of the last ``points`` finite values at or before ``end`` (None when there are none)."""
    ts, vals = _finite(series)
    if end is not None:
        vals = vals[ts <= end]
    if not len(vals):
        return None
    return float(np.median(vals[-points:]))


def increase(series: Series, end: float, within: float, points: int = LEVEL_POINTS) -> float | None:
    """The latest level over the lowest level (median of ``points``) seen in ``[end - within, end]``, minus 1.

    0.3 means 30 % up. None when the span holds fewer than ``points + 1`` values or its lowest level is not
    positive.
    """
    ts, vals = _finite(series, end - within)
    vals = vals[ts <= end]
    if len(vals) < points + 1:
        return None
    # Rolling medians of ``points`` values: the lowest one is the floor the rise is measured from.
    windows = np.lib.stride_tricks.sliding_window_view(vals, points)
    medians = np.median(windows, axis=1)
    low = float(medians.min())
    if low <= 0:
        return None
    return float(medians[-1]) / low - 1.0


def absolute_tests(criterion: Any, series: Series, end: float, values: dict) -> list[tuple[bool, str]]:
    """The ``above``/``below``/``increase`` tests of a signal criterion, as (held, words); fills ``values``."""
    tests: list[tuple[bool, str]] = []
    if criterion.above is not None or criterion.below is not None:
        now = level(series, end)
        values["level"] = None if now is None else round(now, 6)
        if criterion.above is not None:
            tests.append((now is not None and now > criterion.above,
                          f"level {_fmt(now)} (want > {_fmt(criterion.above)})"))
        if criterion.below is not None:
            tests.append((now is not None and now < criterion.below,
                          f"level {_fmt(now)} (want < {_fmt(criterion.below)})"))
    if criterion.increase is not None:
        spec = criterion.increase
        rise = increase(series, end, spec.within)
        values["increase"] = None if rise is None else round(rise, 4)
        values["increase_within"] = spec.within
        tests.append((rise is not None and rise > spec.by,
                      f"up {_pct(rise)} within {spec.within:.0f}s (want > {spec.by:.0%})"))
    return tests


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3g}"


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.0%}"


# The raw per-pod metric behind each signal an ``increase`` test may name, to tell which pod moved.
_RAW_BY_SIGNAL = {"process_memory": ("process_resident_memory_bytes",), "gpu_memory": ("DCGM_FI_DEV_FB_USED",),
                  "memory": ("container_memory_working_set_bytes",)}


def culprit_pod(raw: Sequence[Series], workload: str, signal: str, end: float, within: float) -> str | None:
    """The pod of ``workload`` whose raw ``signal`` series rose the most within ``[end - within, end]``."""
    names = _RAW_BY_SIGNAL.get(signal, ())
    best: tuple[float, str] | None = None
    for s in raw:
        pod = s.labels.get("pod", "")
        if s.name not in names or not pod or s.labels.get("workload") != workload:
            continue
        rise = increase(s, end, within)
        if rise is not None and (best is None or rise > best[0]):
            best = (rise, pod)
    return best[1] if best else None
