"""Statistical root-cause ranking: which workload moved first and most (in the spirit of BARO and N-Sigma).

Per workload and signal, ``baseline.measure`` gives a robust z of the recent window against the baseline part of
the window and the change point (first time |z| stays above the threshold). A workload's score is

    strength term  z / (z + threshold)            (z = its strongest move in the harmful direction)
  x earliness      0.6 + 0.4 * e                  (e = 1 for the first workload to move, 0 for one that moved
                                                   4+ steps after it, or last when onsets spread wider)
  noisy-OR'd with the detector's anomalies on it  (up to +0.25 for a severity of 2 or more)

and stays in [0, 1]. With a call graph, effects travel both ways and the ranking follows each: latency and errors
travel up (a caller whose callee moved first or as strongly is a victim), demand travels down (a callee whose
request rate rose with or after its caller's is carrying the caller's load, so it is the victim). A victim's
score is halved. Without one, the score alone
decides. A move that is over by the end of the window (a cron job's CPU spike minutes ago) does not count: the
ranking is about what is wrong now. The leading signals of each moved workload give a fault guess (``_guess_fault``).
The guess depends on whether the workload just rolled out, which only the events tell: when they were not
collected and a rollout would change the guess, that guess comes too, marked ``missing`` (not ruled out).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from aiops.diagnose.baseline import DEFAULT_RECENT_FRACTION, SignalShift, measure_all, split_time
from aiops.diagnose.faults import playbook_for
from aiops.diagnose.rollouts import latest_rollout
from aiops.domain import signals as sig
from aiops.domain.diagnosis import Evidence, Fault, Hypothesis
from aiops.domain.incident import Incident
from aiops.domain.observations import EVENTS, Observations
from aiops.domain.playbook import Playbook
from aiops.domain.target import Target

# +1: rising is harmful, -1: falling is harmful, 0: either way is a change worth ranking.
HARMFUL_DIRECTION: dict[str, int] = {
    sig.CPU: 1, sig.MEMORY: 1, sig.RESTARTS: 1, sig.AVAILABLE_RATIO: -1,
    sig.REQUEST_RATE: 0, sig.ERROR_RATIO: 1, sig.LATENCY_P99: 1,
}
# How sure a fault guess is, given its signature (multiplies the workload score into a confidence).
FAULT_CLARITY: dict[Fault, float] = {
    Fault.MEMORY_LEAK: 0.9, Fault.TRAFFIC_SURGE: 0.9, Fault.CRASH_LOOP: 0.85, Fault.BAD_DEPLOY: 0.85,
    Fault.CPU_SATURATION: 0.8, Fault.DEPENDENCY_LATENCY: 0.75, Fault.UNKNOWN: 0.4,
}
VICTIM_FACTOR = 0.5
ANOMALY_BONUS = 0.25
Z_CAP = 100.0
ROLLOUT_LOOKBACK = 1800.0
MIN_ONSET_SPREAD_STEPS = 4  # a rollout this long before the split still counts as "recent"


@dataclass(frozen=True, slots=True)
class SignalMove:
    """A signal that left its baseline in a harmful direction: oriented z (>= threshold) and onset."""

    signal: str
    z: float
    onset: float
    direction: int


@dataclass(slots=True)
class WorkloadScore:
    """One workload's place in the ranking and why."""

    workload: str
    score: float = 0.0
    strength: float = 0.0
    onset: float | None = None
    moves: list[SignalMove] = field(default_factory=list)
    shifts: dict[str, SignalShift] = field(default_factory=dict)
    anomaly_severity: float = 0.0
    victim_of: list[str] = field(default_factory=list)
    # Callers whose extra demand explains this workload's moves.
    load_from: list[str] = field(default_factory=list)

    @property
    def moved(self) -> bool:
        return bool(self.moves)

    def move(self, signal: str) -> SignalMove | None:
        """This workload's move on ``signal``, if it moved."""
        return next((m for m in self.moves if m.signal == signal), None)

    def cause_strength(self) -> float:
        """Strength counting only signals that can cause trouble downstream (not request rate)."""
        return max((m.z for m in self.moves if m.signal != sig.REQUEST_RATE), default=0.0)

    def cause_onset(self) -> float | None:
        """Earliest change point among the signals ``cause_strength`` counts."""
        return min((m.onset for m in self.moves if m.signal != sig.REQUEST_RATE), default=None)


def _step(observations: Observations) -> float:
    """The sampling step of the signal grid (60 s if it cannot be told)."""
    for s in observations.signals:
        if len(s.timestamps) > 1:
            return float(np.median(np.diff(s.timestamps)))
    return 60.0


def _oriented(shift: SignalShift, direction: int) -> tuple[float, float | None, int]:
    """(z in the harmful direction, its onset, the direction it moved)."""
    up, down = (shift.peak_z, shift.onset_up), (-shift.trough_z, shift.onset_down)
    if direction > 0:
        return up[0], up[1], 1
    if direction < 0:
        return down[0], down[1], -1
    return (up + (1,)) if up[0] >= down[0] else (down + (-1,))


class StatisticalRanker:
    """Analyzer ``stats``: ranks workloads by how early and how strongly they moved, and guesses the fault."""

    name = "stats"

    def __init__(self, threshold: float = 3.0, persist: int = 3,
                 recent_fraction: float = DEFAULT_RECENT_FRACTION, top: int = 3) -> None:
        self.threshold = threshold
        self.persist = persist
        self.recent_fraction = recent_fraction
        self.top = top

    # -- ranking ---------------------------------------------------------------------------------------------
    def rank(self, incident: Incident, observations: Observations) -> list[WorkloadScore]:
        """Every workload with signals or anomalies, best root-cause candidate first."""
        split = split_time(incident, observations, self.recent_fraction)
        shifts = measure_all(observations, split, self.threshold, self.persist)
        scores: dict[str, WorkloadScore] = {}
        for (workload, signal), shift in shifts.items():
            ws = scores.setdefault(workload, WorkloadScore(workload))
            ws.shifts[signal] = shift
            z, onset, direction = _oriented(shift, HARMFUL_DIRECTION.get(signal, 0))
            if z >= self.threshold and onset is not None and not shift.still_on(direction, self.threshold):
                z = 0.0  # it moved, but it is over: a finished spike is a distractor, not the cause
            ws.strength = max(ws.strength, min(z, Z_CAP))
            if z >= self.threshold and onset is not None:
                ws.moves.append(SignalMove(signal, min(z, Z_CAP), onset, direction))
        for anomaly in incident.anomalies:
            if anomaly.target.namespace and observations.namespace \
                    and anomaly.target.namespace != observations.namespace:
                continue
            ws = scores.setdefault(anomaly.target.name, WorkloadScore(anomaly.target.name))
            ws.anomaly_severity = max(ws.anomaly_severity, anomaly.severity)
        for ws in scores.values():
            ws.moves.sort(key=lambda m: (m.onset, -m.z))
            ws.onset = ws.moves[0].onset if ws.moves else None
        self._score(scores, observations)
        self._demote_victims(scores, observations)
        return sorted(scores.values(), key=lambda w: (-w.score, w.workload))

    def ranking(self, incident: Incident, observations: Observations) -> list[tuple[str, float]]:
        """(workload, score in [0, 1]) pairs, highest score first."""
        return [(w.workload, round(w.score, 4)) for w in self.rank(incident, observations)]

    def _score(self, scores: dict[str, WorkloadScore], observations: Observations) -> None:
        onsets = [w.onset for w in scores.values() if w.onset is not None]
        first = min(onsets, default=observations.end)
        # Earliness is relative to the spread of onsets, but a spread under a few steps is not a real order.
        span = max(max(onsets, default=first) - first, MIN_ONSET_SPREAD_STEPS * _step(observations))
        for ws in scores.values():
            strength = ws.strength / (ws.strength + self.threshold) if ws.strength > 0 else 0.0
            if ws.onset is not None:
                earliness = 1.0 - (ws.onset - first) / span
                score = strength * (0.6 + 0.4 * max(0.0, min(1.0, earliness)))
            else:
                score = strength * 0.3
            if ws.anomaly_severity >= 1.0:
                bonus = ANOMALY_BONUS * min(1.0, ws.anomaly_severity / 2.0)
                score = 1.0 - (1.0 - score) * (1.0 - bonus)
            ws.score = max(0.0, min(1.0, score))

    def _demote_victims(self, scores: dict[str, WorkloadScore], observations: Observations) -> None:
        calls = [(a, b) for a, b in observations.topology.calls if a != b]
        for caller, callee in calls:
            a, b = scores.get(caller), scores.get(callee)
            if a is not None and b is not None and _carries_load_of(b, a):
                b.load_from.append(caller)
        for caller, callee in calls:
            a, b = scores.get(caller), scores.get(callee)
            if a is None or b is None or not a.moved or caller in b.load_from:
                continue
            b_onset = b.cause_onset()
            if b_onset is None or a.onset is None:
                continue
            if b_onset <= a.onset or b.cause_strength() >= a.strength:
                a.victim_of.append(callee)
        for ws in scores.values():
            if ws.victim_of or ws.load_from:
                ws.score *= VICTIM_FACTOR

    # -- fault guess -----------------------------------------------------------------------------------------
    def _guess_fault(self, ws: WorkloadScore, callers_moved: bool, rollout: bool) -> Fault:
        up = {m.signal for m in ws.moves if m.direction > 0}
        down = {m.signal for m in ws.moves if m.direction < 0}
        slow = sig.LATENCY_P99 in up
        if sig.REQUEST_RATE in up and (slow or sig.CPU in up):
            return Fault.TRAFFIC_SURGE
        if sig.MEMORY in up:
            return Fault.MEMORY_LEAK
        if sig.RESTARTS in up or sig.AVAILABLE_RATIO in down:
            return Fault.CRASH_LOOP
        if sig.ERROR_RATIO in up or (slow and rollout):
            return Fault.BAD_DEPLOY if rollout else Fault.UNKNOWN
        if sig.CPU in up and slow:
            return Fault.CPU_SATURATION
        if slow and callers_moved and not ws.victim_of:
            return Fault.DEPENDENCY_LATENCY
        if sig.REQUEST_RATE in up:
            return Fault.TRAFFIC_SURGE
        # CPU up with no effect on latency is busy, not saturated (a batch job): nothing to scale for.
        return Fault.UNKNOWN

    # -- Analyzer --------------------------------------------------------------------------------------------
    def analyze(self, incident: Incident, observations: Observations,
                playbooks: Sequence[Playbook]) -> list[Hypothesis]:
        """Hypotheses for the top moved workloads; each carries the whole ranking as ``ranking`` evidence."""
        ranked = self.rank(incident, observations)
        ranking = [[w.workload, round(w.score, 4)] for w in ranked]
        ranking_ev = Evidence(kind="ranking", summary="stats ranking: " + ", ".join(
            f"{w} {s:.2f}" for w, s in ranking[:5]), data={"ranking": ranking})
        by_name = {w.workload: w for w in ranked}
        split = split_time(incident, observations, self.recent_fraction)
        out: list[Hypothesis] = []
        for ws in [w for w in ranked if w.moved or w.anomaly_severity >= 1.0][: self.top]:
            callers_moved = any(by_name[c].moved for c in observations.topology.callers(ws.workload)
                                if c in by_name)
            rollout = latest_rollout(observations.events, ws.workload,
                                     since=max(observations.start, split - ROLLOUT_LOOKBACK))
            fault = self._guess_fault(ws, callers_moved, rollout is not None)
            playbook = playbook_for(fault, playbooks, rollout is not None)
            kind = incident.target.kind if ws.workload == incident.target.name else "Deployment"
            target = Target(kind, observations.namespace or incident.target.namespace, ws.workload)
            evidence = [ranking_ev] + [self._move_evidence(ws, m) for m in ws.moves[:3]]
            if ws.victim_of:
                evidence.append(Evidence(kind="ranking", workload=ws.workload, summary=(
                    f"{ws.workload} looks like a victim: its callee(s) {', '.join(sorted(ws.victim_of))} "
                    "moved first or as strongly")))
            if rollout is not None:
                evidence.append(Evidence(kind="rollout", workload=ws.workload, ts=rollout.ts, summary=(
                    f"{ws.workload} rolled onto ReplicaSet {rollout.new_replica_set}"),
                    data={"new_replica_set": rollout.new_replica_set, "old_replica_set": rollout.old_replica_set}))
            out.append(Hypothesis(target=target, fault=fault, playbook=playbook,
                                  confidence=round(ws.score * FAULT_CLARITY.get(fault, 0.5), 4), source=self.name,
                                  evidence=tuple(evidence)))
            if not observations.collected(EVENTS):
                out += self._had_it_rolled_out(ws, callers_moved, target, (fault, playbook), playbooks)
        return out

    def _had_it_rolled_out(self, ws: WorkloadScore, callers_moved: bool, target: Target,
                           guessed: tuple[Fault, str], playbooks: Sequence[Playbook]) -> list[Hypothesis]:
        """The guess had ``ws`` just rolled out, when it differs: unchecked, since the events were not read."""
        fault = self._guess_fault(ws, callers_moved, True)
        playbook = playbook_for(fault, playbooks, True)
        if (fault, playbook) == guessed:
            return []
        note = Evidence(kind="ranking", workload=ws.workload, summary=(
            f"{fault.value} if {ws.workload} rolled out just before: {EVENTS} not collected"))
        return [Hypothesis(target=target, fault=fault, playbook=playbook,
                           confidence=round(ws.score * FAULT_CLARITY.get(fault, 0.5), 4), source=self.name,
                           evidence=(note,) + tuple(self._move_evidence(ws, m) for m in ws.moves[:3]),
                           missing=(EVENTS,))]

    @staticmethod
    def _move_evidence(ws: WorkloadScore, move: SignalMove) -> Evidence:
        shift = ws.shifts.get(move.signal)
        word = "rose" if move.direction > 0 else "fell"
        return Evidence(kind="anomaly", workload=ws.workload, ts=move.onset, summary=(
            f"{move.signal} of {ws.workload} {word} {move.z:.1f} robust sigmas from baseline"),
            data=shift.as_dict() if shift else {})


def _carries_load_of(callee: WorkloadScore, caller: WorkloadScore) -> bool:
    """True when the callee's request rate rose with or after its caller's: the demand came from upstream."""
    down, up = callee.move(sig.REQUEST_RATE), caller.move(sig.REQUEST_RATE)
    return bool(down and up and down.direction > 0 and up.direction > 0 and up.onset <= down.onset)
