"""Structured logs carry the incident and plan ids on every line logged while that work runs, without ``extra=``."""

from __future__ import annotations

import io
import json
import logging
import threading

import pytest

from aiops.domain.incident import Incident
from aiops.domain.plans import Mode
from aiops.domain.target import Target
from aiops.serve.logging import configure_logging, log_context
from aiops.serve.scheduler import LoopScheduler
from aiops.serve.worker import IncidentWorker
from aiops.sim.runtime import SimRuntime
from tests.support.polling import wait_until
from tests.test_agent_sim import DRAIN_SECONDS, alert_payload, post_alert, sim_settings, start_agent


@pytest.fixture
def log_stream():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    stream = io.StringIO()
    configure_logging("json", "DEBUG", stream=stream)
    yield stream
    root.handlers[:] = handlers
    root.setLevel(level)


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_context_ids_reach_every_line_and_are_restored(log_stream):
    log = logging.getLogger("aiops.test.context")
    log.info("before")
    with log_context(incident="inc-1"):
        log.info("in incident")
        with log_context(plan="plan-9"):
            log.warning("in plan")
        log.info("plan done")
    log.info("after")
    got = {line["msg"]: (line.get("incident"), line.get("plan")) for line in lines(log_stream)}
    assert got == {"before": (None, None), "in incident": ("inc-1", None), "in plan": ("inc-1", "plan-9"),
                   "plan done": ("inc-1", None), "after": (None, None)}


def test_explicit_extra_wins_over_the_context(log_stream):
    with log_context(incident="inc-ctx"):
        logging.getLogger("aiops.test").info("other", extra={"incident": "inc-extra"})
    assert lines(log_stream)[0]["incident"] == "inc-extra"


def test_context_is_per_thread(log_stream):
    log = logging.getLogger("aiops.test.threads")
    inside, release = threading.Event(), threading.Event()

    def other() -> None:
        with log_context(incident="inc-other"):
            inside.set()
            release.wait(5)

    thread = threading.Thread(target=other)
    thread.start()
    assert inside.wait(5)
    log.info("main thread")
    release.set()
    thread.join(5)
    assert "incident" not in lines(log_stream)[0]


def test_unknown_context_key_is_refused():
    with pytest.raises(ValueError, match="unknown log context"):
        with log_context(tenant="x"):
            pass


def test_text_format_shows_the_context():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    stream = io.StringIO()
    try:
        configure_logging("text", "INFO", stream=stream)
        with log_context(incident="inc-7", plan="p-1"):
            logging.getLogger("aiops.test").info("acting")
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    assert stream.getvalue().rstrip().endswith("acting [incident=inc-7 plan=p-1]")


def test_worker_handler_lines_carry_the_incident(log_stream):
    handler_log = logging.getLogger("aiops.test.handler")
    worker = IncidentWorker(lambda inc: handler_log.info("diagnosing")).start()
    worker.submit(Incident(id="inc-42", target=Target.deployment("shop", "cart"), opened=0.0))
    assert worker.drain(5)
    worker.stop(5)
    handled = [line for line in lines(log_stream) if line["msg"] == "diagnosing"]
    assert [line["incident"] for line in handled] == ["inc-42"]


def test_agent_lines_while_acting_carry_incident_and_plan(log_stream, tmp_path):
    sim = SimRuntime("memory_leak", seed=0).start()
    try:
        sim.prefill(4200)
        sim.inject()
        sim.advance(300)
        agent = start_agent(sim, sim_settings(sim, tmp_path, Mode.ACT))
        try:
            assert post_alert(agent, alert_payload("shop", "cart", sim.clock.now() - 120)).status_code == 200
            assert agent.worker.drain(DRAIN_SECONDS)
        finally:
            agent.stop()
    finally:
        sim.stop()
    result = agent.results[0]
    worker_lines = [line for line in lines(log_stream) if line.get("incident") == result.incident.id]
    assert len(worker_lines) >= 2
    # Every line logged by the worker thread while it handled the incident names it.
    for line in lines(log_stream):
        if line["logger"].startswith(("aiops.serve.pipeline", "aiops.remediate")):
            assert line.get("incident") == result.incident.id, line
    assert any(line.get("plan") == result.plan.id for line in worker_lines)


def test_scheduler_runs_log_nothing_below_warning_yet_the_agents_lines_pass(log_stream):
    # APScheduler logs "Running job ..." and "Job ... executed successfully" at INFO on every run of every job.
    job_log = logging.getLogger("aiops.test.job")
    scheduler = LoopScheduler(lambda: job_log.info("job ran"), 0.05)
    scheduler.start()
    try:
        wait_until(lambda: scheduler.runs >= 3, 10, "three scheduled runs")
    finally:
        scheduler.shutdown()
    logging.getLogger("apscheduler.scheduler").warning("a missed run")  # warnings still reach the log
    got = lines(log_stream)
    assert sum(line["msg"] == "job ran" for line in got) >= 3
    assert [line["msg"] for line in got if line["logger"].startswith("apscheduler")] == ["a missed run"]
