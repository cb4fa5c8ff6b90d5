"""Local Outlier Factor with PyOD's contract, made safe for the small, partly flat baselines operations produce."""

from __future__ import annotations

import numpy as np
from pyod.models.lof import LOF

MIN_TRAINING_POINTS = 3


class LofDetector:
    """``pyod.models.lof.LOF(novelty=True)`` behind PyOD's contract: ``fit(X)``, ``decision_function(X)`` (higher =
    more abnormal), ``threshold_``, ``decision_scores_``, ``predict(X)``.

    Two adjustments: ``n_neighbors`` is clipped to ``n - 1`` for tiny baselines, and columns whose training spread is
    below ``min_spread`` get deterministic noise of that spread in the fitted copy. Without that, a perfectly flat
    baseline has zero k-distances and any tiny move scores in the billions. ``window`` is the feature window the
    detector was built for, kept with the model so a saved detector says how to feed it.
    """

    name = "lof"

    def __init__(self, n_neighbors: int = 20, contamination: float = 0.01, window: int = 4,
                 min_spread: float = 0.25, seed: int = 0) -> None:
        self.n_neighbors = n_neighbors
        self.contamination = contamination
        self.window = window
        self.min_spread = min_spread
        self.seed = seed

    def fit(self, X: np.ndarray) -> "LofDetector":
        """Fit on the baseline rows ``X`` (n_samples, n_features); needs at least 3 finite rows."""
        X = self._check(X)
        if X.shape[0] < MIN_TRAINING_POINTS:
            raise ValueError(f"LofDetector needs at least {MIN_TRAINING_POINTS} training rows, got {X.shape[0]}")
        train = X.copy()
        if self.min_spread > 0:
            flat = train.std(axis=0) < self.min_spread
            if flat.any():
                rng = np.random.default_rng(self.seed)
                train[:, flat] += rng.normal(0.0, self.min_spread, size=(train.shape[0], int(flat.sum())))
        self.n_neighbors_ = max(1, min(self.n_neighbors, train.shape[0] - 1))
        self.model_ = LOF(n_neighbors=self.n_neighbors_, contamination=self.contamination, novelty=True)
        self.model_.fit(train)
        self.n_features_in_ = X.shape[1]
        self.decision_scores_ = np.asarray(self.model_.decision_scores_, dtype=np.float64)
        self.threshold_ = float(self.model_.threshold_)
        self.labels_ = (self.decision_scores_ > self.threshold_).astype(int)
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Outlier scores of ``X``: higher = more abnormal, comparable to ``threshold_``."""
        if not hasattr(self, "model_"):
            raise RuntimeError("LofDetector is not fitted")
        X = self._check(X)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"expected {self.n_features_in_} features, got {X.shape[1]}")
        if X.shape[0] == 0:
            return np.empty(0)
        return np.asarray(self.model_.decision_function(X), dtype=np.float64)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """1 for rows scoring above ``threshold_``, else 0 (PyOD's labels)."""
        return (self.decision_function(X) > self.threshold_).astype(int)

    @staticmethod
    def _check(X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2:
            raise ValueError(f"expected a 2-d array, got shape {X.shape}")
        if not np.all(np.isfinite(X)):
            raise ValueError("features must be finite")
        return X
