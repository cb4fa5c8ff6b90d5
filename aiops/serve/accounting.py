"""What one pass of the loop tells the agent's metrics: confidence per analyzer, action time, verification outcome,
detector drift, and which models are in use."""

from __future__ import annotations

import hashlib
import json
from typing import Iterable, Mapping

from aiops.detect.drift import DriftReport
from aiops.detect.store import library_versions
from aiops.detect.workload import WorkloadDetector
from aiops.diagnose.calibration import Calibration
from aiops.domain.diagnosis import Diagnosis
from aiops.domain.plans import Execution, ExecutionState
from aiops.serve.metrics import AgentMetrics
from aiops.serve.pipeline import PipelineResult
from aiops.settings import GlmSettings

# The chosen hypothesis's confidence is observed under this analyzer label.
ENSEMBLE = "ensemble"


def count_diagnosis(metrics: AgentMetrics, diagnosis: Diagnosis) -> None:
    """Observe each analyzer's best hypothesis confidence, and the chosen one's as ``analyzer="ensemble"``.

    Combined hypotheses (source ``rules+stats``) are the ensemble's work, not an analyzer's, and are left out.
    """
    best: dict[str, float] = {}
    for hypothesis in diagnosis.hypotheses:
        source = hypothesis.source
        if "+" in source or source == ENSEMBLE:
            continue
        best[source] = max(best.get(source, 0.0), hypothesis.confidence)
    for source, confidence in best.items():
        metrics.diagnosis_confidence.labels(analyzer=source).observe(confidence)
    metrics.diagnosis_confidence.labels(analyzer=ENSEMBLE).observe(diagnosis.chosen.confidence)


def action_seconds(execution: Execution) -> float | None:
    """Time from entering ``executing`` to the next journaled state (the apply call), on the agent's clock."""
    history = execution.history
    for index, (ts, state, _note) in enumerate(history):
        if state == ExecutionState.EXECUTING.value and index + 1 < len(history):
            return max(0.0, history[index + 1][0] - ts)
    return None


def count_execution(metrics: AgentMetrics, execution: Execution) -> None:
    """Observe the action's duration and the verification outcome, when the plan got that far."""
    seconds = action_seconds(execution)
    if seconds is not None:
        metrics.action_seconds.observe(seconds)
    count_verification(metrics, execution)


def count_verification(metrics: AgentMetrics, execution: Execution) -> None:
    """Count the verification outcome, when the plan was verified in the run that returned ``execution`` (a plan
    rebuilt from the journal carries no verification of an earlier run, so none is counted twice)."""
    outcome = (execution.verification or {}).get("outcome")
    if outcome:
        metrics.verifications.labels(outcome=str(outcome)).inc()


def count_attempts(metrics: AgentMetrics, result: PipelineResult) -> None:
    """Count what each attempt of one pass ended in: the plan's state, its action time and verification, or the
    guard that blocked it. Earlier attempts (a first playbook that left the fault in place, before the second one
    or the escalation) count too: they acted and were verified."""
    attempt: PipelineResult | None = result
    while attempt is not None:
        if attempt.execution is not None:
            metrics.plans.labels(state=attempt.execution.state.value).inc()
            count_execution(metrics, attempt.execution)
        else:
            metrics.plans_blocked.labels(reason=attempt.decision.reason).inc()
        attempt = attempt.first


def count_resumed(metrics: AgentMetrics, executions: Iterable[Execution]) -> None:
    """Count plans a resume moved on (an approved plan acting, a restarted agent finishing one): the final state
    each reached (a plan still unfinished is resumed at every poll: counted once, when it ends), and the
    verification when one was made."""
    for execution in executions:
        if execution.state.final:
            metrics.plans.labels(state=execution.state.value).inc()
        count_verification(metrics, execution)


def count_drift(metrics: AgentMetrics, reports: Mapping[tuple[str, str], DriftReport]) -> None:
    """Set the drift gauge of every reported workload and the number of drifted ones."""
    for (namespace, workload), report in reports.items():
        metrics.detector_drift.labels(namespace=namespace, workload=workload).set(report.score)
    metrics.detector_drifted.set(sum(1 for r in reports.values() if r.drifted))


def model_versions(calibration: Calibration, glm: GlmSettings) -> dict[str, str]:
    """``{model: version}`` of what the agent runs: the detector (with its library), the confidence calibration
    (a content hash, or ``identity``) and the GLM analyzer (its model, or ``none``)."""
    versions = {"detector": f"{WorkloadDetector.name}/pyod-{library_versions().get('pyod', 'missing')}"}
    if calibration.identity:
        versions["calibration"] = "identity"
    else:
        blob = json.dumps([calibration.xs, calibration.ys]).encode()
        versions["calibration"] = "sha256:" + hashlib.sha256(blob).hexdigest()[:12]
    if glm.backend == "transformers":
        versions["glm"] = f"transformers:{glm.model_path.name if glm.model_path else '?'}"
    elif glm.backend == "openai":
        versions["glm"] = f"openai:{glm.model}"
    else:
        versions["glm"] = "none"
    return versions


def set_model_info(metrics: AgentMetrics, versions: Mapping[str, str]) -> None:
    """Expose ``versions`` as ``aiops_model_info{model, version} 1``."""
    for model, version in versions.items():
        metrics.model_info.labels(model=model, version=version).set(1)
