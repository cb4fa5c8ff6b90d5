"""The tuning harness's file-resampling interval for the gap between two detectors."""

from bench.tune_streaming import bootstrap_gap


def test_identical_detectors_have_no_gap():
    scores = {"a.csv": 0.8, "b.csv": -1.0, "c.csv": 0.4}
    assert bootstrap_gap(scores, dict(scores), {"a.csv": 1, "b.csv": 1, "c.csv": 2}) == (0.0, 0.0, 0.0)


def test_gap_is_normalised_by_the_windows_and_its_interval_brackets_it():
    ours = {f"f{i}.csv": 1.0 for i in range(10)}
    theirs = {f"f{i}.csv": (0.0 if i < 5 else 1.0) for i in range(10)}
    windows = {f: 1 for f in ours}
    gap, lo, hi = bootstrap_gap(ours, theirs, windows, rounds=500)
    assert gap == 100.0 * 5 / 20          # 5 raw points over 10 windows: (raw + 10) / 20 moves by 25 points
    assert 0.0 <= lo < gap < hi <= 50.0   # resampling only reshuffles which files are better


def test_a_uniformly_better_detector_stays_ahead_in_every_resample():
    ours = {f"f{i}.csv": 0.9 for i in range(8)}
    theirs = {f: 0.5 for f in ours}
    gap, lo, hi = bootstrap_gap(ours, theirs, {f: 1 for f in ours})
    assert lo == hi == gap > 0
