"""The agent's guards, approvals and second playbooks end to end on the simulator (webhook in, cluster out)."""

from __future__ import annotations

import shutil

import pytest
import requests
import yaml

from aiops.domain.errors import InputError
from aiops.collect.alertmanager import parse_webhook
from aiops.domain.plans import ActionPlan, ExecutionState, Mode, plan_id
from aiops.domain.target import Target
from aiops.remediate.machine import PlanExecution
from aiops.remediate.facts import KILL_SWITCH_ANNOTATION
from aiops.remediate.verify import VerifyResult
from aiops.serve.agent import Agent, build_parts
from aiops.serve.plans_api import PLANS_PATH
from aiops.serve.scheduler import LoopScheduler
from aiops.settings import STOCK_ROOT, ApprovalSettings, PolicySettings
from tests.support.polling import wait_until
from tests.test_agent_sim import (DRAIN_SECONDS, HTTP_TIMEOUT, TOKEN, alert_payload, deployment_marks, kube,  # noqa: F401
                                  post_alert, sim, sim_settings)


def start(sim, settings) -> Agent:
    """Like test_agent_sim.start_agent, but with the agent's own SQLite journal (what the plans API serves)."""
    agent = Agent(build_parts(settings, clock=sim.clock, sleep=sim.advance, topology=sim.scenario.topology))
    agent.scheduler = LoopScheduler(agent.run_cycle, settings.loop.interval_seconds, agent.metrics,
                                    run_immediately=False)
    return agent.start()


def playbooks_with(tmp_path, name: str, **changes) -> object:
    folder = tmp_path / "playbooks"
    if not folder.exists():
        shutil.copytree(STOCK_ROOT / "playbooks", folder)
    path = folder / f"{name}.yaml"
    data = yaml.safe_load(path.read_text())
    for key, value in changes.items():
        if isinstance(value, dict):
            data.setdefault(key, {}).update(value)
        else:
            data[key] = value
    path.write_text(yaml.safe_dump(data))
    return folder


def test_the_kill_switch_annotation_stops_acting_and_says_why(sim, kube, tmp_path):
    kube._call(kube._core.patch_namespace, "shop", {"metadata": {"annotations": {KILL_SWITCH_ANNOTATION: "true"}}})
    agent = start(sim, sim_settings(sim, tmp_path, Mode.ACT))
    try:
        before = deployment_marks(kube, "shop")
        assert post_alert(agent, alert_payload("shop", "cart", sim.clock.now() - 120)).status_code == 200
        assert agent.worker.drain(DRAIN_SECONDS)
        (result,) = agent.results
        assert result.decision.reason == "kill_switch" and "namespace shop" in result.decision.detail
        assert deployment_marks(kube, "shop") == before
        assert agent.metrics.plans_blocked.labels(reason="kill_switch")._value.get() == 1
        # The refusal is in the audit trail.
        (row,) = agent.parts.journal.latest()
        assert row["state"] == "blocked" and row["data"]["reason"] == "kill_switch"
    finally:
        agent.stop()


ALICE = "alice-approver-token-0123456789"


def held_for_approval(sim, tmp_path):
    """An agent in act mode whose restart playbook needs alice's approval (token ``ALICE``), started, and the result
    of the alert about shop/cart it held for one."""
    (tmp_path / "approvers.yaml").write_text(f"alice: {ALICE}\n")
    settings = sim_settings(sim, tmp_path, Mode.ACT).model_copy(update={
        "playbooks_dir": playbooks_with(tmp_path, "restart-workload", approval="approve"),
        "approvals": ApprovalSettings(token_file=tmp_path / "approvers.yaml")})
    agent = start(sim, settings)
    try:
        assert post_alert(agent, alert_payload("shop", "cart", sim.clock.now() - 120)).status_code == 200
        assert agent.worker.drain(DRAIN_SECONDS)
        (result,) = agent.results
        assert result.execution.state is ExecutionState.AWAITING_APPROVAL
    except BaseException:
        agent.stop()
        raise
    return agent, result


def test_an_approval_playbook_waits_for_the_http_approval_then_acts(sim, kube, tmp_path):
    generation = kube.get_deployment("shop", "cart")["metadata"]["generation"]
    agent, result = held_for_approval(sim, tmp_path)
    try:
        assert kube.get_deployment("shop", "cart")["metadata"]["generation"] == generation

        url = f"{agent.server.url}{PLANS_PATH}/{result.plan.id}/approve"
        # Alertmanager's token is no approver's: it cannot approve, whatever name it sends.
        webhook = requests.post(url, headers={"Authorization": f"Bearer {TOKEN}"}, json={"approver": "alice"},
                                timeout=HTTP_TIMEOUT)
        assert webhook.status_code == 403, webhook.text
        answer = requests.post(url, headers={"Authorization": f"Bearer {ALICE}"}, timeout=HTTP_TIMEOUT)
        assert answer.status_code == 200, answer.text
        wait_until(lambda: agent.parts.journal.latest()[-1]["state"] == "succeeded", 30, "the approved plan to run")
        assert kube.get_deployment("shop", "cart")["metadata"]["generation"] == generation + 1
        notes = [r["note"] for r in agent.parts.journal.history(result.plan.id)]
        assert any("approved by alice" in n for n in notes)
    finally:
        agent.stop()


def test_the_agent_refuses_to_start_when_an_approver_would_hold_the_webhook_token(sim, tmp_path):
    shared = "shared-token-0123456789abcdef"
    settings = sim_settings(sim, tmp_path, Mode.ACT)
    settings.webhook.token_file.write_text(shared + "\n")
    (tmp_path / "approvers.yaml").write_text(f"alice: {shared}\n")
    settings = settings.model_copy(update={"approvals": ApprovalSettings(token_file=tmp_path / "approvers.yaml")})
    parts = build_parts(settings, clock=sim.clock, sleep=sim.advance, topology=sim.scenario.topology)
    try:
        with pytest.raises(InputError, match="token of alice is the webhook's"):
            Agent(parts)
    finally:
        parts.journal.close()


class StubbornVerifier:
    """Verification that finds a restart changed nothing (the leak is elsewhere) and anything else worked; its
    window passes on the simulator's clock, so the restart's rollout has finished by the end."""

    def __init__(self, sim) -> None:
        self.sim = sim

    def verify(self, plan, spec, before, baseline=None):
        self.sim.advance(spec.window_seconds)
        outcome = "unchanged" if plan.action == "restart" else "recovered"
        return VerifyResult(outcome, [], f"scripted: {outcome}")


def test_a_second_playbook_is_tried_once_when_the_first_leaves_the_fault(sim, kube, tmp_path):
    settings = sim_settings(sim, tmp_path, Mode.ACT).model_copy(update={
        "policy": PolicySettings(second_playbook={"memory_leak": "scale-up"}, blast_radius_percent=100)})
    agent = start(sim, settings)
    agent.parts.pipeline.runner.verifier = StubbornVerifier(sim)
    try:
        replicas = kube.get_scale("shop", "cart")["spec"]["replicas"]
        assert post_alert(agent, alert_payload("shop", "cart", sim.clock.now() - 120)).status_code == 200
        assert agent.worker.drain(DRAIN_SECONDS)
        (result,) = agent.results
        assert result.first is not None, result.as_dict()["decision"]
        assert result.first.plan.playbook == "restart-workload"
        assert result.first.execution.state is ExecutionState.FAILED
        assert result.execution is not None, result.as_dict()["decision"]
        assert result.plan.playbook == "scale-up" and result.execution.state is ExecutionState.SUCCEEDED
        assert kube.get_scale("shop", "cart")["spec"]["replicas"] > replicas
        assert result.as_dict()["first"]["decision"]["plan"]["playbook"] == "restart-workload"
        assert "second_playbook" in result.plan.reason
    finally:
        agent.stop()


def test_without_a_second_playbook_a_fault_left_in_place_escalates(sim, kube, tmp_path):
    agent = start(sim, sim_settings(sim, tmp_path, Mode.ACT))
    agent.parts.pipeline.runner.verifier = StubbornVerifier(sim)
    try:
        assert post_alert(agent, alert_payload("shop", "cart", sim.clock.now() - 120)).status_code == 200
        assert agent.worker.drain(DRAIN_SECONDS)
        (result,) = agent.results
        assert result.first.plan.playbook == "restart-workload" and result.plan.playbook == "escalate"
        assert result.execution.state is ExecutionState.SUCCEEDED
        assert any(e["reason"] == "AiopsEscalation" for e in kube.list_events("shop"))
    finally:
        agent.stop()


def test_a_plan_refused_for_now_is_tried_again_not_dropped(sim, kube, tmp_path):
    # Leadership flaps at the very start of the plan: refused for now (not_leader), not for good. Alertmanager's
    # re-sends are duplicates of the open incident, so the agent itself must try it again.
    agent = start(sim, sim_settings(sim, tmp_path, Mode.ACT))
    gate = agent.parts.pipeline.runner.gate
    flaps = iter(["the Lease was lost for a moment"])
    gate._leader = lambda: next(flaps, None)
    try:
        generation = kube.get_deployment("shop", "cart")["metadata"]["generation"]
        assert post_alert(agent, alert_payload("shop", "cart", sim.clock.now() - 120)).status_code == 200
        assert agent.worker.drain(DRAIN_SECONDS)
        (first,) = agent.results
        assert first.execution.state is ExecutionState.BLOCKED
        assert kube.get_deployment("shop", "cart")["metadata"]["generation"] == generation
        assert len(agent.deferred) == 1, "kept to be tried again"

        assert agent.retry_deferred(force=True) == 1
        assert agent.worker.drain(DRAIN_SECONDS)
        assert agent.results[-1].execution.state is ExecutionState.SUCCEEDED
        assert kube.get_deployment("shop", "cart")["metadata"]["generation"] == generation + 1
        assert len(agent.deferred) == 0
    finally:
        agent.stop()


def test_a_retry_claimed_while_following_is_not_left_claimed_for_good(sim, kube, tmp_path):
    # A retry that reaches the worker after this agent stopped leading is held for the take-over; the retry list
    # must not keep it claimed (never tried again, counted as deferred for good).
    agent = start(sim, sim_settings(sim, tmp_path, Mode.ACT))
    try:
        (alert, *_) = parse_webhook(alert_payload("shop", "cart", sim.clock.now() - 120))
        incident = agent.tracker.ingest(alert).incident
        agent.deferred.defer(incident.id, "target_busy")
        agent.leadership.admit = lambda i: False  # this agent follows now
        assert agent.retry_deferred(force=True) == 1
        assert agent.worker.drain(DRAIN_SECONDS)
        assert len(agent.deferred) == 0 and agent.metrics.incidents_deferred._value.get() == 0
    finally:
        agent.stop()


def test_a_plan_the_agent_cannot_finish_shows_how_long_it_has_been_owed(sim, kube, tmp_path):
    # A plan journaled executing whose target cannot be read (gone): the poll keeps trying; the gauges tell a person.
    agent = start(sim, sim_settings(sim, tmp_path, Mode.ACT))
    try:
        agent.resume_pending()
        assert agent.metrics.plans_owed._value.get() == 0 and agent.metrics.plans_owed_oldest._value.get() == 0
        journal = agent.parts.pipeline.runner.store
        target = Target.deployment("shop", "cart")
        plan = ActionPlan(plan_id("inc-owed", "scale-up", target), "inc-owed", "scale-up", "scale", target,
                          {"factor": 2}, Mode.ACT)
        gate = agent.parts.pipeline.runner.gate
        gate._leader = lambda: "not now"  # every resume is refused for now: the plan stays executing
        PlanExecution(plan, journal, sim.clock).start(note="applying", data={"before": {}, "baseline": {}})
        sim.advance(600)
        agent.resume_pending()
        assert journal.latest()[-1]["state"] == "executing"
        assert agent.metrics.plans_owed._value.get() == 1
        assert agent.metrics.plans_owed_oldest._value.get() >= 600
    finally:
        agent.stop()
