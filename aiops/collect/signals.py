"""Raw per-pod Prometheus series -> the 7 workload signals (and the serving signals) on a regular time grid.

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

from aiops.collect.evaluation import aggregate as _aggregate, evaluate as _evaluate
from aiops.collect.serving import serving_signals
from aiops.collect.workloads import attach_workload
from aiops.domain import signals as sig
from aiops.domain.observations import Series

WorkloadKey = tuple[str, str]  # (namespace, workload)
_KNOWN = frozenset(sig.ALL_RAW_METRICS)


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
    """The workload signals (``aiops.domain.signals.ALL_SIGNALS``: the golden seven, plus the serving signals of
    workloads exporting DCGM/vLLM metrics) computed from raw series on ``start..end`` by ``step``.

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
    for name, values in serving_signals(by_metric, grid, window).items():
        out[name].update(values)

    result = []
    for (namespace, workload) in sorted(out):
        for signal in sig.ALL_SIGNALS:
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
        if s.name not in _KNOWN or len(s.timestamps) == 0:
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
