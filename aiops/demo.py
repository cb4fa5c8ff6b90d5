"""``aiops demo``: the closed loop on the built-in simulated cluster, told as a timeline.

The simulator runs in-process on loopback ports (a Kubernetes REST API and a small Prometheus query API), in
simulated time so an hour of baseline and the minutes a rollout takes pass in seconds. Everything else is the real
agent code, talking to the simulator through the official ``kubernetes`` client and prometheus-api-client.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from aiops.clients.kube import KubeClient
from aiops.clients.prometheus import PrometheusClient
from aiops.correlate.incidents import IncidentTracker
from aiops.diagnose.report import diagnosis_to_dict
from aiops.domain.incident import Anomaly
from aiops.domain.plans import Blocked, ExecutionState, Mode
from aiops.remediate.journal import MemoryJournal
from aiops.serve.agent import build_parts
from aiops.serve.pipeline import PipelineResult
from aiops.settings import KubernetesSettings, LoopSettings, PolicySettings, Settings
from aiops.sim.runtime import SimRuntime

BASELINE_SECONDS = 3600.0
RECENT_SECONDS = 600.0
CYCLE_SECONDS = 60.0
GIVE_UP_AFTER = 45 * 60.0
# A mitigation taken back after the service stayed healthy (``restored``) recovered too.
RECOVERED_STATES = (ExecutionState.SUCCEEDED, ExecutionState.RESTORED)


@dataclass
class Timeline:
    """What happened, in order, with simulated seconds since the fault was injected."""

    origin: float = 0.0
    entries: list[dict[str, Any]] = field(default_factory=list)

    def add(self, now: float, stage: str, message: str, **data: Any) -> None:
        self.entries.append({"t": round(now - self.origin, 1), "stage": stage, "message": message,
                             **({"data": data} if data else {})})


@dataclass
class DemoOutcome:
    """The demo's result: the timeline, the pipeline's decisions and whether the service recovered."""

    scenario: str
    namespace: str
    timeline: Timeline
    result: PipelineResult | None
    recovered: bool
    wall_seconds: float

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"scenario": self.scenario, "namespace": self.namespace, "recovered": self.recovered,
                               "wall_seconds": round(self.wall_seconds, 2), "timeline": self.timeline.entries}
        if self.result is not None:
            out["diagnosis"] = diagnosis_to_dict(self.result.diagnosis, list(self.result_playbooks.values()))
            out.update(self.result.as_dict())
        return out

    result_playbooks: dict = field(default_factory=dict)


def run_demo(scenario: str = "memory_leak", seed: int = 0) -> DemoOutcome:
    """Run one scenario end to end; raises ``InputError`` for an unknown scenario."""
    started = time.monotonic()
    with SimRuntime(scenario, seed=seed) as sim:
        ns = sim.scenario.namespace
        sim.prefill(BASELINE_SECONDS + RECENT_SECONDS)
        settings = Settings(
            mode=Mode.ACT,
            kubernetes=KubernetesSettings(host=sim.kube_url, namespaces=(ns,)),
            loop=LoopSettings(baseline_seconds=BASELINE_SECONDS, recent_seconds=RECENT_SECONDS,
                              step_seconds=sim.step, interval_seconds=CYCLE_SECONDS),
            policy=PolicySettings(),
        )
        kube = KubeClient.for_host(sim.kube_url)
        parts = build_parts(settings, kube=kube, prometheus=PrometheusClient(sim.prom_url), clock=sim.clock,
                            sleep=sim.advance, topology=sim.scenario.topology,
                            journal=MemoryJournal(sim.clock))
        pipeline = parts.pipeline
        timeline = Timeline(origin=sim.clock.now())
        workloads = sorted({d["metadata"]["name"] for d in kube.list_deployments(ns)})
        timeline.add(sim.clock.now(), "setup",
                     f"simulated cluster up: {len(workloads)} workloads in namespace {ns} "
                     f"({', '.join(workloads)}); {BASELINE_SECONDS / 60:.0f} min of healthy history")
        sim.inject()
        timeline.add(sim.clock.now(), "fault", f"injected {scenario} into {ns}/{sim.scenario.fault_workload}")

        tracker = IncidentTracker(sim.clock, namespaces=(ns,))
        result = None
        told: tuple | None = None  # the last decision shown: a repeated notify-only answer is not shown again
        while sim.clock.now() - timeline.origin < GIVE_UP_AFTER:
            sim.advance(CYCLE_SECONDS)
            observations = pipeline.observe(ns)
            anomalies = pipeline.detect(observations)
            if not anomalies:
                continue
            updates = tracker.add_anomalies(anomalies)
            worst = max(anomalies, key=lambda a: a.severity)
            update = next(u for u in updates if u.incident.target == worst.target)
            incident = update.incident
            seen_at = sim.clock.now()
            result = pipeline.handle(incident, observations)
            choice = (result.diagnosis.chosen.target, result.diagnosis.chosen.playbook)
            if choice != told:
                _describe_anomalies(timeline, seen_at, anomalies)
                verb = "opened" if told is None else "updated"
                timeline.add(seen_at, "incident", f"{verb} {incident.id} for {incident.target}")
                _describe_result(timeline, result)
                told = choice
            if not _notified_only(result, pipeline.playbooks):
                break
            # A person was told; the agent keeps watching and acts once an acting playbook fits.
        else:
            timeline.add(sim.clock.now(), "detect", "no anomaly detected: giving up")
        recovered = bool(result and result.execution and result.execution.state in RECOVERED_STATES)
        outcome = DemoOutcome(scenario, ns, timeline, result, recovered, time.monotonic() - started)
        outcome.result_playbooks = dict(pipeline.playbooks)
        kube.close()
        return outcome


def _notified_only(result: PipelineResult, playbooks) -> bool:
    """True when the pass chose to notify a person (``escalate``; a repeat is held by the cooldown): the demo then
    keeps watching."""
    book = playbooks.get(result.diagnosis.chosen.playbook)
    return book is not None and not book.acts


def _describe_anomalies(timeline: Timeline, now: float, anomalies: list[Anomaly]) -> None:
    for anomaly in sorted(anomalies, key=lambda a: -a.severity)[:4]:
        if anomaly.summary:
            timeline.add(now, "detect", anomaly.summary)
            continue
        top = ", ".join(f"{signal} {weight:.0%}" for signal, weight in anomaly.contributors[:3])
        timeline.add(now, "detect", f"{anomaly.target.name}: LOF score {anomaly.score:.2f} over threshold "
                                    f"{anomaly.threshold:.2f} since t={anomaly.start - timeline.origin:+.0f}s; "
                                    f"driven by {top}")


def _describe_result(timeline: Timeline, result: PipelineResult) -> None:
    diagnosis = result.diagnosis
    chosen = diagnosis.chosen
    ranking = ", ".join(f"{wl} {score:.2f}" for wl, score in diagnosis.ranking[:4])
    end = result.observations.end
    timeline.add(end, "diagnose", f"root cause {chosen.target.name}: {chosen.fault.value} "
                                  f"(confidence {chosen.confidence:.2f}, from {chosen.source}); ranking: {ranking}")
    for evidence in chosen.evidence[:6]:
        timeline.add(end, "why", evidence.summary)
    decision = result.decision
    if isinstance(decision, Blocked):
        timeline.add(end, "plan", f"blocked: {decision.reason} ({decision.detail})")
        return
    timeline.add(end, "plan", f"{decision.playbook} on {decision.target} (plan {decision.id}, mode "
                              f"{decision.mode.value})", params=decision.params)
    execution = result.execution
    if execution is None:
        return
    if execution.changes:
        change = execution.changes[0]
        timeline.add(_state_time(execution, "executing", end), "act", change.description,
                     before=change.before, after=change.after)
    verification = execution.verification or {}
    readings = verification.get("readings", [])
    if readings:
        last = readings[-1]
        levels = ", ".join(f"{signal} {_fmt(result.before.get(signal))} -> {_fmt(value)}"
                           for signal, value in last["values"].items())
        timeline.add(last["ts"], "verify", f"{verification.get('outcome', '?')}: {levels}")
    for ts, state, note in execution.history:
        if note.startswith("restore check") or (state == ExecutionState.RESTORED.value
                                                 and not note.startswith("restored: ")):
            timeline.add(ts, "restore", note)
    undo_ts = _state_time(execution, ExecutionState.RESTORED.value,
                          _state_time(execution, ExecutionState.ROLLED_BACK.value, end))
    for change in execution.changes[1:]:  # the undo: after a worse verification, or the restore
        timeline.add(undo_ts, "undo", change.description, before=change.before, after=change.after)
    final_ts = execution.history[-1][0] if execution.history else end
    timeline.add(final_ts, "result", f"{execution.state.value}" + _RESULT_NOTE.get(execution.state, ""))


_RESULT_NOTE = {ExecutionState.SUCCEEDED: ": service recovered",
                ExecutionState.RESTORED: ": service recovered, then the original routing came back"}


def _state_time(execution, state: str, default: float) -> float:
    return next((ts for ts, s, _ in execution.history if s == state), default)


def _fmt(value: float | None) -> str:
    if value is None:
        return "?"
    magnitude = abs(value)
    if magnitude >= 1024 ** 2:
        return f"{value / 1024 ** 2:.0f}Mi"
    if magnitude >= 100:
        return f"{value:.0f}"
    return f"{value:.3g}"


def render_text(outcome: DemoOutcome) -> str:
    """The timeline for people: one line per entry, ``mm:ss`` of simulated time since the fault."""
    lines = [f"aiops demo: scenario {outcome.scenario} on the simulated cluster (namespace {outcome.namespace})", ""]
    for entry in outcome.timeline.entries:
        t = entry["t"]
        sign = "-" if t < 0 else " "
        minutes, seconds = divmod(abs(int(t)), 60)
        lines.append(f"{sign}{minutes:02d}:{seconds:02d}  {entry['stage']:<9} {entry['message']}")
    lines.append("")
    verdict = "RECOVERED" if outcome.recovered else "NOT RECOVERED"
    lines.append(f"{verdict} (simulated time shown; took {outcome.wall_seconds:.1f}s of real time)")
    return "\n".join(lines)
