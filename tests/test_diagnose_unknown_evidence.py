"""Evidence that was not collected is unknown, not absent (issue #16 item 4).

Rules reading an uncollected source are not evaluated, unknown propagates through ``any_of``/``all_of``/``none_of``,
and the ensemble neither acts on nor is sure of a choice that hinges on it; the reports say what was not looked at.
"""

from __future__ import annotations

import textwrap
from dataclasses import replace
from pathlib import Path

from aiops.diagnose.ensemble import Diagnoser
from aiops.diagnose.ranking import StatisticalRanker
from aiops.diagnose.report import diagnosis_to_dict, render_text
from aiops.diagnose.rules import RuleEngine, RuleSet
from aiops.domain import signals as sig
from aiops.domain.diagnosis import Evidence, Fault, Hypothesis
from aiops.domain.observations import EVENTS, LOGS, Observations, SourceGap
from aiops.domain.target import Target
from tests.test_diagnose_ensemble import DIAGNOSER, FixedAnalyzer
from tests.test_diagnose_scenarios import FAULT_AT, NS, Scenario, memory_leak, stock_playbooks, traffic_surge

ENGINE = RuleEngine(RuleSet.load(Path(__file__).resolve().parent.parent / "rules"))
WHY = "no --config with Kubernetes access"
BLIND = (SourceGap(LOGS, WHY), SourceGap(EVENTS, WHY))


def blind(obs: Observations) -> Observations:
    """What ``aiops diagnose --prometheus`` without ``--config`` sees: the metrics only, and says so."""
    return replace(obs, logs=(), events=(), not_collected=BLIND)


def cpu_heavy_bad_deploy() -> Scenario:
    """The issue's case: cart rolled onto a bad version that burns CPU, is slow and fails some requests."""
    s = Scenario().rollout("cart", FAULT_AT)
    s.shift("cart", sig.CPU, FAULT_AT + 30, 0.6).shift("cart", sig.LATENCY_P99, FAULT_AT + 30, 0.1)
    s.shift("cart", sig.ERROR_RATIO, FAULT_AT + 30, 0.02)
    for i in range(20):
        s.log("cart", FAULT_AT + 40 + 20 * i, f"ERROR NullPointerException in PriceService.compute order={1000 + i}",
              pod=f"cart-def34-y{i % 2}")
    return s.with_topology()


def _rule(matches, rule: str, workload: str = "cart"):
    return next(m for m in matches if m.rule == rule and m.workload == workload)


# -- rules ----------------------------------------------------------------------------------------------------------

def test_no_new_replicaset_is_not_evaluated_when_the_events_were_not_read():
    s = cpu_heavy_bad_deploy()
    incident = s.incident("cart")
    cpu = _rule(ENGINE.explain(incident, blind(s.observations())), "cpu-saturation")
    assert not cpu.matched and cpu.missing == ("events",)
    assert cpu.criteria[0].matched and cpu.criteria[1].matched  # the metrics did say cpu and latency rose
    none_of = cpu.criteria[2]
    assert none_of.kind == "none_of" and not none_of.matched and none_of.missing == ("events",)
    rollout = none_of.children[1]
    assert rollout.kind == "rollout" and rollout.detail == "not evaluated: events not collected"
    assert cpu.as_dict()["not_evaluated"] == "not evaluated: events not collected"
    assert not any("no new ReplicaSet" in c.detail for c in none_of.children)
    # The events read and holding no rollout: then the absence is a fact, and the rule holds.
    read_none = replace(s.observations(), events=())
    assert _rule(ENGINE.explain(incident, read_none), "cpu-saturation").matched


def test_a_rule_whose_positive_evidence_was_not_collected_does_not_match():
    s = cpu_heavy_bad_deploy()
    seen = _rule(ENGINE.explain(s.incident("cart"), s.observations()), "bad-deploy")
    unseen = _rule(ENGINE.explain(s.incident("cart"), blind(s.observations())), "bad-deploy")
    assert seen.matched and seen.missing == ()
    assert not unseen.matched and unseen.missing == ("events", "logs")
    assert unseen.criteria[0].detail == "not evaluated: events not collected"


def test_unknown_propagates_through_groups_and_a_known_failure_wins(tmp_path):
    (tmp_path / "x.yaml").write_text(textwrap.dedent("""
        rules:
          - {name: any-held, fault: unknown, playbook: escalate, confidence: 0.5,
             when: [{any_of: [{event: {reason: BackOff}}, {signal: error_ratio, above_baseline_z: 4}]}]}
          - {name: any-unknown, fault: unknown, playbook: escalate, confidence: 0.5,
             when: [{any_of: [{event: {reason: BackOff}}, {signal: memory, trend: rising}]}]}
          - {name: none-failed, fault: unknown, playbook: escalate, confidence: 0.5,
             when: [{none_of: [{event: {reason: BackOff}}, {signal: error_ratio, above_baseline_z: 4}]}]}
          - {name: none-unknown, fault: unknown, playbook: escalate, confidence: 0.5,
             when: [{none_of: [{log: {pattern: panic}}, {signal: memory, trend: rising}]}]}
          - {name: all-failed, fault: unknown, playbook: escalate, confidence: 0.5,
             when: [{all_of: [{event: {reason: BackOff}}, {signal: memory, trend: rising}]}]}
          - {name: all-unknown, fault: unknown, playbook: escalate, confidence: 0.5,
             when: [{all_of: [{rollout: {}}, {signal: error_ratio, above_baseline_z: 4}]}]}
          - {name: rule-failed, fault: unknown, playbook: escalate, confidence: 0.5,
             when: [{rollout: {}}, {signal: memory, trend: rising}]}
    """), encoding="utf-8")
    engine = RuleEngine(RuleSet.load(tmp_path))
    s = Scenario().shift("cart", sig.ERROR_RATIO, FAULT_AT, 0.2)
    got = {m.rule: (m.matched, m.missing) for m in engine.explain(s.incident("cart"), blind(s.observations()))
           if m.workload == "cart"}
    assert got == {
        "any-held": (True, ()),                  # a child held: what the others would say does not matter
        "any-unknown": (False, ("events",)),     # none held, one could not be checked
        "none-failed": (False, ()),              # one held: fails whatever the unread one would say
        "none-unknown": (False, ("logs",)),      # the one that could be checked did not hold: the other decides
        "all-failed": (False, ()),               # one failed for sure
        "all-unknown": (False, ("events",)),
        "rule-failed": (False, ()),              # a rule is a conjunction: a known failure is a plain "no"
    }


def test_an_unknown_rule_is_a_hypothesis_only_when_collected_evidence_speaks_for_it():
    s = cpu_heavy_bad_deploy()
    incident, obs = s.incident("cart"), blind(s.observations())
    hyps = ENGINE.analyze(incident, obs, stock_playbooks())
    unchecked = {(h.target.name, h.fault, h.missing) for h in hyps if h.missing}
    assert ("cart", Fault.BAD_DEPLOY, ("events", "logs")) in unchecked
    assert ("cart", Fault.CPU_SATURATION, ("events",)) in unchecked
    bad = next(h for h in hyps if h.fault is Fault.BAD_DEPLOY)
    assert bad.evidence[0].summary == "rule bad-deploy on cart not evaluated: events and logs not collected"
    # Nothing collected speaks for a crash loop on redis (no restarts): unknown in --explain, no hypothesis.
    assert _rule(ENGINE.explain(incident, obs), "crash-loop-after-rollout", "redis").missing
    assert not any(h.target.name == "redis" for h in hyps)
    assert not any(h.missing for h in ENGINE.analyze(incident, s.observations(), stock_playbooks()))


def test_the_ranking_says_what_it_would_guess_had_the_workload_rolled_out():
    s = Scenario().shift("cart", sig.CPU, FAULT_AT, 0.6).shift("cart", sig.LATENCY_P99, FAULT_AT, 0.1).with_topology()
    incident = s.incident("cart")
    read = StatisticalRanker().analyze(incident, s.observations(), stock_playbooks())
    unread = StatisticalRanker().analyze(incident, blind(s.observations()), stock_playbooks())
    assert [(h.target.name, h.fault, h.missing) for h in read if h.target.name == "cart"] == \
        [("cart", Fault.CPU_SATURATION, ())]
    assert [(h.target.name, h.fault, h.playbook, h.missing) for h in unread if h.target.name == "cart"] == \
        [("cart", Fault.CPU_SATURATION, "scale-up", ()), ("cart", Fault.BAD_DEPLOY, "rollback-deploy", ("events",))]


# -- the ensemble ---------------------------------------------------------------------------------------------------

def test_a_bad_deploy_seen_through_metrics_only_is_not_called_cpu_saturation():
    s = cpu_heavy_bad_deploy()
    incident = s.incident("cart", sig.LATENCY_P99, severity=2.0)
    seen = DIAGNOSER.diagnose(incident, s.observations(), stock_playbooks())
    assert (seen.chosen.fault, seen.chosen.playbook) == (Fault.BAD_DEPLOY, "rollback-deploy")
    assert seen.not_collected == () and seen.not_ruled_out == ()
    # What the issue saw: the missing events taken for "no rollout" made it cpu_saturation -> scale-up.
    empty = DIAGNOSER.diagnose(incident, replace(s.observations(), events=(), logs=()), stock_playbooks())
    assert (empty.chosen.fault, empty.chosen.playbook) == (Fault.CPU_SATURATION, "scale-up")

    d = DIAGNOSER.diagnose(incident, blind(s.observations()), stock_playbooks())
    assert d.chosen.playbook == "escalate" and d.chosen.fault is not Fault.CPU_SATURATION
    assert d.chosen.confidence < 0.5
    assert {(h.target.name, h.fault) for h in d.not_ruled_out} >= {("cart", Fault.BAD_DEPLOY),
                                                                  ("cart", Fault.CPU_SATURATION)}
    summaries = [e.summary for e in d.chosen.evidence]
    assert not any("no new ReplicaSet" in line for line in summaries)
    assert any(line.startswith("could not rule out bad_deploy on cart (rules 0.85)") and
               line.endswith(f"not collected: pod logs, Kubernetes events and rollouts ({WHY})")
               for line in summaries)
    assert d.not_collected == BLIND


def test_uncollected_evidence_no_alternative_needs_changes_nothing():
    for scenario, target, signal, answer in ((traffic_surge("frontend"), "frontend", sig.REQUEST_RATE, "scale-up"),
                                             (memory_leak("cart"), "cart", sig.MEMORY, "restart-workload")):
        incident = scenario.incident(target, signal, severity=2.0)
        d = DIAGNOSER.diagnose(incident, blind(scenario.observations()), stock_playbooks())
        assert (d.chosen.target.name, d.chosen.playbook) == (target, answer)
        assert d.not_ruled_out == () and d.not_collected == BLIND
    surge = traffic_surge("frontend")
    incident = surge.incident("frontend", sig.REQUEST_RATE, severity=2.0)
    assert DIAGNOSER.diagnose(incident, blind(surge.observations()), stock_playbooks()).confidence == \
        DIAGNOSER.diagnose(incident, surge.observations(), stock_playbooks()).confidence


class Unchecked:
    """A rule engine that could not check one rule (its events were not read)."""

    name = "rules"

    def __init__(self, *hyps: tuple[str, Fault, str, float, tuple[str, ...]]) -> None:
        self.hyps = [Hypothesis(Target.deployment(NS, w), f, p, c, "rules", missing=m,
                                evidence=(Evidence(kind="rule", summary=f"rule on {w}", data={"rule": f.value}),))
                     for w, f, p, c, m in hyps]

    def analyze(self, incident, observations, playbooks):
        return list(self.hyps)


def test_a_deciding_rival_shares_the_confidence_and_stops_the_action_but_the_fault_stays():
    s = Scenario().with_topology()
    chosen = ("cart", Fault.CPU_SATURATION, "scale-up", 0.9)
    diagnoser = Diagnoser([FixedAnalyzer("stats", chosen),
                           Unchecked(("cart", Fault.BAD_DEPLOY, "rollback-deploy", 0.95, ("events",)))],
                          min_confidence=0.3)
    d = diagnoser.diagnose(s.incident("cart"), blind(s.observations()), stock_playbooks())
    c = 0.8 * 0.9  # the stats weight times its confidence, shared with the rival: c * c / (c + 0.95)
    assert d.chosen.confidence == round(c * c / (c + 0.95), 4)
    assert (d.chosen.fault, d.chosen.playbook) == (Fault.CPU_SATURATION, "escalate")
    assert [(h.target.name, h.fault) for h in d.not_ruled_out] == [("cart", Fault.BAD_DEPLOY)]
    assert any("scale-up would answer cpu_saturation on cart, but the evidence" in e.summary for e in d.chosen.evidence)
    # A rival that would lose even if confirmed decides nothing: the action and its confidence stand.
    weak = Diagnoser([FixedAnalyzer("rules", chosen),
                      Unchecked(("cart", Fault.BAD_DEPLOY, "rollback-deploy", 0.6, ("events",)))], min_confidence=0.3)
    d = weak.diagnose(s.incident("cart"), blind(s.observations()), stock_playbooks())
    assert (d.chosen.playbook, d.chosen.confidence, d.not_ruled_out) == ("scale-up", 0.9, ())


# -- what the reports say -------------------------------------------------------------------------------------------

def test_reports_list_what_was_not_collected_and_what_could_not_be_ruled_out():
    s = cpu_heavy_bad_deploy()
    d = DIAGNOSER.diagnose(s.incident("cart", sig.LATENCY_P99, severity=2.0), blind(s.observations()),
                           stock_playbooks())
    doc = diagnosis_to_dict(d, stock_playbooks())
    assert doc["not_collected"] == [{"source": "logs", "reason": WHY}, {"source": "events", "reason": WHY}]
    assert {"workload": "cart", "fault": "bad_deploy", "playbook": "rollback-deploy", "confidence": 0.85,
            "source": "rules", "needs": ["events", "logs"], "rule": "bad-deploy"} in doc["not_ruled_out"]
    text = render_text(d)
    assert f"Not collected: pod logs, Kubernetes events and rollouts ({WHY})" in text.splitlines()
    assert "Not ruled out: cart/bad_deploy 0.85 (rules, needs events and logs)" in text
