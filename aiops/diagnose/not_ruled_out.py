"""Alternatives the evidence could not rule out, and what they do to the chosen hypothesis.

An analyzer that cannot check a hypothesis because a source of evidence was not collected (a rule waiting on the
events, the ranking's guess had there been a rollout) returns it marked ``missing``. Such a hypothesis is a *rival*
of the chosen one when confirming it would change the decision (the ensemble's ``_deciding``: a rule that matches
decides over the statistics, so an unchecked rule usually would). The decision then hinges on evidence nobody
looked at, so the ensemble

- shares the chosen confidence with the strongest rival, in proportion to their confidences:
  ``c' = c * c / (c + r)`` (a rival as sure as the choice halves it; none leaves it as it was);
- does not act on it: an acting playbook becomes ``escalate``;
- says what it could not rule out and which evidence would tell (``Diagnosis.not_ruled_out``).

An unchecked hypothesis that would not change the decision (a bad deploy under a traffic surge the rules already
explain better) changes nothing. With every source collected no hypothesis is ``missing``.
"""

from __future__ import annotations

from typing import Sequence

from aiops.domain.diagnosis import Evidence, Fault, Hypothesis
from aiops.domain.observations import SourceGap, describe_gaps

SHOWN = 3  # rivals named in the evidence line (the Diagnosis JSON has them all)


def rivals(unchecked: Sequence[Hypothesis], workload: str, fault: Fault, playbook: str) -> list[Hypothesis]:
    """The unchecked hypotheses naming something else than the answer (``workload``, ``fault``, ``playbook``): the
    most confident one per (workload, fault, playbook), most confident first."""
    best: dict[tuple[str, Fault, str], Hypothesis] = {}
    for h in unchecked:
        key = (h.target.name, h.fault, h.playbook)
        if key != (workload, fault, playbook) and (key not in best or h.confidence > best[key].confidence):
            best[key] = h
    return sorted(best.values(), key=lambda h: (-h.confidence, h.target.name, h.fault.value))


def shared_confidence(confidence: float, found: Sequence[Hypothesis]) -> float:
    """``confidence`` shared with the strongest rival (see the module docstring)."""
    if not found or confidence <= 0:
        return confidence
    strongest = max(h.confidence for h in found)
    return confidence * confidence / (confidence + strongest)


def doubt(found: Sequence[Hypothesis], gaps: Sequence[SourceGap]) -> Evidence:
    """What could not be ruled out, and for want of which evidence."""
    needed = {source for h in found for source in h.missing}
    named = ", ".join(f"{h.fault.value} on {h.target.name} ({h.source} {h.confidence:.2f})" for h in found[:SHOWN])
    more = f" and {len(found) - SHOWN} more" if len(found) > SHOWN else ""
    unread = describe_gaps(tuple(g for g in gaps if g.source in needed)) or ", ".join(sorted(needed))
    return Evidence(kind="rule", summary=f"could not rule out {named}{more}: not collected: {unread}",
                    data={"not_ruled_out": [brief(h) for h in found]})


def brief(h: Hypothesis) -> dict:
    """One rival in the Diagnosis JSON: what it claims, who says so, and which evidence would tell."""
    rule = next((e.data.get("rule") for e in h.evidence if e.data.get("rule")), None)
    out = {"workload": h.target.name, "fault": h.fault.value, "playbook": h.playbook,
           "confidence": round(h.confidence, 4), "source": h.source, "needs": list(h.missing)}
    if rule:
        out["rule"] = rule
    return out
