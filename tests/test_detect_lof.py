"""LofDetector keeps PyOD's contract and survives tiny and flat baselines."""

from __future__ import annotations

import numpy as np
import pytest

from aiops.detect.lof import LofDetector


def _cloud(n: int = 300, d: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 1.0, size=(n, d))


def test_pyod_contract_higher_is_more_abnormal() -> None:
    X = _cloud()
    det = LofDetector(contamination=0.05).fit(X)
    assert det.decision_scores_.shape == (300,)
    # threshold_ is the contamination quantile of the training scores
    assert np.mean(det.decision_scores_ > det.threshold_) == pytest.approx(0.05, abs=0.02)
    inlier, outlier = np.zeros((1, 4)), np.full((1, 4), 8.0)
    s_in, s_out = det.decision_function(np.vstack([inlier, outlier]))
    assert s_out > det.threshold_ > s_in
    assert list(det.predict(np.vstack([inlier, outlier]))) == [0, 1]


def test_tiny_baseline_clips_neighbors() -> None:
    det = LofDetector(n_neighbors=20).fit(_cloud(n=5))
    assert det.n_neighbors_ == 4
    assert np.isfinite(det.decision_function(_cloud(n=3, seed=1))).all()
    with pytest.raises(ValueError):
        LofDetector().fit(_cloud(n=2))


def test_constant_columns_do_not_explode_scores() -> None:
    X = _cloud(d=2)
    X = np.hstack([X, np.zeros((300, 2))])  # two perfectly flat features
    det = LofDetector().fit(X)
    tiny_move = np.array([[0.0, 0.0, 0.05, 0.0]])
    big_move = np.array([[0.0, 0.0, 10.0, 0.0]])
    assert det.decision_function(tiny_move)[0] < det.threshold_
    assert det.decision_function(big_move)[0] > 3 * det.threshold_
    assert np.isfinite(det.decision_scores_).all()


def test_rejects_bad_input() -> None:
    det = LofDetector().fit(_cloud())
    with pytest.raises(ValueError):
        det.decision_function(np.zeros((2, 3)))
    with pytest.raises(ValueError):
        LofDetector().fit(np.array([[np.nan, 1.0]] * 10))
    with pytest.raises(RuntimeError):
        LofDetector().decision_function(np.zeros((1, 4)))
