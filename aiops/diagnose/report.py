"""A diagnosis for machines (the "Diagnosis JSON" of docs/case-folder.md) and for people (a short text summary)."""

from __future__ import annotations

from typing import Any, Sequence

from aiops.diagnose.not_ruled_out import brief
from aiops.domain.diagnosis import Diagnosis
from aiops.domain.observations import describe_gaps
from aiops.domain.playbook import Playbook

ANALYZER_KEYS = ("stats", "rules", "glm")
MAX_EVIDENCE = 20


def diagnosis_to_dict(diagnosis: Diagnosis, playbooks: Sequence[Playbook] = ()) -> dict[str, Any]:
    """The ``--format json`` document. Playbook params are the playbook's defaults overlaid by the diagnosis'."""
    chosen = diagnosis.chosen
    defaults = next((dict(p.params) for p in playbooks if p.name == chosen.playbook), {})
    return {
        "incident": diagnosis.incident.as_dict(),
        "root_cause": {"namespace": chosen.target.namespace, "workload": chosen.target.name,
                       "fault": chosen.fault.value},
        "ranking": [{"workload": w, "score": round(float(s), 3)} for w, s in diagnosis.ranking],
        "playbook": {"name": chosen.playbook, "target": chosen.target.as_dict(), "params": {**defaults, **chosen.params}},
        "confidence": round(float(chosen.confidence), 3),
        "evidence": [e.as_dict() for e in chosen.evidence[:MAX_EVIDENCE]],
        "analyzers": {key: diagnosis.analyzers.get(key) for key in ANALYZER_KEYS},
        # Evidence nobody looked at, and the alternatives that needed it: unknown, not absent.
        "not_collected": [gap.as_dict() for gap in diagnosis.not_collected],
        "not_ruled_out": [brief(h) for h in diagnosis.not_ruled_out],
    }


def render_text(diagnosis: Diagnosis) -> str:
    """A few lines for a person: root cause, confidence, why, and what would be done."""
    chosen = diagnosis.chosen
    lines = [
        f"Incident {diagnosis.incident.id} on {diagnosis.incident.target}",
        f"Root cause: {chosen.target.namespace}/{chosen.target.name} - {chosen.fault.value} "
        f"(confidence {chosen.confidence:.2f}, from {chosen.source})",
        f"Playbook:   {chosen.playbook} on {chosen.target}",
    ]
    if diagnosis.ranking:
        lines.append("Ranking:    " + ", ".join(f"{w} {s:.2f}" for w, s in diagnosis.ranking[:5]))
    why = [e for e in chosen.evidence if e.kind != "ranking"][:6]
    if why:
        lines.append("Why:")
        lines += [f"  - {e.summary}" for e in why]
    others = [h for h in diagnosis.hypotheses
              if (h.target.name, h.fault) != (chosen.target.name, chosen.fault)][:3]
    if others:
        lines.append("Also considered: " + "; ".join(
            f"{h.target.name}/{h.fault.value} {h.confidence:.2f} ({h.source})" for h in others))
    if diagnosis.not_ruled_out:
        lines.append("Not ruled out: " + "; ".join(
            f"{h.target.name}/{h.fault.value} {h.confidence:.2f} ({h.source}, needs {' and '.join(h.missing)})"
            for h in diagnosis.not_ruled_out[:5]))
    if diagnosis.not_collected:
        lines.append(f"Not collected: {describe_gaps(diagnosis.not_collected)}")
    return "\n".join(lines)
