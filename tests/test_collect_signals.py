"""derive_signals against hand-computed values, including a counter reset, and a speed check."""

from __future__ import annotations


import numpy as np
import pytest

from aiops.collect.signals import derive_signals, grid_times
from aiops.domain import signals as sig
from aiops.domain.observations import Series

TS = np.arange(0.0, 150.0, 15.0)  # 0, 15, ..., 135
POD_A = {"namespace": "ns", "pod": "cart-7d4b9c8f6-x2k9p", "container": "app"}
POD_B = {"namespace": "ns", "pod": "cart-7d4b9c8f6-b5n8q", "container": "app"}


def _by_name(out):
    return {(s.labels["workload"], s.name): s for s in out}


def test_counter_rate_with_reset_hand_computed() -> None:
    # +15 per step (1/s), reset to 5 at t=60, then +15 per step again.
    cpu = Series(sig.RAW_CPU, POD_A, TS, np.array([0, 15, 30, 45, 5, 20, 35, 50, 65, 80.0]))
    (out,) = derive_signals([cpu], 0.0, 135.0, 15.0)
    assert out.name == sig.CPU and dict(out.labels) == {"namespace": "ns", "workload": "cart"}
    assert list(out.timestamps) == list(TS)
    # window = max(4*15, 60) = 60 s over (t-60, t]. t=0: one sample -> no rate.
    assert np.isnan(out.values[0])
    assert out.values[1] == pytest.approx(1.0)          # (15-0)/15
    # t=60: samples 15,30,45,5 -> corrected 15,30,45,50 -> 35 over 45 s
    assert out.values[4] == pytest.approx(35 / 45)
    assert out.values[5] == pytest.approx((65 - 30) / 45)  # 30,45,5(->50),20(->65)
    assert out.values[8] == pytest.approx(1.0)            # past the reset: plain 45/45


def test_sums_over_pods_gauges_and_ratios() -> None:
    mem_a = Series(sig.RAW_MEMORY, POD_A, TS, np.full(TS.size, 100.0))
    mem_b = Series(sig.RAW_MEMORY, POD_B, TS[:5], np.full(5, 150.0))  # pod B gone after t=60
    pause = Series(sig.RAW_MEMORY, {**POD_A, "container": "POD"}, TS, np.full(TS.size, 1e6))
    pod_total = Series(sig.RAW_MEMORY, {**POD_A, "container": ""}, TS, np.full(TS.size, 1e6))
    ok = Series(sig.RAW_REQUESTS, {**POD_A, "code": "200"}, TS, TS * 9.0)  # 9 req/s
    bad = Series(sig.RAW_REQUESTS, {**POD_B, "code": "503"}, TS, TS * 1.0)  # 1 req/s
    p99a = Series(sig.RAW_DURATION, {**POD_A, "quantile": "0.99"}, TS, np.full(TS.size, 0.2))
    p99b = Series(sig.RAW_DURATION, {**POD_B, "quantile": "0.99"}, TS, np.full(TS.size, 0.5))
    p50 = Series(sig.RAW_DURATION, {**POD_B, "quantile": "0.5"}, TS, np.full(TS.size, 9.0))
    dep = {"namespace": "ns", "deployment": "cart"}
    avail = Series(sig.RAW_AVAILABLE, dep, TS, np.r_[np.full(5, 2.0), np.full(5, 1.0)])
    spec = Series(sig.RAW_SPEC_REPLICAS, dep, TS, np.full(TS.size, 2.0))
    unknown = Series("something_else", POD_A, TS, np.ones(TS.size))
    out = _by_name(derive_signals([mem_a, mem_b, pause, pod_total, ok, bad, p99a, p99b, p50, avail, spec, unknown],
                                  0.0, 135.0, 15.0))
    assert set(out) == {("cart", s) for s in (sig.MEMORY, sig.REQUEST_RATE, sig.ERROR_RATIO, sig.LATENCY_P99,
                                              sig.AVAILABLE_RATIO)}
    memory = out[("cart", sig.MEMORY)].values
    assert memory[0] == 150.0 and memory[4] == 150.0
    assert memory[7] == 150.0   # pod B's last sample (t=60) still within the 60 s lookback at t=105
    assert memory[8] == 100.0   # ... and stale at t=120
    assert out[("cart", sig.REQUEST_RATE)].values[3] == pytest.approx(10.0)
    assert out[("cart", sig.ERROR_RATIO)].values[3] == pytest.approx(0.1)
    assert np.all(out[("cart", sig.LATENCY_P99)].values == 0.5)
    assert list(out[("cart", sig.AVAILABLE_RATIO)].values) == [1.0] * 5 + [0.5] * 5


def test_missing_inputs_mean_absent_signals_and_grid_alignment() -> None:
    assert derive_signals([], 0, 100, 15) == ()
    mem = Series(sig.RAW_MEMORY, {"namespace": "ns", "workload": "db"}, np.array([7.0, 22.0]), np.array([1.0, 2.0]))
    (out,) = derive_signals([mem], 0.0, 30.0, 10.0)
    assert list(out.timestamps) == [0.0, 10.0, 20.0, 30.0]
    assert np.isnan(out.values[0]) and list(out.values[1:]) == [1.0, 1.0, 2.0]
    no_owner = Series(sig.RAW_MEMORY, {"namespace": "ns"}, TS, np.ones(TS.size))
    assert derive_signals([no_owner], 0, 135, 15) == ()
    assert list(grid_times(0, 45, 15)) == [0, 15, 30, 45]


def test_zero_traffic_error_ratio_is_zero_and_zero_replicas_is_fully_available() -> None:
    ok = Series(sig.RAW_REQUESTS, {**POD_A, "code": "200"}, TS, np.zeros(TS.size))
    dep = {"namespace": "ns", "deployment": "cart"}
    zero = [Series(sig.RAW_AVAILABLE, dep, TS, np.zeros(TS.size)),
            Series(sig.RAW_SPEC_REPLICAS, dep, TS, np.zeros(TS.size))]
    out = _by_name(derive_signals([ok, *zero], 0, 135, 15))
    assert np.all(out[("cart", sig.ERROR_RATIO)].values[1:] == 0.0)
    assert np.all(out[("cart", sig.AVAILABLE_RATIO)].values == 1.0)


def test_thousand_workloads_each_get_every_signal() -> None:
    # How fast this is, is measured by bench/throughput.py (docs/benchmarks.md), not asserted here.
    rng = np.random.default_rng(0)
    ts = np.arange(240) * 15.0
    series = []
    for w in range(1000):
        lab = {"namespace": "ns", "workload": f"w{w}", "pod": f"w{w}-0"}
        series.append(Series(sig.RAW_CPU, lab, ts, np.cumsum(rng.random(240))))
        series.append(Series(sig.RAW_MEMORY, lab, ts, rng.random(240)))
        series.append(Series(sig.RAW_RESTARTS, lab, ts, np.zeros(240)))
        series.append(Series(sig.RAW_REQUESTS, {**lab, "code": "200"}, ts, np.cumsum(rng.random(240))))
        series.append(Series(sig.RAW_REQUESTS, {**lab, "code": "500"}, ts, np.cumsum(rng.random(240))))
        series.append(Series(sig.RAW_DURATION, {**lab, "quantile": "0.99"}, ts, rng.random(240)))
        series.append(Series(sig.RAW_AVAILABLE, lab, ts, np.ones(240)))
        series.append(Series(sig.RAW_SPEC_REPLICAS, lab, ts, np.ones(240)))
    out = derive_signals(series, 0.0, ts[-1], 15.0)
    assert len(out) == 7000
    assert {s.labels["workload"] for s in out} == {f"w{w}" for w in range(1000)}
