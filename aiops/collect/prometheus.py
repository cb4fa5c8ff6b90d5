"""Metrics from a live Prometheus: the raw series of one namespace, and the workload signals derived from them."""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np

from aiops.clients.prometheus import PrometheusClient
from aiops.collect.signals import derive_signals
from aiops.collect.workloads import attach_workload
from aiops.domain import signals as sig
from aiops.domain.errors import InputError
from aiops.domain.observations import EVENTS, LOGS, Observations, Series, SourceGap

# The one table of what is asked of Prometheus: (metric name, PromQL template). ``{ns}`` is the namespace,
# already escaped for a PromQL string literal.
# The serving metrics (DCGM, vLLM, process memory) are asked for too; a namespace without GPUs answers empty.
QUERIES: tuple[tuple[str, str], ...] = tuple((name, name + '{{namespace="{ns}"}}') for name in sig.ALL_RAW_METRICS)


def promql_string(value: str) -> str:
    """``value`` escaped for use inside a double-quoted PromQL string literal."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def series_from_result(result: Iterable[object], default_name: str = "", where: str = "result") -> list[Series]:
    """``Series`` from a ``query_range`` ``data.result`` list, with a ``workload`` label attached where derivable.

    A wrong shape raises ``InputError`` naming the item (``result[3].values[2]``), so the same parser serves case
    folders and live answers.
    """
    if not isinstance(result, list):
        raise InputError(where, f"must be a list of range-vector results, got {type(result).__name__}")
    out = []
    for i, item in enumerate(result):
        here = f"{where}[{i}]"
        if not isinstance(item, dict):
            raise InputError(here, "not an object with 'metric' and 'values'")
        metric = item.get("metric")
        if not isinstance(metric, dict) or not all(isinstance(v, str) for v in metric.values()):
            raise InputError(f"{here}.metric", "must be an object of string labels")
        raw_values = item.get("values")
        if not isinstance(raw_values, list):
            raise InputError(f"{here}.values", "must be a list of [timestamp, \"value\"] pairs")
        ts, vals = _samples(raw_values, f"{here}.values")
        labels = {k: v for k, v in metric.items() if k != "__name__"}
        name = metric.get("__name__", default_name)
        out.append(Series(name, attach_workload(labels), ts, vals))
    return out


def _samples(raw: list, where: str) -> tuple[np.ndarray, np.ndarray]:
    try:  # fast path: a well-formed list converts in one go; the slow path below finds the bad pair
        pairs = np.array(raw, dtype=object).reshape(len(raw), 2) if raw else np.empty((0, 2), dtype=object)
        if not any(isinstance(x, bool) for x in pairs[:, 0]):
            ts, vals = pairs[:, 0].astype(np.float64), pairs[:, 1].astype(np.float64)
            nan_values = pairs[np.isnan(vals), 1]  # None also converts to NaN; only the string "NaN" may
            if np.all(np.isfinite(ts)) and all(isinstance(x, str) for x in nan_values):
                return _sorted(ts, vals)
    except (TypeError, ValueError):
        pass
    ts = np.empty(len(raw))
    vals = np.empty(len(raw))
    for j, pair in enumerate(raw):
        try:
            if not isinstance(pair, (list, tuple)) or len(pair) != 2 or isinstance(pair[0], bool):
                raise TypeError
            t, v = float(pair[0]), float(pair[1])  # float() reads Prometheus' "NaN", "+Inf", "-Inf"
            if not math.isfinite(t):
                raise ValueError
        except (TypeError, ValueError):
            raise InputError(f"{where}[{j}]", 'not a [timestamp, "value"] pair') from None
        ts[j], vals[j] = t, v
    return _sorted(ts, vals)


def _sorted(ts: np.ndarray, vals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if ts.size > 1 and np.any(np.diff(ts) < 0):
        order = np.argsort(ts, kind="stable")
        ts, vals = ts[order], vals[order]
    return ts, vals


class PrometheusCollector:
    """Collects one namespace's raw metrics through ``query_range`` and derives the workload signals.

    A metric Prometheus does not have is normal (it is simply absent); ``PrometheusError`` propagates.
    """

    def __init__(self, client: PrometheusClient, step: float = 15.0) -> None:
        self.client = client
        self.step = step

    def queries(self, namespace: str) -> list[tuple[str, str]]:
        """The (metric, PromQL) pairs run for ``namespace``."""
        ns = promql_string(namespace)
        return [(name, template.format(ns=ns)) for name, template in QUERIES]

    def raw_series(self, namespace: str, start: float, end: float) -> list[Series]:
        """Every raw series of ``namespace`` over ``[start, end]``."""
        out: list[Series] = []
        for name, query in self.queries(namespace):
            result = self.client.query_range(query, start, end, self.step)
            out.extend(series_from_result(result, default_name=name, where=f"query {query}"))
        return out

    def collect(self, namespace: str, start: float, end: float) -> Observations:
        """Raw series and derived signals of ``namespace``; logs and events are marked not collected (they come
        from the Kubernetes API: see ``ObservationCollector``)."""
        series = self.raw_series(namespace, start, end)
        unread = "not read: Prometheus holds metrics only"
        return Observations(namespace=namespace, start=start, end=end, series=tuple(series),
                            signals=derive_signals(series, start, end, self.step),
                            not_collected=(SourceGap(LOGS, unread), SourceGap(EVENTS, unread)))
