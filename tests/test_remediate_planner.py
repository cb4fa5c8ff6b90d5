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
    # Which Service is rewritten is the playbook's to say: a diagnosis naming another workload's Service is ignored.
    for name in ("shift-traffic", "degrade-model", "isolate-pod"):
        aimed = plan(diagnosis(playbook=name, params={"service": "payments"}), PLAYBOOKS, ACT, NoHistory(), NOW)
        assert aimed.params.get("service") is None, name
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


# --- the cluster-facing guards (facts read by remediate.facts, passed in as values) ---
from dataclasses import replace as _replace  # noqa: E402

from aiops.remediate.planner import TargetFacts  # noqa: E402

SETTLED = TargetFacts(labels={"app": "cart", "tier": "web"}, replicas=2, namespace_workloads=10)


def started(journal, n, namespace="shop", names=None, ago=60.0, state="executing"):
    for i in range(n):
        name = (names or [f"w{i}"])[i % len(names or [f"w{i}"])] if names else f"w{i}"
        journal.record(f"p-{namespace}-{name}-{i}", state, "", {
            "ts": NOW - ago, "trigger": "start", "playbook": "restart-workload",
            "target": Target.deployment(namespace, name).as_dict()})


def reason(result):
    return result.reason if isinstance(result, Blocked) else "planned"


def test_a_settled_workload_passes_every_guard():
    assert isinstance(plan(diagnosis(), PLAYBOOKS, ACT, NoHistory(), NOW, SETTLED), ActionPlan)


@pytest.mark.parametrize("facts, expected", [
    (_replace(SETTLED, kill_switch="annotation on namespace shop"), "kill_switch"),
    (_replace(SETTLED, paused=True), "paused"),
    (_replace(SETTLED, rolling_out=True), "rollout_in_progress"),
    (_replace(SETTLED, pdb_blocking="cart-pdb"), "pdb"),
])
def test_each_fact_guard_blocks_with_its_reason(facts, expected):
    result = plan(diagnosis(), PLAYBOOKS, ACT, NoHistory(), NOW, facts)
    assert reason(result) == expected and result.plan is not None and result.detail


def test_the_configured_kill_switch_blocks_even_without_facts():
    killed = _replace(ACT, kill_switch=True)
    assert reason(plan(diagnosis(), PLAYBOOKS, killed, NoHistory(), NOW)) == "kill_switch"
    # Notify-only playbooks still run: telling people is not acting on the cluster.
    assert isinstance(plan(diagnosis(playbook="escalate"), PLAYBOOKS, killed, NoHistory(), NOW), ActionPlan)


def test_rollback_may_act_mid_rollout_but_restart_may_not_and_pdb_only_guards_disruptions():
    rolling = _replace(SETTLED, rolling_out=True, pdb_blocking="cart-pdb")
    rollback = diagnosis(playbook="rollback-deploy", fault=Fault.BAD_DEPLOY)
    assert isinstance(plan(rollback, PLAYBOOKS, ACT, NoHistory(), NOW, rolling), ActionPlan)
    scale = diagnosis(playbook="scale-up", fault=Fault.CPU_SATURATION)
    assert isinstance(plan(scale, PLAYBOOKS, ACT, NoHistory(), NOW, _replace(SETTLED, pdb_blocking="x")),
                      ActionPlan)


def test_label_selector_scope():
    scoped = _replace(ACT, label_selector=(("aiops.io/managed", "true"),))
    assert reason(plan(diagnosis(), PLAYBOOKS, scoped, NoHistory(), NOW, SETTLED)) == "out_of_scope_labels"
    labelled = _replace(SETTLED, labels={**SETTLED.labels, "aiops.io/managed": "true"})
    assert isinstance(plan(diagnosis(), PLAYBOOKS, scoped, NoHistory(), NOW, labelled), ActionPlan)


def test_global_rate_limit_counts_starts_in_the_last_hour_only():
    journal = MemoryJournal()
    limited = _replace(ACT, max_actions_per_hour=3, max_concurrent=10, blast_radius_percent=100)
    started(journal, 2)
    assert isinstance(plan(diagnosis(), PLAYBOOKS, limited, journal, NOW, SETTLED), ActionPlan)
    started(journal, 1, names=["other"], ago=30)
    assert reason(plan(diagnosis(), PLAYBOOKS, limited, journal, NOW, SETTLED)) == "rate_limited"
    # An hour later the same starts no longer count.
    assert isinstance(plan(diagnosis(), PLAYBOOKS, limited, journal, NOW + 3600, SETTLED), ActionPlan)


def test_concurrency_counts_plans_still_acting_or_verifying():
    journal = MemoryJournal()
    limited = _replace(ACT, max_concurrent=2, blast_radius_percent=100)
    started(journal, 2, ago=7200)  # long ago (outside rate/blast windows) but never finished
    assert reason(plan(diagnosis(), PLAYBOOKS, limited, journal, NOW, SETTLED)) == "concurrency"
    journal.record("p-shop-w0-0", "succeeded", "", {"ts": NOW - 10})
    assert isinstance(plan(diagnosis(), PLAYBOOKS, limited, journal, NOW, SETTLED), ActionPlan)


def test_blast_radius_budget_per_namespace_per_hour():
    journal = MemoryJournal()
    policy = _replace(ACT, blast_radius_percent=20)  # 20% of 10 workloads: 2 per hour
    started(journal, 2, names=["a", "b"])
    journal.record("p-shop-a-0", "succeeded", "", {"ts": NOW - 50})
    journal.record("p-shop-b-1", "succeeded", "", {"ts": NOW - 50})
    result = plan(diagnosis(), PLAYBOOKS, policy, journal, NOW, SETTLED)
    assert reason(result) == "blast_radius" and "budget 2" in result.detail
    # Acting again on a workload already counted does not grow the radius; another namespace has its own budget.
    again = diagnosis(playbook="scale-up", fault=Fault.CPU_SATURATION, target=Target.deployment("shop", "a"))
    assert isinstance(plan(again, PLAYBOOKS, policy, journal, NOW, SETTLED), ActionPlan)
    elsewhere = _replace(policy, namespaces=("shop", "pay"))
    assert isinstance(plan(diagnosis(target=Target.deployment("pay", "api")), PLAYBOOKS, elsewhere, journal, NOW,
                           SETTLED), ActionPlan)
    # A tiny namespace still allows one workload.
    assert isinstance(plan(diagnosis(), PLAYBOOKS, policy, MemoryJournal(), NOW,
                           _replace(SETTLED, namespace_workloads=1)), ActionPlan)


@pytest.mark.parametrize("budget", [{"blast_radius_percent": 25},  # 25% of 8 workloads: 2 per hour
                                    {"max_actions_per_hour": 2}, {"max_concurrent": 1}],
                         ids=["blast_radius", "rate_limited", "concurrency"])
def test_escalations_do_not_use_up_the_change_budgets(budget):
    """Issue #13, defect 17: after a few escalations a bad deploy diagnosed at 0.94 was blocked by blast_radius."""
    from aiops.remediate.machine import PlanExecution
    from aiops.sim.clock import SimClock

    journal, clock = MemoryJournal(), SimClock(NOW - 600)
    for i, workload in enumerate(["a", "b", "c", "d"]):
        target = Target.deployment("shop", workload)
        notify = ActionPlan(plan_id(f"inc-{i}", "escalate", target), f"inc-{i}", "escalate", "escalate", target, {},
                            Mode.ACT)
        exe = PlanExecution(notify, journal, clock)
        exe.start(note="notify")
        exe.applied(note="notified")
        if i < 3:
            exe.recovered(note="notify-only playbook: nothing to verify")  # the last one is still "verifying"
    wide = _replace(ACT, blast_radius_percent=100, max_concurrent=10, max_actions_per_hour=20)
    bad_deploy = diagnosis(playbook="rollback-deploy", confidence=0.94, fault=Fault.BAD_DEPLOY,
                           target=Target.deployment("shop", "checkout"))
    result = plan(bad_deploy, PLAYBOOKS, _replace(wide, **budget), journal, NOW,
                  _replace(SETTLED, namespace_workloads=8))
    assert isinstance(result, ActionPlan), result
    assert result.playbook == "rollback-deploy"


def test_replica_ceiling_blocks_a_scale_that_cannot_add_replicas_and_the_floor_binds_the_undo():
    scale = diagnosis(playbook="scale-up", fault=Fault.CPU_SATURATION)
    at_ceiling = _replace(SETTLED, replicas=8)
    assert reason(plan(scale, PLAYBOOKS, ACT, NoHistory(), NOW, at_ceiling)) == "replica_bounds"
    planned = plan(scale, PLAYBOOKS, _replace(ACT, min_replicas=3), NoHistory(), NOW, SETTLED)
    assert planned.params["min_replicas"] == 3
    lifted = plan(diagnosis(playbook="scale-up", fault=Fault.CPU_SATURATION, params={"min_replicas": 0}),
                  PLAYBOOKS, _replace(ACT, min_replicas=3), NoHistory(), NOW, SETTLED)
    assert lifted.params["min_replicas"] == 3


def test_dry_run_skips_the_journal_guards_and_approval():
    journal = MemoryJournal()
    started(journal, 50)
    dry = _replace(ACT, mode=Mode.DRY_RUN, max_actions_per_hour=1, max_concurrent=1)
    assert isinstance(plan(diagnosis(), PLAYBOOKS, dry, journal, NOW, SETTLED), ActionPlan)
    approve = {**PLAYBOOKS, "restart-workload": PLAYBOOKS["restart-workload"].model_copy(update={"approval": "approve"})}
    assert isinstance(plan(diagnosis(), approve, dry, journal, NOW, SETTLED), ActionPlan)
