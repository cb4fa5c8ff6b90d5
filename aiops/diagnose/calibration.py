"""Calibrated confidence: a monotone map from the ensemble's raw combined confidence to how often it is right.

The noisy-OR in ``ensemble`` produces a score that orders hypotheses well but whose value means little ("0.95"
is not right 95 % of the time). ``Calibration`` is a piecewise-linear, non-decreasing map fitted by isotonic
regression on (raw confidence, was the choice right) pairs from the scenario suite (``bench.calibrate``), so the
``min_confidence`` guard acts on an observed probability. It is stored as JSON points with metadata; without a
file the map is the identity.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from aiops.domain.errors import InputError

FORMAT = "aiops-calibration/1"
CALIBRATION_FILE = "calibration.json"  # inside ``settings.models_dir``
DEFAULT_BINS = 10


@dataclass(frozen=True)
class Calibration:
    """A non-decreasing piecewise-linear map on [0, 1] given by points ``(xs[i], ys[i])``; identity when empty."""

    xs: tuple[float, ...] = ()
    ys: tuple[float, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def identity(self) -> bool:
        """True when there are no points (the raw confidence is returned unchanged)."""
        return not self.xs

    def apply(self, x: float) -> float:
        """The calibrated confidence of raw confidence ``x`` (clipped at both ends, always within [0, 1])."""
        if self.identity:
            return float(min(1.0, max(0.0, x)))
        return float(np.interp(x, self.xs, self.ys))

    @classmethod
    def fit(cls, confidences: Sequence[float], correct: Sequence[bool], meta: dict[str, Any] | None = None
            ) -> "Calibration":
        """Isotonic regression of ``correct`` on ``confidences`` (sklearn, out_of_bounds="clip").

        The map is kept as the fitted thresholds, i.e. the step function's corners, which ``numpy.interp``
        joins linearly; it stays monotone and inside [0, 1]. Above the data it clips; below it, it is never
        more confident than the raw value (``_no_trust_below_support``)."""
        from sklearn.isotonic import IsotonicRegression  # only the offline fit needs sklearn

        x = np.asarray(confidences, dtype=float)
        y = np.asarray(correct, dtype=float)
        if x.size == 0 or x.size != y.size:
            raise ValueError(f"need equally many confidences and labels, got {x.size} and {y.size}")
        model = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip").fit(x, y)
        xs = [float(v) for v in model.X_thresholds_]
        ys = [float(v) for v in model.y_thresholds_]
        xs, ys = _no_trust_below_support(xs, ys)
        return cls(tuple(xs), tuple(ys), dict(meta or {}, n=int(x.size), support=[float(x.min()), float(x.max())]))

    # -- storage ---------------------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """The stored form: format tag, points and metadata."""
        return {"format": FORMAT, "points": [[round(x, 6), round(y, 6)] for x, y in zip(self.xs, self.ys)],
                "meta": self.meta}

    def save(self, path: Path) -> None:
        """Write ``path`` (via a temp file, so a crash never leaves half a file)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=1) + "\n", encoding="utf-8")
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> "Calibration":
        """Read ``path``; a missing file is the identity, a corrupt one an ``InputError`` naming the file."""
        path = Path(path)
        if not path.exists():
            return cls()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(str(path), f"not a readable calibration JSON file: {exc}") from None
        return cls.from_json(data, str(path))

    @classmethod
    def from_json(cls, data: Any, where: str = "calibration") -> "Calibration":
        """Validate the stored form: points are finite pairs in [0, 1], x strictly and y weakly increasing."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise InputError(where, f"expected a JSON object with format {FORMAT!r}")
        points = data.get("points")
        meta = data.get("meta", {})
        if not isinstance(points, list) or not isinstance(meta, dict):
            raise InputError(where, "'points' must be a list of [x, y] pairs and 'meta' an object")
        xs, ys = [], []
        for i, point in enumerate(points):
            if (not isinstance(point, list) or len(point) != 2
                    or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in point)
                    or not all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in point)):
                raise InputError(where, f"points[{i}]: expected [x, y] with both numbers in [0, 1], got {point!r}")
            if xs and (point[0] <= xs[-1] or point[1] < ys[-1]):
                raise InputError(where, f"points[{i}]: the map must increase (x strictly, y never decreasing)")
            xs.append(float(point[0]))
            ys.append(float(point[1]))
        return cls(tuple(xs), tuple(ys), meta)


SUPPORT_STEP = 1e-4  # width of the step up to the first fitted point (kept above the stored rounding)


def _no_trust_below_support(xs: list[float], ys: list[float]) -> tuple[list[float], list[float]]:
    """Below the lowest raw confidence seen while fitting there is no evidence, and clipping would hand a weak
    hypothesis the (high) accuracy of the weakest *observed* ones: there the map is ``min(x, ys[0])`` instead,
    never more confident than the raw value. Monotone, and unchanged from the first fitted point on."""
    x0, y0 = xs[0], ys[0]
    if x0 <= SUPPORT_STEP:
        return xs, ys
    if y0 < x0:
        head = [(0.0, 0.0), (y0, y0)] if y0 > 0 else [(0.0, 0.0)]
    else:
        head = [(0.0, 0.0), (x0 - SUPPORT_STEP, x0 - SUPPORT_STEP)]
    head = [p for p in head if p[0] < x0]
    return [p[0] for p in head] + xs, [p[1] for p in head] + ys


def expected_calibration_error(confidences: Sequence[float], correct: Sequence[bool],
                               bins: int = DEFAULT_BINS) -> float:
    """ECE: the case-weighted mean |accuracy - mean confidence| over ``bins`` equal-width bins of [0, 1]."""
    x = np.clip(np.asarray(confidences, dtype=float), 0.0, 1.0)
    y = np.asarray(correct, dtype=float)
    if x.size == 0:
        return 0.0
    index = np.minimum((x * bins).astype(int), bins - 1)  # 1.0 belongs to the last bin
    total = 0.0
    for b in range(bins):
        mask = index == b
        if mask.any():
            total += mask.sum() * abs(y[mask].mean() - x[mask].mean())
    return float(total / x.size)


def brier_score(confidences: Sequence[float], correct: Sequence[bool]) -> float:
    """Mean squared difference between confidence and outcome (0 = perfect)."""
    x = np.asarray(confidences, dtype=float)
    y = np.asarray(correct, dtype=float)
    return float(np.mean((x - y) ** 2)) if x.size else 0.0
