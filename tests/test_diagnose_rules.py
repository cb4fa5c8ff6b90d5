"""Rule files (schema, errors with exact locations) and the rule engine's evaluation."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import pytest

from aiops.diagnose.rules import RuleEngine, RuleSet, log_template
from aiops.domain import signals as sig
from aiops.domain.diagnosis import Fault
from aiops.domain.errors import InputError
from tests.test_diagnose_scenarios import (FAULT_AT, NS, STEP, Scenario, bad_deploy, memory_leak, quiet,
                                           slow_dependency, stock_playbooks, traffic_surge)

STOCK_RULES = Path(__file__).resolve().parent.parent / "rules"
ENGINE = RuleEngine(RuleSet.load(STOCK_RULES))


def _write(tmp_path: Path, body: str, name: str = "x.yaml") -> Path:
    (tmp_path / name).write_text(textwrap.dedent(body), encoding="utf-8")
    return tmp_path


def _matches(scenario: Scenario, target: str, engine: RuleEngine = ENGINE) -> set[tuple[str, str]]:
    return {(m.rule, m.workload) for m in engine.explain(scenario.incident(target), scenario.observations())
            if m.matched}


# -- stock rules ----------------------------------------------------------------------------------------------

def test_stock_rules_load_cover_the_fault_table_and_name_only_stock_playbooks():
    ruleset = RuleSet.load(STOCK_RULES)
    assert ruleset.validate([p.name for p in stock_playbooks()]) == []
    faults = {r.fault for r in ruleset.rules}
    assert {Fault.MEMORY_LEAK, Fault.CRASH_LOOP, Fault.CPU_SATURATION, Fault.TRAFFIC_SURGE, Fault.BAD_DEPLOY,
            Fault.BAD_REPLICA_SET, Fault.DEPENDENCY_LATENCY, Fault.UNKNOWN} <= faults
    assert {r.playbook for r in ruleset.rules if r.fault is Fault.UNKNOWN} == {"escalate"}
    assert len(list(STOCK_RULES.glob("*.yaml"))) >= 3


def test_memory_leak_matches_on_the_leaking_workload_with_measured_values():
    scenario = memory_leak("cart")
    assert _matches(scenario, "cart") == {("memory-leak-oom", "cart"), ("memory-leak-climb", "cart")}
    hyps = ENGINE.analyze(scenario.incident("cart"), scenario.observations(), stock_playbooks())
    assert (hyps[0].target.name, hyps[0].fault, hyps[0].playbook, hyps[0].confidence) == \
        ("cart", Fault.MEMORY_LEAK, "restart-workload", 0.9)
    explained = [m for m in ENGINE.explain(scenario.incident("cart"), scenario.observations())
                 if m.rule == "memory-leak-oom" and m.workload == "cart"][0]
    trend = explained.criteria[0]
    assert trend.kind == "signal" and trend.matched and trend.values["rise_z"] > 3
    assert "OOMKilling" in explained.criteria[1].detail


def test_explain_lists_the_incident_target_first_and_says_why_a_rule_failed():
    scenario = quiet()
    matches = ENGINE.explain(scenario.incident("payments"), scenario.observations())
    assert matches[0].workload == "payments"
    assert not any(m.matched for m in matches)
    leak = next(m for m in matches if m.rule == "memory-leak-oom")
    assert "want rising" in leak.criteria[0].detail and not leak.criteria[0].matched


def test_bad_deploy_needs_the_rollout_and_new_error_templates():
    scenario = bad_deploy("checkout")
    assert ("bad-deploy", "checkout") in _matches(scenario, "checkout")
    hyps = ENGINE.analyze(scenario.incident("checkout"), scenario.observations(), stock_playbooks())
    assert (hyps[0].target.name, hyps[0].fault, hyps[0].playbook) == ("checkout", Fault.BAD_DEPLOY, "rollback-deploy")
    no_rollout = Scenario().shift("checkout", sig.ERROR_RATIO, FAULT_AT, 0.2).with_topology()
    found = _matches(no_rollout, "checkout")
    assert ("bad-deploy", "checkout") not in found and ("unexplained-errors", "checkout") in found


def test_new_log_template_ignores_lines_already_seen_in_the_baseline(tmp_path):
    engine = RuleEngine(RuleSet.load(_write(tmp_path, """
        rules:
          - {name: new-errors, fault: unknown, playbook: escalate, confidence: 0.5,
             when: [{log: {pattern: "ERROR", new: true, min_count: 2}}]}
    """)))
    old = Scenario()
    for i in range(3):  # the same template before and after the split: not new
        old.log("cart", FAULT_AT - 1800 + i, f"ERROR timeout talking to redis after {i}ms")
        old.log("cart", FAULT_AT + 60 + i, f"ERROR timeout talking to redis after {i + 50}ms")
    assert _matches(old, "cart", engine) == set()
    old.log("cart", FAULT_AT + 90, "ERROR cannot parse price 12").log("cart", FAULT_AT + 95, "ERROR cannot parse price 7")
    assert _matches(old, "cart", engine) == {("new-errors", "cart")}
    assert log_template("id=42 at 0x1f user 9f1c2a7b") == log_template("id=7 at 0xff user 0c0ffee11")


def test_traffic_surge_and_slow_dependency():
    assert ("traffic-surge", "frontend") in _matches(traffic_surge("frontend"), "frontend")
    dep = slow_dependency("redis").with_topology()
    found = _matches(dep, "frontend")
    # Only the callee whose own callees are fine: cart's callee (redis) is slow, so cart is not blamed.
    assert ("slow-dependency", "redis") in found and ("slow-dependency", "cart") not in found
    assert _matches(slow_dependency("redis"), "frontend") == set()  # no call graph: the rule cannot say


def test_alert_rollout_event_window_and_pod_fraction_criteria(tmp_path):
    engine = RuleEngine(RuleSet.load(_write(tmp_path, """
        rules:
          - {name: alerted, fault: unknown, playbook: escalate, confidence: 0.5,
             when: [{alert: {alertname: "High.*", severity: critical}}]}
          - {name: rolled, fault: bad_deploy, playbook: rollback-deploy, confidence: 0.5,
             when: [{rollout: {within: 20m}}]}
          - {name: backoff, fault: crash_loop, playbook: escalate, confidence: 0.5,
             when: [{event: {reason: "BackOff", type: Warning, within: 5m, min_count: 2}}]}
          - {name: some-pods, fault: bad_replica_set, playbook: shift-traffic, confidence: 0.5,
             when: [{log: {pattern: "panic", max_pod_fraction: 0.5}}]}
    """)))
    s = Scenario().alert("checkout", "HighErrorRate", FAULT_AT).rollout("cart", FAULT_AT)
    end = float(s.ts[-1])
    s.event("redis", end - 60, "BackOff", "Back-off restarting").event("redis", end - 30, "BackOff", "again")
    s.event("payments", end - 60, "BackOff", "x").event("payments", end - 900, "BackOff", "too old")
    s.log("frontend", end - 10, "panic: nil map", pod="frontend-abc12-x0")
    s.log("payments", end - 10, "panic: nil map", pod="payments-abc12-x0")
    s.log("payments", end - 9, "panic: nil map", pod="payments-abc12-x1")
    found = _matches(s, "checkout", engine)
    assert ("alerted", "checkout") in found and not any(r == "alerted" and w != "checkout" for r, w in found)
    assert ("rolled", "cart") in found and ("rolled", "checkout") not in found
    assert ("backoff", "redis") in found and ("backoff", "payments") not in found
    assert ("some-pods", "frontend") in found and ("some-pods", "payments") not in found
    older = Scenario().rollout("cart", FAULT_AT - 30 * 60)
    assert ("rolled", "cart") not in _matches(older, "cart", engine)


def test_long_log_lines_are_truncated_before_matching(tmp_path):
    engine = RuleEngine(RuleSet.load(_write(tmp_path, """
        rules:
          - {name: tail, fault: unknown, playbook: escalate, confidence: 0.5,
             when: [{log: {pattern: "a{4}TAIL"}}]}
    """)))
    s = quiet()
    s.log("cart", FAULT_AT + 60, "a" * 5_000_000 + "TAIL")
    started = time.monotonic()
    assert _matches(s, "cart", engine) == set()  # TAIL lies beyond the first 2 KB
    assert time.monotonic() - started < 5
    s.log("cart", FAULT_AT + 61, "aaaaTAIL")
    assert _matches(s, "cart", engine) == {("tail", "cart")}


def test_rule_with_a_playbook_that_is_not_allowed_gives_no_hypothesis():
    scenario = memory_leak("cart")
    allowed = [p for p in stock_playbooks() if p.name != "restart-workload"]
    hyps = ENGINE.analyze(scenario.incident("cart"), scenario.observations(), allowed)
    assert all(h.playbook != "restart-workload" for h in hyps)


# -- rule file errors -----------------------------------------------------------------------------------------

GOOD = """\
rules:
  - name: leak
    fault: memory_leak
    playbook: restart-workload
    confidence: 0.9
    when:
      - signal: memory
        trend: rising
      - event: {reason: "OOMKill.*", within: 15m}
"""


@pytest.mark.parametrize("old, new, where, reason", [
    ("signal: memory", "signal: mem", "7: rules[0].when[0].signal", "unknown signal 'mem'; choose from cpu, memory"),
    ("fault: memory_leak", "fault: leak", "3: rules[0].fault", "unknown fault 'leak'; choose from memory_leak"),
    ('reason: "OOMKill.*"', 'reason: "OOM(Kill"', "9: rules[0].when[1].event.reason", "bad regex 'OOM(Kill'"),
    ('reason: "OOMKill.*"', 'reason: "(a|aa)+$"', "9: rules[0].when[1].event.reason",
     "bad regex '(a|aa)+$': a repeated group that itself repeats or alternates may backtrack catastrophically"),
    ("trend: rising", "trend: up", "8: rules[0].when[0].trend", "Input should be 'rising' or 'falling'"),
    ("within: 15m", "within: soon", "9: rules[0].when[1].event.within", "bad duration 'soon'"),
    ("trend: rising", "ratio_to_baseline: 'twice'", "8: rules[0].when[0].ratio_to_baseline", "bad ratio 'twice'"),
    ("confidence: 0.9", "confidence: 1.5", "5: rules[0].confidence", "Input should be less than or equal to 1"),
    ("confidence: 0.9", "confidence: 0.9\n    colour: red", "6: rules[0].colour", "unknown key"),
    ("      - signal: memory\n        trend: rising", "      - signal: memory", "7: rules[0].when[0]",
     "signal needs a condition"),
    ("      - signal: memory\n        trend: rising", "      - signal: memory\n        trend: rising\n        rollout: {}",
     "7: rules[0].when[0]", "needs exactly one of"),
])
def test_rule_file_errors_name_file_and_key(tmp_path, old, new, where, reason):
    assert old in GOOD
    path = _write(tmp_path, GOOD.replace(old, new))
    with pytest.raises(InputError) as err:
        RuleSet.load(path)
    assert err.value.where == f"{path / 'x.yaml'}:{where}"  # file:line: key
    assert err.value.reason.startswith(reason)


def test_duplicate_rule_names_across_files(tmp_path):
    _write(tmp_path, GOOD, "a.yaml")
    _write(tmp_path, GOOD, "b.yaml")
    with pytest.raises(InputError) as err:
        RuleSet.load(tmp_path)
    assert err.value.where == f"{tmp_path / 'b.yaml'}:2: rules[0].name"
    assert err.value.reason == f"duplicate rule name 'leak' (first in {tmp_path / 'a.yaml'}:2: rules[0])"


def test_yaml_syntax_error_and_wrong_top_level_and_missing_folder(tmp_path):
    _write(tmp_path, "rules:\n  - name: [unclosed\n", "a.yaml")
    with pytest.raises(InputError) as err:
        RuleSet.load(tmp_path)
    assert err.value.where.startswith(f"{tmp_path / 'a.yaml'}:") and "not valid YAML" in err.value.reason
    other = tmp_path / "other"
    other.mkdir()
    _write(other, "- just a list\n")
    with pytest.raises(InputError) as err:
        RuleSet.load(other)
    assert err.value.where == str(other / "x.yaml") and "mapping" in err.value.reason
    with pytest.raises(InputError) as err:
        RuleSet.load(tmp_path / "nope")
    assert err.value.reason == "rules folder not found"


def test_unknown_playbook_is_reported_by_validate(tmp_path):
    ruleset = RuleSet.load(_write(tmp_path, GOOD.replace("restart-workload", "reboot-node")))
    problems = ruleset.validate([p.name for p in stock_playbooks()])
    assert problems == [f"{tmp_path / 'x.yaml'}:4: rules[0].playbook: unknown playbook 'reboot-node'; choose from "
                        "degrade-model, escalate, isolate-pod, restart-workload, rollback-deploy, scale-up, "
                        "shift-traffic"]


def test_nested_groups_and_neighbour_criteria_validate(tmp_path):
    body = GOOD.replace("      - event: {reason: \"OOMKill.*\", within: 15m}",
                        "      - any_of:\n          - none_of:\n              - callers: {rollout: {}}")
    with pytest.raises(InputError) as err:
        RuleSet.load(_write(tmp_path, body))
    assert err.value.where.endswith("rules[0].when[1].any_of[0].none_of[0]")
    assert "callers takes a signal criterion" in err.value.reason
    assert STEP and NS  # the scenario constants stay importable for the neighbours
