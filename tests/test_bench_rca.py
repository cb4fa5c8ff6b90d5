"""bench.rca: the metrics on hand-made predictions, and an end-to-end run on a few generated cases."""

from __future__ import annotations

import json

import pytest

from aiops.sim.casegen import plan_case, run_case
from bench.casegen import record
from bench.rca import CaseResult, main, right_action, score, wrong_action


def result(truth_workload, truth_fault, truth_playbook, ranked, fault, playbook, target=None, seconds=0.1):
    return CaseResult(case=f"c-{truth_workload}-{truth_fault}", ranked=tuple(ranked), fault=fault,
                      truth={"workload": truth_workload, "fault": truth_fault, "playbook": truth_playbook},
                      playbook=playbook, target=target if target is not None else (ranked[0] if ranked else ""),
                      seconds=seconds)


def test_accuracy_at_k_and_avg5_on_hand_made_rankings():
    results = [
        result("a", "memory_leak", "restart-workload", ["a", "b", "c"], "memory_leak", "restart-workload"),
        result("b", "memory_leak", "restart-workload", ["a", "b", "c"], "memory_leak", "restart-workload"),
        result("e", "cpu_saturation", "scale-up", ["a", "b", "c", "d", "e"], "cpu_saturation", "scale-up"),
        result("z", "cpu_saturation", "scale-up", ["a", "b"], "unknown", "escalate"),
        result("", "unknown", "escalate", ["a"], "unknown", "escalate"),  # no workload: not in AC@k
    ]
    m = score(results)
    assert m["located_cases"] == 4 and m["cases"] == 5
    assert m["AC@1"] == 0.25 and m["AC@3"] == 0.5 and m["AC@5"] == 0.75
    # per case mean of AC@1..5: a -> 1, b -> 0.8, e -> 0.2, z -> 0
    assert m["Avg@5"] == pytest.approx((1 + 0.8 + 0.2 + 0) / 4)
    assert m["fault_accuracy"] == 0.8
    assert m["per_fault"]["memory_leak"]["AC@1"] == 0.5
    assert m["per_fault"]["cpu_saturation"]["AC@5"] == 0.5
    assert m["per_fault"]["unknown"]["AC@1"] is None


def test_wrong_action_is_acting_when_the_truth_escalates_or_on_another_target():
    ok = result("a", "memory_leak", "restart-workload", ["a"], "memory_leak", "restart-workload")
    other_target = result("a", "memory_leak", "restart-workload", ["b", "a"], "memory_leak", "restart-workload")
    acted_on_escalate = result("", "unknown", "escalate", ["a"], "cpu_saturation", "scale-up")
    other_playbook = result("a", "memory_leak", "restart-workload", ["a"], "traffic_surge", "scale-up")
    escalated = result("a", "memory_leak", "restart-workload", ["a"], "unknown", "escalate")
    escalate_any_target = result("s", "dependency_latency", "escalate", ["x"], "dependency_latency", "escalate")
    assert not wrong_action(ok) and right_action(ok)
    assert wrong_action(other_target) and not right_action(other_target)
    assert wrong_action(acted_on_escalate) and wrong_action(other_playbook)
    assert not wrong_action(escalated) and not right_action(escalated)  # wrong, but it changes nothing
    assert right_action(escalate_any_target)  # escalate acts on nothing, so its target does not matter
    m = score([ok, other_target, acted_on_escalate, other_playbook, escalated, escalate_any_target])
    assert m["wrong_action_rate"] == 0.5
    assert m["playbook_accuracy"] == pytest.approx(2 / 6, abs=1e-4)


def test_latency_percentiles():
    results = [result("a", "f", "escalate", ["a"], "f", "escalate", seconds=s) for s in (1.0, 2.0, 3.0, 4.0, 10.0)]
    m = score(results)
    assert m["latency_p50_s"] == 3.0
    assert 4.0 < m["latency_p95_s"] <= 10.0 and m["latency_max_s"] == 10.0


@pytest.fixture(scope="module")
def cases_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("rca-cases")
    wanted = ["memory_leak", "bad_deploy", "none"]
    for kind in wanted:
        spec = next(s for s in (plan_case(21, i, kind) for i in range(200)) if len(s.models) <= 5)
        case = run_case(spec)
        try:
            record(case, root / "nested" / spec.name)
        finally:
            case.runtime.stop()
    (root / "not-a-case").mkdir()
    return root


def test_end_to_end_on_generated_cases(cases_dir, tmp_path, capsys):
    out = tmp_path / "rca.json"
    assert main(["--cases", str(cases_dir), "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    metrics = report["metrics"]
    assert metrics["cases"] == 3 and metrics["errors"] == 0
    assert set(metrics["per_fault"]) == {"memory_leak", "bad_deploy", "unknown"}
    assert metrics["AC@1"] == 1.0 and metrics["wrong_action_rate"] == 0.0
    assert metrics["latency_p50_s"] > 0
    assert {c["case"].split("-", 2)[2] for c in report["cases"]} == {"memory_leak", "bad_deploy", "none"}
    printed = capsys.readouterr().out
    assert "AC@1" in printed and "memory_leak" in printed


def test_analyzer_subsets_and_unknown_names(cases_dir, tmp_path, capsys):
    out = tmp_path / "stats.json"
    assert main(["--cases", str(cases_dir), "--analyzers", "stats", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["metrics"]["analyzers"] == ["stats"]
    assert report["metrics"]["cases"] == 3
    assert main(["--cases", str(cases_dir), "--analyzers", "stats,oracle"]) == 2
    assert "oracle" in capsys.readouterr().err


# --- the diagnosis changes the benchmark's tuning set asked for ------------------------------------------------

def _diagnose(scenario, workload):
    from pathlib import Path

    from aiops.diagnose.ensemble import Diagnoser
    from aiops.diagnose.ranking import StatisticalRanker
    from aiops.diagnose.rules import RuleEngine, RuleSet
    from tests.test_diagnose_scenarios import stock_playbooks

    rules = RuleSet.load(Path(__file__).resolve().parent.parent / "rules")
    diagnoser = Diagnoser([StatisticalRanker(), RuleEngine(rules)], min_confidence=0.5)
    return diagnoser.diagnose(scenario.incident(workload), scenario.observations(), stock_playbooks()).chosen


def test_a_finished_cpu_spike_is_not_a_cause_and_busy_cpu_alone_is_not_saturation():
    from aiops.diagnose.ranking import StatisticalRanker
    from aiops.domain import signals as sig
    from tests.test_diagnose_scenarios import FAULT_AT, Scenario, stock_playbooks

    spike = Scenario().shift("cart", sig.CPU, FAULT_AT - 300, 0.6).shift("cart", sig.CPU, FAULT_AT - 120, -0.6)
    ranked = {w.workload: w for w in StatisticalRanker().rank(spike.incident("cart"), spike.observations())}
    assert not ranked["cart"].moved
    busy = Scenario().shift("cart", sig.CPU, FAULT_AT, 0.6)
    hyps = StatisticalRanker().analyze(busy.incident("cart"), busy.observations(), stock_playbooks())
    assert hyps and hyps[0].target.name == "cart" and hyps[0].playbook == "escalate"


def test_a_surge_seen_on_several_workloads_without_a_call_graph_is_escalated():
    from aiops.domain import signals as sig
    from aiops.domain.diagnosis import Fault
    from tests.test_diagnose_scenarios import FAULT_AT, Scenario

    def surge(topology):
        s = Scenario()
        for w in ("frontend", "cart"):
            s.shift(w, sig.REQUEST_RATE, FAULT_AT, 250.0).shift(w, sig.LATENCY_P99, FAULT_AT + 30, 0.2)
            s.shift(w, sig.CPU, FAULT_AT, 0.6)
        return s.with_topology((("frontend", "cart"),)) if topology else s

    blind = _diagnose(surge(False), "frontend")
    assert blind.fault is Fault.TRAFFIC_SURGE and blind.playbook == "escalate"
    seen = _diagnose(surge(True), "frontend")
    assert (seen.target.name, seen.fault, seen.playbook) == ("frontend", Fault.TRAFFIC_SURGE, "scale-up")


def test_an_oom_sawtooth_is_a_memory_leak_not_a_crash_loop():
    import numpy as np

    from aiops.domain import signals as sig
    from aiops.domain.diagnosis import Fault
    from tests.test_diagnose_scenarios import FAULT_AT, Scenario

    s = Scenario().shift("cart", sig.RESTARTS, FAULT_AT + 300, 0.01)
    after = s.after(FAULT_AT)
    s.values[("cart", sig.MEMORY)][after] += 250e6 * ((s.ts[after] - FAULT_AT) % 240) / 240
    for k in range(1, 4):
        s.event("cart", FAULT_AT + 240 * k, "OOMKilling", f"Memory cgroup out of memory: Killed process {k} (app)")
        s.event("cart", FAULT_AT + 240 * k, "BackOff", "Back-off restarting failed container app")
    assert np.ptp(s.values[("cart", sig.MEMORY)][after]) > 200e6
    chosen = _diagnose(s, "cart")
    assert (chosen.target.name, chosen.fault, chosen.playbook) == ("cart", Fault.MEMORY_LEAK, "restart-workload")
