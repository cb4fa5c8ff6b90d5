"""The planner's guards, each with its machine-readable reason, on plain values (no I/O)."""

from __future__ import annotations

from pathlib import Path

import pytest

from aiops.domain.alerts import Alert
from aiops.domain.diagnosis import Diagnosis, Fault, Hypothesis
from aiops.domain.incident import Incident
from aiops.domain.plans import ActionPlan, Blocked, Mode, plan_id
from aiops.domain.target import Target
from aiops.remediate.journal import MemoryJournal
from aiops.remediate.planner import PlanPolicy, plan
from aiops.remediate.playbooks import load_playbooks
from aiops.settings import parse_settings

PLAYBOOKS = load_playbooks(Path(__file__).resolve().parent.parent / "playbooks")
NOW = 1.7e9
CART = Target.deployment("shop", "cart")
ACT = PlanPolicy(mode=Mode.ACT, namespaces=("shop",), cooldown_seconds=600, min_confidence=0.6, max_replicas=8)


def diagnosis(playbook="restart-workload", confidence=0.9, target=CART, fault=Fault.MEMORY_LEAK, params=None,
              alert_namespace=None) -> Diagnosis:
    alerts = ()
    if alert_namespace:
        alerts = (Alert("fp", "firing", {"alertname": "X", "namespace": alert_namespace}),)
    incident = Incident(id="inc-1", target=target, opened=NOW - 60, alerts=alerts)
    chosen = Hypothesis(target, fault, playbook, confidence, "rules", params=params or {})
    return Diagnosis(incident, (chosen,), chosen)


class NoHistory:
    def acted(self, target, playbook):
        return None

    def acted_since(self, since):
        return []

    def in_flight(self):
        return []


def test_plan_carries_the_idempotency_key_and_policy_mode():
    result = plan(diagnosis(), PLAYBOOKS, ACT, NoHistory(), NOW)
    assert isinstance(result, ActionPlan)
    assert result.id == plan_id("inc-1", "restart-workload", CART)
    assert result.action == "restart" and result.mode is Mode.ACT and result.target == CART
    assert plan(diagnosis(), PLAYBOOKS, ACT, NoHistory(), NOW + 5).id == result.id


def test_default_policy_is_dry_run():
    result = plan(diagnosis(), PLAYBOOKS, PlanPolicy(namespaces=("shop",)), NoHistory(), NOW)
    assert isinstance(result, ActionPlan) and result.mode is Mode.DRY_RUN


def test_unknown_playbook_is_blocked():
    result = plan(diagnosis(playbook="delete-namespace"), PLAYBOOKS, ACT, NoHistory(), NOW)
    assert isinstance(result, Blocked) and result.reason == "unknown_playbook" and result.plan is None


def test_out_of_scope_whatever_the_alert_says():
    other = Target.deployment("kube-system", "coredns")
    result = plan(diagnosis(target=other, alert_namespace="shop"), PLAYBOOKS, ACT, NoHistory(), NOW)
    assert isinstance(result, Blocked) and result.reason == "out_of_scope"
    assert result.plan is not None and result.plan.target == other


def test_empty_namespace_list_means_nothing_is_in_scope():
    policy = PlanPolicy(mode=Mode.ACT, namespaces=())
    result = plan(diagnosis(target=Target.deployment("x", "y")), PLAYBOOKS, policy, NoHistory(), NOW)
    assert isinstance(result, Blocked) and result.reason == "out_of_scope"


def test_low_confidence_blocks_acting_playbooks_but_not_escalate():
    low = plan(diagnosis(confidence=0.3), PLAYBOOKS, ACT, NoHistory(), NOW)
    assert isinstance(low, Blocked) and low.reason == "low_confidence"
    notify = plan(diagnosis(playbook="escalate", confidence=0.3, fault=Fault.UNKNOWN), PLAYBOOKS, ACT,
                  NoHistory(), NOW)
    assert isinstance(notify, ActionPlan) and notify.action == "escalate"


def test_cooldown_uses_the_journal_history():
    journal = MemoryJournal()
    journal.record("p-old", "executing", "", {"ts": NOW - 100, "playbook": "restart-workload",
                                              "target": CART.as_dict(), "trigger": "start"})
    blocked = plan(diagnosis(), PLAYBOOKS, ACT, journal, NOW)
    assert isinstance(blocked, Blocked) and blocked.reason == "cooldown"
    assert isinstance(plan(diagnosis(), PLAYBOOKS, ACT, journal, NOW + 600), ActionPlan)
    # Another playbook, or another target, is not cooling down.
    assert isinstance(plan(diagnosis(playbook="scale-up", fault=Fault.CPU_SATURATION), PLAYBOOKS, ACT, journal,
                           NOW), ActionPlan)
    assert isinstance(plan(diagnosis(target=Target.deployment("shop", "web")), PLAYBOOKS, ACT, journal, NOW),
                      ActionPlan)


def test_approval_never_and_approve():
    never = {**PLAYBOOKS, "restart-workload": PLAYBOOKS["restart-workload"].model_copy(update={"approval": "never"})}
    result = plan(diagnosis(), never, ACT, NoHistory(), NOW)
    assert isinstance(result, Blocked) and result.reason == "approval_never"
    ask = {**PLAYBOOKS, "restart-workload": PLAYBOOKS["restart-workload"].model_copy(update={"approval": "approve"})}
    waiting = plan(diagnosis(), ask, ACT, NoHistory(), NOW)
    assert isinstance(waiting, Blocked) and waiting.reason == "approval_required" and waiting.plan is not None


def test_scale_bound_is_the_smaller_of_playbook_and_policy():
    tight = plan(diagnosis(playbook="scale-up", fault=Fault.CPU_SATURATION), PLAYBOOKS, ACT, NoHistory(), NOW)
    assert tight.params["max_replicas"] == 8
    loose = PlanPolicy(mode=Mode.ACT, namespaces=("shop",), max_replicas=50)
    assert plan(diagnosis(playbook="scale-up"), PLAYBOOKS, loose, NoHistory(), NOW).params["max_replicas"] == 10


def test_hypothesis_params_fill_declared_keys_only_and_cannot_lift_bounds():
    result = plan(diagnosis(playbook="shift-traffic", fault=Fault.BAD_REPLICA_SET,
                            params={"value": "abc123", "rm_rf": True}), PLAYBOOKS, ACT, NoHistory(), NOW)
    assert result.params["value"] == "abc123" and "rm_rf" not in result.params
    scaled = plan(diagnosis(playbook="scale-up", params={"max_replicas": 999}), PLAYBOOKS, ACT, NoHistory(), NOW)
    assert scaled.params["max_replicas"] == 8


def test_policy_from_settings():
    settings = parse_settings({"mode": "act", "kubernetes": {"namespaces": ["shop", "pay"]},
                               "policy": {"cooldown_seconds": 30, "min_confidence": 0.7, "max_replicas": 4}})
    policy = PlanPolicy.from_settings(settings)
    assert policy == PlanPolicy(Mode.ACT, ("shop", "pay"), 30, 0.7, 4)
    assert PlanPolicy.from_settings(parse_settings({})).mode is Mode.DRY_RUN


@pytest.mark.parametrize("name", sorted(PLAYBOOKS))
def test_every_stock_playbook_plans_in_scope(name):
    result = plan(diagnosis(playbook=name), PLAYBOOKS, ACT, NoHistory(), NOW)
    assert isinstance(result, ActionPlan) and result.playbook == name
