"""Prometheus range-query evaluation on numpy: counters to rates, gauges to last values, rows combined per workload.

All series of one raw metric are evaluated together with a single ``searchsorted`` over concatenated, offset
timestamps, so thousands of workloads cost a few numpy passes rather than a Python loop per point.
"""

from __future__ import annotations

from typing import Hashable, Sequence

import numpy as np

from aiops.domain.observations import Series


def evaluate(series: Sequence[Series], grid: np.ndarray, window: float, counter: bool) -> np.ndarray:
    """A ``(len(series), len(grid))`` matrix: each series' rate (counter) or last value (gauge) at each grid time.

    Points with no sample in ``(t - window, t]`` (or fewer than two, for a rate) are NaN.
    """
    n, m = len(series), grid.size
    if n == 0:
        return np.empty((0, m))
    lengths = np.fromiter((len(s.timestamps) for s in series), dtype=np.int64, count=n)
    ts = np.concatenate([np.asarray(s.timestamps, dtype=np.float64) for s in series])
    vals = np.concatenate([np.asarray(s.values, dtype=np.float64) for s in series])
    sid = np.repeat(np.arange(n), lengths)
    keep = ~np.isnan(vals) & ~np.isnan(ts)  # NaN samples are Prometheus staleness markers: treat as absent
    ts, vals, sid = ts[keep], vals[keep], sid[keep]
    order = np.lexsort((ts, sid))
    ts, vals, sid = ts[order], vals[order], sid[order]
    if ts.size == 0:
        return np.full((n, m), np.nan)

    base = min(ts.min(), grid[0] - window) - 1.0
    span = max(ts.max(), grid[-1]) - base + 1.0
    keys = sid * span + (ts - base)  # series-major, then time: one sorted array for all series
    query_sid = np.repeat(np.arange(n), m)
    query_end = query_sid * span + (np.tile(grid, n) - base)
    last = np.searchsorted(keys, query_end, side="right") - 1
    first = np.searchsorted(keys, query_end - window, side="right")
    present = (last >= first) & (last >= 0)
    last_c = np.clip(last, 0, None)
    present &= sid[last_c] == query_sid

    if not counter:
        out = np.where(present, vals[last_c], np.nan)
        return out.reshape(n, m)

    same = np.empty(vals.size, dtype=bool)
    same[0] = False
    same[1:] = sid[1:] == sid[:-1]
    drops = np.zeros(vals.size)
    reset = same & (np.r_[np.inf, np.diff(vals)] < 0)
    # After a reset the counter restarted from zero: carry the pre-reset value forward (Prometheus' rule).
    drops[reset] = vals[np.flatnonzero(reset) - 1]
    corrected = vals + np.cumsum(drops)
    first_c = np.clip(first, 0, vals.size - 1)
    usable = present & (last > first)
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = (corrected[last_c] - corrected[first_c]) / (ts[last_c] - ts[first_c])
    return np.where(usable, rate, np.nan).reshape(n, m)


def aggregate(items: Sequence[tuple[Hashable, Series]], matrix: np.ndarray, how: str) -> dict[Hashable, np.ndarray]:
    """Rows of ``matrix`` combined per key: NaN-ignoring ``sum``, ``max`` or ``mean`` (all-NaN stays NaN)."""
    if not items:
        return {}
    index: dict[Hashable, int] = {}
    codes = np.fromiter((index.setdefault(k, len(index)) for k, _ in items), dtype=np.int64, count=len(items))
    groups = len(index)
    valid = ~np.isnan(matrix)
    if how in ("sum", "mean"):
        acc = np.zeros((groups, matrix.shape[1]))
        np.add.at(acc, codes, np.where(valid, matrix, 0.0))
    else:
        acc = np.full((groups, matrix.shape[1]), np.nan)
        np.fmax.at(acc, codes, matrix)
    counts = np.zeros((groups, matrix.shape[1]))
    np.add.at(counts, codes, valid.astype(np.float64))
    if how == "mean":
        acc = acc / np.where(counts > 0, counts, 1.0)
    acc[counts == 0] = np.nan
    return {key: acc[i] for key, i in index.items()}
