"""Choosing a workload detector's hyperparameters, and judging one detector against another on held-back data.

**The validation criterion** (one number in [0, 1], higher is better) is an event F1 over alarm runs (a run =
``min_run`` consecutive points over the detector's threshold, what ``WorkloadDetector.detect`` reports):

- *labels*, when labelled incidents (``(start, end)`` per workload) fall in the held-back span: an incident is
  caught when an alarm run starts inside it; a run starting anywhere else is a false alarm (also one that goes on
  into an incident: an alarm that never stops must not look perfect).
  ``precision = runs starting in an incident / runs``, ``recall = incidents caught / incidents``.
- *stability* otherwise: the held-back data is taken as normal. Copies of it get a level shift of ``shift``
  robust standard deviations (of the held-back data itself, so two detectors are judged on the same copies) in one
  signal per workload over the second half of the span, rotating through the signals over ``copies`` copies. The
  shifted halves are the incidents; any run in the unshifted halves is a false alarm. A detector scores high when
  it stays quiet on normal data *and* still sees a clear change, so the tuner cannot win by going deaf.

**Tuning** tries ``window`` x ``n_neighbors`` x ``contamination`` combinations: the defaults first, then the rest of
the grid in a seeded random order, fitting on the training span and scoring on
the validation span. LOF has no training iterations to stop early, so early stopping applies to the search: it
ends after ``patience`` trials in a row without a gain of at least ``min_delta``, or after ``max_trials``.
"""

from __future__ import annotations

import functools
import itertools
import time
from dataclasses import asdict, dataclass, field
from typing import Mapping, Sequence

import numpy as np

from aiops.detect.features import Baseline
from aiops.detect.lof import LofDetector
from aiops.detect.workload import AlignedSignals, WorkloadDetector, WorkloadKey, group_by_workload
from aiops.domain.observations import Series

Labels = Mapping[WorkloadKey, Sequence[tuple[float, float]]]
LABELS, STABILITY = "labels", "stability"


@dataclass(frozen=True)
class DetectorParams:
    """The hyperparameters tuned: feature ``window`` (also the alarm run length), LOF ``n_neighbors`` and
    ``contamination`` (which sets the threshold)."""

    window: int = 4
    n_neighbors: int = 20
    contamination: float = 0.01

    def build(self, drift: bool = True) -> WorkloadDetector:
        """An unfitted ``WorkloadDetector`` with these parameters (picklable: a ``partial`` of ``LofDetector``)."""
        factory = functools.partial(LofDetector, n_neighbors=self.n_neighbors, contamination=self.contamination,
                                    window=self.window)
        detector = WorkloadDetector(detector_factory=factory, window=self.window)
        if not drift:
            detector.drift_factory = None
        return detector

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def of(cls, detector: WorkloadDetector) -> "DetectorParams":
        """The parameters a fitted or unfitted detector was built with (defaults where it does not say)."""
        factory = detector.detector_factory
        keywords = getattr(factory, "keywords", {}) or {}
        default = cls()
        return cls(window=int(detector.window), n_neighbors=int(keywords.get("n_neighbors", default.n_neighbors)),
                   contamination=float(keywords.get("contamination", default.contamination)))


@dataclass(frozen=True)
class Evaluation:
    """One detector on one held-back span: the criterion ``score`` and what it was made of."""

    criterion: str
    score: float
    precision: float
    recall: float
    incidents: int
    caught: int
    alarms: int
    false_alarms: int
    points: int

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Trial:
    """One tried parameter set and its validation evaluation."""

    params: DetectorParams
    evaluation: Evaluation
    seconds: float

    def as_dict(self) -> dict:
        return {"params": self.params.as_dict(), "score": self.evaluation.score, "seconds": round(self.seconds, 4)}


@dataclass
class TuningResult:
    """Every trial, the best one, the default's score, and whether the search stopped early."""

    best: Trial
    default: Trial
    trials: list[Trial] = field(default_factory=list)
    stopped_early: bool = False
    seconds: float = 0.0

    @property
    def gain(self) -> float:
        """Validation score of the chosen parameters minus that of the defaults."""
        return self.best.evaluation.score - self.default.evaluation.score

    def as_dict(self) -> dict:
        return {"best": self.best.as_dict(), "default": self.default.as_dict(), "gain": round(self.gain, 6),
                "trials": [t.as_dict() for t in self.trials], "stopped_early": self.stopped_early,
                "seconds": round(self.seconds, 3), "criterion": self.best.evaluation.criterion}


@dataclass(frozen=True)
class SearchSpace:
    """The grid and the stopping rule of the search."""

    window: tuple[int, ...] = (2, 4, 8)
    n_neighbors: tuple[int, ...] = (5, 10, 20, 40)
    contamination: tuple[float, ...] = (0.005, 0.01, 0.05)
    max_trials: int = 36
    patience: int = 8
    min_delta: float = 1e-3
    seed: int = 0

    def candidates(self, default: DetectorParams) -> list[DetectorParams]:
        """The default first, then the grid in a seeded random order (without the default again)."""
        grid = [DetectorParams(w, k, c) for w, k, c in itertools.product(self.window, self.n_neighbors,
                                                                          self.contamination)]
        order = np.random.default_rng(self.seed).permutation(len(grid))
        return [default] + [grid[i] for i in order if grid[i] != default]


# --- alarms and the criterion ---
def alarm_runs(above: np.ndarray, min_run: int) -> list[tuple[int, int]]:
    """Every run of at least ``min_run`` consecutive True values, as (first, last) indexes."""
    runs, start = [], None
    for i, flag in enumerate(np.append(np.asarray(above, dtype=bool), False)):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            if i - start >= min_run:
                runs.append((start, i - 1))
            start = None
    return runs


def workload_alarms(detector: WorkloadDetector, signals: Sequence[Series], start: float,
                    end: float) -> tuple[dict[WorkloadKey, list[tuple[float, float]]], int]:
    """Alarm runs per fitted workload over ``[start, end]`` as (first ts, last ts), and the points scored."""
    out: dict[WorkloadKey, list[tuple[float, float]]] = {}
    points = 0
    for key, series in group_by_workload(signals).items():
        if key not in detector.models:
            continue
        scores = detector.scores(series, key, start, end)
        stamps = scores.index.to_numpy(dtype=np.float64)
        points += len(stamps)
        threshold = float(detector.models[key].detector.threshold_)
        runs = alarm_runs(scores.to_numpy() > threshold, detector.min_run)
        out[key] = [(float(stamps[a]), float(stamps[b])) for a, b in runs]
    return out, points


def event_score(alarms: Mapping[WorkloadKey, Sequence[tuple[float, float]]], incidents: Labels) -> tuple[int, int, int, int]:
    """(incidents, caught, alarm runs, false alarm runs) of alarm runs against incident windows. A run counts where
    it starts: inside a window it catches that incident; anywhere else it is a false alarm, even if it lasts into an
    incident (an alarm that never stops would otherwise look perfect)."""
    total = caught = runs = false = 0
    for key in set(alarms) | set(incidents):
        windows = list(incidents.get(key, ()))
        mine = list(alarms.get(key, ()))
        total += len(windows)
        caught += sum(any(w_start <= a <= w_end for a, _ in mine) for w_start, w_end in windows)
        runs += len(mine)
        false += sum(not any(w_start <= a <= w_end for w_start, w_end in windows) for a, _ in mine)
    return total, caught, runs, false


def _f1(total: int, caught: int, runs: int, false: int) -> tuple[float, float, float]:
    precision = (runs - false) / runs if runs else (1.0 if total == 0 else 0.0)
    recall = caught / total if total else 1.0
    score = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return score, precision, recall


def labels_in(labels: Labels | None, start: float, end: float) -> dict[WorkloadKey, list[tuple[float, float]]]:
    """The labelled incidents overlapping ``[start, end]``, clipped to it."""
    out: dict[WorkloadKey, list[tuple[float, float]]] = {}
    for key, windows in (labels or {}).items():
        kept = [(max(a, start), min(b, end)) for a, b in windows if a <= end and b >= start]
        if kept:
            out[tuple(key)] = kept  # type: ignore[index]
    return out


@dataclass(frozen=True)
class Criterion:
    """The validation criterion (see the module docstring), with the stability copies' settings."""

    shift: float = 6.0
    copies: int = 3

    def evaluate(self, detector: WorkloadDetector, signals: Sequence[Series], start: float, end: float,
                 labels: Labels | None = None) -> Evaluation:
        """Score a fitted detector on ``[start, end]`` (``signals`` may hold earlier points for feature history)."""
        known = labels_in(labels, start, end)
        if known:
            alarms, points = workload_alarms(detector, signals, start, end)
            counts = event_score(alarms, known)
            return self._evaluation(LABELS, counts, points)
        totals = [0, 0, 0, 0]
        points = 0
        for copy in range(self.copies):
            shifted, incidents = shifted_copy(signals, start, end, self.shift, copy)
            alarms, n = workload_alarms(detector, shifted, start, end)
            points += n
            totals = [a + b for a, b in zip(totals, event_score(alarms, incidents))]
        return self._evaluation(STABILITY, tuple(totals), points)

    @staticmethod
    def _evaluation(criterion: str, counts: tuple[int, ...], points: int) -> Evaluation:
        total, caught, runs, false = counts
        score, precision, recall = _f1(total, caught, runs, false)
        return Evaluation(criterion, round(score, 6), round(precision, 6), round(recall, 6), total, caught, runs,
                          false, points)


def shifted_copy(signals: Sequence[Series], start: float, end: float, shift: float,
                 copy: int) -> tuple[list[Series], dict[WorkloadKey, list[tuple[float, float]]]]:
    """The signals with, per workload, signal number ``copy`` (mod the count) raised by ``shift`` robust standard
    deviations of its ``[start, end]`` points over the second half of that span; and those halves as incidents."""
    out: list[Series] = []
    incidents: dict[WorkloadKey, list[tuple[float, float]]] = {}
    for key, series in sorted(group_by_workload(signals).items()):
        aligned = AlignedSignals.of(series)
        rows = aligned.between(start, end)
        if rows.stop - rows.start < 4:
            out.extend(series)
            continue
        baseline = Baseline.fit(aligned.frame(rows))
        scales = dict(zip(baseline.signals, baseline.scale))
        names = sorted(scales)
        if not names:
            out.extend(series)
            continue
        target = names[copy % len(names)]
        middle = float(aligned.timestamps[rows.start + (rows.stop - rows.start) // 2])
        incidents[key] = [(middle, float(aligned.timestamps[rows.stop - 1]))]
        for s in series:
            if s.name != target:
                out.append(s)
                continue
            ts = np.asarray(s.timestamps, dtype=np.float64)
            values = np.asarray(s.values, dtype=np.float64).copy()
            values[(ts >= middle) & (ts <= end)] += shift * float(scales[target])
            out.append(Series(s.name, dict(s.labels), ts, values))
    return out, incidents


# --- the search ---
def tune(signals: Sequence[Series], train: tuple[float, float], validation: tuple[float, float],
         labels: Labels | None = None, space: SearchSpace | None = None,
         default: DetectorParams | None = None, criterion: Criterion | None = None) -> TuningResult:
    """Search ``space`` for the parameters scoring best on ``validation`` after fitting on ``train``."""
    space = space or SearchSpace()
    default = default or DetectorParams()
    criterion = criterion or Criterion()
    started = time.perf_counter()
    trials: list[Trial] = []
    best: Trial | None = None
    since_gain = 0
    stopped = False
    for params in space.candidates(default)[:max(1, space.max_trials)]:
        trial = run_trial(params, signals, train, validation, labels, criterion)
        trials.append(trial)
        if best is None or trial.evaluation.score >= best.evaluation.score + space.min_delta:
            best, since_gain = trial, 0
        else:
            since_gain += 1
            if since_gain >= space.patience:
                stopped = True
                break
    assert best is not None
    return TuningResult(best=best, default=trials[0], trials=trials, stopped_early=stopped,
                        seconds=time.perf_counter() - started)


def run_trial(params: DetectorParams, signals: Sequence[Series], train: tuple[float, float],
              validation: tuple[float, float], labels: Labels | None, criterion: Criterion) -> Trial:
    """Fit ``params`` on ``train`` and evaluate on ``validation``."""
    started = time.perf_counter()
    detector = params.build(drift=False).fit(signals, *train)
    evaluation = criterion.evaluate(detector, signals, *validation, labels=labels)
    return Trial(params, evaluation, time.perf_counter() - started)
