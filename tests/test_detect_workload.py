"""WorkloadDetector on synthetic workloads: a memory leak is found and attributed to memory; noise is not flagged."""

from __future__ import annotations

import numpy as np
import pytest

from aiops.detect.features import Baseline, build_features, feature_names, signal_frame
from aiops.detect.workload import WorkloadDetector, pick_run
from aiops.domain import signals as sig
from aiops.domain.observations import Series
from aiops.domain.target import Target

STEP = 15.0
BASE, RECENT = 240, 40
LEVELS = {sig.CPU: (0.3, 0.03), sig.MEMORY: (2e8, 5e6), sig.RESTARTS: (0.0, 0.0), sig.AVAILABLE_RATIO: (1.0, 0.0),
          sig.REQUEST_RATE: (20.0, 2.0), sig.ERROR_RATIO: (0.005, 0.002), sig.LATENCY_P99: (0.12, 0.01)}


def _workloads(seed: int, leak_in: str | None) -> tuple[list[Series], np.ndarray]:
    rng = np.random.default_rng(seed)
    ts = 1.7e9 + np.arange(BASE + RECENT) * STEP
    out = []
    for w in range(5):
        name = f"svc{w}"
        for signal, (level, noise) in LEVELS.items():
            values = level * (1 + 0.2 * w) + rng.normal(0.0, 1.0, ts.size) * noise
            if name == leak_in and signal == sig.MEMORY:
                values[BASE:] += np.arange(RECENT) * 4e6  # +4 MB per step: a leak
            out.append(Series(signal, {"namespace": "shop", "workload": name}, ts, values))
    return out, ts


def test_memory_leak_is_detected_with_memory_leading() -> None:
    series, ts = _workloads(seed=1, leak_in="svc2")
    det = WorkloadDetector().fit(series, ts[0], ts[BASE - 1])
    assert det.fitted_workloads == [("shop", f"svc{w}") for w in range(5)]
    anomalies = det.detect(series, ts[BASE], ts[-1])
    assert [a.target for a in anomalies] == [Target.deployment("shop", "svc2")]
    (leak,) = anomalies
    assert leak.signal == sig.MEMORY
    assert leak.contributors[0][0] == sig.MEMORY and leak.contributors[0][1] > 0.5
    assert [w for _, w in leak.contributors] == sorted((w for _, w in leak.contributors), reverse=True)
    assert leak.score > leak.threshold and leak.detector == "lof"
    # The leak starts at ts[BASE]; the run must start after it and within a dozen steps.
    assert ts[BASE] <= leak.start <= ts[BASE] + 12 * STEP


@pytest.mark.parametrize("seed", [3, 4, 5])
def test_stationary_noise_gives_no_anomalies(seed: int) -> None:
    series, ts = _workloads(seed=seed, leak_in=None)
    det = WorkloadDetector().fit(series, ts[0], ts[BASE - 1])
    assert det.detect(series, ts[BASE], ts[-1]) == []


def test_detect_only_needs_recent_points_plus_history_it_is_given() -> None:
    series, ts = _workloads(seed=1, leak_in="svc2")
    det = WorkloadDetector().fit(series, ts[0], ts[BASE - 1])
    recent = [Series(s.name, s.labels, s.timestamps[BASE - 8:], s.values[BASE - 8:]) for s in series]
    assert [a.target.name for a in det.detect(recent, ts[BASE], ts[-1])] == ["svc2"]


def test_unfitted_and_short_workloads_are_skipped() -> None:
    series, ts = _workloads(seed=1, leak_in="svc2")
    det = WorkloadDetector().fit(series, ts[0], ts[4])  # 5 baseline points < min_baseline_points
    assert det.fitted_workloads == []
    assert det.detect(series, ts[BASE], ts[-1]) == []


def test_features_are_scaled_by_baseline() -> None:
    ts = np.arange(20) * STEP
    mem = Series(sig.MEMORY, {}, ts, np.r_[np.full(10, 1e8), np.full(10, 1e8 + 4e7)])
    frame = signal_frame([mem])
    baseline = Baseline.fit(frame.iloc[:10])
    assert baseline.scale[0] == pytest.approx(4 * 1024 * 1024)  # flat baseline: the floor, not zero
    feats = build_features(frame, baseline, window=4)
    assert list(feats.columns) == list(feature_names([sig.MEMORY])) == ["memory:level", "memory:slope"]
    assert feats["memory:level"].iloc[9] == 0.0
    assert feats["memory:level"].iloc[-1] == pytest.approx(4e7 / (4 * 1024 * 1024))
    assert feats["memory:slope"].iloc[13] == pytest.approx(4e7 / (4 * 1024 * 1024))


def test_pick_run_prefers_the_ongoing_run() -> None:
    above = np.array([0, 1, 1, 1, 0, 0, 1, 1, 1], dtype=bool)
    scores = np.array([0, 9, 9, 9, 0, 0, 2, 2, 2], dtype=float)
    assert pick_run(above, scores, 3) == (6, 8)
    assert pick_run(above[:5], scores[:5], 3) == (1, 3)
    assert pick_run(above, scores, 4) is None
