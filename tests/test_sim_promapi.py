"""The simulator's Prometheus-like endpoint, through ``PrometheusClient`` (prometheus-api-client) and raw HTTP."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from aiops.clients.prometheus import PrometheusClient, PrometheusError
from aiops.domain import signals as sig
from aiops.sim.runtime import SimRuntime

START = 1_800_000_000.0


@pytest.fixture(scope="module")
def sim():
    rt = SimRuntime("memory_leak", seed=0, start=START).start()
    rt.prefill(1800)
    yield rt
    rt.stop()


def _get(url: str, data: dict | None = None):
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    req = urllib.request.Request(url, data=body)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.headers.get("Content-Type"), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type"), exc.read().decode()


def test_query_range_through_prometheus_client(sim):
    prom = PrometheusClient(sim.prom_url)
    assert prom.ready()
    result = prom.query_range(f'{sig.RAW_MEMORY}{{namespace="shop", pod=~"cart-.*"}}', START - 600, START, 60)
    assert len(result) == 2
    for series in result:
        assert series["metric"]["__name__"] == sig.RAW_MEMORY and series["metric"]["pod"].startswith("cart-")
        assert [t for t, _ in series["values"]] == [START - 600 + 60 * i for i in range(11)]
        assert all(100 * 2**20 < float(v) < 400 * 2**20 for _, v in series["values"])


def test_step_semantics_take_latest_sample_within_lookback(sim):
    prom = PrometheusClient(sim.prom_url)
    query = f'{sig.RAW_SPEC_REPLICAS}{{deployment="cart"}}'
    (series,) = prom.query_range(query, START - 100, START - 90, 1)
    assert len(series["values"]) == 11  # samples every 15 s fill every 1 s step from the last one
    # Nothing after the newest sample plus the 5-minute lookback.
    (late,) = prom.query_range(query, START + 250, START + 400, 50)
    assert [t for t, _ in late["values"]] == [START + 250]
    assert prom.query_range(query, START - 4000, START - 3700, 60) == []  # before the first sample


def test_instant_query_and_selector_matching(sim):
    prom = PrometheusClient(sim.prom_url)
    assert {r["metric"]["code"] for r in prom.query(f'{sig.RAW_REQUESTS}{{namespace="shop"}}', at=START)} == {"200", "500"}
    errors = prom.query(f'{sig.RAW_REQUESTS}{{code=~"5.."}}', at=START)
    assert errors and all(r["metric"]["code"] == "500" for r in errors)
    not_cart = prom.query(f'{sig.RAW_MEMORY}{{pod!~"cart-.*", namespace="shop"}}', at=START)
    assert len(not_cart) == 7 and not any(r["metric"]["pod"].startswith("cart-") for r in not_cart)
    by_name = prom.query(f'{{__name__="{sig.RAW_SPEC_REPLICAS}", deployment!="redis"}}', at=START)
    assert sorted(r["metric"]["deployment"] for r in by_name) == ["cart", "catalog", "frontend", "payments"]
    now = prom.query(f'{sig.RAW_SPEC_REPLICAS}{{deployment="redis"}}')  # default time: the sim clock's now
    assert now[0]["value"] == [START, "1"]
    assert prom.query('nope_metric{a="b"}', at=START) == []


def test_post_form_and_bad_queries(sim):
    code, _, body = _get(sim.prom_url + "/api/v1/query", {"query": sig.RAW_SPEC_REPLICAS, "time": str(START)})
    assert code == 200 and len(json.loads(body)["data"]["result"]) == 5
    for bad in ["rate(http_requests_total[5m])", "sum(x)", 'x{a="b"} + 1', '{a=""}', "x{a=b}"]:
        code, ctype, body = _get(sim.prom_url + "/api/v1/query?" + urllib.parse.urlencode({"query": bad}))
        answer = json.loads(body)
        assert code == 400 and ctype == "application/json", bad
        assert answer["status"] == "error" and answer["errorType"] == "bad_data" and answer["error"], bad
    code, _, body = _get(sim.prom_url + "/api/v1/query_range?" + urllib.parse.urlencode(
        {"query": "up", "start": START, "end": START - 10, "step": "15s"}))
    assert code == 400 and "end" in json.loads(body)["error"]
    with pytest.raises(PrometheusError):
        PrometheusClient(sim.prom_url).query_range("rate(x[1m])", START - 60, START, 15)


def test_metrics_exposition_parses_with_types(sim):
    code, ctype, text = _get(sim.prom_url + "/metrics")
    assert code == 200 and ctype.startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(text)}
    # The parser strips "_total" from counter family names.
    assert families["http_requests"].type == "counter"
    assert families["container_cpu_usage_seconds"].type == "counter"
    assert families["kube_pod_container_status_restarts"].type == "counter"
    assert families[sig.RAW_MEMORY].type == "gauge"
    assert families[sig.RAW_SPEC_REPLICAS].type == "gauge"
    memory = {s.labels["pod"]: s.value for s in families[sig.RAW_MEMORY].samples}
    assert len(memory) == 9  # 2+2+2+2+1 pods
    quantiles = {s.labels["quantile"] for s in families[sig.RAW_DURATION].samples}
    assert quantiles == {"0.5", "0.99"}


def test_buildinfo_and_ready(sim):
    code, _, body = _get(sim.prom_url + "/api/v1/status/buildinfo")
    assert code == 200 and json.loads(body)["data"]["version"].startswith("2.")
    assert _get(sim.prom_url + "/-/ready")[0] == 200


def test_deleted_pods_go_stale_at_once():
    rt = SimRuntime("traffic_surge", seed=0, start=START).start()
    try:
        rt.prefill(300)
        prom = PrometheusClient(rt.prom_url)
        old = {r["metric"]["pod"] for r in prom.query(f'{sig.RAW_MEMORY}{{pod=~"payments-.*"}}')}
        rt.cluster.scale("shop", "payments", 1)
        rt.advance(15)
        now = {r["metric"]["pod"] for r in prom.query(f'{sig.RAW_MEMORY}{{pod=~"payments-.*"}}')}
        assert len(old) == 2 and len(now) == 1 and now < old
        text = _get(rt.prom_url + "/metrics")[2]
        assert (old - now).pop() not in text
    finally:
        rt.stop()
