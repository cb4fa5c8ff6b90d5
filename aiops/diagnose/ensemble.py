"""The ensemble: runs the analyzers and combines their hypotheses into one ``Diagnosis``.

The combination is deliberately simple:

1. Guard: a hypothesis survives only if its playbook is in the allowed list, its target is in the incident's
   namespace and is a workload that was observed (or the incident target). Anything else is dropped and
   recorded, never executed, so an analyzer (or text it read) cannot steer an action elsewhere.
2. Reinforce: hypotheses about the same (workload, fault) combine by a weighted noisy-OR over analyzers,
   ``1 - prod(1 - w_a * c_a)``, taking each analyzer's best confidence once (two rules of one analyzer saying
   the same thing do not compound). Weights: ``ANALYZER_WEIGHT``.
3. Decide: if rules matched, they decide fault and playbook; when they name different workloads, the statistical
   ranking picks the workload (the best-ranked one among those the rules name). Without rule matches the
   strongest combined group wins.
4. Calibrate: the combined confidence goes through ``calibration`` (``aiops.diagnose.calibration``, fitted on the
   scenario suite; identity when absent) so it estimates how often such a choice is right.
5. Refuse: below ``min_confidence`` (on the calibrated value) the choice is ``escalate`` on the incident target,
   fault ``unknown``.
6. Corroborate: a language model alone never triggers an acting playbook (text it read may be an injected
   instruction). The hypothesis that names the playbook (the *lead* of the chosen group) is the rules' when they
   are in it, else the strongest of the evidence analyzers (``EVIDENCE_ANALYZERS``: the statistical ranking and
   the rule engine), and only when neither is in the group the model's. An acting playbook led by a model stands
   only if an evidence analyzer *agrees*: a hypothesis of its on the same workload proposing the same playbook
   (for any fault). Agreement on the fault alone is agreement too, but then the group holds that analyzer, so it
   leads and its own playbook is the one chosen. Otherwise the choice is ``escalate`` (target, fault and
   confidence kept) and the evidence says why. Any analyzer not in ``EVIDENCE_ANALYZERS`` (the GLM, a plugged-in
   one) counts as a model.
7. Doubt: hypotheses an analyzer could not check for want of uncollected evidence (``Hypothesis.missing``) are
   never chosen. One that, confirmed, would change the decision (steps 2-3 run again with it) lowers the chosen
   confidence (before step 5), keeps it from acting and is reported (``not_ruled_out``; see
   ``aiops.diagnose.not_ruled_out``). With every source collected there are none.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from typing import Any, Sequence

from aiops.diagnose.calibration import Calibration
from aiops.diagnose.faults import ESCALATE
from aiops.diagnose.not_ruled_out import doubt, rivals, shared_confidence
from aiops.domain.diagnosis import Diagnosis, Evidence, Fault, Hypothesis
from aiops.domain.incident import Incident
from aiops.domain.observations import Observations, SourceGap
from aiops.domain.playbook import Playbook
from aiops.domain.protocols import Analyzer

ANALYZER_WEIGHT: dict[str, float] = {"stats": 0.8, "rules": 1.0, "glm": 0.8}
DEFAULT_WEIGHT = 0.8
RULES = "rules"
# Analyzers that read the evidence by fixed, reviewable logic; anything else (a language model) may inform a
# decision but never be the only reason to act.
EVIDENCE_ANALYZERS = frozenset({"stats", RULES})


def _brief(h: Hypothesis) -> dict[str, Any]:
    return {"workload": h.target.name, "fault": h.fault.value, "playbook": h.playbook,
            "confidence": round(h.confidence, 4)}


class Diagnoser:
    """Runs ``analyzers`` and combines their hypotheses (see the module docstring for how)."""

    def __init__(self, analyzers: Sequence[Analyzer], min_confidence: float = 0.5,
                 weights: dict[str, float] | None = None, calibration: Calibration | None = None) -> None:
        self.analyzers = list(analyzers)
        self.min_confidence = min_confidence
        self.weights = {**ANALYZER_WEIGHT, **(weights or {})}
        self.calibration = calibration or Calibration()

    def diagnose(self, incident: Incident, observations: Observations,
                 playbooks: Sequence[Playbook]) -> Diagnosis:
        """The diagnosis of ``incident``: every surviving hypothesis, the ranking, and the chosen one."""
        summaries: dict[str, Any] = {"stats": None, "rules": None, "glm": None}
        kept: list[Hypothesis] = []
        unchecked: list[Hypothesis] = []
        for analyzer in self.analyzers:
            try:
                found = list(analyzer.analyze(incident, observations, playbooks))
            except Exception as exc:  # noqa: BLE001 - one broken analyzer (e.g. an LLM endpoint) must not stop the rest
                summaries[analyzer.name] = {"error": f"{type(exc).__name__}: {exc}"}
                continue
            good, dropped = self._guard(found, incident, observations, playbooks)
            unchecked += [h for h in good if h.missing]
            good = [h for h in good if not h.missing]
            kept += good
            # An analyzer that validates its own output (the GLM) reports what it refused as ``last.dropped``.
            refused = list(getattr(getattr(analyzer, "last", None), "dropped", None) or ())
            summaries[analyzer.name] = {"hypotheses": [_brief(h) for h in good], "dropped": refused + dropped}
        ranking = self._ranking(kept, incident, observations)
        acting = frozenset(p.name for p in playbooks if p.acts)
        gaps = observations.not_collected
        chosen, open_ = self._choose(kept, ranking, incident, topology_known=observations.topology.known,
                                     acting=acting, unchecked=unchecked, gaps=gaps)
        return Diagnosis(incident=incident, hypotheses=tuple(sorted(kept, key=lambda h: -h.confidence)),
                         chosen=chosen, ranking=tuple(ranking), analyzers=summaries, not_collected=gaps,
                         not_ruled_out=tuple(open_))

    # -- 1. guard --------------------------------------------------------------------------------------------
    @staticmethod
    def _guard(found: list[Hypothesis], incident: Incident, observations: Observations,
               playbooks: Sequence[Playbook]) -> tuple[list[Hypothesis], list[dict[str, Any]]]:
        allowed = {p.name for p in playbooks}
        namespace = incident.target.namespace
        workloads = set(observations.workloads) | {incident.target.name}
        good, dropped = [], []
        for h in found:
            reason = ""
            if h.playbook not in allowed:
                reason = f"playbook {h.playbook!r} is not allowed"
            elif h.target.namespace != namespace:
                reason = f"target namespace {h.target.namespace!r} is not the incident's {namespace!r}"
            elif h.target.name not in workloads:
                reason = f"target {h.target.name!r} was not observed"
            elif not 0.0 <= h.confidence <= 1.0:
                reason = f"confidence {h.confidence} outside [0, 1]"
            if reason:
                dropped.append({**_brief(h), "reason": reason})
            else:
                good.append(h)
        return good, dropped

    # -- ranking ---------------------------------------------------------------------------------------------
    def _ranking(self, kept: list[Hypothesis], incident: Incident,
                 observations: Observations) -> list[tuple[str, float]]:
        for h in kept:
            for ev in h.evidence:
                if ev.kind == "ranking" and "ranking" in ev.data:
                    return [(str(w), float(s)) for w, s in ev.data["ranking"]]
        for analyzer in self.analyzers:  # no stats hypothesis carried it (nothing moved): ask directly
            rank = getattr(analyzer, "ranking", None)
            if callable(rank):
                try:
                    return [(str(w), float(s)) for w, s in rank(incident, observations)]
                except Exception:  # noqa: BLE001 - the ranking is informative only
                    return []
        return []

    # -- 2./3./4. reinforce, decide, refuse ------------------------------------------------------------------
    def _groups(self, kept: list[Hypothesis]) -> dict[tuple[str, Fault], dict[str, Hypothesis]]:
        """(workload, fault) -> {analyzer: its most confident hypothesis for it}."""
        groups: dict[tuple[str, Fault], dict[str, Hypothesis]] = defaultdict(dict)
        for h in kept:
            per = groups[(h.target.name, h.fault)]
            if h.source not in per or h.confidence > per[h.source].confidence:
                per[h.source] = h
        return groups

    def _combined(self, per: dict[str, Hypothesis]) -> float:
        miss = 1.0
        for source, h in per.items():
            miss *= 1.0 - min(1.0, self.weights.get(source, DEFAULT_WEIGHT) * h.confidence)
        return 1.0 - miss

    def _lead(self, per: dict[str, Hypothesis]) -> Hypothesis:
        """The hypothesis of a group whose playbook is chosen: the rules', else the strongest evidence analyzer's,
        else (a group only models proposed) the strongest one."""
        if RULES in per:
            return per[RULES]
        backed = [h for source, h in per.items() if source in EVIDENCE_ANALYZERS] or list(per.values())
        return max(backed, key=lambda h: self.weights.get(h.source, DEFAULT_WEIGHT) * h.confidence)

    def _pick(self, kept: Sequence[Hypothesis], ranking: list[tuple[str, float]],
              topology_known: bool) -> tuple[tuple[str, Fault] | None, dict, str, str]:
        """Steps 2 and 3: the chosen (workload, fault) (None without candidates), the groups, how it was decided,
        and a rival workload it cannot be told from (no call graph), if any."""
        groups = self._groups(list(kept))
        ambiguous = ""
        scored = {key: self._combined(per) for key, per in groups.items()}
        with_rules = [key for key, per in groups.items() if RULES in per]
        candidates = list(scored)
        decided_by = "strongest combined hypothesis"
        if with_rules:
            targets = {w for w, _ in with_rules}
            candidates = with_rules
            decided_by = "rules"
            if len(targets) > 1 and ranking:
                rank = dict(ranking)
                best = max(sorted(targets), key=lambda w: rank.get(w, 0.0))
                candidates = [k for k in with_rules if k[0] == best]
                decided_by = f"rules (the stats ranking chose {best} among {', '.join(sorted(targets))})"
                if not topology_known:
                    ambiguous = _tied_rival(best, with_rules, groups, rank)
        if not candidates:
            return None, groups, decided_by, ambiguous
        key = max(sorted(candidates, key=lambda k: (k[0], k[1].value)), key=lambda k: scored[k])
        return key, groups, decided_by, ambiguous

    def _deciding(self, unchecked: Sequence[Hypothesis], kept: Sequence[Hypothesis],
                  ranking: list[tuple[str, float]], topology_known: bool,
                  decision: tuple[tuple[str, Fault], str] | None) -> list[Hypothesis]:
        """Step 7: the unchecked hypotheses that, had their evidence been read and confirmed them (each
        (workload, fault) at a time), would change ``decision`` ((workload, fault), playbook)."""
        by_group: dict[tuple[str, Fault], list[Hypothesis]] = defaultdict(list)
        for h in unchecked:
            by_group[(h.target.name, h.fault)].append(h)
        out: list[Hypothesis] = []
        for members in by_group.values():
            key, groups, _, _ = self._pick([*kept, *(replace(h, missing=()) for h in members)], ranking,
                                           topology_known)
            if key is not None and (key, self._lead(groups[key]).playbook) != decision:
                out += members
        return out

    def _choose(self, kept: list[Hypothesis], ranking: list[tuple[str, float]], incident: Incident,
                acting: frozenset[str], topology_known: bool = True, unchecked: Sequence[Hypothesis] = (),
                gaps: tuple[SourceGap, ...] = ()) -> tuple[Hypothesis, list[Hypothesis]]:
        """The chosen hypothesis, and the unchecked ones that could not be ruled out against it."""
        key, groups, decided_by, ambiguous = self._pick(kept, ranking, topology_known)
        if key is None:
            open_ = rivals(self._deciding(unchecked, kept, ranking, topology_known, None),
                           incident.target.name, Fault.UNKNOWN, ESCALATE)
            return self._escalate(incident, 0.0, "no analyzer produced an allowed hypothesis",
                                  (doubt(open_, gaps),) if open_ else ()), open_
        per = groups[key]
        lead = self._lead(per)
        open_ = rivals(self._deciding(unchecked, kept, ranking, topology_known, (key, lead.playbook)),
                       key[0], key[1], lead.playbook)
        doubts = (doubt(open_, gaps),) if open_ else ()
        confidence = round(shared_confidence(self.calibration.apply(self._combined(per)), open_), 4)
        if confidence < self.min_confidence:
            return self._escalate(incident, confidence, f"best hypothesis {key[0]}/{key[1].value} has confidence "
                                  f"{confidence:.2f}, below {self.min_confidence:.2f}", doubts + lead.evidence), open_
        evidence: list[Evidence] = [Evidence(kind="rule", summary=(
            f"{key[1].value} on {key[0]}: {', '.join(sorted(per))} agree (combined {confidence:.2f}); "
            f"decided by {decided_by}"))]
        playbook = lead.playbook
        if ambiguous and playbook != ESCALATE:
            # Without a call graph, workloads that moved together cannot be told apart (a surge reaches every
            # callee in the same scrape): acting on the wrong one is worse than asking a person.
            playbook = ESCALATE
            evidence.append(Evidence(kind="rule", summary=(
                f"escalating to a person: {key[1].value} fits {key[0]} and {ambiguous} about equally and there "
                f"is no call graph to tell which one it started in")))
        if playbook in acting and lead.source not in EVIDENCE_ANALYZERS and not _agrees(kept, key[0], playbook):
            playbook = ESCALATE
            evidence.append(Evidence(kind="rule", summary=(
                f"escalating to a person: only {lead.source} proposes {lead.playbook} on {key[0]} "
                f"({key[1].value}); neither the statistical ranking nor a rule agrees, and a language model alone "
                f"never triggers an action")))
        if open_ and playbook in acting:
            playbook = ESCALATE
            evidence.append(Evidence(kind="rule", summary=(
                f"escalating to a person: {lead.playbook} would answer {key[1].value} on {key[0]}, but the evidence "
                "that tells it from the alternatives it could not rule out was not collected")))
        evidence += doubts
        seen = set()
        for source in sorted(per, key=lambda s: s != RULES):
            for ev in per[source].evidence:
                if "ranking" in ev.data:  # the whole ranking is reported on its own
                    continue
                if (ev.kind, ev.summary) not in seen:
                    seen.add((ev.kind, ev.summary))
                    evidence.append(ev)
        evidence += _detector_evidence(incident, lead.target.name, seen)
        return Hypothesis(target=lead.target, fault=key[1], playbook=playbook, confidence=confidence,
                          source="+".join(sorted(per)), evidence=tuple(evidence),
                          params=dict(lead.params) if playbook == lead.playbook else {}), open_

    @staticmethod
    def _escalate(incident: Incident, confidence: float, why: str,
                  evidence: tuple[Evidence, ...] = ()) -> Hypothesis:
        note = Evidence(kind="rule", summary=f"escalating to a person: {why}")
        return Hypothesis(target=incident.target, fault=Fault.UNKNOWN, playbook=ESCALATE, confidence=confidence,
                          source="ensemble", evidence=(note,) + tuple(evidence))


def _agrees(kept: list[Hypothesis], workload: str, playbook: str) -> bool:
    """True when an evidence analyzer proposes ``playbook`` on ``workload`` too (see the module docstring, 6.)."""
    return any(h.source in EVIDENCE_ANALYZERS and h.target.name == workload and h.playbook == playbook for h in kept)


AMBIGUOUS_MARGIN = 0.5  # a rival ranked at least half as high as the best one is a tie (no call graph)


def _tied_rival(best: str, with_rules: list[tuple[str, Fault]], groups: dict, rank: dict[str, float]) -> str:
    """Another workload the rules give the same acting fault as ``best``, ranked about as high; "" if none."""
    faults = {f for w, f in with_rules if w == best and groups[(w, f)][RULES].playbook != ESCALATE}
    top = rank.get(best, 0.0)
    rivals = sorted(w for w, f in with_rules if w != best and f in faults and rank.get(w, 0.0) >= AMBIGUOUS_MARGIN * top)
    return rivals[0] if rivals else ""


def _detector_evidence(incident: Incident, workload: str, seen: set) -> list[Evidence]:
    """The detectors' own findings on the chosen workload (e.g. a never-seen error log template), as evidence."""
    out = []
    for anomaly in incident.anomalies:
        if anomaly.target.name != workload:
            continue
        summary = anomaly.summary or (f"{anomaly.detector or 'detector'}: {workload} anomalous on {anomaly.signal} "
                                      f"(score {anomaly.score:.2f} over {anomaly.threshold:.2f})")
        if ("anomaly", summary) in seen:
            continue
        seen.add(("anomaly", summary))
        out.append(Evidence(kind="anomaly", summary=summary, workload=workload, ts=anomaly.start,
                            data={"detector": anomaly.detector, "signal": anomaly.signal,
                                  "contributors": [list(c) for c in anomaly.contributors]}))
    return out
