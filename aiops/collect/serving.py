"""Raw model-serving series (NVIDIA DCGM exporter, vLLM, process memory) -> the serving signals of each workload.

The same range-query semantics as the golden signals (``collect.signals``): gauges are the last sample in the
trailing window, the latency histogram's bucket counters are rates over it. The p99 is Prometheus'
``histogram_quantile(0.99, sum by (le) (rate(vllm:e2e_request_latency_seconds_bucket[w])))`` per workload,
including its linear interpolation inside the bucket and its answer for the ``+Inf`` bucket (the highest finite
bound).
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Sequence

import numpy as np

from aiops.collect.evaluation import aggregate, evaluate
from aiops.domain import signals as sig
from aiops.domain.observations import Series

WorkloadKey = tuple[str, str]  # (namespace, workload)
ByMetric = dict[str, list[tuple[WorkloadKey, Series]]]
QUANTILE = 0.99


def serving_signals(by_metric: ByMetric, grid: np.ndarray, window: float) -> dict[WorkloadKey, dict[str, np.ndarray]]:
    """The serving signals (``sig.SERVING_SIGNALS``) of every workload that exports their raw metrics."""
    out: dict[WorkloadKey, dict[str, np.ndarray]] = defaultdict(dict)

    def gauge(metric: str, signal: str, how: str, scale: float = 1.0) -> None:
        items = by_metric.get(metric, [])
        for key, values in aggregate(items, evaluate([s for _, s in items], grid, window, False), how).items():
            out[key][signal] = values * scale

    gauge(sig.RAW_GPU_UTIL, sig.GPU_UTIL, "mean")
    gauge(sig.RAW_FB_USED, sig.GPU_MEMORY, "max", float(sig.MIB))
    gauge(sig.RAW_REQUESTS_WAITING, sig.REQUESTS_WAITING, "sum")
    gauge(sig.RAW_GPU_CACHE_USAGE, sig.KV_CACHE_USAGE, "max")
    gauge(sig.RAW_PROCESS_MEMORY, sig.PROCESS_MEMORY, "max")
    for key, values in _memory_ratio(by_metric, grid, window).items():
        out[key][sig.GPU_MEMORY_RATIO] = values
    for key, values in histogram_p99(by_metric.get(sig.RAW_E2E_LATENCY_BUCKET, []), grid, window).items():
        out[key][sig.INFERENCE_P99] = values
    return out


def _gpu_key(series: Series) -> tuple:
    """One GPU's identity: every label but the metric name (used and free of one GPU share them)."""
    return tuple(sorted(series.labels.items()))


def _memory_ratio(by_metric: ByMetric, grid: np.ndarray, window: float) -> dict[WorkloadKey, np.ndarray]:
    used = by_metric.get(sig.RAW_FB_USED, [])
    free = {_gpu_key(s): s for _, s in by_metric.get(sig.RAW_FB_FREE, [])}
    pairs = [(key, s, free[_gpu_key(s)]) for key, s in used if _gpu_key(s) in free]
    if not pairs:
        return {}
    used_m = evaluate([s for _, s, _ in pairs], grid, window, False)
    free_m = evaluate([f for _, _, f in pairs], grid, window, False)
    total = used_m + free_m
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(total > 0, used_m / np.where(total > 0, total, 1.0), np.nan)
    return aggregate([(key, s) for key, s, _ in pairs], ratio, "max")


def _bound(series: Series) -> float:
    raw = series.labels.get("le", "")
    try:
        return math.inf if raw in ("+Inf", "Inf", "inf") else float(raw)
    except ValueError:
        return math.nan


def histogram_p99(items: Sequence[tuple[WorkloadKey, Series]], grid: np.ndarray, window: float,
                  quantile: float = QUANTILE) -> dict[WorkloadKey, np.ndarray]:
    """``histogram_quantile(quantile, sum by (le) (rate(bucket[window])))`` per workload on ``grid``."""
    items = [(k, s) for k, s in items if not math.isnan(_bound(s))]
    if not items:
        return {}
    rates = evaluate([s for _, s in items], grid, window, True)
    per_bucket = aggregate([((k, _bound(s)), s) for k, s in items], rates, "sum")
    by_workload: dict[WorkloadKey, dict[float, np.ndarray]] = defaultdict(dict)
    for (key, bound), values in per_bucket.items():
        by_workload[key][bound] = values
    return {key: _quantile(buckets, quantile) for key, buckets in by_workload.items() if math.inf in buckets}


def _quantile(buckets: dict[float, np.ndarray], q: float) -> np.ndarray:
    """Prometheus' bucketQuantile for every grid point at once (NaN where nothing was observed)."""
    bounds = np.array(sorted(buckets))
    counts = np.stack([buckets[b] for b in bounds])          # (buckets, points), cumulative
    counts = np.maximum.accumulate(np.nan_to_num(counts, nan=0.0), axis=0)  # monotonic, as Prometheus enforces
    total = counts[-1]
    rank = q * total
    # The first bucket whose cumulative count reaches the rank.
    idx = np.argmax(counts >= rank[None, :], axis=0)
    cols = np.arange(counts.shape[1])
    upper = bounds[idx]
    lower = np.where(idx > 0, bounds[np.maximum(idx - 1, 0)], 0.0)
    below = np.where(idx > 0, counts[np.maximum(idx - 1, 0), cols], 0.0)
    in_bucket = counts[idx, cols] - below
    with np.errstate(divide="ignore", invalid="ignore"):
        value = lower + (upper - lower) * np.where(in_bucket > 0, (rank - below) / in_bucket, 0.0)
    finite = bounds[np.isfinite(bounds)]
    highest = finite[-1] if finite.size else np.nan
    value = np.where(np.isinf(upper), highest, value)     # the +Inf bucket: the highest finite bound
    if bounds[0] <= 0:
        value = np.where(idx == 0, upper, value)          # a first bucket at or below zero has no width
    return np.where(total > 0, value, np.nan)
