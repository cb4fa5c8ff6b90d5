"""``aiops demo``: the closed loop on the built-in simulated cluster, told as a timeline while it happens.

The simulator runs in-process on loopback ports (a Kubernetes REST API and a small Prometheus query API), in
simulated time so an hour of baseline and the minutes a rollout takes pass in seconds. Everything else is the real
agent code, talking to the simulator through the official ``kubernetes`` client and prometheus-api-client.

The timeline is told as it happens: each pass's diagnosis and plan when the pipeline has decided (``PassObserver``),
each step of the plan when the journal records it (act, verify, restore checks, undo), and each pass's result when
it is over. The result line says what was done and whether the service recovered; only a plan that changed
something and was verified recovered counts (an escalation to a person recovers nothing).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping

from aiops.clients.kube import KubeClient
from aiops.clients.prometheus import PrometheusClient
from aiops.correlate.incidents import IncidentTracker
from aiops.diagnose.report import diagnosis_to_dict
from aiops.domain.incident import Anomaly, Incident
from aiops.domain.plans import ActionPlan, Blocked, Execution, ExecutionState, Mode
from aiops.domain.playbook import Playbook
from aiops.domain.protocols import Clock
from aiops.remediate.journal import UNDONE_FLAG, MemoryJournal
from aiops.serve.agent import build_parts
from aiops.serve.pipeline import PipelineResult, ends_incident
from aiops.settings import KubernetesSettings, LoopSettings, PolicySettings, Settings
from aiops.sim.runtime import SimRuntime

BASELINE_SECONDS = 3600.0
RECENT_SECONDS = 600.0
CYCLE_SECONDS = 60.0
GIVE_UP_AFTER = 45 * 60.0
Echo = Callable[[str], None]


@dataclass
class Timeline:
    """What happened, in order, with simulated seconds since the fault was injected; ``echo`` (when set) gets each
    entry as a line of text the moment it is added."""

    origin: float = 0.0
    entries: list[dict[str, Any]] = field(default_factory=list)
    echo: Echo | None = None

    def add(self, now: float, stage: str, message: str, **data: Any) -> None:
        entry = {"t": round(now - self.origin, 1), "stage": stage, "message": message,
                 **({"data": data} if data else {})}
        self.entries.append(entry)
        if self.echo is not None:
            self.echo(render_entry(entry))


@dataclass
class DemoOutcome:
    """The demo's result: the timeline, the pipeline's last decisions and whether the service recovered."""

    scenario: str
    namespace: str
    timeline: Timeline
    result: PipelineResult | None
    recovered: bool
    wall_seconds: float
    result_playbooks: dict = field(default_factory=dict)
    # A person was asked to act (an escalation went out) at some point of the run.
    escalated: bool = False

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"scenario": self.scenario, "namespace": self.namespace, "recovered": self.recovered,
                               "escalated": self.escalated, "wall_seconds": round(self.wall_seconds, 2),
                               "timeline": self.timeline.entries}
        if self.result is not None:
            out["diagnosis"] = diagnosis_to_dict(self.result.diagnosis, list(self.result_playbooks.values()))
            out.update(self.result.as_dict())
        return out


def run_demo(scenario: str = "memory_leak", seed: int = 0, echo: Echo | None = None) -> DemoOutcome:
    """Run one scenario end to end, telling ``echo`` each line as it happens; raises ``InputError`` for an unknown
    scenario."""
    started = time.monotonic()
    with SimRuntime(scenario, seed=seed) as sim:
        ns = sim.scenario.namespace
        if echo is not None:
            echo(title(scenario, ns))
            echo("")
        sim.prefill(BASELINE_SECONDS + RECENT_SECONDS)
        timeline = Timeline(origin=sim.clock.now(), echo=echo)
        narrator = Narrator(timeline)
        settings = Settings(
            mode=Mode.ACT,
            kubernetes=KubernetesSettings(host=sim.kube_url, namespaces=(ns,)),
            loop=LoopSettings(baseline_seconds=BASELINE_SECONDS, recent_seconds=RECENT_SECONDS,
                              step_seconds=sim.step, interval_seconds=CYCLE_SECONDS),
            policy=PolicySettings(),
        )
        kube = KubeClient.for_host(sim.kube_url)
        try:
            parts = build_parts(settings, kube=kube, prometheus=PrometheusClient(sim.prom_url), clock=sim.clock,
                                sleep=sim.advance, topology=sim.scenario.topology,
                                journal=NarratedJournal(sim.clock, narrator.record))
            pipeline = parts.pipeline
            pipeline.observer = narrator
            workloads = sorted({d["metadata"]["name"] for d in kube.list_deployments(ns)})
            timeline.add(sim.clock.now(), "setup",
                         f"simulated cluster up: {len(workloads)} workloads in namespace {ns} "
                         f"({', '.join(workloads)}); {BASELINE_SECONDS / 60:.0f} min of healthy history")
            sim.inject()
            timeline.add(sim.clock.now(), "fault", f"injected {scenario} into {ns}/{sim.scenario.fault_workload}")

            tracker = IncidentTracker(sim.clock, namespaces=(ns,))
            result = None
            escalated = False
            while sim.clock.now() - timeline.origin < GIVE_UP_AFTER:
                sim.advance(CYCLE_SECONDS)
                observations = pipeline.observe(ns)
                anomalies = pipeline.detect(observations)
                if not anomalies:
                    continue
                updates = tracker.add_anomalies(anomalies)
                worst = max(anomalies, key=lambda a: a.severity)
                incident = next(u for u in updates if u.incident.target == worst.target).incident
                narrator.saw(sim.clock.now(), anomalies, incident)
                result = pipeline.handle(incident, observations)
                escalated = escalated or _escalated(result)
                if ends_incident(result.execution, pipeline.playbooks):
                    _resolve(tracker, result, timeline, sim.clock.now())
                if not _notified_only(result, pipeline.playbooks):
                    break
                # A person was told; the agent keeps watching and acts once an acting playbook fits.
            else:
                timeline.add(sim.clock.now(), "detect", _giving_up(result, escalated))
            recovered = bool(result and result.execution and result.execution.recovered)
            return DemoOutcome(scenario, ns, timeline, result, recovered, time.monotonic() - started,
                               dict(pipeline.playbooks), escalated)
        finally:
            kube.close()


def _giving_up(result: PipelineResult | None, escalated: bool) -> str:
    minutes = f"{GIVE_UP_AFTER / 60:.0f} min"
    if result is None:
        return f"no anomaly detected in {minutes}: giving up"
    if escalated:
        return f"gave up watching after {minutes}: the fault is left to the person it was escalated to"
    return f"gave up watching after {minutes}"


def _resolve(tracker: IncidentTracker, result: PipelineResult, timeline: Timeline, now: float) -> None:
    """The plan fixed it: the incident is over. The result (and its diagnosis) then show the resolved incident."""
    exe = result.execution
    closed = tracker.resolve(result.incident.id, f"plan {exe.plan_id} {exe.state.value}")
    if closed is None:
        return
    result.incident = closed.incident
    result.diagnosis = replace(result.diagnosis, incident=closed.incident)
    timeline.add(now, "incident", f"resolved {closed.incident.id}: plan {exe.plan_id} ended {exe.state.value}")


def _escalated(result: PipelineResult | None) -> bool:
    """True when this pass, or an attempt before its follow-up, told a person."""
    while result is not None:
        if _told_a_person(result.execution):
            return True
        result = result.first
    return False


def _told_a_person(exe: Execution | None) -> bool:
    """A notify-only plan (``escalate``) that went out: it ends ``succeeded`` with nothing changed."""
    return exe is not None and not exe.plan.acts and exe.state is ExecutionState.SUCCEEDED


def _notified_only(result: PipelineResult, playbooks: Mapping[str, Playbook]) -> bool:
    """True when the pass chose to notify a person (``escalate``; a repeat is held by the cooldown): the demo then
    keeps watching."""
    book = playbooks.get(result.diagnosis.chosen.playbook)
    return book is not None and not book.acts


class NarratedJournal(MemoryJournal):
    """The demo's journal: each record is also handed to ``tell`` as it is written (the plan's steps, live)."""

    def __init__(self, clock: Clock, tell: Callable[[dict[str, Any]], None]) -> None:
        super().__init__(clock)
        self._tell = tell

    def _write(self, entry: dict[str, Any]) -> None:
        self._tell(entry)


class Narrator:
    """Turns a pass's decision (``decided``), its journal records (``record``) and its end (``ended``) into
    timeline entries. A pass that repeats the decision shown last (a notify-only answer held by its cooldown) is
    not shown again."""

    def __init__(self, timeline: Timeline) -> None:
        self.timeline = timeline
        self._seen: tuple[float, list[Anomaly], Incident] | None = None
        self._told: tuple | None = None  # the last decision shown
        self._quiet = False  # this pass repeats it
        self._muted: set[str] = set()  # plans of quiet passes, whose records are not shown either
        self._before: dict[str, dict[str, float]] = {}  # each plan's levels before it acted

    def saw(self, now: float, anomalies: list[Anomaly], incident: Incident) -> None:
        """What the next pass is about: shown with its decision when that is new."""
        self._seen = (now, anomalies, incident)

    def decided(self, result: PipelineResult) -> None:
        """Before anything is done: the findings and the incident (when the decision is new), the diagnosis and
        the plan."""
        plan = _plan(result.decision)
        if result.first is not None:  # a follow-up of a pass already shown
            first = result.first.diagnosis.chosen.playbook
            self.timeline.add(result.observations.end, "why", f"{first} left {result.diagnosis.chosen.fault.value} "
                                                              f"in place: trying {result.diagnosis.chosen.playbook}")
            self._plan_line(result)
            return
        choice = (result.diagnosis.chosen.target, result.diagnosis.chosen.playbook)
        self._quiet = choice == self._told
        if self._quiet:
            if plan is not None:
                self._muted.add(plan.id)
            return
        if self._seen is not None:
            now, anomalies, incident = self._seen
            _describe_anomalies(self.timeline, now, anomalies)
            verb = "opened" if self._told is None else "updated"
            self.timeline.add(now, "incident", f"{verb} {incident.id} for {incident.target}")
        self._told = choice
        _describe_diagnosis(self.timeline, result)
        self._plan_line(result)

    def _plan_line(self, result: PipelineResult) -> None:
        decision, end = result.decision, result.observations.end
        if isinstance(decision, Blocked):
            self.timeline.add(end, "plan", f"blocked: {decision.reason} ({decision.detail})")
            return
        self.timeline.add(end, "plan", f"{decision.playbook} on {decision.target} (plan {decision.id}, mode "
                                       f"{decision.mode.value})", params=decision.params)

    def ended(self, result: PipelineResult) -> None:
        """The pass is over: its result line."""
        if self._quiet and result.first is None:
            return
        exe = result.execution
        ts = exe.history[-1][0] if exe is not None and exe.history else result.observations.end
        self.timeline.add(ts, "result", result_text(result))

    def record(self, entry: dict[str, Any]) -> None:
        """One journal record, as it is written: the steps a person watches (act, verify, restore, undo)."""
        plan_id, state, note, data, ts = (entry["plan_id"], entry["state"], entry["note"], entry["data"],
                                          entry["ts"])
        if plan_id in self._muted:
            return
        if data.get("trigger") == "start":
            self._before[plan_id] = data.get("before") or {}
            return
        change = data.get("change") or {}
        if change and state == ExecutionState.VERIFYING.value:
            self.timeline.add(ts, "act", change["description"], before=change.get("before"),
                              after=change.get("after"))
        elif change and state == ExecutionState.SKIPPED.value:
            self.timeline.add(ts, "act", note)
        elif change and data.get(UNDONE_FLAG):
            self.timeline.add(ts, "undo", change["description"], before=change.get("before"),
                              after=change.get("after"))
        elif (data.get("verification") or {}).get("readings"):
            verification = data["verification"]
            last = verification["readings"][-1]
            before = self._before.get(plan_id, {})
            levels = ", ".join(f"{signal} {_fmt(before.get(signal))} -> {_fmt(value)}"
                               for signal, value in last["values"].items())
            self.timeline.add(last["ts"], "verify", f"{verification.get('outcome', '?')}: {levels}")
        elif note.startswith("restore check") or (state == ExecutionState.RESTORED.value
                                                   and data.get("trigger") == "restore"):
            self.timeline.add(ts, "restore", note)


def _plan(decision: ActionPlan | Blocked) -> ActionPlan | None:
    return decision if isinstance(decision, ActionPlan) else decision.plan


def result_text(result: PipelineResult) -> str:
    """A pass's outcome in words that tell the truth: what was done, and whether the service recovered."""
    exe = result.execution
    if exe is None:
        return f"blocked: {result.decision.reason}; nothing was changed and the service has not recovered"
    playbook, target, state = exe.plan.playbook, exe.plan.target, exe.state
    last = exe.history[-1][2] if exe.history else ""
    if _told_a_person(exe):
        return "escalated to a person: nothing was changed in the cluster and the service has not recovered"
    texts = {
        ExecutionState.SUCCEEDED: f"{playbook} on {target} worked: the service recovered"
                                  + (f"; {last}" if last.startswith("restore watch") else ""),
        ExecutionState.RESTORED: f"{playbook} on {target} worked: the service recovered, and its change was taken "
                                 "back once the service stayed healthy",
        ExecutionState.ROLLED_BACK: f"{playbook} on {target} made things worse and was undone; the service has not "
                                    "recovered",
        ExecutionState.FAILED: f"{playbook} on {target} did not fix it ({last}); the service has not recovered",
        ExecutionState.SKIPPED: f"dry-run: {playbook} on {target} was not run; nothing was changed",
        ExecutionState.AWAITING_APPROVAL: f"{playbook} on {target} waits for a person's approval; nothing was "
                                          "changed",
    }
    return f"{state.value}: " + texts.get(state, f"{last}; the service has not recovered")


def _describe_anomalies(timeline: Timeline, now: float, anomalies: list[Anomaly]) -> None:
    for anomaly in sorted(anomalies, key=lambda a: -a.severity)[:4]:
        if anomaly.summary:
            timeline.add(now, "detect", anomaly.summary)
            continue
        top = ", ".join(f"{signal} {weight:.0%}" for signal, weight in anomaly.contributors[:3])
        timeline.add(now, "detect", f"{anomaly.target.name}: LOF score {anomaly.score:.2f} over threshold "
                                    f"{anomaly.threshold:.2f} since t={anomaly.start - timeline.origin:+.0f}s; "
                                    f"driven by {top}")


def _describe_diagnosis(timeline: Timeline, result: PipelineResult) -> None:
    diagnosis = result.diagnosis
    chosen = diagnosis.chosen
    ranking = ", ".join(f"{wl} {score:.2f}" for wl, score in diagnosis.ranking[:4])
    end = result.observations.end
    timeline.add(end, "diagnose", f"root cause {chosen.target.name}: {chosen.fault.value} "
                                  f"(confidence {chosen.confidence:.2f}, from {chosen.source}); ranking: {ranking}")
    for evidence in chosen.evidence[:6]:
        timeline.add(end, "why", evidence.summary)


def _fmt(value: float | None) -> str:
    if value is None:
        return "?"
    magnitude = abs(value)
    if magnitude >= 1024 ** 2:
        return f"{value / 1024 ** 2:.0f}Mi"
    if magnitude >= 100:
        return f"{value:.0f}"
    return f"{value:.3g}"


def title(scenario: str, namespace: str) -> str:
    """The first line of the text output."""
    return f"aiops demo: scenario {scenario} on the simulated cluster (namespace {namespace})"


def render_entry(entry: Mapping[str, Any]) -> str:
    """One timeline entry for people: ``mm:ss`` of simulated time since the fault, the stage, the message."""
    t = entry["t"]
    sign = "-" if t < 0 else " "
    minutes, seconds = divmod(abs(int(t)), 60)
    return f"{sign}{minutes:02d}:{seconds:02d}  {entry['stage']:<9} {entry['message']}"


def verdict(outcome: DemoOutcome) -> str:
    """The last line: recovered or not (and when not, whether a person was asked to act)."""
    word = "RECOVERED" if outcome.recovered else \
        "NOT RECOVERED: escalated to a person" if outcome.escalated else "NOT RECOVERED"
    return f"{word} (simulated time shown; took {outcome.wall_seconds:.1f}s of real time)"


class LivePrinter:
    """Prints each line at once (flushed, so a pipe sees the timeline as it happens). When the reader goes away it
    stops printing instead of raising inside the agent's code; ``check`` raises ``BrokenPipeError`` afterwards."""

    def __init__(self) -> None:
        self.closed = False

    def __call__(self, line: str) -> None:
        if self.closed:
            return
        try:
            print(line, flush=True)
        except BrokenPipeError:
            self.closed = True

    def check(self) -> None:
        """Raise ``BrokenPipeError`` when a line could not be written."""
        if self.closed:
            raise BrokenPipeError("the output was closed")


def render_text(outcome: DemoOutcome) -> str:
    """The whole timeline at once (what ``run_demo(echo=print)`` printed line by line), then the verdict."""
    lines = [title(outcome.scenario, outcome.namespace), ""]
    lines += [render_entry(entry) for entry in outcome.timeline.entries]
    return "\n".join(lines + ["", verdict(outcome)])
