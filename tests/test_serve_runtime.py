"""The runtime pieces: scheduler, readiness, JSON logging, the HTTP server thread, metrics exposition."""

from __future__ import annotations

import io
import json
import logging
import socket
import threading
import time

import pytest
import requests

from aiops.domain.errors import InputError
from aiops.serve.logging import JsonFormatter, configure_logging
from aiops.serve.metrics import AgentMetrics
from aiops.serve.readiness import Readiness
from aiops.serve.scheduler import LoopScheduler
from aiops.serve.server import AgentServer
from aiops.serve.webhook import build_app
from tests.support.polling import wait_for


# -- scheduler ---------------------------------------------------------------------------------------------------

def test_scheduler_runs_repeatedly_and_records_loop_seconds():
    metrics = AgentMetrics()
    calls: list[float] = []
    scheduler = LoopScheduler(lambda: calls.append(time.monotonic()), 0.05, metrics)
    scheduler.start()
    try:
        assert wait_for(lambda: len(calls) >= 3)
    finally:
        scheduler.shutdown()
    assert scheduler.runs >= 3
    assert metrics.registry.get_sample_value("aiops_loop_seconds_count") >= 3


def test_scheduler_never_overlaps_and_survives_a_failing_run():
    active, overlaps, runs = [0], [0], [0]
    lock = threading.Lock()

    def job() -> None:
        with lock:
            active[0] += 1
            overlaps[0] = max(overlaps[0], active[0])
            runs[0] += 1
            n = runs[0]
        time.sleep(0.12)  # a run longer than the interval, to provoke overlap  # noqa: not synchronisation
        with lock:
            active[0] -= 1
        if n == 1:
            raise RuntimeError("first run fails")

    scheduler = LoopScheduler(job, 0.03)
    scheduler.start()
    try:
        assert wait_for(lambda: scheduler.runs >= 3)
    finally:
        scheduler.shutdown()
    assert overlaps[0] == 1
    assert scheduler.failures == 1


def test_shutdown_waits_for_the_running_job():
    started, release, finished = threading.Event(), threading.Event(), threading.Event()

    def job() -> None:
        started.set()
        release.wait(5)
        finished.set()

    scheduler = LoopScheduler(job, 60)
    scheduler.start()
    assert started.wait(5)
    stopper = threading.Thread(target=scheduler.shutdown)
    stopper.start()
    stopper.join(0.2)
    assert stopper.is_alive()  # still waiting for the job
    release.set()
    stopper.join(5)
    assert not stopper.is_alive() and finished.is_set()
    assert not scheduler.running


# -- readiness ---------------------------------------------------------------------------------------------------

def test_readiness_reports_timeouts_and_errors():
    hang = threading.Event()

    def broken() -> None:
        raise ConnectionError("refused")

    readiness = Readiness({"slow": lambda: hang.wait(5) and None, "broken": broken, "fine": lambda: None},
                          timeout_seconds=0.1, cache_seconds=0)
    try:
        ready, checks = readiness.check_blocking()
        assert not ready
        assert checks["slow"].startswith("timeout")
        assert checks["broken"] == "error: ConnectionError: refused"
        assert checks["fine"] == "ok"
    finally:
        hang.set()
        readiness.close()


def test_readiness_caches_results():
    calls = [0]

    def check() -> None:
        calls[0] += 1

    readiness = Readiness({"prometheus": check}, cache_seconds=60)
    assert readiness.check_blocking() == (True, {"prometheus": "ok"})
    readiness.check_blocking()
    assert calls[0] == 1
    readiness.invalidate()
    readiness.check_blocking()
    assert calls[0] == 2
    readiness.close()


# -- logging -----------------------------------------------------------------------------------------------------

@pytest.fixture
def restore_root_logger():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_log_lines_carry_ids_and_tracebacks(restore_root_logger):
    stream = io.StringIO()
    configure_logging("json", "DEBUG", stream=stream)
    configure_logging("json", "DEBUG", stream=stream)  # configuring twice must not double the lines
    log = logging.getLogger("aiops.test")
    log.info("planned %s", "restart", extra={"incident": "inc-1", "plan": "p-2"})
    try:
        raise ValueError("bad")
    except ValueError:
        log.exception("failed")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(lines) == 2
    assert lines[0]["msg"] == "planned restart"
    assert (lines[0]["level"], lines[0]["logger"]) == ("INFO", "aiops.test")
    assert (lines[0]["incident"], lines[0]["plan"]) == ("inc-1", "p-2")
    assert lines[0]["ts"].endswith("Z")
    assert "ValueError: bad" in lines[1]["exc"]


def test_text_format_and_bad_format(restore_root_logger):
    stream = io.StringIO()
    configure_logging("text", logging.INFO, stream=stream)
    logging.getLogger("aiops.test").warning("hello", extra={"incident": "inc-9"})
    assert "WARNING aiops.test: hello [incident=inc-9]" in stream.getvalue()
    with pytest.raises(InputError) as err:
        configure_logging("xml")
    assert err.value.where == "log_format"


def test_json_formatter_survives_unserialisable_extra():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", (), None)
    record.thing = object()
    assert json.loads(JsonFormatter().format(record))["thing"].startswith("<object")


# -- server ------------------------------------------------------------------------------------------------------

def _unreachable() -> str:
    # What the real checks would say with Prometheus and Kubernetes down.
    return "unreachable: connection refused"


def test_server_answers_with_dependencies_down_and_stops():
    metrics = AgentMetrics()
    readiness = Readiness({"prometheus": _unreachable, "kubernetes": _unreachable}, cache_seconds=0)
    app = build_app(type("R", (), {"receive": lambda self, alerts: []})(), metrics, readiness, None, 1024)
    server = AgentServer(app, "127.0.0.1", 0).start()
    try:
        assert server.port and server.port > 0
        assert requests.get(server.url + "/healthz", timeout=5).text == "ok"
        ready = requests.get(server.url + "/readyz", timeout=5)
        assert ready.status_code == 503
        assert set(ready.json()["checks"]) == {"prometheus", "kubernetes"}
        exposition = requests.get(server.url + "/metrics", timeout=5)
        assert exposition.headers["Content-Type"] == metrics.render()[1]
        assert "aiops_incidents_open 0.0" in exposition.text
    finally:
        server.stop()
        readiness.close()
    with pytest.raises(requests.ConnectionError):
        requests.get(server.url + "/healthz", timeout=2)


def test_server_on_a_busy_port_raises_input_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        readiness = Readiness({})
        app = build_app(type("R", (), {"receive": lambda self, alerts: []})(), AgentMetrics(), readiness, None, 10)
        with pytest.raises(InputError) as err:
            AgentServer(app, "127.0.0.1", port).start()
        assert str(port) in err.value.where
        readiness.close()


def test_metrics_names_are_the_conventional_ones():
    metrics = AgentMetrics()
    metrics.diagnoses.labels(fault="memory_leak").inc()
    metrics.plans.labels(state="succeeded").inc()
    metrics.plans_blocked.labels(reason="cooldown").inc()
    metrics.action_seconds.observe(0.3)
    body, content_type = metrics.render()
    text = body.decode()
    for line in ('aiops_diagnoses_total{fault="memory_leak"} 1.0', 'aiops_plans_total{state="succeeded"} 1.0',
                 'aiops_plans_blocked_total{reason="cooldown"} 1.0', "aiops_action_seconds_count 1.0",
                 "aiops_detections_total 0.0", "aiops_alerts_deduplicated_total 0.0"):
        assert line in text
    assert content_type.startswith("text/plain")
    # Private registries: a second instance starts from zero.
    assert b"aiops_diagnoses_total{" not in AgentMetrics().render()[0]
