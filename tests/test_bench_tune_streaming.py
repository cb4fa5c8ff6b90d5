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


def test_replay_reproduces_a_run_and_drops_the_channels_a_setting_turns_off(tmp_path):
    import numpy as np

    from aiops.detect.streaming import StreamingDetector
    from bench.tune_streaming import _record_one, replay

    values = 10 + np.sin(np.arange(900) / 20) + np.random.default_rng(4).normal(0, 0.1, 900)
    values[700] += 5
    path = tmp_path / "series.csv"
    path.write_text("timestamp,value\n" + "".join(f"2020-01-01 00:{i // 60:02d}:{i % 60:02d},{v}\n"
                                                    for i, v in enumerate(values)))
    _, raws, _ = _record_one((path, {}))
    assert np.array_equal(replay(raws, {}), StreamingDetector().score_series(None, values))
    # without the level and trend channels: only shape and volatility raws may reach the post-processing
    kept = [None if r is None else [r[0], r[3]] for r in raws]
    assert np.array_equal(replay(raws, {"novelty": False}, recorded={}), replay(kept, {"novelty": False}))
    assert not np.array_equal(replay(raws, {"novelty": False}, recorded={}),
                              replay([None if r is None else r[:2] for r in raws], {"novelty": False}))
