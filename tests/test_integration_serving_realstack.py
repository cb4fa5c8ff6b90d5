"""A real Prometheus scrapes the simulated model servers: the DCGM and vLLM names (with ':') scrape as they are,
and the p99 the collector derives from what Prometheus returns equals Prometheus' own ``histogram_quantile``."""

from __future__ import annotations

import time

import pytest

from aiops.clients.prometheus import PrometheusClient
from aiops.collect.prometheus import PrometheusCollector
from aiops.domain import signals as sig
from tests.support import realstack
from tests.support.polling import wait_until
from tests.support.simruntime import realtime_sim

pytestmark = pytest.mark.realstack
BUCKETS = 'vllm:e2e_request_latency_seconds_bucket{namespace="ml",pod=~"llm-.*",pod!~"llm-small-.*"}'


@pytest.fixture
def serving_sim():
    with realtime_sim("model_overload") as runtime:
        yield runtime


def test_real_prometheus_scrapes_serving_metrics_and_agrees_on_the_p99(serving_sim):
    if not realstack.available():
        pytest.fail("Debian's prometheus is missing: run `make test`, which installs it")
    stack = realstack.start_stack({"sim": serving_sim.prom_url.removeprefix("http://")})
    try:
        client = PrometheusClient(stack.prometheus_url)

        def scrapes() -> float:
            found = client.query(f'min(count_over_time({BUCKETS}[30s]))')
            return float(found[0]["value"][1]) if found else 0.0

        wait_until(lambda: scrapes() >= 8, 40, "eight scrapes of the vLLM histogram")
        at = float(int(time.time()) - 1)
        observations = PrometheusCollector(client, step=1.0).collect("ml", at - 30, at)
        ours = {s.name: s for s in observations.signals if s.workload == "llm"}
        assert {sig.GPU_UTIL, sig.GPU_MEMORY, sig.INFERENCE_P99, sig.REQUESTS_WAITING, sig.KV_CACHE_USAGE,
                sig.PROCESS_MEMORY} <= set(ours)
        window = 60  # the collector's trailing window on a 1 s grid: max(4 steps, 60 s)
        (answer,) = client.query(f"histogram_quantile(0.99, sum by (le) (rate({BUCKETS}[{window}s])))", at)
        theirs = float(answer["value"][1])
        assert ours[sig.INFERENCE_P99].values[-1] == pytest.approx(theirs, rel=1e-3)
        assert 0.1 < theirs < 0.2  # the model server at half its capacity
    finally:
        stack.stop()
