"""PrometheusCollector against a local stub of the Prometheus HTTP API answering with the real response shapes."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import numpy as np
import pytest

from aiops.clients.prometheus import PrometheusClient, PrometheusError
from aiops.collect.prometheus import PrometheusCollector, promql_string, series_from_result
from aiops.domain import signals as sig
from aiops.domain.errors import InputError

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "prometheus" / "prometheus_query_range_response.json").read_text())
START, END, STEP = 1795802820.0, 1795802820.0 + 600.0, 15.0


def _values(fn) -> list:
    return [[START + i * STEP, repr(float(fn(i)))] for i in range(41)]


SERIES = {
    sig.RAW_MEMORY: [
        {"metric": {"__name__": sig.RAW_MEMORY, "namespace": "shop", "pod": "cart-7d4b9c8f6-x2k9p",
                    "container": "app"}, "values": _values(lambda i: 1e8 + i * 1e6)},
        {"metric": {"__name__": sig.RAW_MEMORY, "namespace": "shop", "pod": "cart-7d4b9c8f6-b5n8q",
                    "container": "app"}, "values": _values(lambda i: 1e8)},
    ],
    sig.RAW_CPU: [
        {"metric": {"__name__": sig.RAW_CPU, "namespace": "shop", "pod": "web-5f6d7c8b9d-zq2mn",
                    "container": "app"}, "values": _values(lambda i: i * 7.5)},  # 0.5 cores
    ],
}


class _PrometheusStub(BaseHTTPRequestHandler):
    queries: list[dict] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        url = urlparse(self.path)
        params = {k: v[0] for k, v in parse_qs(url.query).items()}
        type(self).queries.append({"path": url.path, **params})
        if url.path != "/api/v1/query_range":
            return self._send(404, {"status": "error", "error": "not found"})
        name = params["query"].split("{", 1)[0]
        if params["query"].endswith('{namespace="broken"}'):
            return self._send(400, {"status": "error", "errorType": "bad_data", "error": "parse error"})
        body = json.loads(json.dumps(FIXTURE))
        body["data"]["result"] = SERIES.get(name, [])
        self._send(200, body)

    def _send(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass


@pytest.fixture()
def prometheus_url():
    _PrometheusStub.queries = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _PrometheusStub)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02},
                              daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_collects_raw_series_and_signals(prometheus_url: str) -> None:
    collector = PrometheusCollector(PrometheusClient(prometheus_url, timeout_seconds=5), step=STEP)
    obs = collector.collect("shop", START, END)
    assert {q["query"] for q in _PrometheusStub.queries} == {f'{m}{{namespace="shop"}}' for m in sig.ALL_RAW_METRICS}
    assert all(float(q["start"]) == START and float(q["end"]) == END for q in _PrometheusStub.queries)
    assert obs.namespace == "shop" and (obs.start, obs.end) == (START, END)
    assert obs.sources == ("metrics",)  # logs and events come from the Kubernetes API: unknown here, not empty
    assert [g.source for g in obs.not_collected] == ["logs", "events"]
    assert len(obs.series) == 3
    assert {s.workload for s in obs.series} == {"cart", "web"}
    assert all("__name__" not in s.labels for s in obs.series)
    signals = {(s.workload, s.name): s for s in obs.signals}
    assert set(signals) == {("cart", sig.MEMORY), ("web", sig.CPU)}
    memory = signals[("cart", sig.MEMORY)]
    assert memory.timestamps[0] == START and memory.timestamps[-1] == END
    assert memory.values[-1] == pytest.approx(1e8 + 40e6)  # the larger container, not the sum
    assert np.allclose(signals[("web", sig.CPU)].values[1:], 0.5)


def test_prometheus_errors_propagate(prometheus_url: str) -> None:
    collector = PrometheusCollector(PrometheusClient(prometheus_url, timeout_seconds=5))
    with pytest.raises(PrometheusError):
        collector.collect("broken", START, END)


def test_namespace_is_escaped_in_promql() -> None:
    collector = PrometheusCollector(PrometheusClient("http://127.0.0.1:9"))
    queries = dict(collector.queries('we"ird\\ns'))
    assert queries[sig.RAW_MEMORY] == sig.RAW_MEMORY + '{namespace="we\\"ird\\\\ns"}'
    assert promql_string("a\nb") == "a\\nb"


def test_fixture_result_parses_and_bad_values_are_named() -> None:
    (series,) = series_from_result(FIXTURE["data"]["result"], default_name="fake")
    assert series.name == "fake" and series.workload == "checkout"
    assert len(series.timestamps) == len(FIXTURE["data"]["result"][0]["values"])
    with pytest.raises(InputError) as info:
        series_from_result([{"metric": {}, "values": [[1, "1"], [2, "x"]]}])
    assert info.value.where == "result[0].values[1]"
