"""Has the data moved away from what a detector was trained on? PSI and KS of recent feature rows vs the reference.

``DriftMonitor.fit`` keeps, per feature, reference quantile bins (with the reference mass in each), a quantile sketch
for the two-sample KS statistic, and how autocorrelated the feature is. ``score`` compares recent rows with that and
returns a ``DriftReport`` whose ``score`` in [0, 1] the agent can act on (``drifted`` -> fault ``detector_drift``,
playbook ``retrain-detector``).

Three choices keep the score honest on operational features, which are small, autocorrelated and often flat:

- Histograms are kernel-smoothed: each value spreads uniformly over ``+-resolution`` (features are in units of the
  baseline's robust scale). A flat reference is then a block, not a spike, and a move far below the resolution
  does not empty a bin (unsmoothed PSI calls a 0.001 wiggle on a constant feature infinite drift).
- PSI has a sampling floor: under no change it is about ``c * chi2(k - 1)`` with ``c = 1/n_recent + 1/n_reference``
  counted in *effective* samples (rolling features repeat themselves: a 4-point rolling mean carries about a
  quarter of the information of its point count). Only the PSI above the ``noise_quantile`` of that distribution
  counts as drift, so 40 recent points cannot look like drift just because they are few. For the same reason the
  reference bins are merged (by equal reference mass) down to about ``MIN_EFFECTIVE_PER_BIN`` effective samples each,
  never below 2: a short recent window tests for a shift of the middle, a long one also for a change of spread.
- The KS p-value uses the same effective sample sizes.

``score = 1 - exp(-max excess PSI / PSI_SCALE)``, with ``PSI_SCALE`` set so that an excess of 0.25 (the customary
"significant shift" PSI) maps to the default threshold 0.3.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
from scipy.special import kolmogorov
from scipy.stats import chi2

PSI_SCALE = 0.25 / -np.log(0.7)  # excess PSI 0.25 -> score 0.3
PSEUDO_COUNT = 0.5  # per bin, on both sides: keeps an empty bin finite for tiny samples
MIN_EFFECTIVE_PER_BIN = 5  # the chi-square rule of thumb: fewer effective samples per bin and PSI is mostly noise


@dataclass(frozen=True)
class DriftReport:
    """How far recent feature rows are from the reference, per feature and overall.

    ``psi``: population stability index (smoothed bins); ``psi_noise``: the PSI that sampling alone reaches with
    probability ``1 - noise_quantile`` at these sample sizes; ``ks_statistic``/``ks_pvalue``: two-sample
    Kolmogorov-Smirnov against the reference (p-value with effective sample sizes). ``score`` in [0, 1] grows with
    the largest PSI excess over noise; ``feature`` is where it is (``""`` when nothing exceeds noise).
    """

    score: float
    drifted: bool
    threshold: float
    feature: str
    points: int
    reference_points: int
    psi: dict[str, float] = field(default_factory=dict)
    psi_noise: dict[str, float] = field(default_factory=dict)
    ks_statistic: dict[str, float] = field(default_factory=dict)
    ks_pvalue: dict[str, float] = field(default_factory=dict)

    def top(self, count: int = 3) -> list[tuple[str, float]]:
        """The ``count`` features with the largest PSI excess over noise, as (feature, excess), largest first."""
        excess = [(f, max(0.0, p - self.psi_noise.get(f, 0.0))) for f, p in self.psi.items()]
        return sorted((e for e in excess if e[1] > 0), key=lambda e: (-e[1], e[0]))[:count]

    def as_dict(self) -> dict[str, Any]:
        return {"score": self.score, "drifted": self.drifted, "threshold": self.threshold, "feature": self.feature,
                "points": self.points, "reference_points": self.reference_points, "psi": dict(self.psi),
                "psi_noise": dict(self.psi_noise), "ks_statistic": dict(self.ks_statistic),
                "ks_pvalue": dict(self.ks_pvalue)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "DriftReport":
        def floats(key: str) -> dict[str, float]:
            return {str(k): float(v) for k, v in (data.get(key) or {}).items()}
        return cls(score=float(data["score"]), drifted=bool(data["drifted"]), threshold=float(data["threshold"]),
                   feature=str(data.get("feature", "")), points=int(data["points"]),
                   reference_points=int(data["reference_points"]), psi=floats("psi"),
                   psi_noise=floats("psi_noise"), ks_statistic=floats("ks_statistic"), ks_pvalue=floats("ks_pvalue"))


class DriftMonitor:
    """Reference feature distribution of a detector, and drift of recent rows against it (see the module docstring).

    ``bins``: quantile bins per feature (fewer when the reference has fewer distinct values than ``resolution``
    apart); ``resolution``: kernel half-width in feature units; ``threshold``: on ``score`` for ``drifted``;
    ``sketch_size``: reference quantiles kept for KS (bounds memory: a reference of any length costs
    ``sketch_size`` floats per feature, at a KS error of at most ``1 / (2 * sketch_size)``).
    """

    def __init__(self, bins: int = 10, resolution: float = 0.25, threshold: float = 0.3, sketch_size: int = 100,
                 noise_quantile: float = 0.99) -> None:
        if bins < 2 or resolution <= 0 or sketch_size < 2 or not 0 < noise_quantile < 1:
            raise ValueError("need bins >= 2, resolution > 0, sketch_size >= 2 and 0 < noise_quantile < 1")
        self.bins = bins
        self.resolution = resolution
        self.threshold = threshold
        self.sketch_size = sketch_size
        self.noise_quantile = noise_quantile

    # --- fitting ---
    def fit(self, reference: np.ndarray, names: Sequence[str]) -> "DriftMonitor":
        """Learn the reference distribution of ``reference`` (n_rows x n_features, finite rows only are used)."""
        X = _rows(reference, len(names))
        if X.shape[0] == 0:
            raise ValueError("DriftMonitor needs at least one finite reference row")
        self.names_ = tuple(str(n) for n in names)
        self.reference_points_ = int(X.shape[0])
        ordered = np.sort(X, axis=0)
        cuts = _quantiles(ordered, np.arange(1, self.bins) / self.bins).T  # (features, bins - 1)
        self.edges_ = np.vstack([_thin(row, self.resolution) for row in cuts])
        self.reference_mass_ = _smoothed_mass(X, self.edges_, self.resolution).sum(axis=0)
        k = self.sketch_size
        # Small references are kept whole (KS then equals scipy's ks_2samp exactly); larger ones as k quantiles.
        sketch = ordered if X.shape[0] <= k else _quantiles(ordered, (np.arange(k) + 0.5) / k)
        self.sketch_ = np.ascontiguousarray(sketch.T)  # (features, points)
        self.inflation_ = _inflation(X)
        return self

    # --- scoring ---
    def score(self, recent: np.ndarray) -> DriftReport:
        """Drift of ``recent`` rows (same feature order as fitted) against the reference."""
        if not hasattr(self, "names_"):
            raise RuntimeError("DriftMonitor is not fitted")
        X = _rows(recent, len(self.names_))
        n, m = X.shape[0], self.reference_points_
        if n == 0:
            zeros = dict.fromkeys(self.names_, 0.0)
            return DriftReport(0.0, False, self.threshold, "", 0, m, dict(zeros), dict(zeros), dict(zeros),
                               dict.fromkeys(self.names_, 1.0))
        n_eff = np.maximum(n / self.inflation_, 1.0)
        m_eff = np.maximum(m / self.inflation_, 1.0)
        valid = np.concatenate([np.ones((len(self.names_), 1), bool), np.isfinite(self.edges_)], axis=1)
        groups = _coarsened(self.reference_mass_, valid, np.minimum(n_eff, m_eff) // MIN_EFFECTIVE_PER_BIN)
        ref_mass = np.einsum("fb,fbg->fg", self.reference_mass_, groups)
        new_mass = np.einsum("fb,fbg->fg", _smoothed_mass(X, self.edges_, self.resolution).sum(axis=0), groups)
        used = groups.any(axis=1)
        p_ref, p_new = _proportions(ref_mass, m, used), _proportions(new_mass, n, used)
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(used, (p_new - p_ref) * np.log(p_new / p_ref), 0.0)
        psi = terms.sum(axis=1)
        dof = np.maximum(used.sum(axis=1) - 1, 1)
        noise = (1.0 / n_eff + 1.0 / m_eff) * chi2.ppf(self.noise_quantile, dof)
        excess = np.maximum(psi - noise, 0.0)
        ks = _ks_statistic(self.sketch_, X)
        en = n_eff * m_eff / (n_eff + m_eff)
        # Stephens' small-sample correction of the Kolmogorov limit: accurate from about 4 effective samples.
        pvalue = np.clip(kolmogorov((np.sqrt(en) + 0.12 + 0.11 / np.sqrt(en)) * ks), 0.0, 1.0)
        worst = int(np.argmax(excess))
        score = float(1.0 - np.exp(-excess[worst] / PSI_SCALE))
        return DriftReport(
            score=round(score, 6), drifted=score >= self.threshold, threshold=self.threshold,
            feature=self.names_[worst] if excess[worst] > 0 else "", points=int(n), reference_points=m,
            psi=_named(self.names_, psi), psi_noise=_named(self.names_, noise),
            ks_statistic=_named(self.names_, ks), ks_pvalue=_named(self.names_, pvalue))

    # --- persistence ---
    def as_dict(self) -> dict[str, Any]:
        """Parameters and fitted state as plain JSON types (``+inf`` padding of the edges written as ``None``)."""
        data: dict[str, Any] = {"bins": self.bins, "resolution": self.resolution, "threshold": self.threshold,
                                "sketch_size": self.sketch_size, "noise_quantile": self.noise_quantile}
        if hasattr(self, "names_"):
            data["fitted"] = {
                "names": list(self.names_), "reference_points": self.reference_points_,
                "edges": [[float(e) if np.isfinite(e) else None for e in row] for row in self.edges_],
                "reference_mass": self.reference_mass_.tolist(), "sketch": self.sketch_.tolist(),
                "inflation": self.inflation_.tolist()}
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "DriftMonitor":
        """The monitor ``as_dict`` described."""
        monitor = cls(bins=int(data["bins"]), resolution=float(data["resolution"]),
                      threshold=float(data["threshold"]), sketch_size=int(data["sketch_size"]),
                      noise_quantile=float(data["noise_quantile"]))
        fitted = data.get("fitted")
        if fitted:
            monitor.names_ = tuple(str(n) for n in fitted["names"])
            monitor.reference_points_ = int(fitted["reference_points"])
            monitor.edges_ = np.array([[np.inf if e is None else float(e) for e in row] for row in fitted["edges"]],
                                      dtype=np.float64).reshape(len(monitor.names_), monitor.bins - 1)
            monitor.reference_mass_ = np.asarray(fitted["reference_mass"], dtype=np.float64)
            monitor.sketch_ = np.asarray(fitted["sketch"], dtype=np.float64)
            monitor.inflation_ = np.asarray(fitted["inflation"], dtype=np.float64)
        return monitor


def _rows(X: np.ndarray, features: int) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != features:
        raise ValueError(f"expected an array of shape (n, {features}), got {X.shape}")
    return X[np.all(np.isfinite(X), axis=1)]


def _quantiles(ordered: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """``np.quantile(X, levels, axis=0)`` (linear interpolation) from the column-sorted ``X``, without re-sorting."""
    position = levels * (ordered.shape[0] - 1)
    below = np.floor(position).astype(int)
    above = np.minimum(below + 1, ordered.shape[0] - 1)
    frac = (position - below)[:, None]
    return ordered[below] + frac * (ordered[above] - ordered[below])


def _thin(edges: np.ndarray, gap: float) -> np.ndarray:
    """Bin edges at least ``gap`` apart (ties and near-ties merged), padded with ``+inf`` to the input length."""
    kept: list[float] = []
    for e in edges:
        if not kept or e - kept[-1] >= gap:
            kept.append(float(e))
    return np.array(kept + [np.inf] * (len(edges) - len(kept)))


def _smoothed_mass(X: np.ndarray, edges: np.ndarray, h: float) -> np.ndarray:
    """``(n, features, bins)``: the share of each value's ``[x - h, x + h]`` block falling in each bin."""
    lo = np.concatenate([np.full((edges.shape[0], 1), -np.inf), edges], axis=1)  # (features, bins)
    hi = np.concatenate([edges, np.full((edges.shape[0], 1), np.inf)], axis=1)
    x = X[:, :, None]
    overlap = np.minimum(hi, x + h) - np.maximum(lo, x - h)
    return np.clip(np.nan_to_num(overlap, nan=0.0, neginf=0.0), 0.0, None) / (2.0 * h)


def _proportions(mass: np.ndarray, n: int, valid: np.ndarray) -> np.ndarray:
    mass = np.where(valid, mass, 0.0)
    return np.where(valid, (mass + PSEUDO_COUNT) / (n + PSEUDO_COUNT * valid.sum(axis=1, keepdims=True)), 1.0)


def _coarsened(reference_mass: np.ndarray, valid: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """``(features, bins, bins)`` one-hot: which of at most ``wanted`` (at least 2) groups of about equal reference
    mass each bin joins. Small samples get fewer, wider bins; a group no bin joined stays empty."""
    features, bins = reference_mass.shape
    k = np.clip(wanted, 2, valid.sum(axis=1)).astype(int)[:, None]
    share = np.where(valid, reference_mass, 0.0)
    share = share / np.maximum(share.sum(axis=1, keepdims=True), 1e-12)
    middle = np.cumsum(share, axis=1) - share / 2.0
    group = np.minimum((middle * k).astype(int), k - 1)
    group = np.where(valid, group, k - 1)  # padding bins hold no mass: any group will do
    return group[:, :, None] == np.arange(bins)[None, None, :]


def _inflation(X: np.ndarray) -> np.ndarray:
    """Per feature, how many rows carry one row's worth of information: ``1 + 2 * sum of autocorrelations`` up to
    the first non-positive lag (Geyer's initial positive sequence), between 1 and ``n / 2``."""
    n = X.shape[0]
    out = np.ones(X.shape[1])
    if n < 4:
        return out
    centered = X - X.mean(axis=0)
    var = (centered ** 2).sum(axis=0)
    live = var > 1e-12 * n
    alive = live.copy()
    for lag in range(1, max(2, n // 4)):
        if not alive.any():
            break
        rho = np.zeros(X.shape[1])
        rho[live] = (centered[lag:, live] * centered[:-lag, live]).sum(axis=0) / var[live]
        alive &= rho > 0
        out[alive] += 2.0 * rho[alive]
    return np.clip(out, 1.0, n / 2.0)


def _ks_statistic(sketch: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Per feature, the largest gap between the reference sketch's and the recent rows' empirical CDFs."""
    out = np.empty(sketch.shape[0])
    n, k = X.shape[0], sketch.shape[1]
    for j in range(sketch.shape[0]):
        ref, new = sketch[j], np.sort(X[:, j])
        points = np.concatenate([ref, new])
        gap = np.searchsorted(ref, points, side="right") / k - np.searchsorted(new, points, side="right") / n
        out[j] = float(np.abs(gap).max())
    return out


def _named(names: Sequence[str], values: np.ndarray) -> dict[str, float]:
    return {name: round(float(v), 6) for name, v in zip(names, values)}
