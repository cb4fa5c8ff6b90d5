"""The scheduled drift check: score each namespace's current model on recent data and, past the threshold, open a
``detector_drift`` incident that goes through the planner and the runner like any other (playbook
``retrain-detector``).

The incident id is made of the model name and its current version, so every check that finds the same model
drifted proposes the same plan id: the planner's cooldown and the action's idempotency then keep one retrain per
model version, however often the check runs.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any

from aiops.detect.lifecycle import max_drift
from aiops.detect.store import ModelFileError, ModelStore
from aiops.detect.workload import WorkloadDetector
from aiops.diagnose.faults import playbook_for
from aiops.domain.diagnosis import Diagnosis, Evidence, Fault, Hypothesis
from aiops.domain.incident import Anomaly, Incident
from aiops.domain.plans import ActionPlan
from aiops.domain.target import Target
from aiops.serve.pipeline import IncidentPipeline, PipelineResult
from aiops.settings import LifecycleSettings

log = logging.getLogger(__name__)

DETECTOR_KIND = "Detector"
SOURCE = "drift"


@dataclass
class DriftCheckResult:
    """One model's check: its drift per workload, and what the loop decided when it was over the threshold."""

    namespace: str
    model: str
    version: int
    score: float
    drifted: bool
    workloads: dict[str, float] = field(default_factory=dict)
    feature: str = ""
    result: PipelineResult | None = None
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"namespace": self.namespace, "model": self.model, "version": self.version, "score": self.score,
                "drifted": self.drifted, "workloads": self.workloads, "feature": self.feature,
                "error": self.error, "outcome": self.result.as_dict() if self.result else None}


def drift_incident(namespace: str, model: str, version: int, score: float, threshold: float, feature: str,
                   start: float, now: float) -> Incident:
    """The ``detector_drift`` incident of one model version (stable id: see the module docstring)."""
    target = Target(DETECTOR_KIND, namespace, model)
    digest = hashlib.sha256(f"{namespace}|{model}|{version}".encode()).hexdigest()[:16]
    anomaly = Anomaly(target=target, signal=feature or "features", score=score, threshold=threshold, start=start,
                      detector=SOURCE, summary=f"model {model} v{version}: drift {score:.2f} >= {threshold:.2f}"
                                               + (f" (most on {feature})" if feature else ""))
    return Incident(id=f"drift-{digest}", target=target, opened=now, anomalies=(anomaly,))


class DriftCheck:
    """Runs the check for every namespace in scope (see ``LifecycleSettings``)."""

    def __init__(self, pipeline: IncidentPipeline, store: ModelStore, settings: LifecycleSettings,
                 namespaces: tuple[str, ...], gauge: Any = None) -> None:
        self.pipeline = pipeline
        self.store = store
        self.settings = settings
        self.namespaces = namespaces
        self.gauge = gauge  # aiops_model_drift{model}, when the agent exposes it

    def run(self) -> list[DriftCheckResult]:
        """Check every namespace that has a saved model; returns one result per model checked."""
        out = []
        for namespace in self.namespaces:
            model = self.settings.model_name(namespace)
            try:
                if not self.store.versions(model):
                    continue
            except Exception as exc:  # noqa: BLE001 - a bad model name in the settings must not stop the others
                log.error("drift check of %s: %s", namespace, exc)
                continue
            try:
                out.append(self.check(namespace, model))
            except Exception as exc:  # noqa: BLE001 - one namespace's failure (Prometheus down) must not stop the rest
                log.exception("drift check of model %s failed", model)
                out.append(DriftCheckResult(namespace, model, 0, 0.0, False, error=f"{type(exc).__name__}: {exc}"))
        return out

    def check(self, namespace: str, model: str) -> DriftCheckResult:
        """Score ``model`` on the last ``drift_window_seconds`` of ``namespace``; act when it drifted."""
        try:
            detector, record = self.store.load(model, expected_class=WorkloadDetector)
        except ModelFileError as exc:
            log.error("drift check: cannot load model %s: %s", model, exc)
            return DriftCheckResult(namespace, model, 0, 0.0, False, error=str(exc))
        now = self.pipeline.clock.now()
        start = now - self.settings.drift_window_seconds
        # Drift reads metrics only: skip the pod logs and events an ``ObservationCollector`` would also fetch.
        source = getattr(self.pipeline.collector, "metrics", None) or self.pipeline.collector
        observations = source.collect(namespace, start, now)
        reports = detector.drift(observations.signals, start, now)  # type: ignore[attr-defined]
        score = max_drift(reports)
        worst = max(reports.items(), key=lambda item: item[1].score, default=None)
        feature = f"{worst[0][1]}/{worst[1].feature}" if worst and worst[1].feature else ""
        result = DriftCheckResult(namespace, model, record.version, round(score, 6),
                                  score >= self.settings.drift_threshold,
                                  {f"{k[0]}/{k[1]}": r.score for k, r in reports.items()}, feature)
        if self.gauge is not None:
            self.gauge.labels(model=model).set(score)
        log.info("drift of model %s v%d: %.3f", model, record.version, score)
        if result.drifted:
            incident = drift_incident(namespace, model, record.version, score, self.settings.drift_threshold,
                                      feature, start, now)
            result.result = self.act(incident, observations)
        return result

    def act(self, incident: Incident, observations) -> PipelineResult:
        """The drift incident through the planner and the runner (no analyzer to ask: the drift is measured)."""
        playbook = playbook_for(Fault.DETECTOR_DRIFT, list(self.pipeline.playbooks.values()))
        anomaly = incident.anomalies[0]
        evidence = Evidence("anomaly", anomaly.summary, data={"score": anomaly.score, "threshold": anomaly.threshold})
        hypothesis = Hypothesis(incident.target, Fault.DETECTOR_DRIFT, playbook, 1.0, SOURCE, (evidence,))
        diagnosis = Diagnosis(incident, (hypothesis,), hypothesis, analyzers={SOURCE: {"score": anomaly.score}})
        decision = self.pipeline.decide(diagnosis)
        result = PipelineResult(incident, observations, diagnosis, decision)
        if isinstance(decision, ActionPlan):
            result.execution = self.pipeline.runner.run(decision, {}, None)
        else:
            log.info("retrain blocked: %s (%s)", decision.reason, decision.detail)
        return result
