"""Diagnosis without acting: what ``aiops diagnose`` runs on a case folder or a live namespace.

It uses the same detector, analyzers and playbooks as the agent, and stops before the planner's side effects:
the Diagnosis JSON names the playbook the agent would run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from aiops.correlate.incidents import IncidentTracker, incident_id
from aiops.diagnose.ensemble import Diagnoser
from aiops.diagnose.report import diagnosis_to_dict, render_text
from aiops.diagnose.rules import RuleEngine
from aiops.domain.alerts import Alert
from aiops.domain.diagnosis import Diagnosis, Fault
from aiops.domain.incident import Anomaly, Incident
from aiops.domain.observations import Observations
from aiops.domain.playbook import Playbook
from aiops.domain.target import Target
from aiops.serve.pipeline import detect_window


@dataclass
class DiagnosisReport:
    """A finished offline diagnosis, plus the rule explanations when asked for."""

    diagnosis: Diagnosis
    playbooks: Sequence[Playbook]
    anomalies: list[Anomaly]
    explanation: list[dict[str, Any]] | None = None
    truth: dict | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def found_problem(self) -> bool:
        """True when the diagnosis names a fault, or one it could not rule out (exit code 1 of ``aiops diagnose``)."""
        return self.diagnosis.chosen.fault is not Fault.UNKNOWN or bool(self.diagnosis.not_ruled_out)

    def as_dict(self) -> dict[str, Any]:
        out = diagnosis_to_dict(self.diagnosis, self.playbooks)
        out["anomalies"] = [{"workload": a.target.name, "signal": a.signal, "score": round(a.score, 3),
                             "threshold": round(a.threshold, 3), "start": a.start,
                             "contributors": [[s, round(w, 3)] for s, w in a.contributors]}
                            for a in self.anomalies]
        if self.explanation is not None:
            out["explain"] = self.explanation
        if self.truth is not None:
            out["truth"] = self.truth
        return out

    def render(self) -> str:
        """The text report; with ``--explain``, every matched rule and every rule on the chosen workload (the JSON
        report has them all)."""
        text = render_text(self.diagnosis)
        if self.explanation is None:
            return text
        focus = {self.diagnosis.chosen.target.name, self.diagnosis.incident.target.name}
        shown = [m for m in self.explanation if m.get("matched") or m.get("workload") in focus]
        hidden = len(self.explanation) - len(shown)
        lines = [_explain_line(m) for m in shown] or ["  (no rule evaluated)"]
        if hidden:
            lines.append(f"  ... {hidden} unmatched rule checks on other workloads (see --format json)")
        return text + "\n\nRules:\n" + "\n".join(lines)


def _explain_line(match: Mapping[str, Any]) -> str:
    # MATCHED / no / unknown (not evaluated for want of evidence); per criterion + held, - failed, ? not evaluated.
    mark = "MATCHED" if match.get("matched") else ("unknown" if match.get("missing") else "no     ")
    why = "; ".join(f"{_sign(c)} {c.get('detail', c.get('criterion', ''))}" for c in match.get("criteria", []))
    return f"  {mark} {match.get('rule')} on {match.get('workload')}: {why}"


def _sign(criterion: Mapping[str, Any]) -> str:
    return "+" if criterion.get("matched") else ("?" if criterion.get("missing") else "-")


class OfflineDiagnostician:
    """Detect on the observations, build the incident (from alerts, else from anomalies), and diagnose it."""

    def __init__(self, diagnoser: Diagnoser, playbooks: Mapping[str, Playbook], recent_seconds: float,
                 rules: RuleEngine | None = None) -> None:
        self.diagnoser = diagnoser
        self.playbooks = playbooks
        self.recent_seconds = recent_seconds
        self.rules = rules

    def split(self, observations: Observations) -> float:
        """Baseline/recent boundary: the configured recent window, but never more than a third of the data."""
        span = observations.end - observations.start
        return observations.end - min(self.recent_seconds, span / 3)

    def detect(self, observations: Observations) -> list[Anomaly]:
        return detect_window(observations, self.split(observations))

    def incident(self, observations: Observations, alerts: Sequence[Alert], anomalies: Sequence[Anomaly]) -> Incident:
        tracker = IncidentTracker(_FixedClock(observations.end))
        opened = [u.incident for u in (tracker.ingest(a) for a in alerts if a.firing) if u.outcome == "opened"]
        by_anomaly = tracker.add_anomalies(sorted(anomalies, key=lambda a: -a.severity))
        if opened:
            incident = tracker.get(opened[0].id) or opened[0]
        elif by_anomaly:
            incident = tracker.get(by_anomaly[0].incident.id) or by_anomaly[0].incident
        else:
            ns = observations.namespace
            return Incident(incident_id(ns, "", observations.end), Target("Namespace", ns, ns), observations.end)
        return incident

    def run(self, observations: Observations, alerts: Sequence[Alert] = (), explain: bool = False,
            truth: dict | None = None) -> DiagnosisReport:
        anomalies = self.detect(observations)
        incident = self.incident(observations, alerts, anomalies)
        diagnosis = self.diagnoser.diagnose(incident, observations, list(self.playbooks.values()))
        explanation = None
        if explain and self.rules is not None:
            explanation = [m.as_dict() for m in self.rules.explain(incident, observations)]
        return DiagnosisReport(diagnosis, list(self.playbooks.values()), anomalies, explanation, truth)


class _FixedClock:
    def __init__(self, now: float) -> None:
        self._now = now

    def now(self) -> float:
        return self._now
