"""The model-serving policies end to end on the simulator: degrade -> recover -> restore, and isolate -> restore.

The real agent code runs against the simulated cluster through the official clients, as in ``aiops demo``.
"""

from __future__ import annotations

import pytest

from aiops.clients.kube import KubeClient
from aiops.clients.prometheus import PrometheusClient
from aiops.collect.prometheus import PrometheusCollector
from aiops.demo import BASELINE_SECONDS, RECENT_SECONDS, render_text, run_demo
from aiops.diagnose.rules import RuleEngine, RuleSet
from aiops.domain.errors import InputError
from aiops.domain.incident import Incident, IncidentStatus
from aiops.domain.plans import ExecutionState, Mode
from aiops.domain.target import Target
from aiops.remediate.actions.isolate import ISOLATED_LABEL
from aiops.remediate.journal import MemoryJournal
from aiops.serve.agent import build_parts
from aiops.settings import KubernetesSettings, LoopSettings, Settings
from aiops.sim.runtime import SimRuntime
from aiops.sim.scenarios_serving import SERVING_NAMESPACE as NS
from tests.test_diagnose_rules import STOCK_RULES


def test_model_overload_degrades_to_the_fallback_then_restores_once_the_surge_is_over():
    outcome = run_demo("model_overload")

    assert outcome.recovered
    result = outcome.result
    assert (result.diagnosis.chosen.fault.value, result.plan.playbook) == ("model_overload", "degrade-model")
    exe = result.execution
    assert exe.state is ExecutionState.RESTORED
    degrade, undo = exe.changes[0], exe.changes[-1]
    assert degrade.applied and degrade.after["selector"] == {"model-group": "llm"}
    assert undo.applied and undo.after["selector"] == {"app": "llm"}
    assert exe.verification["outcome"] == "recovered"
    checks = [n for _, _, n in exe.history if n.startswith("restore check")]
    # While the surge lasted the primary alone would have been too busy: no early restore.
    assert "not healthy" in checks[0]
    assert all("not healthy" not in n for n in checks[-3:])
    restored_at = next(ts for ts, state, _ in exe.history if state == "restored")
    assert restored_at - outcome.timeline.origin >= 900  # the scenario's surge lasts 900 s of sim time
    assert any(e["stage"] == "restore" for e in outcome.timeline.entries)
    assert outcome.result.incident.status is IncidentStatus.RESOLVED and not outcome.escalated


def _settings(sim) -> Settings:
    return Settings(mode=Mode.ACT, kubernetes=KubernetesSettings(host=sim.kube_url, namespaces=(NS,)),
                    loop=LoopSettings(baseline_seconds=BASELINE_SECONDS, recent_seconds=RECENT_SECONDS,
                                      step_seconds=sim.step, interval_seconds=60))


def test_memory_growth_isolates_the_grown_pod_keeps_it_and_restores_it_once_healthy():
    with SimRuntime("model_memory_growth", seed=0) as sim:
        sim.prefill(BASELINE_SECONDS + RECENT_SECONDS)
        kube = KubeClient.for_host(sim.kube_url)
        snapshots: list[dict[str, dict]] = []

        def sleep(seconds: float) -> None:  # sim time passes; remember who carried which labels meanwhile
            sim.advance(seconds)
            snapshots.append({p["metadata"]["name"]: p for p in kube.list_pods(NS)})

        parts = build_parts(_settings(sim), kube=kube, prometheus=PrometheusClient(sim.prom_url), clock=sim.clock,
                            sleep=sleep, topology=sim.scenario.topology, journal=MemoryJournal(sim.clock))
        pipeline = parts.pipeline
        fault = sim.inject()
        incident = Incident("inc-growth", Target.deployment(NS, "llm"), sim.clock.now())
        for _ in range(20):  # sim minutes: the growth passes 30 % of the pod's memory after ~5
            sim.advance(60)
            observations = pipeline.observe(NS)
            if pipeline.diagnose(incident, observations).chosen.playbook == "isolate-pod":
                break
        result = pipeline.handle(incident, observations)

        assert result.diagnosis.chosen.fault.value == "memory_growth"
        victim = fault.victim
        assert victim and result.plan.params["pod"] == victim
        exe = result.execution
        assert exe.verification["outcome"] == "recovered"
        assert exe.state is ExecutionState.RESTORED
        # While isolated: the pod ran on without the app label, and two other Ready pods served the Service.
        isolated = [s for s in snapshots if victim in s and ISOLATED_LABEL in s[victim]["metadata"]["labels"]]
        assert isolated
        during = isolated[-1]
        assert "app" not in during[victim]["metadata"]["labels"]
        serving = [n for n, p in during.items() if p["metadata"]["labels"].get("app") == "llm"]
        assert len(serving) == 2 and victim not in serving
        # Restored: the pod is back on the Service and the ReplicaSet dropped the surplus replacement.
        pods = {p["metadata"]["name"]: p for p in kube.list_pods(NS, "app=llm")}
        assert victim in pods and ISOLATED_LABEL not in pods[victim]["metadata"]["labels"]
        sim.advance(30)
        assert len(kube.list_pods(NS, "app=llm")) == 2
        kube.close()


def test_policy_thresholds_are_rule_parameters():
    with SimRuntime("model_overload", seed=0) as sim:
        sim.prefill(BASELINE_SECONDS)
        sim.inject()
        sim.advance(180)
        observations = PrometheusCollector(PrometheusClient(sim.prom_url), sim.step).collect(
            NS, sim.clock.now() - BASELINE_SECONDS, sim.clock.now())
    incident = Incident("inc-1", Target.deployment(NS, "llm"), observations.end)

    def matched(params=None) -> bool:
        engine = RuleEngine(RuleSet.load(STOCK_RULES, params=params))
        return any(m.matched and m.rule == "model-overload" and m.workload == "llm"
                   for m in engine.explain(incident, observations))

    assert matched()
    assert not matched({"model-overload": {"latency_seconds": 5.0}})   # p99 is far above 200 ms, not above 5 s
    assert not matched({"model-overload": {"gpu_util_percent": 100}})
    with pytest.raises(InputError, match="no parameter 'latency'"):
        RuleSet.load(STOCK_RULES, params={"model-overload": {"latency": 1.0}})
    with pytest.raises(InputError, match="no rule named nope"):
        RuleSet.load(STOCK_RULES, params={"nope": {"x": 1.0}})


def test_memory_growth_demo_escalates_first_then_isolates_and_restores_told_as_it_happens(monkeypatch):
    runtimes: list[SimRuntime] = []
    enter = SimRuntime.__enter__
    monkeypatch.setattr(SimRuntime, "__enter__", lambda self: runtimes.append(self) or enter(self))
    echoed: list[tuple[str, float | None]] = []  # each line with the simulated time at which it was printed
    outcome = run_demo("model_memory_growth",
                       echo=lambda line: echoed.append((line, runtimes[0].clock.now() if runtimes else None)))

    assert outcome.recovered and outcome.result.execution.state is ExecutionState.RESTORED
    assert outcome.escalated  # a person was paged first, and that is not what recovered the service
    plans = [e["message"].split(" on ")[0] for e in outcome.timeline.entries if e["stage"] == "plan"]
    # Too early to fit the policy (escalated to a person), then the growth passed 30 %: isolate.
    assert plans == ["escalate", "isolate-pod"]
    results = [e["message"] for e in outcome.timeline.entries if e["stage"] == "result"]
    assert results[0] == ("escalated to a person: nothing was changed in the cluster and the service has not "
                          "recovered")
    assert results[1].startswith("restored: isolate-pod on Deployment ml/llm worked: the service recovered")
    stages = [e["stage"] for e in outcome.timeline.entries]
    assert stages.index("undo") > stages.index("verify") and stages[-2:] == ["result", "incident"]

    # The plan ended restored: the incident is over, in the result and in its diagnosis.
    incident = outcome.result.incident
    assert incident.status is IncidentStatus.RESOLVED
    assert outcome.timeline.entries[-1]["message"] == (
        f"resolved {incident.id}: plan {outcome.result.execution.plan_id} ended restored")
    document = outcome.as_dict()
    assert document["incident"]["status"] == document["diagnosis"]["incident"]["status"] == "resolved"

    # Streamed: the text is the same, but each line was printed when its event happened, not at the end.
    assert [line for line, _ in echoed] == render_text(outcome).splitlines()[:-2]
    origin = outcome.timeline.origin
    for (line, printed_at), entry in zip(echoed[2:], outcome.timeline.entries, strict=True):
        lag = printed_at - origin - entry["t"]
        assert 0 <= lag <= 60, f"{line!r} printed {lag:.0f} s of simulated time after it happened"
