"""Serving signals from DCGM, vLLM and process-memory series: hand-computed values, and the p99 checked against
real Prometheus' ``histogram_quantile`` through ``promtool test rules``."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
import yaml

from aiops.collect.prometheus import PrometheusCollector
from aiops.collect.signals import derive_signals
from aiops.domain import signals as sig
from aiops.domain.observations import Series
from tests.support.realstack import PROMTOOL, available

TS = np.arange(0.0, 301.0, 15.0)
POD_A = {"namespace": "ml", "pod": "llm-7d4b9c8f6-x2k9p", "container": "vllm"}
POD_B = {"namespace": "ml", "pod": "llm-7d4b9c8f6-b5n8q", "container": "vllm"}
# Cumulative bucket rates (per second): 80 under 0.1 s, 95 under 0.2 s, all 100 under 0.5 s.
BUCKETS = {"0.1": 80.0, "0.2": 95.0, "0.5": 100.0, "+Inf": 100.0}


def _signals(series, step: float = 15.0) -> dict[tuple[str, str], Series]:
    out = derive_signals(series, TS[0], TS[-1], step)
    return {(s.labels["workload"], s.name): s for s in out}


def _histogram(labels: dict, rates: dict[str, float]) -> list[Series]:
    return [Series(sig.RAW_E2E_LATENCY_BUCKET, {**labels, "le": le}, TS, TS * rate) for le, rate in rates.items()]


def test_p99_interpolates_inside_the_bucket_like_histogram_quantile():
    out = _signals(_histogram(POD_A, BUCKETS) + _histogram(POD_B, BUCKETS))
    p99 = out[("llm", sig.INFERENCE_P99)].values
    # rank 0.99 * 100 = 99 falls in (0.2, 0.5] holding 95..100: 0.2 + 0.3 * (99 - 95) / 5
    assert np.isnan(p99[0]) and p99[-1] == pytest.approx(0.44)


def test_p99_in_the_inf_bucket_is_the_highest_finite_bound():
    out = _signals(_histogram(POD_A, {"0.1": 50.0, "0.2": 60.0, "0.5": 70.0, "+Inf": 100.0}))
    assert out[("llm", sig.INFERENCE_P99)].values[-1] == pytest.approx(0.5)


def test_gpu_gauges_queue_cache_and_process_memory():
    dcgm_a = {**POD_A, "gpu": "0", "UUID": "GPU-a"}
    dcgm_b = {**POD_B, "gpu": "0", "UUID": "GPU-b"}
    series = [
        Series(sig.RAW_GPU_UTIL, dcgm_a, TS, np.full(TS.size, 40.0)),
        Series(sig.RAW_GPU_UTIL, dcgm_b, TS, np.full(TS.size, 80.0)),
        Series(sig.RAW_FB_USED, dcgm_a, TS, np.full(TS.size, 1000.0)),
        Series(sig.RAW_FB_FREE, dcgm_a, TS, np.full(TS.size, 3000.0)),
        Series(sig.RAW_FB_USED, dcgm_b, TS, np.full(TS.size, 3000.0)),
        Series(sig.RAW_FB_FREE, dcgm_b, TS, np.full(TS.size, 1000.0)),
        Series(sig.RAW_REQUESTS_WAITING, POD_A, TS, np.full(TS.size, 2.0)),
        Series(sig.RAW_REQUESTS_WAITING, POD_B, TS, np.full(TS.size, 5.0)),
        Series(sig.RAW_GPU_CACHE_USAGE, POD_A, TS, np.full(TS.size, 0.4)),
        Series(sig.RAW_GPU_CACHE_USAGE, POD_B, TS, np.full(TS.size, 0.9)),
        Series(sig.RAW_PROCESS_MEMORY, POD_A, TS, np.full(TS.size, 4e9)),
        Series(sig.RAW_PROCESS_MEMORY, POD_B, TS, np.full(TS.size, 5e9)),
    ]
    out = _signals(series)
    last = {name: s.values[-1] for (_, name), s in out.items()}
    assert last[sig.GPU_UTIL] == pytest.approx(60.0)                # mean over the workload's GPUs
    assert last[sig.GPU_MEMORY] == pytest.approx(3000.0 * sig.MIB)  # DCGM's MiB as bytes, the fullest GPU
    assert last[sig.GPU_MEMORY_RATIO] == pytest.approx(0.75)
    assert last[sig.REQUESTS_WAITING] == pytest.approx(7.0)
    assert last[sig.KV_CACHE_USAGE] == pytest.approx(0.9)
    assert last[sig.PROCESS_MEMORY] == pytest.approx(5e9)
    # Golden signals stay absent when their raw metrics are (a GPU exporter alone says nothing about requests).
    assert sig.REQUEST_RATE not in last


def test_ten_second_collection_interval():
    ts = np.arange(0.0, 121.0, 10.0)
    util = Series(sig.RAW_GPU_UTIL, {**POD_A, "gpu": "0"}, ts, np.linspace(10, 90, ts.size))
    (out,) = derive_signals([util], 0.0, 120.0, 10.0)
    assert list(out.timestamps) == list(ts)
    assert list(out.values) == pytest.approx(list(np.linspace(10, 90, ts.size)))


def test_the_collector_asks_for_the_serving_metrics_by_their_real_names():
    queries = dict(PrometheusCollector(client=None).queries("ml"))
    bucket = "vllm:e2e_request_latency_seconds_bucket"
    assert queries[bucket] == bucket + '{namespace="ml"}'
    assert {"DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE", "vllm:num_requests_waiting",
            "vllm:gpu_cache_usage_perc", "process_resident_memory_bytes"} <= set(queries)


@pytest.mark.skipif(not available(), reason="Debian's prometheus package is not installed")
def test_p99_matches_prometheus_histogram_quantile(tmp_path):
    rates = {"0.05": 40.0, "0.1": 70.0, "0.2": 91.0, "0.3": 97.5, "0.5": 99.6, "+Inf": 100.0}
    ours = _signals(_histogram(POD_A, rates))[("llm", sig.INFERENCE_P99)].values[-1]
    test = {"interval": "15s",
            "input_series": [{"series": f'vllm:e2e_request_latency_seconds_bucket{{namespace="ml",'
                                        f'pod="{POD_A["pod"]}",le="{le}"}}',
                              "values": f"0+{rate * 15:g}x40"} for le, rate in rates.items()],
            "promql_expr_test": [{
                "expr": "histogram_quantile(0.99, sum by (le) (rate(vllm:e2e_request_latency_seconds_bucket[1m])))",
                "eval_time": "5m", "exp_samples": [{"labels": "{}", "value": float(ours)}]}]}
    (tmp_path / "t.yaml").write_text(yaml.safe_dump({"rule_files": [], "evaluation_interval": "15s",
                                                     "tests": [test]}), encoding="utf-8")
    run = subprocess.run([PROMTOOL, "test", "rules", str(tmp_path / "t.yaml")], capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
