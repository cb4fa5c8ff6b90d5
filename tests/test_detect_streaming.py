"""StreamingDetector: online (no look-ahead), bounded, deterministic, and it notices spikes and level shifts."""

from __future__ import annotations

import numpy as np
import pytest

from aiops.detect.streaming import StreamingDetector
from aiops.domain.errors import InputError

N = 1200


def _noisy(seed: int, n: int = N) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return 50.0 + 5.0 * np.sin(2 * np.pi * t / 96) + rng.normal(0.0, 1.0, n)


def _ts(n: int) -> np.ndarray:
    return np.arange(n) * 300


def test_prefix_scores_equal_the_first_scores_of_the_full_series():
    values = _noisy(1)
    values[900] += 40.0
    full = StreamingDetector().score_series(_ts(N), values)
    for cut in (437, 901):
        prefix = StreamingDetector().score_series(_ts(cut), values[:cut])
        np.testing.assert_allclose(prefix, full[:cut], rtol=0, atol=1e-12)


def test_changing_the_future_does_not_change_past_scores():
    values = _noisy(2)
    other = values.copy()
    other[800:] += 100.0
    a = StreamingDetector().score_series(_ts(N), values)
    b = StreamingDetector().score_series(_ts(N), other)
    np.testing.assert_array_equal(a[:800], b[:800])
    assert not np.array_equal(a[800:], b[800:])


def test_update_one_point_at_a_time_matches_score_series():
    values = _noisy(3, 600)
    values[500] -= 30.0
    batch = StreamingDetector().score_series(_ts(600), values)
    det = StreamingDetector()
    online = np.array([det.update(v, ts) for v, ts in zip(values, _ts(600))])
    np.testing.assert_allclose(online, batch, rtol=0, atol=1e-9)
    assert det.inner_ is not None and hasattr(det.inner_, "threshold_")


def test_scores_are_in_unit_interval_even_for_flat_and_wild_series():
    flat = np.full(700, 3.0)
    wild = np.r_[np.zeros(400), np.full(100, 1e9), np.zeros(200)]
    steps = np.repeat([0.0, 1.0, 0.0, 5.0], 200)
    for values in (flat, wild, steps, _noisy(4)):
        s = StreamingDetector().score_series(_ts(len(values)), values)
        assert s.shape == values.shape
        assert np.all(np.isfinite(s)) and s.min() >= 0.0 and s.max() <= 1.0


def test_nan_values_do_not_break_scoring():
    values = _noisy(5, 500)
    values[300:305] = np.nan
    s = StreamingDetector().score_series(_ts(500), values)
    assert np.all(np.isfinite(s)) and s.min() >= 0.0 and s.max() <= 1.0


def _peak_near(scores: np.ndarray, at: int, before: int = 0, after: int = 20) -> float:
    return float(scores[at - before:at + after].max())


def test_spike_scores_high_near_the_spike_and_stationary_series_stays_low():
    base = _noisy(6)
    spiked = base.copy()
    spiked[1000] += 25.0
    s_spike = StreamingDetector().score_series(_ts(N), spiked)
    s_calm = StreamingDetector().score_series(_ts(N), base)
    calm_late = s_calm[400:].max()
    assert _peak_near(s_spike, 1000) > calm_late + 0.05
    assert int(np.argmax(s_spike[400:])) + 400 in range(1000, 1010)


def test_level_shift_scores_high_near_the_change():
    values = _noisy(7)
    values[950:] += 15.0
    s = StreamingDetector().score_series(_ts(N), values)
    calm = StreamingDetector().score_series(_ts(N), _noisy(7))[400:].max()
    assert _peak_near(s, 950) > calm + 0.05
    assert int(np.argmax(s[400:])) + 400 in range(950, 980)


def test_same_input_gives_identical_scores():
    values = _noisy(8)
    values[700] += 20.0
    a = StreamingDetector().score_series(_ts(N), values)
    b = StreamingDetector().score_series(_ts(N), values)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("detector", ["lof", "iforest"])
def test_other_pyod_inner_detectors_run_online(detector):
    values = _noisy(9, 500)
    values[450] += 30.0
    s = StreamingDetector(detector=detector).score_series(_ts(500), values)
    assert s.min() >= 0.0 and s.max() <= 1.0
    assert _peak_near(s, 450) >= np.percentile(s[200:440], 95)


def test_bad_configuration_names_the_field():
    with pytest.raises(InputError) as err:
        StreamingDetector(detector="svm")
    assert "streaming.detector" in str(err.value)
    with pytest.raises(InputError):
        StreamingDetector(window=0)
    with pytest.raises(InputError):
        StreamingDetector(no_such_knob=1)


@pytest.mark.parametrize("cut", [150, 251, 777, 1100])
def test_score_at_t_does_not_change_when_any_future_point_changes(cut):
    """Online: replacing everything after ``cut`` (including with new levels the novelty channels would notice)
    leaves every score up to and including ``cut`` identical, whatever the refit phase."""
    values = _noisy(10)
    future = values.copy()
    future[cut + 1:] = np.random.default_rng(cut).normal(500.0, 50.0, N - cut - 1)
    a = StreamingDetector().score_series(_ts(N), values)
    b = StreamingDetector().score_series(_ts(N), future)
    np.testing.assert_array_equal(a[:cut + 1], b[:cut + 1])
    assert b[cut + 1:].max() > 0.5


def test_the_benchmark_scores_every_file_with_one_default_configuration():
    from aiops.detect.streaming import StreamingConfig
    from bench.nab import DETECTORS

    detectors = [DETECTORS["aiops"]() for _ in range(3)]
    assert all(isinstance(d, StreamingDetector) for d in detectors)
    assert all(d.config == StreamingConfig() for d in detectors)


def test_running_max_matches_a_brute_force_window():
    from aiops.detect.streaming import _RunningMax

    rng = np.random.default_rng(11)
    values = rng.exponential(1.0, 400)
    for size in (1, 7, 50):
        running = _RunningMax(size)
        assert running.max() is None
        for i, v in enumerate(values):
            running.push(float(v))
            assert running.max() == values[max(0, i - size + 1):i + 1].max()


def test_novelty_channels_notice_a_new_level_soon_after_a_big_spike():
    """A big spike raises the shape channel's bar for ``recent`` points, so a moderate shift to a never-seen level
    right after it is no local record; the trend channel, judged against the whole history, still alarms."""
    values = _noisy(12)
    values[700] += 40.0
    values[900:] += 8.0
    with_novelty = StreamingDetector().score_series(_ts(N), values)
    shape_only_detector = StreamingDetector(novelty=False, volatility=False)
    shape_only = shape_only_detector.score_series(_ts(N), values)
    assert with_novelty[700] > 0.5 and shape_only[700] > 0.5
    assert with_novelty[895:960].max() > 0.5
    assert shape_only[895:960].max() < 0.5
    assert len(shape_only_detector.novelty_models_) == 0 and shape_only_detector.config.channels == ("shape",)


def test_a_bigger_event_right_after_an_alarm_escalates_through_suppression():
    values = _noisy(13)
    values[1000] += 8.0   # a modest new record: it alarms and starts a quiet spell
    values[1020] += 60.0  # a far bigger event inside that spell
    escalating = StreamingDetector().score_series(_ts(N), values)
    quiet = StreamingDetector(escalation=1.0).score_series(_ts(N), values)
    assert escalating[1000] >= 0.5 and quiet[1000] >= 0.5
    assert escalating[1020] > escalating[1000] + 0.2
    assert quiet[1001:1000 + 75].max() == 0.0


def test_volatility_channel_notices_a_noisy_series_going_flat_at_a_level_it_has_seen():
    """Flat at its own mean: no new value, no new shape of six points, no new slow shape; only the range of the
    last 24 points has never been that small."""
    values = np.concatenate([np.random.default_rng(3).normal(0.0, 1.0, 3000), np.zeros(300)])
    with_volatility = StreamingDetector().score_series(_ts(3300), values)
    without = StreamingDetector(volatility=False).score_series(_ts(3300), values)
    assert with_volatility[3000:3048].max() > 0.5
    assert without[3000:].max() < 0.5
    assert StreamingDetector().config.channels == ("shape", "level", "trend", "volatility")


def _fed(detector: StreamingDetector, n: int = 5) -> StreamingDetector:
    """Every channel's memory holds a largest raw score of 1.0 (the quiet spell this starts is over by point
    1000)."""
    for i in range(n):
        detector._post(i, [1.0] * len(detector.config.channels))
    return detector


def test_a_shape_record_nothing_else_supports_must_beat_its_bar_by_a_margin():
    # a shape raw 1.2 x its recent record, every other channel quiet: discounted to 0.96 x, no alarm
    assert _fed(StreamingDetector())._post(1000, [1.2, 0.0, 0.0, 0.0]) == pytest.approx(0.96 / 1.96)
    # one other channel at a quarter of its record (shape_support): the record counts in full
    assert _fed(StreamingDetector())._post(1000, [1.2, 0.0, 0.25, 0.0]) == pytest.approx(1.2 / 2.2)
    # half way: the discount is linear in the support
    assert _fed(StreamingDetector())._post(1000, [1.2, 0.0, 0.0, 0.125]) == pytest.approx(1.08 / 2.08)
    # no discount configured: the bare record alarms
    assert _fed(StreamingDetector(shape_discount=1.0))._post(1000, [1.2, 0.0, 0.0, 0.0]) == pytest.approx(1.2 / 2.2)
    # a shape-only detector has nothing to ask for support
    assert _fed(StreamingDetector(novelty=False, volatility=False))._post(1000, [1.2]) == pytest.approx(1.2 / 2.2)


def test_negative_suppression_knobs_are_refused():
    for bad in ({"suppress": -1}, {"escalation": -0.1}, {"novelty_block": 0}, {"volatility_window": 1},
                {"shape_discount": 0.0}, {"shape_discount": 1.5}, {"shape_support": 0.0}):
        with pytest.raises(InputError):
            StreamingDetector(**bad)
