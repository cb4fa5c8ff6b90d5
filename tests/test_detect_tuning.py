"""The validation criterion, the alarm-run bookkeeping behind it, and the hyperparameter search."""

from __future__ import annotations

import numpy as np
import pytest

from aiops.detect.store import ModelStore
from aiops.detect.tuning import (Criterion, DetectorParams, SearchSpace, alarm_runs, event_score, labels_in,
                                 shifted_copy, tune)
from aiops.detect.workload import WorkloadDetector
from aiops.domain import signals as sig
from aiops.domain.observations import Series

STEP = 15.0
LEVELS = {sig.CPU: (0.3, 0.03), sig.MEMORY: (2e8, 5e6), sig.LATENCY_P99: (0.12, 0.01)}


def workloads(n: int = 480, seed: int = 0, count: int = 4) -> tuple[list[Series], np.ndarray]:
    rng = np.random.default_rng(seed)
    ts = 1.7e9 + np.arange(n) * STEP
    out = [Series(name, {"namespace": "shop", "workload": f"svc{w}"}, ts, level + rng.normal(0, 1, n) * noise)
           for w in range(count) for name, (level, noise) in LEVELS.items()]
    return out, ts


def test_alarm_runs_keep_only_long_enough_runs():
    above = np.array([0, 1, 1, 0, 1, 1, 1, 1, 0, 1, 1, 1], bool)
    assert alarm_runs(above, 3) == [(4, 7), (9, 11)]
    assert alarm_runs(above, 1) == [(1, 2), (4, 7), (9, 11)]
    assert alarm_runs(np.zeros(5, bool), 1) == []


def test_a_run_counts_where_it_starts():
    key = ("shop", "cart")
    incidents = {key: [(100.0, 200.0)]}
    assert event_score({key: [(150.0, 300.0)]}, incidents) == (1, 1, 1, 0)  # starts inside: caught
    assert event_score({key: [(50.0, 300.0)]}, incidents) == (1, 0, 1, 1)   # started before: a false alarm
    other = ("shop", "other")
    assert event_score({key: [(120.0, 130.0)], other: [(0.0, 10.0)]}, incidents) == (1, 1, 2, 1)
    assert labels_in({key: [(0.0, 150.0), (400.0, 500.0)]}, 100.0, 300.0) == {key: [(100.0, 150.0)]}


def test_shifted_copy_moves_one_signal_per_workload_in_the_second_half():
    series, ts = workloads(n=40, count=2)
    moved, incidents = shifted_copy(series, ts[0], ts[-1], 6.0, copy=1)
    changed = [(s.workload, s.name) for s, m in zip(series, moved) if not np.array_equal(s.values, m.values)]
    assert changed == [("svc0", sorted(LEVELS)[1]), ("svc1", sorted(LEVELS)[1])]
    assert incidents[("shop", "svc0")] == [(ts[20], ts[-1])]
    before = next(s for s in series if (s.workload, s.name) == changed[0])
    after = next(s for s in moved if (s.workload, s.name) == changed[0])
    assert np.array_equal(before.values[:20], after.values[:20]) and np.all(after.values[20:] > before.values[20:])


def test_stability_prefers_a_detector_that_sees_shifts_and_stays_quiet():
    series, ts = workloads()
    split = ts[320]
    good = DetectorParams().build(drift=False).fit(series, ts[0], split)
    deaf = DetectorParams(window=120, contamination=0.001).build(drift=False).fit(series, ts[0], split)
    # Fitted on a window where svc0's CPU sat far lower: it alarms on everything afterwards.
    skewed = [Series(s.name, s.labels, s.timestamps, s.values - (10.0 if s.name == sig.CPU else 0.0)
                     * (s.timestamps <= split)) for s in series]
    jumpy = DetectorParams().build(drift=False).fit(skewed, ts[0], split)
    criterion = Criterion()
    scores = {name: criterion.evaluate(d, series, split, ts[-1]) for name, d in
              (("good", good), ("deaf", deaf), ("jumpy", jumpy))}
    assert scores["good"].criterion == "stability" and scores["good"].score > 0.9
    assert scores["deaf"].recall < 0.5 and scores["deaf"].score < scores["good"].score
    assert scores["jumpy"].false_alarms > 0 and scores["jumpy"].score < scores["good"].score


def test_labels_decide_when_they_fall_in_the_span():
    series, ts = workloads()
    leak = [Series(s.name, s.labels, s.timestamps, s.values + np.clip(s.timestamps - ts[400], 0, None) * 1e5)
            if (s.workload, s.name) == ("svc1", sig.MEMORY) else s for s in series]
    detector = DetectorParams().build(drift=False).fit(leak, ts[0], ts[320])
    evaluation = Criterion().evaluate(detector, leak, ts[320], ts[-1], {("shop", "svc1"): [(ts[400], ts[-1])]})
    assert evaluation.criterion == "labels" and (evaluation.incidents, evaluation.caught) == (1, 1)
    elsewhere = Criterion().evaluate(detector, series, ts[320], ts[-1], {("shop", "svc1"): [(0.0, 1.0)]})
    assert elsewhere.criterion == "stability"


def test_search_tries_defaults_first_and_stops_after_patience():
    series, ts = workloads()
    space = SearchSpace(window=(2, 4), n_neighbors=(5, 10, 20), contamination=(0.01, 0.05), patience=3,
                        max_trials=12)
    result = tune(series, (ts[0], ts[240]), (ts[240], ts[360]), space=space)
    assert result.trials[0].params == DetectorParams()
    assert len({t.params for t in result.trials}) == len(result.trials)
    best = max(t.evaluation.score for t in result.trials)
    assert result.best.evaluation.score == best and result.gain >= 0
    # Clean data: every trial ties with the defaults, so the search stops after ``patience`` trials without gain.
    assert result.stopped_early and len(result.trials) == 1 + space.patience and result.best is result.trials[0]
    no_patience = tune(series, (ts[0], ts[240]), (ts[240], ts[360]),
                       space=SearchSpace(window=(2, 4), n_neighbors=(5,), contamination=(0.01,), patience=99,
                                         max_trials=2))
    assert len(no_patience.trials) == 2 and not no_patience.stopped_early


def test_tuned_detector_round_trips_through_the_registry_with_its_parameters(tmp_path):
    series, ts = workloads(n=120)
    params = DetectorParams(window=2, n_neighbors=7, contamination=0.05)
    detector = params.build().fit(series, ts[0], ts[-1])
    ModelStore(tmp_path).save("m", detector)
    loaded, _ = ModelStore(tmp_path).load("m", expected_class=WorkloadDetector)
    assert DetectorParams.of(loaded) == params
    key = ("shop", "svc0")
    assert loaded.models[key].detector.n_neighbors == 7 and loaded.min_run == 2
    assert DetectorParams.of(WorkloadDetector()) == DetectorParams()


@pytest.mark.parametrize("copies", [1, 3])
def test_criterion_counts_every_copy(copies):
    series, ts = workloads(n=200)
    detector = DetectorParams().build(drift=False).fit(series, ts[0], ts[120])
    evaluation = Criterion(copies=copies).evaluate(detector, series, ts[120], ts[-1])
    assert evaluation.incidents == 4 * copies and evaluation.points == 4 * 80 * copies
