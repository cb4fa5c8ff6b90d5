"""The agent's own /metrics: names follow Prometheus conventions, promtool accepts the exposition, the Grafana
dashboard queries only series the agent exposes, and one closed loop on the simulator moves the right series."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import requests

from aiops.domain.plans import ActionPlan, Change, ExecutionState, Mode, plan_id
from aiops.domain.target import Target
from aiops.remediate.machine import PlanExecution
from aiops.remediate.verify import VerifyResult
from aiops.serve.metrics import AgentMetrics
from tests.test_agent_guards import StubbornVerifier, start
from tests.test_agent_logs import alert_once
from tests.test_agent_sim import (DRAIN_SECONDS, HTTP_TIMEOUT, alert_payload, post_alert, sim,  # noqa: F401
                                  sim_settings, start_agent)

DASHBOARD = Path(__file__).resolve().parent.parent / "deploy" / "grafana" / "aiops-dashboard.json"
METRIC_NAME = re.compile(r"\baiops_[a-z0-9_]+\b")
PROMTOOL = shutil.which("promtool")


def touched_metrics() -> AgentMetrics:
    """Metrics with one series of every labelled family, so the exposition shows every family."""
    m = AgentMetrics()
    m.webhook_requests.labels(outcome="accepted").inc()
    m.alerts_received.labels(status="firing").inc()
    m.diagnoses.labels(fault="memory_leak").inc()
    m.plans.labels(state="succeeded").inc()
    m.plans_blocked.labels(reason="cooldown").inc()
    m.diagnosis_confidence.labels(analyzer="rules").observe(0.8)
    m.verifications.labels(outcome="recovered").inc()
    m.loop_runs.labels(outcome="ok").inc()
    m.detector_drift.labels(namespace="shop", workload="cart").set(0.1)
    m.model_info.labels(model="detector", version="lof").set(1)
    m.record_readiness(False, {"prometheus": "ok", "journal": "unwritable"})
    return m


def dashboard_exprs() -> list[str]:
    exprs: list[str] = []

    def walk(node) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "expr" and isinstance(value, str):
                    exprs.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(json.loads(DASHBOARD.read_text()))
    return exprs


# --- names and exposition ----------------------------------------------------------------------------------------

def test_names_follow_prometheus_conventions():
    for family in AgentMetrics().registry.collect():
        assert family.name.startswith("aiops_"), family.name
        if family.type == "counter":
            assert not family.name.endswith("_total")  # the client adds _total once; a second one would be wrong
        if family.type == "histogram" and family.name not in ("aiops_diagnosis_confidence",):
            assert family.name.endswith("_seconds"), f"{family.name}: time histograms are in seconds"
    names = AgentMetrics().series_names()
    assert {"aiops_webhook_requests_total", "aiops_action_seconds_bucket", "aiops_incidents_open",
            "aiops_journal_writable"} <= names


@pytest.mark.skipif(PROMTOOL is None, reason="promtool (Debian package prometheus) is not installed")
def test_exposition_passes_promtool_lint():
    body, content_type = touched_metrics().render()
    assert content_type.startswith("text/plain")
    checked = subprocess.run([PROMTOOL, "check", "metrics"], input=body, capture_output=True, timeout=30)
    assert checked.returncode == 0, checked.stdout.decode() + checked.stderr.decode()


def test_readiness_result_is_mirrored_per_dependency():
    m = touched_metrics()
    assert m.registry.get_sample_value("aiops_ready") == 0
    assert m.registry.get_sample_value("aiops_dependency_up", {"dependency": "prometheus"}) == 1
    assert m.registry.get_sample_value("aiops_dependency_up", {"dependency": "journal"}) == 0


# --- the dashboard -----------------------------------------------------------------------------------------------

def test_every_dashboard_expr_queries_only_exposed_series():
    exposed = AgentMetrics().series_names()
    exprs = dashboard_exprs()
    assert len(exprs) >= 15
    used = set()
    for expr in exprs:
        names = set(METRIC_NAME.findall(expr))
        assert names, f"expr queries no aiops metric: {expr}"
        unknown = names - exposed
        assert not unknown, f"{expr!r} queries {sorted(unknown)}, which the agent does not expose"
        used |= names
    # The list: every one of these families is on the dashboard.
    for family in ("webhook_requests_total", "alerts_received_total", "alerts_deduplicated_total", "incidents_open",
                   "detections_total", "diagnosis_confidence_bucket", "plans_total", "plans_blocked_total",
                   "action_seconds_bucket", "verifications_total", "detector_drift_score", "model_info",
                   "loop_seconds_bucket", "dependency_up", "journal_writable", "baseline_seconds",
                   "baseline_required_seconds"):
        assert f"aiops_{family}" in used, f"aiops_{family} is not on the dashboard"


@pytest.mark.skipif(PROMTOOL is None, reason="promtool (Debian package prometheus) is not installed")
def test_every_dashboard_expr_is_valid_promql(tmp_path):
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"aiops:dashboard_expr:{n}", "expr": expr} for n, expr in enumerate(dashboard_exprs())]}]}
    path = tmp_path / "rules.yml"
    path.write_text(json.dumps(rules))  # JSON is YAML
    checked = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True, timeout=30)
    assert checked.returncode == 0, checked.stdout.decode() + checked.stderr.decode()


# --- one closed loop ---------------------------------------------------------------------------------------------

def test_a_handled_incident_moves_the_loop_series(sim, tmp_path):
    agent = start_agent(sim, sim_settings(sim, tmp_path, Mode.ACT))
    try:
        assert post_alert(agent, alert_payload("shop", "cart", sim.clock.now() - 120)).status_code == 200
        assert agent.worker.drain(DRAIN_SECONDS)
        assert agent.results and agent.results[0].execution.state is ExecutionState.SUCCEEDED
        ready = requests.get(f"{agent.server.url}/readyz", timeout=HTTP_TIMEOUT)
        assert ready.status_code == 200, ready.text
        value = agent.metrics.registry.get_sample_value
        assert value("aiops_diagnosis_confidence_count", {"analyzer": "ensemble"}) == 1
        assert value("aiops_diagnosis_confidence_count", {"analyzer": "rules"}) == 1
        assert value("aiops_diagnosis_confidence_sum", {"analyzer": "ensemble"}) == \
            pytest.approx(agent.results[0].diagnosis.confidence)
        assert value("aiops_plans_total", {"state": "succeeded"}) == 1
        assert value("aiops_verifications_total", {"outcome": "recovered"}) == 1
        assert value("aiops_action_seconds_count") == 1
        assert value("aiops_ready") == 1
        for dependency in ("prometheus", "kubernetes", "journal"):
            assert value("aiops_dependency_up", {"dependency": dependency}) == 1
        assert value("aiops_journal_writable") == 1

        agent.run_cycle()
        assert agent.worker.drain(DRAIN_SECONDS)
        text = requests.get(f"{agent.server.url}/metrics", timeout=HTTP_TIMEOUT).text
    finally:
        agent.stop()
    # The scheduled pass scored drift for every workload of the namespace.
    workloads = {d["metadata"]["name"] for d in agent.parts.kube.list_deployments("shop")}
    drifted = {w for w in workloads if value("aiops_detector_drift_score", {"namespace": "shop", "workload": w})
               is not None}
    assert "cart" in drifted and len(drifted) >= 2
    assert 'aiops_model_info{model="detector",version="lof/pyod-' in text
    assert 'aiops_model_info{model="calibration",version="sha256:' in text


def test_a_first_playbook_that_left_the_fault_counts_its_verification_before_the_escalation(sim, tmp_path):
    agent = start(sim, sim_settings(sim, tmp_path, Mode.ACT))
    agent.parts.pipeline.runner.verifier = StubbornVerifier(sim)  # the restart changes nothing
    alert_once(sim, agent)
    (result,) = agent.results
    assert (result.first.plan.playbook, result.plan.playbook) == ("restart-workload", "escalate")
    value = agent.metrics.registry.get_sample_value
    assert value("aiops_verifications_total", {"outcome": "unchanged"}) == 1
    assert value("aiops_plans_total", {"state": "failed"}) == 1  # the restart
    assert value("aiops_plans_total", {"state": "succeeded"}) == 1  # the escalation
    assert value("aiops_action_seconds_count") == 2


class ScriptedVerifier:
    """Verification that cannot read Prometheus (raises) until ``outcome`` is set."""

    outcome: str | None = None

    def verify(self, plan, spec, before, baseline=None):
        if self.outcome is None:
            raise ConnectionError("prometheus unreachable")
        return VerifyResult(self.outcome, [], f"scripted: {self.outcome}")


def test_a_plan_the_poll_verifies_again_counts_its_verification_once_it_is_made(sim, tmp_path):
    agent = start(sim, sim_settings(sim, tmp_path, Mode.ACT))
    verifier = agent.parts.pipeline.runner.verifier = ScriptedVerifier()
    value = agent.metrics.registry.get_sample_value
    try:
        # A plan that acted and was left verifying (the agent died, or Prometheus could not be read).
        target = Target.deployment("shop", "cart")
        plan = ActionPlan(plan_id("inc-v", "scale-up", target), "inc-v", "scale-up", "scale", target,
                          {"factor": 2}, Mode.ACT)
        exe = PlanExecution(plan, agent.parts.pipeline.runner.store, sim.clock)
        exe.start(note="applying", data={"before": {}, "baseline": {}})
        exe.applied(note="scaled", data={"change": Change(target, "scale", applied=True).as_dict()})
        for _ in range(2):  # each poll tries, cannot read, and leaves it verifying: no plan ended, nothing verified
            agent.resume_pending()
            assert agent.parts.journal.latest()[-1]["state"] == "verifying"
        assert value("aiops_plans_total", {"state": "verifying"}) is None
        assert value("aiops_verifications_total", {"outcome": "recovered"}) is None
        verifier.outcome = "recovered"
        agent.resume_pending()
        assert agent.parts.journal.latest()[-1]["state"] == "succeeded"
    finally:
        agent.stop()
    assert value("aiops_verifications_total", {"outcome": "recovered"}) == 1
    assert value("aiops_plans_total", {"state": "succeeded"}) == 1
