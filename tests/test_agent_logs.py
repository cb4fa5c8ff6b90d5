"""What a person following the running agent's log reads (#16 item 7): an approved plan's approval, execution and
outcome; each anomaly with its workload, score, threshold and drivers; in dry-run, what the agent would do and
never "executing". Each test failed on the code before its fix."""

from __future__ import annotations

import logging
import re

import requests
import yaml

from aiops.cli import main
from aiops.commands import os_user
from aiops.domain.incident import Anomaly
from aiops.domain.plans import ExecutionState, Mode
from aiops.domain.target import Target
from aiops.serve.plans_api import PLANS_PATH
from tests.support.polling import wait_until
from tests.test_agent_guards import ALICE, held_for_approval
from tests.test_agent_sim import (DRAIN_SECONDS, HTTP_TIMEOUT, alert_payload, post_alert, sim,  # noqa: F401
                                  sim_settings, start_agent)

ANOMALY_LINE = re.compile(r"^anomaly shop/[a-z0-9-]+: \S+ score \d+\.\d\d over threshold \d+\.\d\d since "
                          r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ; driven by \w+ \d+%")


def aiops_records(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith("aiops")]


def messages(caplog) -> list[str]:
    return [r.getMessage() for r in aiops_records(caplog)]


def alert_once(sim, agent):
    """Send the agent one alert about shop/cart, let it handle it, stop it; returns the agent."""
    try:
        assert post_alert(agent, alert_payload("shop", "cart", sim.clock.now() - 120)).status_code == 200
        assert agent.worker.drain(DRAIN_SECONDS)
    finally:
        agent.stop()
    return agent


def verified(agent, outcome: str) -> float | None:
    return agent.metrics.registry.get_sample_value("aiops_verifications_total", {"outcome": outcome})


# --- approved executions -----------------------------------------------------------------------------------------

def test_an_http_approval_logs_who_approved_what_and_how_it_ended_and_counts_its_verification(sim, tmp_path,
                                                                                             caplog):
    caplog.set_level(logging.INFO)
    agent, result = held_for_approval(sim, tmp_path)
    try:
        plan = result.plan.id
        answer = requests.post(f"{agent.server.url}{PLANS_PATH}/{plan}/approve",
                               headers={"Authorization": f"Bearer {ALICE}"}, timeout=HTTP_TIMEOUT)
        assert answer.status_code == 200, answer.text
        wait_until(lambda: verified(agent, "recovered") == 1, 30, "the approved plan's verification to be counted")
    finally:
        agent.stop()
    got = messages(caplog)
    assert f"plan {plan} approved by alice over HTTP: restart-workload on Deployment shop/cart" in got
    assert f"plan {plan} approved by alice: executing restart-workload on Deployment shop/cart" in got
    ended = [m for m in got if m.startswith(f"plan {plan}, held for approval, is now succeeded: ")]
    assert len(ended) == 1, got
    (start_line,) = [r for r in aiops_records(caplog) if "approved by alice: executing" in r.getMessage()]
    assert (start_line.plan, start_line.incident) == (plan, result.incident.id)
    assert agent.metrics.registry.get_sample_value("aiops_plans_total", {"state": "succeeded"}) == 1


def test_an_approval_from_the_cli_is_logged_when_the_poll_acts_on_it(sim, tmp_path, caplog, capsys):
    caplog.set_level(logging.INFO)
    agent, result = held_for_approval(sim, tmp_path)
    try:
        config = tmp_path / "config.yaml"
        config.write_text(yaml.safe_dump({"state_dir": str(agent.parts.settings.state_dir)}))
        assert main(["approve", result.plan.id, "--config", str(config)]) == 0
        agent.resume_pending()  # the poll's pass (when the scheduled one took the plan first, this one leaves it)
        wait_until(lambda: verified(agent, "recovered") == 1, 30, "the approved plan's verification to be counted")
    finally:
        agent.stop()
    got = messages(caplog)
    plan = result.plan.id
    assert f"plan {plan} approved by {os_user()}: executing restart-workload on Deployment shop/cart" in got
    assert any(m.startswith(f"plan {plan}, held for approval, is now succeeded: ") for m in got), got


# --- dry-run -----------------------------------------------------------------------------------------------------

def test_dry_run_logs_what_it_would_do_and_never_executing(sim, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    agent = alert_once(sim, start_agent(sim, sim_settings(sim, tmp_path)))
    (result,) = agent.results
    assert result.execution.state is ExecutionState.SKIPPED
    got = messages(caplog)
    assert not [m for m in got if "executing" in m.lower()], got
    (line,) = [r for r in aiops_records(caplog) if r.getMessage().startswith("dry-run: would ")]
    assert "Deployment shop/cart" in line.getMessage() and "playbook restart-workload" in line.getMessage()
    assert line.plan == result.plan.id


def test_act_mode_still_logs_the_execution_and_how_it_ended(sim, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    alert_once(sim, start_agent(sim, sim_settings(sim, tmp_path, Mode.ACT)))
    got = messages(caplog)
    assert "executing restart-workload on Deployment shop/cart" in got
    assert any(m.startswith("execution ended succeeded: ") for m in got), got
    assert not [m for m in got if m.startswith("dry-run")], got


# --- anomalies ---------------------------------------------------------------------------------------------------

def test_each_anomaly_line_names_the_workload_score_threshold_and_drivers(sim, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    agent = start_agent(sim, sim_settings(sim, tmp_path))
    try:
        agent.run_cycle()
        assert agent.worker.drain(DRAIN_SECONDS)
    finally:
        agent.stop()
    lines = [r for r in aiops_records(caplog) if r.getMessage().startswith("anomaly ")]
    assert lines, messages(caplog)
    for line in lines:
        assert ANOMALY_LINE.match(line.getMessage()), line.getMessage()
        assert line.namespace == "shop" and line.getMessage().startswith(f"anomaly shop/{line.workload}: ")
        assert line.score > line.threshold and line.drivers
    (cart,) = [r for r in lines if r.workload == "cart"]
    assert "LOF score" in cart.getMessage() and "memory" in cart.drivers  # the leak drives it
    assert not [m for m in messages(caplog) if re.match(r"^\d+ anomalies in ", m)], "the count-only line is gone"


def test_an_anomaly_describes_itself_like_the_demo_timeline():
    lof = Anomaly(Target.deployment("shop", "cart"), "latency_p99", 21.664, 1.214, 15.0,
                  (("latency_p99", 0.31), ("error_ratio", 0.29), ("cpu", 0.22), ("memory", 0.1)), "lof")
    assert lof.describe("t=+15s") == ("shop/cart: LOF score 21.66 over threshold 1.21 since t=+15s; driven by "
                                      "latency_p99 31%, error_ratio 29%, cpu 22%")
    log = Anomaly(Target.deployment("shop", "web"), "log", 12.0, 1.0, 0.0, (("log:7", 1.0),), "logtemplates",
                  summary="a never-seen error template appeared in web at 10:02")
    assert log.describe("10:02Z") == ("shop/web: logtemplates score 12.00 over threshold 1.00 since 10:02Z; driven "
                                      "by log:7 100%; a never-seen error template appeared in web at 10:02")
    bare = Anomaly(Target.deployment("shop", "db"), "error_ratio", 3.0, 1.0, 0.0)
    assert bare.describe("now").endswith("driven by error_ratio")
