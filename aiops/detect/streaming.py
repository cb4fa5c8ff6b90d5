"""An online anomaly detector for one metric series: PyOD on windowed features, refitted on a sliding history, with
the raw outlier score judged against the recent past and repeated alarms suppressed.

Pipeline for each new point ``x_t`` (everything uses only points up to ``t``):

1. **Features**: the last ``window`` values (optionally plus the means of ``coarse_count`` blocks of
   ``coarse_block`` points), scaled by the inner-quantile range of the training history, so the model sees shapes in
   units of "what this series usually spans" and one old spike does not shrink every later change.
2. **Inner detector**: a PyOD model (``KNN`` by default; ``LOF``, ``HBOS``, ``IForest`` selectable) with its
   ``fit`` / ``decision_function`` / ``threshold_`` contract, fitted on the feature rows of the last ``history``
   points and refitted every ``refit_every`` points. A point is scored by the model fitted *before* it.
3. **Relative novelty**: the raw score divided by the largest raw score of the previous ``recent`` points,
   ``x = raw / recent_max``, mapped to ``x / (1 + x)``: 0.5 means "as unusual as the most unusual thing lately",
   above 0.5 "more unusual than anything lately". Noisy series raise their own bar, so one global threshold serves
   series of very different character.
4. **Suppression**: after a score reaches ``alarm_level`` (0.5: a new recent record) the next ``suppress`` points
   score 0, so one event is one alarm; the first ``warmup`` points score 0 while the model has too little history.

``score_series`` runs the pipeline over an array in blocks (one ``decision_function`` call per refit interval);
``update`` does the same one point at a time and gives the same scores.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aiops.domain.errors import InputError

INNER_DETECTORS = ("knn", "lof", "hbos", "iforest")


@dataclass(frozen=True)
class StreamingConfig:
    """All knobs of :class:`StreamingDetector`; one configuration serves every series."""

    detector: str = "knn"
    window: int = 6
    coarse_block: int = 0
    coarse_count: int = 4
    n_neighbors: int = 10
    history: int = 4000
    refit_every: int = 100
    warmup: int = 150
    scale_quantile: float = 0.05
    recent: int = 500
    alarm_level: float = 0.5
    suppress: int = 50
    seed: int = 0

    def __post_init__(self) -> None:
        if self.detector not in INNER_DETECTORS:
            raise InputError("streaming.detector", f"must be one of {INNER_DETECTORS}, got {self.detector!r}")
        for name in ("window", "n_neighbors", "history", "refit_every", "recent"):
            if getattr(self, name) < 1:
                raise InputError(f"streaming.{name}", f"must be >= 1, got {getattr(self, name)}")
        if self.warmup < self.span + 2:
            raise InputError("streaming.warmup", f"must be >= feature span + 2 = {self.span + 2}, got {self.warmup}")
        if not 0.0 <= self.scale_quantile < 0.5:
            raise InputError("streaming.scale_quantile", f"must be in [0, 0.5), got {self.scale_quantile}")

    @property
    def span(self) -> int:
        """How many points one feature row looks back over (the current point included)."""
        return max(self.window, self.coarse_block * self.coarse_count)


def _make_inner(cfg: StreamingConfig, n_train: int):
    """A fresh PyOD detector for ``n_train`` training rows."""
    k = max(1, min(cfg.n_neighbors, n_train - 1))
    if cfg.detector == "knn":
        from pyod.models.knn import KNN
        return KNN(n_neighbors=k, method="mean")
    if cfg.detector == "lof":
        from pyod.models.lof import LOF
        return LOF(n_neighbors=k, novelty=True)
    if cfg.detector == "hbos":
        from pyod.models.hbos import HBOS
        return HBOS()
    from pyod.models.iforest import IForest
    return IForest(n_estimators=50, random_state=cfg.seed)


class StreamingDetector:
    """Online anomaly scores in [0, 1] for one univariate series; each score uses only the past.

    ``StreamingDetector(**config).score_series(timestamps, values)`` scores a whole array;
    ``update(value, ts)`` scores one new point. ``inner_`` is the current PyOD model (``fit``,
    ``decision_function``, ``threshold_``); ``last_raw_`` the inner detector's raw score of the last point.
    """

    def __init__(self, **config) -> None:
        try:
            self.config = StreamingConfig(**config)
        except TypeError as exc:
            raise InputError("streaming", str(exc)) from None
        self.inner_ = None
        self.last_raw_ = 0.0
        self._n = 0                        # points seen
        self._values: list[float] = []     # the most recent values (enough for the next fit)
        self._raw: list[float] = []        # the most recent raw scores since warm-up (enough for ``recent``)
        self._scale = (0.0, 1.0)
        self._raw_floor = 0.0
        self._quiet_until = -1

    # -- public API -------------------------------------------------------------------------------------------------

    def score_series(self, timestamps: np.ndarray | None, values: np.ndarray) -> np.ndarray:
        """Scores for ``values`` (continuing from any earlier points); ``timestamps`` only has to match in length."""
        values = np.asarray(values, dtype=np.float64)
        if timestamps is not None and len(timestamps) != len(values):
            raise InputError("values", f"{len(values)} values for {len(timestamps)} timestamps")
        out = np.empty(len(values))
        i = 0
        while i < len(values):
            chunk = values[i:i + self._block_room()]
            out[i:i + len(chunk)] = self._advance(chunk)
            i += len(chunk)
        return out

    def update(self, value: float, ts=None) -> float:
        """Score of one new point (``ts`` is accepted for symmetry; the detector works on point order)."""
        return float(self._advance(np.array([float(value)]))[0])

    # -- pipeline ---------------------------------------------------------------------------------------------------

    def _block_room(self) -> int:
        """How many points can be scored before the next refit is due."""
        cfg = self.config
        if self._n < cfg.warmup:
            return cfg.warmup - self._n
        return cfg.refit_every - (self._n - cfg.warmup) % cfg.refit_every

    def _advance(self, chunk: np.ndarray) -> np.ndarray:
        """Append ``chunk`` (never crossing a refit boundary) and return its scores."""
        cfg = self.config
        start = self._n
        if start >= cfg.warmup and (start - cfg.warmup) % cfg.refit_every == 0:
            self._refit()
        # a gap repeats the last value: a missing scrape is not evidence of anything
        chunk = np.where(np.isfinite(chunk), chunk, self._values[-1] if self._values else 0.0)
        self._values.extend(chunk.tolist())
        self._n += len(chunk)
        self._trim()
        if start < cfg.warmup:
            return np.zeros(len(chunk))
        context = np.asarray(self._values[-(len(chunk) + cfg.span - 1):], dtype=np.float64)
        raw = np.asarray(self.inner_.decision_function(self._features(context)), dtype=np.float64)
        raw = np.maximum(raw - self._raw_floor, 0.0)
        scores = np.empty(len(chunk))
        for j, r in enumerate(raw.tolist()):
            scores[j] = self._post(start + j, r)
        return scores

    def _trim(self) -> None:
        """Keep only what the next fit and the recent-max need, so a long-running detector stays small."""
        keep = self.config.history + self.config.span
        if len(self._values) > 2 * keep:
            del self._values[:-keep]
        if len(self._raw) > 2 * self.config.recent:
            del self._raw[:-self.config.recent]

    def _features(self, vals: np.ndarray) -> np.ndarray:
        """One row per point of ``vals`` from index ``span - 1`` on: the last ``window`` scaled values, then the means
        of the last ``coarse_count`` blocks of ``coarse_block`` points (the longer context a short window misses)."""
        cfg = self.config
        lo, scale = self._scale
        z = (vals - lo) / scale
        n_rows = len(z) - cfg.span + 1
        fine = np.lib.stride_tricks.sliding_window_view(z, cfg.window)[-n_rows:]
        if cfg.coarse_block <= 0:
            return fine
        b = cfg.coarse_block
        csum = np.concatenate([[0.0], np.cumsum(z)])
        ends = np.arange(cfg.span - 1, len(z)) + 1  # exclusive end of the newest block
        coarse = [(csum[ends - j * b] - csum[ends - (j + 1) * b]) / b for j in range(cfg.coarse_count)]
        return np.column_stack([fine] + coarse)

    def _refit(self) -> None:
        """Fit the inner detector on the feature rows of the last ``history`` points."""
        cfg = self.config
        vals = np.asarray(self._values[-(cfg.history + cfg.span - 1):], dtype=np.float64)
        q = cfg.scale_quantile
        lo, hi = (float(vals.min()), float(vals.max())) if q <= 0 else (float(v) for v in np.quantile(vals, [q, 1 - q]))
        # a flat history must not turn every rounding difference into an alarm
        scale = max(hi - lo, 1e-3 * max(abs(lo), abs(hi)), 1e-9)
        self._scale = (lo, scale)
        X = self._features(vals)
        rng = np.random.default_rng(cfg.seed)
        X = X + rng.normal(0.0, 1e-4, size=X.shape)  # ties of quantised data break neighbour methods
        self.inner_ = _make_inner(cfg, len(X)).fit(X)
        # the ratio in ``_post`` needs scores with a natural zero: distances have one, tree and histogram scores do
        # not, so theirs is put at the lowest training score
        self._raw_floor = 0.0 if cfg.detector in ("knn", "lof") else float(np.min(self.inner_.decision_scores_))

    def _post(self, i: int, raw: float) -> float:
        """Score of point ``i`` from its raw score: novelty relative to the recent maximum, with suppression."""
        cfg = self.config
        recent = self._raw[-cfg.recent:]
        self._raw.append(raw)
        self.last_raw_ = raw
        if not recent:
            return 0.0
        x = raw / max(max(recent), 1e-9)
        score = x / (1.0 + x) if x > 0 else 0.0
        if i <= self._quiet_until:
            return 0.0
        if score >= cfg.alarm_level and cfg.suppress > 0:
            self._quiet_until = i + cfg.suppress
        return score
