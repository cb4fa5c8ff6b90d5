"""An online anomaly detector for one metric series: PyOD on windowed features, refitted on a sliding history, with
each raw outlier score judged against the past and repeated alarms suppressed.

Pipeline for each new point ``x_t`` (everything uses only points up to ``t``):

1. **Scaling**: values are scaled by the inner-quantile range of the training history, so the models see shapes in
   units of "what this series usually spans" and one old spike does not shrink every later change.
2. **Up to four PyOD channels**, each fitted on the feature rows of the last ``history`` points and refitted every
   ``refit_every`` points (a point is scored by the models fitted *before* it):

   * *shape*: the last ``window`` scaled values (optionally plus the means of ``coarse_count`` blocks of
     ``coarse_block`` points) in the ``detector`` model (``KNN`` by default; ``LOF``, ``HBOS``, ``IForest``
     selectable);
   * *level* (when ``novelty`` is on): the current scaled value alone in a KNN: a value the series never took;
   * *trend* (when ``novelty`` is on): the means of ``novelty_blocks`` blocks of ``novelty_block`` points in a
     KNN: a slow shape the short window cannot see;
   * *volatility* (when ``volatility`` is on): the log of the range (max - min) of the last ``volatility_window``
     scaled values in a KNN: a series turning jumpy, or quiet, at a level it has seen.
3. **Relative novelty**: each channel's raw score divided by the largest raw score of that channel in the past:
   over the previous ``recent`` points for the shape channel (local surprise), over the whole kept ``history`` for
   the other channels (only never-seen-before counts, so they add few false alarms). A shape record that nothing
   else supports is weaker evidence (most chance records of a long stream are of that kind): the shape ratio is
   multiplied by ``shape_discount`` when every other channel's ratio is 0, rising linearly to 1 once one of them
   reaches ``shape_support``. The combined ratio is the largest of the channels', mapped to ``x / (1 + x)``: 0.5
   means "as unusual as the most unusual thing in that channel's memory", above 0.5 "a new record". Noisy series
   raise their own bar, so one global threshold serves series of very different character.
4. **Suppression**: after a score reaches ``alarm_level`` (0.5: a new record) the next ``suppress`` points score 0,
   so one event is one alarm, unless a point beats the alarm's score by more than ``escalation`` (a bigger event
   right behind a small one still alarms, and re-arms the quiet spell). The first ``warmup`` points score 0 while
   the models have too little history.

``score_series`` runs the pipeline over an array in blocks (one ``decision_function`` call per channel and refit
interval); ``update`` does the same one point at a time and gives the same scores.
"""

from __future__ import annotations

from collections import deque
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
    suppress: int = 75
    escalation: float = 0.2
    novelty: bool = True
    novelty_block: int = 8
    novelty_blocks: int = 6
    volatility: bool = True
    volatility_window: int = 24
    shape_discount: float = 0.8
    shape_support: float = 0.25
    seed: int = 0

    def __post_init__(self) -> None:
        if self.detector not in INNER_DETECTORS:
            raise InputError("streaming.detector", f"must be one of {INNER_DETECTORS}, got {self.detector!r}")
        for name in ("window", "n_neighbors", "history", "refit_every", "recent", "novelty_block", "novelty_blocks"):
            if getattr(self, name) < 1:
                raise InputError(f"streaming.{name}", f"must be >= 1, got {getattr(self, name)}")
        if self.volatility_window < 2:
            raise InputError("streaming.volatility_window", f"must be >= 2, got {self.volatility_window}")
        if not 0.0 < self.shape_discount <= 1.0:
            raise InputError("streaming.shape_discount", f"must be in (0, 1], got {self.shape_discount}")
        if self.shape_support <= 0:
            raise InputError("streaming.shape_support", f"must be > 0, got {self.shape_support}")
        if self.warmup < self.span + 2:
            raise InputError("streaming.warmup", f"must be >= feature span + 2 = {self.span + 2}, got {self.warmup}")
        if not 0.0 <= self.scale_quantile < 0.5:
            raise InputError("streaming.scale_quantile", f"must be in [0, 0.5), got {self.scale_quantile}")
        if self.suppress < 0 or self.escalation < 0:
            raise InputError("streaming.suppress", f"suppress and escalation must be >= 0, got "
                                                   f"{self.suppress} and {self.escalation}")

    @property
    def channels(self) -> tuple[str, ...]:
        """The channels' names, in the order of their raw scores."""
        return ("shape",) + ("level", "trend") * self.novelty + ("volatility",) * self.volatility

    @property
    def shape_span(self) -> int:
        """How many points one shape-channel row looks back over (the current point included)."""
        return max(self.window, self.coarse_block * self.coarse_count)

    @property
    def span(self) -> int:
        """How many points the longest feature row looks back over (the current point included)."""
        trend = self.novelty_block * self.novelty_blocks if self.novelty else 1
        return max(self.shape_span, trend, self.volatility_window if self.volatility else 1)


def _make_inner(cfg: StreamingConfig, n_train: int, detector: str | None = None):
    """A fresh PyOD detector for ``n_train`` training rows (``detector`` overrides the configured one)."""
    detector = detector or cfg.detector
    k = max(1, min(cfg.n_neighbors, n_train - 1))
    if detector == "knn":
        from pyod.models.knn import KNN
        return KNN(n_neighbors=k, method="mean")
    if detector == "lof":
        from pyod.models.lof import LOF
        return LOF(n_neighbors=k, novelty=True)
    if detector == "hbos":
        from pyod.models.hbos import HBOS
        return HBOS()
    from pyod.models.iforest import IForest
    return IForest(n_estimators=50, random_state=cfg.seed)


def _block_means(z: np.ndarray, block: int, count: int, n_rows: int) -> list[np.ndarray]:
    """For each of the last ``n_rows`` points of ``z``: the means of the ``count`` blocks of ``block`` points ending
    there (newest block first)."""
    csum = np.concatenate([[0.0], np.cumsum(z)])
    ends = np.arange(len(z) - n_rows, len(z)) + 1  # exclusive end of the newest block
    return [(csum[ends - j * block] - csum[ends - (j + 1) * block]) / block for j in range(count)]


class _RunningMax:
    """The maximum of the last ``size`` values pushed (amortised O(1) per value)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._n = 0
        self._q: deque[tuple[int, float]] = deque()  # (index, value), values decreasing

    def max(self) -> float | None:
        """The maximum of the last ``size`` values, or None before the first push."""
        return self._q[0][1] if self._q else None

    def push(self, value: float) -> None:
        """Add ``value``; the oldest value leaves once more than ``size`` were pushed."""
        while self._q and self._q[-1][1] <= value:
            self._q.pop()
        self._q.append((self._n, value))
        self._n += 1
        while self._q[0][0] <= self._n - 1 - self.size:
            self._q.popleft()


class StreamingDetector:
    """Online anomaly scores in [0, 1] for one univariate series; each score uses only the past.

    ``StreamingDetector(**config).score_series(timestamps, values)`` scores a whole array;
    ``update(value, ts)`` scores one new point. ``inner_`` is the current shape-channel PyOD model (``fit``,
    ``decision_function``, ``threshold_``); ``novelty_models_`` the other channels' models (level and trend with
    ``novelty``, then volatility with ``volatility``); ``last_raw_`` the shape channel's raw score of the last point.
    """

    def __init__(self, **config) -> None:
        try:
            self.config = StreamingConfig(**config)
        except TypeError as exc:
            raise InputError("streaming", str(exc)) from None
        cfg = self.config
        self.inner_ = None
        self.novelty_models_: list = []
        self.last_raw_ = 0.0
        self._n = 0                        # points seen
        self._values: list[float] = []     # the most recent values (enough for the next fit)
        # each channel's raw scores since warm-up, remembered as a running max over that channel's memory
        self._memory = [_RunningMax(cfg.recent if name == "shape" else cfg.history) for name in cfg.channels]
        self._scale = (0.0, 1.0)
        self._raw_floor = 0.0
        self._quiet_until = -1
        self._quiet_level = 0.0

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
        raws = []
        for model, features in zip([self.inner_] + self.novelty_models_, self._channel_features(context, len(chunk))):
            raws.append(np.asarray(model.decision_function(features), dtype=np.float64))
        raws[0] = np.maximum(raws[0] - self._raw_floor, 0.0)
        scores = np.empty(len(chunk))
        for j in range(len(chunk)):
            scores[j] = self._post(start + j, [float(r[j]) for r in raws])
        return scores

    def _trim(self) -> None:
        """Keep only what the next fit needs, so a long-running detector stays small."""
        keep = self.config.history + self.config.span
        if len(self._values) > 2 * keep:
            del self._values[:-keep]

    def _channel_features(self, vals: np.ndarray, n_rows: int) -> list[np.ndarray]:
        """Feature rows of the last ``n_rows`` points of ``vals`` for each channel (shape, then level and trend,
        then volatility)."""
        cfg = self.config
        lo, scale = self._scale
        z = (vals - lo) / scale
        shape = np.lib.stride_tricks.sliding_window_view(z, cfg.window)[-n_rows:]
        if cfg.coarse_block > 0:
            shape = np.column_stack([shape] + _block_means(z, cfg.coarse_block, cfg.coarse_count, n_rows))
        channels = [shape]
        if cfg.novelty:
            channels.append(z[-n_rows:, None])
            channels.append(np.column_stack(_block_means(z, cfg.novelty_block, cfg.novelty_blocks, n_rows)))
        if cfg.volatility:
            spread = np.ptp(np.lib.stride_tricks.sliding_window_view(z, cfg.volatility_window)[-n_rows:], axis=1)
            channels.append(np.log(spread + 1e-3)[:, None])  # a log, so going quiet is as far as turning jumpy
        return channels

    def _refit(self) -> None:
        """Fit every channel's model on the feature rows of the last ``history`` points."""
        cfg = self.config
        vals = np.asarray(self._values[-(cfg.history + cfg.span - 1):], dtype=np.float64)
        q = cfg.scale_quantile
        lo, hi = (float(vals.min()), float(vals.max())) if q <= 0 else (float(v) for v in np.quantile(vals, [q, 1 - q]))
        # a flat history must not turn every rounding difference into an alarm
        scale = max(hi - lo, 1e-3 * max(abs(lo), abs(hi)), 1e-9)
        self._scale = (lo, scale)
        n_rows = len(vals) - cfg.span + 1
        models = []
        for c, X in enumerate(self._channel_features(vals, n_rows)):
            rng = np.random.default_rng(cfg.seed)
            X = X + rng.normal(0.0, 1e-4, size=X.shape)  # ties of quantised data break neighbour methods
            models.append(_make_inner(cfg, len(X), None if c == 0 else "knn").fit(X))
        self.inner_, self.novelty_models_ = models[0], models[1:]
        # the ratio in ``_post`` needs scores with a natural zero: distances have one, tree and histogram scores do
        # not, so theirs is put at the lowest training score
        self._raw_floor = 0.0 if cfg.detector in ("knn", "lof") else float(np.min(self.inner_.decision_scores_))

    def _post(self, i: int, raws: list[float]) -> float:
        """Score of point ``i`` from its channels' raw scores: novelty relative to each channel's past maximum, the
        largest of them, with suppression."""
        cfg = self.config
        self.last_raw_ = raws[0]
        ratios = []
        for raw, memory in zip(raws, self._memory):
            past = memory.max()
            memory.push(raw)
            ratios.append(raw / max(past, 1e-9) if past is not None else 0.0)
        if len(ratios) > 1:
            support = min(max(ratios[1:]) / cfg.shape_support, 1.0)
            ratios[0] *= cfg.shape_discount + (1.0 - cfg.shape_discount) * support
        x = max(ratios)
        score = x / (1.0 + x) if x > 0 else 0.0
        if i <= self._quiet_until:
            if score <= self._quiet_level + cfg.escalation:
                return 0.0
        elif score < cfg.alarm_level:
            return score
        if cfg.suppress > 0:
            self._quiet_until, self._quiet_level = i + cfg.suppress, score
        return score
