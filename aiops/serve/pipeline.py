"""One incident through the loop: collect -> detect -> diagnose -> plan -> execute -> verify.

The same path serves the webhook (an alert opened the incident), the scheduled loop (a detector did), the CLI's
``diagnose`` (stops after the diagnosis) and the demo. Each step is a method so callers can stop early.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping, Protocol

from aiops.detect.drift import DriftReport
from aiops.detect.logs import LogAnomalyDetector
from aiops.detect.workload import WorkloadDetector
from aiops.diagnose.ensemble import Diagnoser
from aiops.domain.diagnosis import Diagnosis
from aiops.domain.incident import Anomaly, Incident
from aiops.domain.observations import Observations
from aiops.domain.plans import ActionPlan, Blocked, Execution, ExecutionState, Mode
from aiops.domain.playbook import Playbook
from aiops.domain.protocols import Clock, Collector
from aiops.remediate.facts import ClusterFacts
from aiops.remediate.planner import APPROVAL_REQUIRED, FACTS_UNAVAILABLE, ActionHistory, PlanPolicy, plan
from aiops.remediate.runner import DRY_RUN_NOTE, PlaybookRunner
from aiops.remediate.silences import silence_matchers
from aiops.serve.learning import BaselineProgress, baseline_progress, blocked_while_learning
from aiops.serve.logging import log_context
from aiops.serve.probe import baseline_levels, latest_levels
from aiops.settings import LoopSettings

log = logging.getLogger(__name__)


@dataclass
class PipelineResult:
    """Everything one pass decided, for the audit trail, the CLI and the demo's timeline."""

    incident: Incident
    observations: Observations
    diagnosis: Diagnosis
    decision: ActionPlan | Blocked
    execution: Execution | None = None
    before: dict[str, float] = field(default_factory=dict)
    # When a second playbook was tried, the first attempt's result.
    first: "PipelineResult | None" = None

    @property
    def plan(self) -> ActionPlan | None:
        if isinstance(self.decision, ActionPlan):
            return self.decision
        return self.decision.plan

    def as_dict(self) -> dict[str, Any]:
        decision: dict[str, Any]
        if isinstance(self.decision, Blocked):
            decision = {"blocked": self.decision.reason, "detail": self.decision.detail,
                        "plan": self.decision.plan.as_dict() if self.decision.plan else None}
        else:
            decision = {"plan": self.decision.as_dict()}
        return {"incident": self.incident.as_dict(), "decision": decision, "before": self.before,
                "execution": self.execution.as_dict() if self.execution else None,
                "first": self.first.as_dict() if self.first else None}


def detect_window(observations: Observations, split: float,
                  detector_factory: Callable[[], WorkloadDetector] = WorkloadDetector) -> list[Anomaly]:
    """Every detector on one window: metric anomalies (fitted on ``[start, split)``, scoring ``[split, end]``) and
    log-template anomalies (never-seen or surging templates in the recent part)."""
    return _fit_and_detect(observations, split, detector_factory)[1]


def detect_and_drift_window(observations: Observations, split: float,
                            detector_factory: Callable[[], WorkloadDetector] = WorkloadDetector
                            ) -> tuple[list[Anomaly], dict[tuple[str, str], DriftReport]]:
    """``detect_window`` plus each workload's drift of the recent part from the baseline, from the same fit
    (empty when the detector keeps no drift reference)."""
    detector, anomalies = _fit_and_detect(observations, split, detector_factory)
    drift_of = getattr(detector, "drift", None)
    drift = drift_of(observations.signals, split, observations.end) if callable(drift_of) else {}
    return anomalies, drift


def _fit_and_detect(observations: Observations, split: float,
                    detector_factory: Callable[[], WorkloadDetector]) -> tuple[WorkloadDetector, list[Anomaly]]:
    detector = detector_factory()
    detector.fit(observations.signals, observations.start, split)
    anomalies = detector.detect(observations.signals, split, observations.end)
    anomalies += LogAnomalyDetector().detect(observations.logs, observations.start, split, observations.end)
    return detector, anomalies


def detect_with_model(model: WorkloadDetector, observations: Observations, split: float,
                      detector_factory: Callable[[], WorkloadDetector] = WorkloadDetector) -> list[Anomaly]:
    """``detect_window`` with a trained model (the registry's current version) for the workloads it knows; the
    others are fitted on the window's baseline as usual, so a new workload is never left unwatched."""
    known = set(model.models)
    anomalies = model.detect(observations.signals, split, observations.end)
    others = [s for s in observations.signals if (s.namespace, s.workload) not in known]
    if others:
        fallback = detector_factory()
        fallback.fit(others, observations.start, split)
        anomalies += fallback.detect(others, split, observations.end)
    anomalies.sort(key=lambda a: (-a.severity, a.target))
    anomalies += LogAnomalyDetector().detect(observations.logs, observations.start, split, observations.end)
    return anomalies


class PassObserver(Protocol):
    """Told of each pass while it runs (the demo's live timeline): ``decided`` before anything is done, ``ended``
    once the execution (or the refusal) is over. A follow-up playbook is a pass of its own (``result.first`` set)."""

    def decided(self, result: PipelineResult) -> None: ...

    def ended(self, result: PipelineResult) -> None: ...


class IncidentPipeline:
    """Runs incidents through the loop with one set of parts (collector, diagnoser, playbooks, policy, runner)."""

    def __init__(self, *, collector: Collector, diagnoser: Diagnoser, playbooks: Mapping[str, Playbook],
                 policy: PlanPolicy, runner: PlaybookRunner, history: ActionHistory, clock: Clock,
                 window: LoopSettings, detector_factory: Callable[[], WorkloadDetector] = WorkloadDetector,
                 facts: ClusterFacts | None = None, second_playbook: Mapping[str, str] | None = None) -> None:
        self.collector = collector
        self.facts = facts
        self.second_playbook = dict(second_playbook or {})
        self.diagnoser = diagnoser
        self.playbooks = playbooks
        self.policy = policy
        self.runner = runner
        self.history = history
        self.clock = clock
        self.window = window
        self.detector_factory = detector_factory
        # Optional: the registry's current model of a namespace (``lifecycle.detect_with: registry``), else None.
        self.models: Callable[[str], WorkloadDetector | None] | None = None
        self.observer: PassObserver | None = None

    # --- the steps ---
    def observe(self, namespace: str, now: float | None = None) -> Observations:
        """Baseline plus recent window of ``namespace``, ending now."""
        end = self.clock.now() if now is None else now
        return self.collector.collect(namespace, end - self.window.baseline_seconds - self.window.recent_seconds, end)

    def split(self, observations: Observations) -> float:
        """Where the baseline ends and the recent window starts."""
        return observations.end - self.window.recent_seconds

    def detect(self, observations: Observations) -> list[Anomaly]:
        """Fit on the baseline part, score the recent part (with the registry's model when one is configured)."""
        model = self.models(observations.namespace) if self.models is not None else None
        if model is not None:
            return detect_with_model(model, observations, self.split(observations), self.detector_factory)
        return detect_window(observations, self.split(observations), self.detector_factory)

    def detect_and_drift(self, observations: Observations) -> tuple[list[Anomaly], dict[tuple[str, str], DriftReport]]:
        """``detect`` plus per-workload drift reports (what the scheduled loop exposes as metrics)."""
        return detect_and_drift_window(observations, self.split(observations), self.detector_factory)

    def baseline(self, observations: Observations) -> BaselineProgress:
        """The namespace's history before the recent window, against ``loop.min_baseline_seconds``."""
        return baseline_progress(observations, self.split(observations), self.window.required_baseline_seconds)

    def diagnose(self, incident: Incident, observations: Observations) -> Diagnosis:
        return self.diagnoser.diagnose(incident, observations, list(self.playbooks.values()))

    def decide(self, diagnosis: Diagnosis) -> ActionPlan | Blocked:
        """Plan, with the cluster's facts about the target when it is in scope (never read out of scope). When
        they cannot be read, nothing acts: ``facts_unavailable``."""
        now = self.clock.now()
        target = diagnosis.chosen.target
        playbook = self.playbooks.get(diagnosis.chosen.playbook)
        if (self.facts is None or playbook is None or not playbook.acts or target.kind != "Deployment"
                or not self.policy.in_scope(target.namespace)):
            return plan(diagnosis, self.playbooks, self.policy, self.history, now)
        try:
            facts = self.facts.read(target)
        except Exception as exc:  # noqa: BLE001 - any failure to read means the guards cannot be judged
            decision = plan(diagnosis, self.playbooks, self.policy, self.history, now)
            if isinstance(decision, Blocked) and decision.reason != APPROVAL_REQUIRED:
                return decision
            candidate = decision if isinstance(decision, ActionPlan) else decision.plan
            return Blocked(FACTS_UNAVAILABLE, f"cannot read {target} to check the guards: {exc}", candidate)
        return plan(diagnosis, self.playbooks, self.policy, self.history, now, facts)

    def levels(self, decision: ActionPlan, observations: Observations) -> tuple[dict[str, float], dict[str, float]]:
        """The verify signals' levels that triggered the plan, and their baseline."""
        signals = self.playbooks[decision.playbook].verify.signals
        before = latest_levels(observations, decision.target.name, signals)
        baseline = baseline_levels(observations, decision.target.name, signals, self.split(observations))
        return before, baseline

    def execute(self, decision: ActionPlan, observations: Observations,
                incident: Incident | None = None) -> tuple[Execution, dict[str, float]]:
        before, baseline = self.levels(decision, observations)
        silence = silence_matchers(incident.alerts, decision.target.name) if incident is not None else []
        return self.runner.run(decision, before, baseline, silence), before

    # --- the whole pass ---
    def handle(self, incident: Incident, observations: Observations | None = None) -> PipelineResult:
        """Diagnose ``incident`` and, when the planner allows, act and verify."""
        if observations is None:
            observations = self.observe(incident.target.namespace)
        progress = self.baseline(observations)
        # While the namespace learns, no detector fitted on a few points adds anomalies, and nothing acts.
        if not incident.anomalies and not progress.learning:
            incident = replace(incident, anomalies=tuple(self.detect(observations)))
        diagnosis = self.diagnose(incident, observations)
        decision = blocked_while_learning(progress) if progress.learning else self.decide(diagnosis)
        result = PipelineResult(incident, observations, diagnosis, decision)
        self._decided(result)
        extra = {"incident": incident.id}
        if isinstance(decision, Blocked):
            log.info("plan blocked: %s (%s)", decision.reason, decision.detail,
                     extra={**extra, "reason": decision.reason, "plan": decision.plan.id if decision.plan else None})
            if decision.reason == APPROVAL_REQUIRED and decision.plan is not None:
                result.before, baseline = self.levels(decision.plan, observations)
                result.execution = self.runner.hold_for_approval(decision.plan, result.before, baseline,
                                                                 decision.detail)
            elif decision.plan is not None:
                self.runner.record_blocked(decision)
            self._ended(result)
            return result
        extra["plan"] = decision.id
        acting = decision.mode is Mode.ACT
        if acting:
            log.info("executing %s on %s", decision.playbook, decision.target, extra=extra)
        with log_context(incident=incident.id, plan=decision.id):
            result.execution, result.before = self.execute(decision, observations, incident)
        note = result.execution.history[-1][2] if result.execution.history else ""
        if acting:
            log.info("execution ended %s: %s", result.execution.state.value, note, extra=extra)
        else:
            # What it would have done, never "executing": the runner's dry-run note ("dry-run: would roll back ...").
            prefix = "" if note.startswith(DRY_RUN_NOTE) else f"{DRY_RUN_NOTE}: "
            log.info("%s%s; playbook %s", prefix, note, decision.playbook, extra=extra)
        self._ended(result)
        return self._maybe_second(result)

    def _decided(self, result: PipelineResult) -> None:
        if self.observer is not None:
            self.observer.decided(result)

    def _ended(self, result: PipelineResult) -> None:
        if self.observer is not None:
            self.observer.ended(result)

    def _maybe_second(self, result: PipelineResult) -> PipelineResult:
        """When the playbook left the fault in place (unchanged, worse, or undone because it made things worse),
        try the playbook ``policy.second_playbook`` names for that fault, once, and when that does not fix it
        either (or none is configured), escalate to a person. Earlier attempts are kept in ``result.first``."""
        fault = result.diagnosis.chosen.fault.value
        followups = [p for p in (self.second_playbook.get(fault), ESCALATE) if p and p in self.playbooks]
        for playbook in followups:
            exe, chosen = result.execution, result.diagnosis.chosen
            if not _left_in_place(exe) or playbook == chosen.playbook:
                continue
            diagnosis = replace(result.diagnosis, chosen=replace(
                chosen, playbook=playbook, params={},
                source=f"{chosen.source}+{'escalation' if playbook == ESCALATE else 'second_playbook'}"))
            log.info("%s left %s in place: trying %s", chosen.playbook, fault, playbook,
                     extra={"incident": result.incident.id})
            again = PipelineResult(result.incident, result.observations, diagnosis, self.decide(diagnosis))
            again.first = result
            self._decided(again)
            if isinstance(again.decision, ActionPlan):
                again.execution, again.before = self.execute(again.decision, result.observations, result.incident)
            elif again.decision.plan is not None:
                self.runner.record_blocked(again.decision)
            self._ended(again)
            result = again
        return result


ESCALATE = "escalate"


def ends_incident(exe: Execution | None, playbooks: Mapping[str, Playbook]) -> bool:
    """True when a plan's end closes its incident: it recovered the service (``Execution.recovered``: an escalation
    never does), and it owes no restore watch (a mitigation to be taken back ends the incident once it is)."""
    if exe is None or not exe.recovered:
        return False
    book = playbooks.get(exe.plan.playbook)
    return exe.state is ExecutionState.RESTORED or book is None or book.restore is None


def _left_in_place(exe: Execution | None) -> bool:
    """True when an execution acted and verification says the fault is still there."""
    if exe is None:
        return False
    return exe.state.value == "rolled_back" or (
        exe.state.value == "failed" and exe.verification.get("outcome") in ("unchanged", "worse"))
