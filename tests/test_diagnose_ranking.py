"""StatisticalRanker, the baseline z-scores it reads, and rollout detection."""

from __future__ import annotations

import numpy as np

from aiops.diagnose.baseline import measure, split_time
from aiops.diagnose.faults import playbook_for
from aiops.diagnose.ranking import StatisticalRanker
from aiops.diagnose.rollouts import find_rollouts
from aiops.domain import signals as sig
from aiops.domain.diagnosis import Fault
from aiops.domain.incident import Anomaly, Incident
from aiops.domain.observations import KubeEvent, Observations, Series
from aiops.domain.target import Target
from tests.test_diagnose_scenarios import (FAULT_AT, NS, STEP, T0, Scenario, bad_deploy, memory_leak, quiet,
                                           slow_dependency, stock_playbooks, traffic_surge)

RANKER = StatisticalRanker()


def _top(scenario: Scenario, workload: str, signal: str = ""):
    obs = scenario.observations()
    hyps = RANKER.analyze(scenario.incident(workload, signal, severity=2.0), obs, stock_playbooks())
    return hyps, RANKER.ranking(scenario.incident(workload, signal), obs)


def test_memory_leak_ranks_the_leaking_workload_first_with_its_fault_and_playbook():
    hyps, ranking = _top(memory_leak("cart"), "cart", sig.MEMORY)
    assert ranking[0][0] == "cart" and ranking[0][1] > 0.8
    assert all(0.0 <= s <= 1.0 for _, s in ranking)
    assert [s for _, s in ranking] == sorted((s for _, s in ranking), reverse=True)
    assert ranking[1][1] < 0.3  # nothing else moved
    top = hyps[0]
    assert (top.target, top.fault, top.playbook) == (Target.deployment(NS, "cart"), Fault.MEMORY_LEAK,
                                                      "restart-workload")
    ranking_ev = [e for e in top.evidence if e.kind == "ranking" and "ranking" in e.data]
    assert ranking_ev and ranking_ev[0].data["ranking"][0][0] == "cart"
    assert any(e.kind == "anomaly" and "memory" in e.summary for e in top.evidence)


def test_slow_callee_is_the_root_cause_and_its_callers_are_demoted_as_victims():
    scenario = slow_dependency("redis").with_topology()
    obs = scenario.observations()
    ranked = RANKER.rank(scenario.incident("frontend", sig.LATENCY_P99), obs)
    by_name = {w.workload: w for w in ranked}
    assert ranked[0].workload == "redis"
    assert by_name["cart"].victim_of == ["redis"] and by_name["frontend"].victim_of == ["cart"]
    assert by_name["redis"].score > 1.5 * by_name["cart"].score
    hyps = RANKER.analyze(scenario.incident("frontend", sig.LATENCY_P99), obs, stock_playbooks())
    assert (hyps[0].target.name, hyps[0].fault) == ("redis", Fault.DEPENDENCY_LATENCY)


def test_without_topology_the_earliest_mover_still_leads():
    scenario = slow_dependency("redis")  # no call graph
    ranking = RANKER.ranking(scenario.incident("frontend"), scenario.observations())
    assert [w for w, _ in ranking[:3]] == ["redis", "cart", "frontend"]


def test_caller_is_not_demoted_when_it_moved_first_and_harder():
    scenario = Scenario().with_topology()
    scenario.shift("cart", sig.LATENCY_P99, FAULT_AT, 0.5)
    scenario.shift("redis", sig.LATENCY_P99, FAULT_AT + 10 * STEP, 0.03)
    ranked = RANKER.rank(scenario.incident("cart"), scenario.observations())
    assert ranked[0].workload == "cart" and ranked[0].victim_of == []


def test_traffic_surge_guess():
    hyps, ranking = _top(traffic_surge("frontend"), "frontend", sig.REQUEST_RATE)
    assert ranking[0][0] == "frontend"
    assert (hyps[0].fault, hyps[0].playbook) == (Fault.TRAFFIC_SURGE, "scale-up")


def test_cpu_saturation_guess():
    scenario = Scenario().with_topology()
    scenario.shift("payments", sig.CPU, FAULT_AT, 0.8).shift("payments", sig.LATENCY_P99, FAULT_AT + STEP, 0.2)
    hyps, _ = _top(scenario, "payments")
    assert (hyps[0].target.name, hyps[0].fault, hyps[0].playbook) == ("payments", Fault.CPU_SATURATION, "scale-up")


def test_restarts_mean_crash_loop_escalated_unless_a_rollout_just_happened():
    scenario = Scenario().shift("cart", sig.RESTARTS, FAULT_AT, 0.05)
    hyps, _ = _top(scenario, "cart")
    assert (hyps[0].fault, hyps[0].playbook) == (Fault.CRASH_LOOP, "escalate")
    hyps, _ = _top(scenario.rollout("cart", FAULT_AT - 60), "cart")
    assert (hyps[0].fault, hyps[0].playbook) == (Fault.CRASH_LOOP, "rollback-deploy")


def test_error_ratio_is_bad_deploy_only_after_a_rollout():
    hyps, _ = _top(bad_deploy("checkout"), "checkout")
    assert (hyps[0].target.name, hyps[0].fault, hyps[0].playbook) == ("checkout", Fault.BAD_DEPLOY, "rollback-deploy")
    assert any(e.kind == "rollout" for e in hyps[0].evidence)
    no_rollout = Scenario().shift("checkout", sig.ERROR_RATIO, FAULT_AT, 0.2)
    hyps, _ = _top(no_rollout, "checkout")
    assert (hyps[0].fault, hyps[0].playbook) == (Fault.UNKNOWN, "escalate")
    assert hyps[0].confidence < 0.5


def test_quiet_namespace_gives_no_hypothesis_and_low_scores():
    hyps, ranking = _top(quiet(), "cart")
    assert hyps == []
    assert ranking and max(s for _, s in ranking) < 0.2


def test_incident_anomalies_count_even_without_signals():
    scenario = quiet()
    obs = scenario.observations()
    ghost = Anomaly(target=Target.deployment(NS, "ghost"), signal=sig.LATENCY_P99, score=6.0, threshold=1.5,
                    start=FAULT_AT, contributors=((sig.LATENCY_P99, 1.0),))
    incident = Incident(id="i", target=Target.deployment(NS, "ghost"), opened=FAULT_AT, anomalies=(ghost,))
    ranking = dict(RANKER.ranking(incident, obs))
    assert ranking["ghost"] > max(s for w, s in ranking.items() if w != "ghost")
    plain = dict(RANKER.ranking(scenario.incident("cart"), obs))
    boosted = dict(RANKER.ranking(scenario.incident("cart", sig.MEMORY, severity=3.0), obs))
    assert boosted["cart"] > plain["cart"]


def test_disallowed_playbook_falls_back_to_escalate():
    no_scale = [p for p in stock_playbooks() if p.name != "scale-up"]
    assert playbook_for(Fault.TRAFFIC_SURGE, no_scale) == "escalate"
    assert playbook_for(Fault.TRAFFIC_SURGE, stock_playbooks()) == "scale-up"
    assert playbook_for(Fault.CRASH_LOOP, stock_playbooks(), rollout_recent=True) == "rollback-deploy"


def _series(values, name=sig.CPU) -> Series:
    ts = T0 + STEP * np.arange(len(values))
    return Series(name=name, labels={"namespace": NS, "workload": "w"}, timestamps=ts, values=np.asarray(values, float))


def test_flat_baseline_gives_finite_z_and_onset_at_the_step():
    shift = measure(_series([0.2] * 20 + [1.0] * 10), split=T0 + 15 * STEP)
    assert np.isfinite(shift.peak_z) and shift.peak_z > 10
    assert shift.onset_up == T0 + 20 * STEP
    assert shift.onset_down is None
    assert shift.peak_ratio == 5.0


def test_single_spike_is_not_a_change_point_and_short_baseline_is_skipped():
    spike = [0.2] * 25 + [5.0] + [0.2] * 4
    shift = measure(_series(spike), split=T0 + 15 * STEP)
    assert shift.onset_up is None and shift.peak_z < 3
    assert measure(_series([0.2] * 10), split=T0 + 2 * STEP) is None


def test_split_uses_the_incident_start_inside_the_window():
    obs = Observations(namespace=NS, start=T0, end=T0 + 3600)
    assert split_time(None, obs) == T0 + 2400
    inc = quiet().incident("cart", sig.MEMORY, at=T0 + 1800, severity=2.0)
    assert split_time(inc, obs) == T0 + 1800


def _rs_event(ts: float, message: str) -> KubeEvent:
    return KubeEvent(ts=ts, namespace=NS, involved_kind="Deployment", involved_name="cart",
                     reason="ScalingReplicaSet", message=message)


def test_rolling_update_is_a_rollout_but_a_plain_scale_is_not():
    scale = [_rs_event(T0, "Scaled up replica set cart-abc12 to 3"),
             _rs_event(T0 + 60, "Scaled up replica set cart-abc12 to 5 from 3")]
    assert find_rollouts(scale, "cart") == []
    rolling = scale + [_rs_event(T0 + 120, "Scaled up replica set cart-def34 to 1"),
                       _rs_event(T0 + 125, "Scaled down replica set cart-abc12 to 4")]
    found = find_rollouts(rolling, "cart")
    assert [(r.new_replica_set, r.old_replica_set, r.ts) for r in found] == [("cart-def34", "cart-abc12", T0 + 120)]
    assert find_rollouts(rolling, "car") == []  # another workload's name prefix does not leak in
