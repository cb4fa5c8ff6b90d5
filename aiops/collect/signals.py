"""Raw per-pod Prometheus series -> the 7 workload signals on a regular time grid.

The evaluation follows Prometheus' range-query semantics so that a case folder, a live Prometheus and the simulator
give detectors the same numbers: a counter becomes a per-second rate over a trailing window, reset-aware; a gauge
becomes its last sample within the same trailing window (older samples count as stale). The rate is not
extrapolated to the window edges (Prometheus' ``rate`` does that): it is the increase between the first and last
sample in the window divided by the time between them, which is what ``rate`` converges to on regular scrapes and
what a reader can compute by hand.

All series of one raw metric are evaluated together with a single ``searchsorted`` over concatenated, offset
timestamps, so thousands of workloads cost a few numpy passes rather than a Python loop per point.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable, Sequence

import numpy as np

from aiops.collect.workloads import attach_workload
from aiops.domain import signals as sig
from aiops.domain.observations import Series

WorkloadKey = tuple[str, str]  # (namespace, workload)


def grid_times(start: float, end: float, step: float) -> np.ndarray:
    """The evaluation grid ``start, start+step, ...`` up to and including ``end`` (like ``query_range``)."""
    if step <= 0:
        raise ValueError(f"step must be positive, got {step}")
    if end < start:
        return np.empty(0)
    count = int(np.floor((end - start) / step + 1e-9)) + 1
    return start + step * np.arange(count, dtype=np.float64)


def default_window(step: float) -> float:
    """The trailing window for rates and gauge staleness: four steps, at least a minute."""
    return max(4.0 * step, 60.0)


def derive_signals(series: Sequence[Series], start: float, end: float, step: float,
                   window: float | None = None) -> tuple[Series, ...]:
    """The workload signals (``aiops.domain.signals.SIGNALS``) computed from raw series on ``start..end`` by ``step``.

    Output series are named by the signal and labelled ``{namespace, workload}``, ordered by namespace, workload,
    then signal. A signal whose inputs are missing (or empty on the grid) is absent; unknown series are ignored.
    """
    grid = grid_times(start, end, step)
    if grid.size == 0:
        return ()
    window = default_window(step) if window is None else window
    by_metric = _by_metric(series)

    def sum_of(metric: str, counter: bool, keep=None, how: str = "sum") -> dict[WorkloadKey, np.ndarray]:
        chosen = [(k, s) for k, s in by_metric.get(metric, ()) if keep is None or keep(s)]
        return _aggregate(chosen, _evaluate([s for _, s in chosen], grid, window, counter), how)

    out: dict[WorkloadKey, dict[str, np.ndarray]] = defaultdict(dict)
    for name, values in sum_of(sig.RAW_CPU, True).items():
        out[name][sig.CPU] = values
    # The largest container, not the sum: a leak lives in each pod, while a rollout's surge pods or a scale-up
    # would move a sum without anything being wrong.
    for name, values in sum_of(sig.RAW_MEMORY, False, how="max").items():
        out[name][sig.MEMORY] = values
    for name, values in sum_of(sig.RAW_RESTARTS, True).items():
        out[name][sig.RESTARTS] = values
    _available_ratio(sum_of(sig.RAW_AVAILABLE, False), sum_of(sig.RAW_SPEC_REPLICAS, False), out)
    _request_signals(by_metric.get(sig.RAW_REQUESTS, []), grid, window, out)
    latency = [(k, s) for k, s in by_metric.get(sig.RAW_DURATION, ()) if _is_p99(s)]
    for name, values in _aggregate(latency, _evaluate([s for _, s in latency], grid, window, False), "max").items():
        out[name][sig.LATENCY_P99] = values

    result = []
    for (namespace, workload) in sorted(out):
        for signal in sig.SIGNALS:
            values = out[(namespace, workload)].get(signal)
            if values is not None and not np.all(np.isnan(values)):
                result.append(Series(signal, {"namespace": namespace, "workload": workload}, grid.copy(), values))
    return tuple(result)


def _available_ratio(available: dict, spec: dict, out: dict) -> None:
    for key in available.keys() & spec.keys():
        avail, want = available[key], spec[key]
        with np.errstate(divide="ignore", invalid="ignore"):
            # Zero replicas wanted and zero available is "nothing missing", not a division by zero.
            ratio = np.where(want > 0, avail / np.where(want > 0, want, 1.0), np.where(avail >= 0, 1.0, np.nan))
        ratio[np.isnan(avail) | np.isnan(want)] = np.nan
        out[key][sig.AVAILABLE_RATIO] = ratio


def _request_signals(items: list[tuple[WorkloadKey, Series]], grid: np.ndarray, window: float, out: dict) -> None:
    if not items:
        return
    rates = _evaluate([s for _, s in items], grid, window, True)
    totals = _aggregate(items, rates, "sum")
    for key, values in totals.items():
        out[key][sig.REQUEST_RATE] = values
    coded = {key for key, s in items if _status_code(s) is not None}
    is_error = np.array([(_status_code(s) or "").startswith("5") for _, s in items])
    errors = _aggregate([items[i] for i in np.flatnonzero(is_error)], rates[is_error], "sum")
    for key in coded:
        total = totals[key]
        # Points where no 5xx series had a sample but requests flowed had no errors.
        err = np.nan_to_num(errors.get(key, np.zeros_like(total)), nan=0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(total > 0, err / np.where(total > 0, total, 1.0), 0.0)
        ratio[np.isnan(total)] = np.nan
        out[key][sig.ERROR_RATIO] = ratio


def _status_code(series: Series) -> str | None:
    """The HTTP status label: ``code`` (Prometheus client libraries), else ``status_code`` or ``status``."""
    for name in ("code", "status_code", "status"):
        if name in series.labels:
            return series.labels[name]
    return None


def _is_p99(series: Series) -> bool:
    try:
        return abs(float(series.labels.get("quantile", "nan")) - 0.99) < 1e-9
    except ValueError:
        return False


def _by_metric(series: Iterable[Series]) -> dict[str, list[tuple[WorkloadKey, Series]]]:
    """Known raw series grouped by metric, keyed by workload; pause-container and duplicate pod-total rows dropped."""
    grouped: dict[str, list[tuple[WorkloadKey, Series]]] = defaultdict(list)
    for s in series:
        if s.name not in sig.RAW_METRICS or len(s.timestamps) == 0:
            continue
        labels = attach_workload(s.labels)
        if not labels.get("workload") or labels.get("container") == "POD":
            continue
        grouped[s.name].append(((labels.get("namespace", ""), labels["workload"]), s))
    for name, items in grouped.items():
        # cAdvisor also exports a pod-level total with container=""; summing it with the containers double-counts.
        with_containers = {(k, s.labels.get("pod")) for k, s in items if s.labels.get("container")}
        grouped[name] = [(k, s) for k, s in items
                         if not ("container" in s.labels and not s.labels["container"]
                                 and (k, s.labels.get("pod")) in with_containers)]
    return grouped


def _evaluate(series: Sequence[Series], grid: np.ndarray, window: float, counter: bool) -> np.ndarray:
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


def _aggregate(items: Sequence[tuple[WorkloadKey, Series]], matrix: np.ndarray, how: str) -> dict[WorkloadKey, np.ndarray]:
    """Rows of ``matrix`` combined per workload: NaN-ignoring ``sum`` or ``max`` (all-NaN stays NaN)."""
    if not items:
        return {}
    index: dict[WorkloadKey, int] = {}
    codes = np.fromiter((index.setdefault(k, len(index)) for k, _ in items), dtype=np.int64, count=len(items))
    groups = len(index)
    valid = ~np.isnan(matrix)
    if how == "sum":
        acc = np.zeros((groups, matrix.shape[1]))
        np.add.at(acc, codes, np.where(valid, matrix, 0.0))
    else:
        acc = np.full((groups, matrix.shape[1]), np.nan)
        np.fmax.at(acc, codes, matrix)
    counts = np.zeros((groups, matrix.shape[1]))
    np.add.at(counts, codes, valid.astype(np.float64))
    acc[counts == 0] = np.nan
    return {key: acc[i] for key, i in index.items()}
