"""One incident through the loop: collect -> detect -> diagnose -> plan -> execute -> verify.

The same path serves the webhook (an alert opened the incident), the scheduled loop (a detector did), the CLI's
``diagnose`` (stops after the diagnosis) and the demo. Each step is a method so callers can stop early.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping

from aiops.detect.drift import DriftReport
from aiops.detect.logs import LogAnomalyDetector
from aiops.detect.workload import WorkloadDetector
from aiops.diagnose.ensemble import Diagnoser
from aiops.domain.diagnosis import Diagnosis
from aiops.domain.incident import Anomaly, Incident
from aiops.domain.observations import Observations
from aiops.domain.plans import ActionPlan, Blocked, Execution
from aiops.domain.playbook import Playbook
from aiops.domain.protocols import Clock, Collector
from aiops.remediate.planner import ActionHistory, PlanPolicy, plan
from aiops.remediate.runner import PlaybookRunner
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
                "execution": self.execution.as_dict() if self.execution else None}


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


class IncidentPipeline:
    """Runs incidents through the loop with one set of parts (collector, diagnoser, playbooks, policy, runner)."""

    def __init__(self, *, collector: Collector, diagnoser: Diagnoser, playbooks: Mapping[str, Playbook],
                 policy: PlanPolicy, runner: PlaybookRunner, history: ActionHistory, clock: Clock,
                 window: LoopSettings, detector_factory: Callable[[], WorkloadDetector] = WorkloadDetector) -> None:
        self.collector = collector
        self.diagnoser = diagnoser
        self.playbooks = playbooks
        self.policy = policy
        self.runner = runner
        self.history = history
        self.clock = clock
        self.window = window
        self.detector_factory = detector_factory

    # --- the steps ---
    def observe(self, namespace: str, now: float | None = None) -> Observations:
        """Baseline plus recent window of ``namespace``, ending now."""
        end = self.clock.now() if now is None else now
        return self.collector.collect(namespace, end - self.window.baseline_seconds - self.window.recent_seconds, end)

    def split(self, observations: Observations) -> float:
        """Where the baseline ends and the recent window starts."""
        return observations.end - self.window.recent_seconds

    def detect(self, observations: Observations) -> list[Anomaly]:
        """Fit on the baseline part, score the recent part."""
        return detect_window(observations, self.split(observations), self.detector_factory)

    def detect_and_drift(self, observations: Observations) -> tuple[list[Anomaly], dict[tuple[str, str], DriftReport]]:
        """``detect`` plus per-workload drift reports (what the scheduled loop exposes as metrics)."""
        return detect_and_drift_window(observations, self.split(observations), self.detector_factory)

    def diagnose(self, incident: Incident, observations: Observations) -> Diagnosis:
        return self.diagnoser.diagnose(incident, observations, list(self.playbooks.values()))

    def decide(self, diagnosis: Diagnosis) -> ActionPlan | Blocked:
        return plan(diagnosis, self.playbooks, self.policy, self.history, self.clock.now())

    def execute(self, decision: ActionPlan, observations: Observations) -> tuple[Execution, dict[str, float]]:
        playbook = self.playbooks[decision.playbook]
        signals = playbook.verify.signals
        before = latest_levels(observations, decision.target.name, signals)
        baseline = baseline_levels(observations, decision.target.name, signals, self.split(observations))
        return self.runner.run(decision, before, baseline), before

    # --- the whole pass ---
    def handle(self, incident: Incident, observations: Observations | None = None) -> PipelineResult:
        """Diagnose ``incident`` and, when the planner allows, act and verify."""
        if observations is None:
            observations = self.observe(incident.target.namespace)
        if not incident.anomalies:
            incident = replace(incident, anomalies=tuple(self.detect(observations)))
        diagnosis = self.diagnose(incident, observations)
        decision = self.decide(diagnosis)
        result = PipelineResult(incident, observations, diagnosis, decision)
        extra = {"incident": incident.id}
        if isinstance(decision, Blocked):
            log.info("plan blocked: %s (%s)", decision.reason, decision.detail, extra=extra)
            return result
        extra["plan"] = decision.id
        log.info("executing %s on %s (mode %s)", decision.playbook, decision.target, decision.mode.value,
                 extra=extra)
        with log_context(incident=incident.id, plan=decision.id):
            result.execution, result.before = self.execute(decision, observations)
        log.info("execution ended %s", result.execution.state.value, extra=extra)
        return result
