"""Drift of recent feature rows from a detector's training distribution: DriftMonitor and WorkloadDetector.drift."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import ks_2samp

from aiops.detect.drift import DriftMonitor, DriftReport
from aiops.detect.store import ModelStore
from aiops.detect.workload import WorkloadDetector
from aiops.domain import signals as sig
from aiops.domain.observations import Series

STEP = 15.0
BASE = 240
LEVELS = {sig.CPU: (0.3, 0.03), sig.MEMORY: (2e8, 5e6), sig.RESTARTS: (0.0, 0.0), sig.AVAILABLE_RATIO: (1.0, 0.0),
          sig.REQUEST_RATE: (20.0, 2.0), sig.ERROR_RATIO: (0.005, 0.002), sig.LATENCY_P99: (0.12, 0.01)}
NAMES = ("a", "b", "c")


def _workloads(seed: int, recent: int, change: tuple[str, str, float] | None = None) -> tuple[list[Series], np.ndarray]:
    """5 noisy stationary workloads; ``change=(signal, "shift"|"spread", size)`` alters svc2's recent points."""
    rng = np.random.default_rng(seed)
    ts = 1.7e9 + np.arange(BASE + recent) * STEP
    out = []
    for w in range(5):
        for signal, (level, noise) in LEVELS.items():
            values = level * (1 + 0.2 * w) + rng.normal(0.0, 1.0, ts.size) * noise
            if change and w == 2 and signal == change[0]:
                if change[1] == "shift":
                    values[BASE:] += change[2] * noise
                else:
                    values[BASE:] = level * (1 + 0.2 * w) + rng.normal(0.0, 1.0, recent) * noise * change[2]
            out.append(Series(signal, {"namespace": "shop", "workload": f"svc{w}"}, ts, values))
    return out, ts


def _fitted(series: list[Series], ts: np.ndarray) -> WorkloadDetector:
    return WorkloadDetector().fit(series, ts[0], ts[BASE - 1])


# --- DriftMonitor on plain arrays ---
@pytest.mark.parametrize("seed", range(6))
def test_iid_stationary_rows_are_not_drift(seed: int) -> None:
    rng = np.random.default_rng(seed)
    monitor = DriftMonitor().fit(rng.normal(size=(240, 3)), NAMES)
    report = monitor.score(rng.normal(size=(120, 3)))
    assert not report.drifted and report.score < 0.3
    assert 0.0 <= report.score <= 1.0
    assert all(p > 0.001 for p in report.ks_pvalue.values())


def test_iid_level_shift_and_spread_change_are_drift_on_the_right_feature() -> None:
    rng = np.random.default_rng(7)
    monitor = DriftMonitor().fit(rng.normal(size=(240, 3)), NAMES)
    shifted = rng.normal(size=(120, 3))
    shifted[:, 1] += 2.0
    report = monitor.score(shifted)
    assert report.drifted and report.feature == "b" and report.score > 0.9
    assert report.psi["b"] > report.psi_noise["b"] > 0 and report.ks_pvalue["b"] < 1e-6
    assert report.top(1)[0][0] == "b"
    wider = rng.normal(size=(240, 3))
    wider[:, 2] *= 3.0
    report = monitor.score(wider)
    assert report.drifted and report.feature == "c"


def test_ks_statistic_matches_scipy() -> None:
    rng = np.random.default_rng(3)
    small_ref, recent = rng.normal(size=(60, 1)), rng.normal(0.5, 1.0, size=(40, 1))
    exact = DriftMonitor(sketch_size=100).fit(small_ref, ["x"]).score(recent)
    assert exact.ks_statistic["x"] == pytest.approx(ks_2samp(small_ref[:, 0], recent[:, 0]).statistic, abs=1e-6)
    big_ref = rng.normal(size=(5000, 1))
    sketched = DriftMonitor(sketch_size=100).fit(big_ref, ["x"]).score(recent)
    # The 100-quantile sketch's CDF is within 1/200 of the full reference's.
    assert sketched.ks_statistic["x"] == pytest.approx(ks_2samp(big_ref[:, 0], recent[:, 0]).statistic, abs=0.006)


def test_flat_reference_ignores_wiggles_below_resolution_but_not_a_move() -> None:
    flat = np.zeros((100, 2))
    monitor = DriftMonitor().fit(flat, ["flat", "also_flat"])
    wiggle = np.random.default_rng(0).normal(0.0, 0.01, size=(60, 2))
    report = monitor.score(wiggle)
    assert report.score == 0.0 and not report.drifted and report.psi["flat"] < 0.01
    moved = np.column_stack([np.full(60, 3.0), np.zeros(60)])
    report = monitor.score(moved)
    assert report.drifted and report.feature == "flat"


@pytest.mark.parametrize("ref_rows,new_rows", [(1, 1), (2, 0), (3, 2), (5, 3), (8, 500)])
def test_small_samples_give_finite_bounded_reports(ref_rows: int, new_rows: int) -> None:
    rng = np.random.default_rng(ref_rows * 10 + new_rows)
    monitor = DriftMonitor().fit(rng.normal(size=(ref_rows, 3)), NAMES)
    report = monitor.score(rng.normal(size=(new_rows, 3)))
    values = [report.score, *report.psi.values(), *report.psi_noise.values(), *report.ks_statistic.values(),
              *report.ks_pvalue.values()]
    assert all(np.isfinite(v) for v in values)
    assert 0.0 <= report.score <= 1.0 and report.points == new_rows and report.reference_points == ref_rows
    assert all(0.0 <= p <= 1.0 for p in report.ks_pvalue.values())
    if new_rows < 8:  # a handful of same-distribution points is no evidence of drift
        assert not report.drifted


def test_rows_with_non_finite_values_are_skipped_and_bad_shapes_raise() -> None:
    rng = np.random.default_rng(1)
    monitor = DriftMonitor().fit(rng.normal(size=(50, 3)), NAMES)
    rows = rng.normal(size=(20, 3))
    rows[3, 1] = np.nan
    assert monitor.score(rows).points == 19
    with pytest.raises(ValueError):
        monitor.score(rng.normal(size=(20, 2)))
    with pytest.raises(ValueError):
        DriftMonitor().fit(np.empty((0, 3)), NAMES)
    with pytest.raises(RuntimeError):
        DriftMonitor().score(rows)


def test_monitor_and_report_round_trip_through_json() -> None:
    rng = np.random.default_rng(5)
    flat_and_noisy = np.column_stack([np.zeros(80), rng.normal(size=80), rng.exponential(size=80)])
    monitor = DriftMonitor(bins=8, resolution=0.2, threshold=0.4, sketch_size=50).fit(flat_and_noisy, NAMES)
    copy = DriftMonitor.from_dict(json.loads(json.dumps(monitor.as_dict())))
    recent = rng.normal(1.0, 2.0, size=(70, 3))
    assert copy.score(recent) == monitor.score(recent)
    report = monitor.score(recent)
    assert DriftReport.from_dict(json.loads(json.dumps(report.as_dict()))) == report
    unfitted = DriftMonitor.from_dict(json.loads(json.dumps(DriftMonitor(bins=5).as_dict())))
    assert unfitted.bins == 5 and not hasattr(unfitted, "names_")


# --- WorkloadDetector.drift on workload signals ---
@pytest.mark.parametrize("seed", [0, 3, 4, 5, 6])
@pytest.mark.parametrize("recent", [40, 240])
def test_stationary_workloads_do_not_drift(seed: int, recent: int) -> None:
    series, ts = _workloads(seed, recent)
    reports = _fitted(series, ts).drift(series, ts[BASE], ts[-1])
    assert list(reports) == [("shop", f"svc{w}") for w in range(5)]
    assert [k for k, r in reports.items() if r.drifted] == []
    assert all(r.points == recent for r in reports.values())


@pytest.mark.parametrize("seed", [0, 1])
def test_level_shift_drifts_only_the_shifted_workload(seed: int) -> None:
    series, ts = _workloads(seed, 120, (sig.REQUEST_RATE, "shift", 1.5))
    reports = _fitted(series, ts).drift(series, ts[BASE], ts[-1])
    assert [k for k, r in reports.items() if r.drifted] == [("shop", "svc2")]
    assert reports[("shop", "svc2")].feature == "request_rate:level"


def test_spread_change_drifts_over_an_hour_long_recent_window() -> None:
    series, ts = _workloads(0, BASE, (sig.LATENCY_P99, "spread", 3.0))
    reports = _fitted(series, ts).drift(series, ts[BASE], ts[-1])
    assert [k for k, r in reports.items() if r.drifted] == [("shop", "svc2")]
    assert reports[("shop", "svc2")].feature.startswith("latency_p99:")


def test_drift_survives_the_model_store_and_can_be_turned_off(tmp_path) -> None:
    series, ts = _workloads(1, 120, (sig.REQUEST_RATE, "shift", 3.0))
    detector = _fitted(series, ts)
    ModelStore(tmp_path).save("shop", detector)
    loaded, _ = ModelStore(tmp_path).load("shop", expected_class=WorkloadDetector)
    assert loaded.drift(series, ts[BASE], ts[-1]) == detector.drift(series, ts[BASE], ts[-1])
    bare = WorkloadDetector(drift_factory=None).fit(series, ts[0], ts[BASE - 1])
    assert bare.drift(series, ts[BASE], ts[-1]) == {}
    # Detection itself does not depend on the drift reference.
    assert bare.detect(series, ts[BASE], ts[-1]) == detector.detect(series, ts[BASE], ts[-1])


# --- the numpy feature path WorkloadDetector uses must give build_features' numbers exactly ---
def _irregular(series: list[Series], seed: int) -> list[Series]:
    """Drops a fifth of each series' points, adds NaN gaps and offsets one signal's clock: forces the union path."""
    rng = np.random.default_rng(seed)
    out = []
    for s in series:
        keep = rng.random(len(s.timestamps)) > 0.2
        values = s.values[keep].copy()
        values[rng.random(values.size) < 0.05] = np.nan
        out.append(Series(s.name, s.labels, s.timestamps[keep] + (0.5 if s.name == sig.CPU else 0.0), values))
    return out


@pytest.mark.parametrize("irregular", [False, True])
def test_aligned_signals_features_equal_build_features(irregular: bool) -> None:
    from aiops.detect.features import Baseline, build_features, signal_frame
    from aiops.detect.workload import AlignedSignals

    series, ts = _workloads(2, 40, (sig.MEMORY, "shift", 6.0))
    one = [s for s in series if s.workload == "svc2"]
    if irregular:
        one = _irregular(one, 9)
    frame = signal_frame(one)
    baseline = Baseline.fit(frame.loc[ts[0]:ts[BASE - 1]])
    expected = build_features(frame, baseline, window=4)
    aligned = AlignedSignals.of(one)
    np.testing.assert_array_equal(aligned.timestamps, expected.index.to_numpy())
    np.testing.assert_array_equal(aligned.features(baseline, 4), expected.to_numpy())
    rows = aligned.between(ts[BASE], ts[-1])
    np.testing.assert_array_equal(aligned.timestamps[rows], expected.loc[ts[BASE]:ts[-1]].index.to_numpy())


def test_detection_on_irregular_series_still_finds_the_leak() -> None:
    series, ts = _workloads(2, 40, (sig.MEMORY, "shift", 6.0))
    series = _irregular(series, 4)
    anomalies = _fitted(series, ts).detect(series, ts[BASE], ts[-1])
    assert [a.target.name for a in anomalies] == ["svc2"] and anomalies[0].signal == sig.MEMORY
